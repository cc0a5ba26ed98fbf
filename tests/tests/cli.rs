//! The operator's command line: defaults shown, times in RFC 3339, JSON where output is data,
//! no colour codes in pipes, and a demo that changes nothing when run again.

use prp_tests::{artifacts, stderr, stdout, Scene};

/// A scene with the demo database built.
fn demo_scene() -> (Scene, std::path::PathBuf) {
    let a = artifacts();
    let scene = Scene::new();
    let config = scene.appsettings(
        &[a.lib("password-reset-authenticator")],
        &["password-reset-authenticator"],
        true,
    );
    let out = scene.run(&config, &["demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("demo identity database built"));
    (scene, config)
}

fn is_rfc3339(s: &str) -> bool {
    // 2026-11-30T05:38:19Z
    let b = s.as_bytes();
    s.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && s.ends_with('Z')
}

#[test]
fn a_second_demo_changes_nothing_unless_reset() {
    let (scene, config) = demo_scene();
    let again = scene.run(&config, &["demo"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let text = stdout(&again);
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(!text.contains("alice-demo-password"), "{text}");
    assert!(!text.contains("passcode:"), "{text}");
    let reset = scene.run(&config, &["demo", "--reset"]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let text = stdout(&reset);
    assert!(text.contains("demo passwords set back"), "{text}");
    assert!(text.contains("passcode:"), "{text}");
}

#[test]
fn params_show_documented_defaults() {
    let (scene, config) = demo_scene();
    let list = stdout(&scene.run(&config, &["params", "list", r"PRP\Lockout"]));
    assert!(
        list.lines().any(
            |l| l.starts_with(r"PRP\Lockout\All\MaxFailures = 100") && l.ends_with("[default]")
        ),
        "{list}"
    );
    let get = scene.run(
        &config,
        &["params", "get", r"PRP\PasswordPolicy\Default\MinLength"],
    );
    assert!(get.status.success(), "{}", stderr(&get));
    let text = stdout(&get);
    assert!(text.contains("= 12  [default]"), "{text}");
    assert!(text.contains("allowed"), "{text}");
    let unknown = scene.run(&config, &["params", "get", r"No\Such\Thing"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        !stdout(&unknown).contains("keys list"),
        "{}",
        stdout(&unknown)
    );
    // A key's name asked of `params` points to `keys` (the new-user trial looked there).
    let key = scene.run(&config, &["params", "get", "EnablePasscodeLogin"]);
    assert_eq!(key.status.code(), Some(1));
    assert!(
        stdout(&key).contains("see `prp-host keys list`"),
        "{}",
        stdout(&key)
    );
    // `enable` of a parameter without a value says what it did and didn't do.
    let on = scene.run(
        &config,
        &[
            "params",
            "enable",
            r"QER\Person\PasswordResetAuthenticator\PasscodeSplit",
        ],
    );
    assert!(on.status.success(), "{}", stderr(&on));
    assert!(
        stdout(&on).contains("to turn a flag on: prp-host params set"),
        "{}",
        stdout(&on)
    );
    // A value is stored as it is read, without the spaces around it.
    let set = scene.run(
        &config,
        &["params", "set", r"PRP\Lockout\All\MaxFailures", " 50 "],
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let got = stdout(&scene.run(&config, &["params", "get", r"PRP\Lockout\All\MaxFailures"]));
    assert!(got.contains(r"PRP\Lockout\All\MaxFailures = 50  "), "{got}");
}

#[test]
fn times_are_rfc3339_and_data_comes_as_json_too() {
    let (scene, config) = demo_scene();
    let issued = scene.run(&config, &["passcode", "new", "bob", "--format", "json"]);
    assert!(issued.status.success(), "{}", stderr(&issued));
    let v: serde_json::Value = serde_json::from_str(stdout(&issued).trim()).expect("json");
    assert!(v["passcode"].as_str().is_some_and(|p| p.len() == 19), "{v}");
    assert!(
        is_rfc3339(v["expires_at"].as_str().unwrap_or_default()),
        "{v}"
    );

    let text = stdout(&scene.run(&config, &["passcode", "new", "bob"]));
    assert!(!text.contains("Unix"), "{text}");

    let explain = stdout(&scene.run(&config, &["explain-login", "bob"]));
    let until = explain
        .lines()
        .find_map(|l| l.split("valid until ").nth(1))
        .unwrap_or_else(|| panic!("{explain}"));
    assert!(is_rfc3339(until.trim()), "{explain}");

    let audit = stdout(&scene.run(&config, &["audit", "--format", "json", "--limit", "3"]));
    for line in audit.lines() {
        let e: serde_json::Value = serde_json::from_str(line).expect("json line");
        assert!(is_rfc3339(e["at"].as_str().unwrap_or_default()), "{line}");
    }
    let audit = stdout(&scene.run(&config, &["audit", "--limit", "1"]));
    let at = audit.split_whitespace().nth(1).unwrap_or_default();
    assert!(is_rfc3339(at), "{audit}");
}

#[test]
fn logs_in_a_pipe_carry_no_colour_codes() {
    let a = artifacts();
    let scene = Scene::new();
    let cfg = serde_json::json!({
        "ConnectionStrings": {"Database": "sqlite:///nonexistent-dir/x/prp.db"},
        "Plugins": {"Files": [a.lib("password-reset-authenticator")]},
        "Logging": {"Level": "info"},
    });
    let config = scene.write("appsettings.json", &cfg.to_string());
    let out = scene.run(&config, &["serve"]);
    let err = stderr(&out);
    assert!(err.contains("configuration loaded"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI codes in a pipe: {err:?}");
}

#[test]
fn check_warns_of_the_sample_token_and_names_disabled_branches() {
    let (scene, config) = demo_scene();
    // The sample's placeholder token.
    let cfg = std::fs::read_to_string(&config).expect("config");
    let mut v: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    v["ConnectionStrings"][prp_host::config::APPLICATION_TOKEN] =
        "demo-token-replace-with-prp-host-token-new".into();
    std::fs::write(&config, v.to_string()).expect("write");
    assert!(scene.run(&config, &["token", "adopt"]).status.success());
    let text = stdout(&scene.run(&config, &["check"]));
    assert!(
        text.lines().any(|l| l.starts_with("warn")
            && l.contains("ApplicationToken")
            && l.contains("placeholder")),
        "{text}"
    );

    // Disabling the authenticator's branch takes the ApplicationToken out of force: say so.
    let root = r"QER\Person\PasswordResetAuthenticator";
    assert!(scene
        .run(&config, &["params", "disable", root])
        .status
        .success());
    let text = stdout(&scene.run(&config, &["check"]));
    let line = text
        .lines()
        .find(|l| l.contains("disabled parameters"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("disables everything under it"), "{line}");
    assert!(line.contains("ApplicationToken"), "{line}");
    // And the authenticator's own finding says why and points at `token adopt`.
    let finding = text
        .lines()
        .find(|l| l.starts_with("FAILED") && l.contains("no token hash is in force"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(finding.contains("a disabled parent"), "{finding}");
    assert!(finding.contains("token adopt"), "{finding}");
}

/// `prp-host outbox` lists the queued notification mails: recipient and address, kind and
/// subject, the state with attempts, last error and next attempt; filters by state and a limit;
/// never prints a message's text (a passcode half) unless `--show-bodies`, which is audited.
#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_lists_queued_mails_without_their_secrets() {
    use prp_tests::{Backend, TestDb, TEST_TOKEN};
    let db = TestDb::new(&Backend::Sqlite).await;
    let store = db.store().await;
    prp_tests::seed(&store).await;
    prp_tests::marta_manages_carol(&store).await;
    prp_host::demo::set_email(&store, "P-MARTA", Some("marta@example.test"))
        .await
        .expect("marta's address");
    let queue = |uid: &'static str, kind: &'static str, subject: &'static str| {
        let store = store.clone();
        async move {
            store
                .notify(uid, kind, subject, "fallback text", None, None)
                .await
                .expect("queue");
        }
    };
    let claim = || async {
        let claimed = store
            .claim_notifications("test-worker", 60, 1)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        claimed[0].id
    };
    // #1: tried once, failed, retried in an hour.
    queue(
        "P-DAN",
        "question.replaced",
        "Your password questions were changed",
    )
    .await;
    let id = claim().await;
    let next = store.now() + 3600;
    store
        .mark_notification_failed(
            id,
            "test-worker",
            next,
            "SMTP server smtp.test:25: connection refused",
        )
        .await
        .expect("failed");
    // #2: given up.
    queue(
        "P-LARS",
        "question.unlocked",
        "Your password questions were changed",
    )
    .await;
    let id = claim().await;
    store
        .mark_notification_undeliverable(id, "the SMTP server refused it: 550 no such user")
        .await
        .expect("undeliverable");
    // #3: sent.
    queue(
        "P-OKKO",
        "question.replaced",
        "Your password questions were changed",
    )
    .await;
    let id = claim().await;
    store
        .mark_notification_delivered(id, "<prp.3.1@example.test>")
        .await
        .expect("delivered");
    // #4: never tried, to someone who is not in Person.
    queue(
        "P-GONE",
        "question.replaced",
        "Your password questions were changed",
    )
    .await;
    // #5: the second half of a four-eyes passcode for Carol, to Marta.
    let half = "7K3M-Q9TX";
    let hash = prp_tests::hasher().hash("whatever").expect("hash");
    store
        .issue_passcode("P-CAROL", &hash, 3600, "test")
        .await
        .expect("passcode");
    store
        .queue_passcode_half("P-CAROL", &hash, "P-MARTA", "fallback", half)
        .await
        .expect("half");

    let scene = Scene::new();
    let config = scene.portal_config(&db.url, Some(TEST_TOKEN), serde_json::json!({}));
    let out = scene.run(&config, &["outbox"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains(half), "a secret was printed: {text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 11, "{text}");
    assert_eq!(lines[0], "outbox: 3 pending, 1 failed, 1 sent", "{text}");
    let entry = |id: &str| {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("#{id} ")))
            .unwrap_or_else(|| panic!("#{id}: {text}"));
        (lines[at], lines[at + 1])
    };
    let (head, state) = entry("1");
    assert!(
        head.starts_with("#1 question.replaced \"Your password questions were changed\", queued ")
            && head.ends_with(", to P-DAN (Test P-DAN) <dan@example.test>"),
        "{head}"
    );
    let queued = head
        .split(", queued ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or_default();
    assert!(is_rfc3339(queued), "{head}");
    assert_eq!(
        state,
        format!(
            "    pending, 1 attempt(s) failed, the last: SMTP server smtp.test:25: connection refused; next attempt {}",
            prp_host::rfc3339(next)
        )
    );
    let (_, state) = entry("2");
    assert!(
        state.starts_with("    failed ")
            && state.ends_with(
                " after 1 attempt(s), not retried: the SMTP server refused it: 550 no such user"
            ),
        "{state}"
    );
    let (_, state) = entry("3");
    assert!(
        state.starts_with("    sent ") && state.ends_with(" as <prp.3.1@example.test> (attempt 1)"),
        "{state}"
    );
    let (head, state) = entry("4");
    assert!(head.ends_with(", to P-GONE [not in Person]"), "{head}");
    assert_eq!(state, "    pending, not tried yet; due now");
    let (head, state) = entry("5");
    assert!(head.starts_with("#5 passcode.half "), "{head}");
    assert!(
        head.ends_with("to P-MARTA (Marta Manager) <marta@example.test>"),
        "{head}"
    );
    assert_eq!(
        state,
        "    pending, not tried yet; due now; holds a passcode half (not shown)"
    );

    // Only what is still to be sent, the newest two; as JSON too, without the secret.
    let text = stdout(&scene.run(&config, &["outbox", "--state", "pending", "--limit", "2"]));
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(ids, ["4", "5"], "{text}");
    let text = stdout(&scene.run(
        &config,
        &["outbox", "--state", "failed,sent", "--format", "json"],
    ));
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(rows[0]["state"], "failed", "{text}");
    assert_eq!(
        rows[0]["recipient"]["address"], "lars@example.test",
        "{text}"
    );
    assert_eq!(rows[1]["state"], "sent", "{text}");
    assert_eq!(rows[1]["message_id"], "<prp.3.1@example.test>", "{text}");
    let all = stdout(&scene.run(&config, &["outbox", "--format", "json"]));
    assert!(!all.contains(half), "a secret was printed: {all}");
    assert!(!all.contains("\"text\""), "{all}");

    // Asked for explicitly: the text as it is sent, with the half, and the audit log says so.
    let help = stdout(&scene.run(&config, &["outbox", "--help"]));
    assert!(
        help.contains("--show-bodies") && help.contains("secret"),
        "{help}"
    );
    let text = stdout(&scene.run(&config, &["outbox", "--show-bodies", "--limit", "1"]));
    assert!(text.contains(&format!("    |     {half}")), "{text}");
    assert!(text.contains("    | Subject: "), "{text}");
    let shown = store.audit_tail(1).await.expect("audit");
    assert_eq!(shown[0].event, "notification.shown");
    assert_eq!(shown[0].person_uid.as_deref(), Some("P-MARTA"));
}

/// Output into a pipe that closes early ends the verb quietly (the new-user trial's
/// `prp-host audit | head -1` panicked with a backtrace).
#[test]
fn a_closed_pipe_ends_a_verb_quietly() {
    use std::process::Stdio;
    let (_scene, config) = demo_scene();
    let mut child = prp_tests::host_command(&config, &["params", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prp-host runs");
    // The reading end closes before the verb writes its first line.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("prp-host ends");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{:?} {err}", out.status);
}
