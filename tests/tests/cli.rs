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
