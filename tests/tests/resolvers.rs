//! Third-party resolvers as an author builds them: the template (`plugins/template-resolver`)
//! loaded into a real host with its `Plugins:Settings`, logins through it, its self-check in
//! `check` and the admin `/health/ready`, and `Plugins:Optional`: an optional resolver that
//! fails leaves the other accounts working, a required one fails closed.

use prp_tests::{artifacts, stdout, Backend, Client, Portal, PortalOptions, CAROL_CENTRAL};
use serde_json::{json, Value};

const TEMPLATE: &str = "template-resolver";
const FILE_PW: &str = "file-account-pw-7";

fn template_options(plugins: Value) -> PortalOptions<'static> {
    let mut p = json!({
        "Resolvers": ["central-account", "search-table", "template"],
        "Settings": {"template-resolver": {"AccountsFile": "accounts.txt"}},
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), plugins.as_object()) {
        for (k, v) in extra {
            p.insert(k.clone(), v.clone());
        }
    }
    PortalOptions {
        plugins: p,
        extra_plugins: Box::leak(Box::new([artifacts().lib(TEMPLATE)])),
        ..Default::default()
    }
}

/// The accounts file beside the configuration (the setting is relative to its folder).
fn write_accounts(p: &Portal) {
    let phc = prp_tests::hasher().hash(FILE_PW).expect("hash");
    std::fs::write(
        p.scene.path("accounts.txt"),
        format!("# the template's accounts\ncarol.file:P-CAROL:{phc}\n!dan.file:P-DAN:{phc}\n"),
    )
    .expect("accounts file");
}

async fn events(p: &Portal, n: i64) -> Vec<(String, String)> {
    let tail = p.store.audit_tail(n).await.expect("audit");
    tail.into_iter()
        .map(|e| (e.event, e.reason.unwrap_or_default()))
        .collect()
}

fn ready_detail(p: &Portal) -> (u16, Value) {
    let (status, body) = p.server.admin_get("/health/ready");
    (status, serde_json::from_str(&body).expect("json"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_template_resolver_logs_people_in_from_its_file() {
    let p = Portal::start_with(&Backend::Sqlite, template_options(json!({})), |_| async {}).await;
    write_accounts(&p);
    assert_eq!(p.login_status("carol.file", FILE_PW), 200);
    assert_eq!(
        p.login_status("CAROL.FILE", FILE_PW),
        200,
        "names fold ASCII case"
    );
    assert_eq!(p.login_status("carol.file", "not-it"), 401);
    assert_eq!(p.last_reason().await, "password: wrong");
    assert_eq!(p.login_status("dan.file", FILE_PW), 401, "disabled");
    // The person's items list the file's account.
    let carol = Client::password(&p.server, "carol.file", FILE_PW);
    let (s, items) = carol.call("GET", "/api/password-items", None);
    assert_eq!(s, 200, "{items}");
    assert!(
        items["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|i| i["id"] == "TemplateAccounts:carol.file")),
        "{items}"
    );

    let out = p.cli(&["check"]);
    let text = stdout(&out);
    // One line for the resolver's self-check, saying what it found.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(r#"resolver "template" (template-resolver) self-check"#))
        .collect();
    let file = p.scene.path("accounts.txt");
    assert_eq!(
        lines,
        [format!(
            r#"ok      resolver "template" (template-resolver) self-check: passed; Plugins:Settings:template-resolver:AccountsFile: 2 accounts in {}"#,
            file.display()
        )],
        "{text}"
    );
    assert!(
        text.contains("plugin settings template-resolver: AccountsFile=accounts.txt"),
        "{text}"
    );
    let (status, ready) = ready_detail(&p);
    assert_eq!(status, 200, "{ready}");
    let r = &ready["resolvers"];
    let template = r
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == "template"))
        .unwrap_or_else(|| panic!("{ready}"));
    assert_eq!(template["plugin"], TEMPLATE);
    assert_eq!(template["status"], "ok");
    assert_eq!(template["optional"], false);
}

/// The accounts file is missing: the template's resolve fails. Required (the default), every
/// login is denied, naming the resolver; `check` and readiness fail. Optional, only its own
/// accounts are left out: central logins work, and check, readiness and the audit say so.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_resolver_fails_closed_unless_it_is_optional() {
    let required =
        Portal::start_with(&Backend::Sqlite, template_options(json!({})), |_| async {}).await;
    // The resolver's system is unavailable: 503, and no login.
    assert_eq!(required.login_status("carol", CAROL_CENTRAL), 503);
    let prefix = r#"resolution failed: resolver "template" (plugin template-resolver): plugin returned an error: unavailable: "#;
    let mut reason = String::new();
    // The audit of a 503 is queued; wait for it (no time is asserted).
    for _ in 0..100 {
        reason = required.last_reason().await;
        if reason.starts_with(prefix) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reason.starts_with(prefix), "{reason}");
    let out = required.cli(&["check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(r#"FAILED  resolver "template" (template-resolver) self-check: Plugins:Settings:template-resolver:AccountsFile: "#),
        "{text}"
    );
    assert!(!text.contains("all checks passed"), "{text}");
    let (status, ready) = ready_detail(&required);
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["problems"]
            .to_string()
            .contains(r#"resolver \"template\" (plugin template-resolver)"#),
        "{ready}"
    );
    drop(required);

    let optional = Portal::start_with(
        &Backend::Sqlite,
        // Required too (it must be loaded), yet optional: its failing self-check doesn't stop
        // the portal, since the portal works without its accounts.
        template_options(json!({
            "Optional": ["template-resolver"],
            "Required": ["password-reset-authenticator", "template-resolver"],
        })),
        |_| async {},
    )
    .await;
    assert_eq!(optional.login_status("carol", CAROL_CENTRAL), 200);
    let tail = events(&optional, 2).await;
    let dropped = tail
        .iter()
        .find(|(event, _)| event == "resolver.dropped")
        .unwrap_or_else(|| panic!("{tail:?}"));
    assert!(
        dropped.1.starts_with(r#"optional resolver "template" (plugin template-resolver) failed to resolve a name, its accounts are left out: "#),
        "{dropped:?}"
    );
    // The file's own names find nobody now.
    assert_eq!(optional.login_status("carol.file", FILE_PW), 401);
    // Its items are left out; the person's others are listed.
    let carol = Client::password(&optional.server, "carol", CAROL_CENTRAL);
    let (s, items) = carol.call("GET", "/api/password-items", None);
    assert_eq!(s, 200, "{items}");
    assert!(items.to_string().contains("Person:P-CAROL"), "{items}");

    let out = optional.cli(&["check"]);
    let text = stdout(&out);
    assert!(
        text.contains(r#"ok      resolver "template" (template-resolver) optional: when it fails, only its own accounts are left out"#),
        "{text}"
    );
    assert!(
        text.contains(r#"FAILED  resolver "template" (optional) (template-resolver) self-check"#),
        "{text}"
    );
    assert!(!text.contains("all checks passed"), "{text}");
    let (status, ready) = ready_detail(&optional);
    assert_eq!(
        status, 200,
        "an optional resolver's failure leaves logins working: {ready}"
    );
    let template = &ready["resolvers"][2];
    assert_eq!(template["id"], "template", "{ready}");
    assert_eq!(template["optional"], true);
    assert_eq!(template["status"], "failed");

    // Once the file is there, its accounts are back.
    write_accounts(&optional);
    assert_eq!(optional.login_status("carol.file", FILE_PW), 200);
}

/// A resolver whose `verify_password` fails: required, the login fails naming it (not "wrong
/// password"); optional, its account is left out, audited, and the login goes on without it.
#[tokio::test(flavor = "multi_thread")]
async fn an_optional_resolvers_password_check_failure_drops_only_its_account() {
    let directory = artifacts().lib("fixture-directory-resolver");
    let options = |optional: bool| PortalOptions {
        plugins: json!({
            "Resolvers": ["central-account", "search-table", "directory"],
            "Optional": if optional { json!(["directory"]) } else { json!([]) },
        }),
        extra_plugins: Box::leak(Box::new([directory])),
        ..Default::default()
    };
    let required = Portal::start_with(&Backend::Sqlite, options(false), |_| async {}).await;
    assert_eq!(required.login_status("carol.dir", "directory-errors"), 401);
    assert_eq!(
        required.last_reason().await,
        r#"resolver "directory" (plugin fixture-directory-resolver) failed to verify the password: unavailable: the directory server is down (fixture)"#
    );
    drop(required);

    let optional = Portal::start_with(&Backend::Sqlite, options(true), |_| async {}).await;
    assert_eq!(optional.login_status("carol.dir", "directory-errors"), 401);
    // The resolver's failure is not the person's: it counts against her nothing.
    for scope in [
        prp_host::store::LockScope::Password,
        prp_host::store::LockScope::All,
    ] {
        let counted = optional
            .store
            .failures("P-CAROL", scope, 3600)
            .await
            .expect("failures");
        assert_eq!(counted, 0, "{scope:?}: the person's failures");
    }
    let tail = events(&optional, 2).await;
    assert!(
        tail.iter().any(|(e, r)| e == "resolver.dropped"
            && r == r#"optional resolver "directory" (plugin fixture-directory-resolver) failed to verify the password: unavailable: the directory server is down (fixture); its account is left out"#),
        "{tail:?}"
    );
    assert_eq!(optional.last_reason().await, "password: none");
    let status = optional.login_status("carol.dir", "directory-initial-pw");
    assert_eq!(status, 200, "{}", optional.last_reason().await);
}

/// A resolver that can't say a person's login names (`login_names_of`, for `RejectNames`):
/// required, a password check or change fails with 503 rather than pass a password unchecked
/// against them, and nothing changes; optional, its names are left out, audited as
/// `resolver.dropped`, and the check goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_resolver_that_cant_list_login_names_fails_password_checks_unless_optional() {
    const NEW_PW: &str = "orchard-velvet-lantern-42";
    let directory = artifacts().lib("fixture-directory-resolver");
    let options = |optional: bool| PortalOptions {
        plugins: json!({
            "Resolvers": ["central-account", "search-table", "directory"],
            "Optional": if optional { json!(["directory"]) } else { json!([]) },
            "Settings": {"fixture-directory-resolver": {"LoginNames": "down"}},
        }),
        extra_plugins: Box::leak(Box::new([directory])),
        ..Default::default()
    };
    let body = json!({"items": ["Person:P-CAROL"], "password": NEW_PW});
    let required = Portal::start_with(&Backend::Sqlite, options(false), |_| async {}).await;
    let carol = Client::password(&required.server, "carol", CAROL_CENTRAL);
    for path in ["/api/password-items/check", "/api/password-items/set"] {
        let (s, v) = carol.call("POST", path, Some(body.clone()));
        assert_eq!(s, 503, "{path}: {v}");
        assert_eq!(v["error"], "unavailable", "{path}: {v}");
    }
    assert_eq!(
        required.login_status("carol", NEW_PW),
        401,
        "nothing changed"
    );
    assert_eq!(required.login_status("carol", CAROL_CENTRAL), 200);
    // With RejectNames off for the item, the resolver's names aren't needed: the check goes on.
    required
        .store
        .set_parameter(r"PRP\PasswordPolicy\Default\RejectNames", Some("0"))
        .await
        .expect("param");
    let carol = Client::password(&required.server, "carol", CAROL_CENTRAL);
    let (s, v) = carol.call("POST", "/api/password-items/check", Some(body.clone()));
    assert_eq!(s, 200, "RejectNames off: {v}");
    drop(required);

    let optional = Portal::start_with(&Backend::Sqlite, options(true), |_| async {}).await;
    let carol = Client::password(&optional.server, "carol", CAROL_CENTRAL);
    let (s, v) = carol.call("POST", "/api/password-items/check", Some(body.clone()));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    let tail = events(&optional, 5).await;
    assert!(
        tail.iter().any(|(e, r)| e == "resolver.dropped"
            && r == r#"optional resolver "directory" (plugin fixture-directory-resolver) failed to list a person's login names, they are left out of the password rules: plugin returned an error: unavailable: the directory server is down (fixture)"#),
        "{tail:?}"
    );
    let (s, v) = carol.call("POST", "/api/password-items/set", Some(body));
    assert_eq!(s, 200, "{v}");
    assert_eq!(optional.login_status("carol", NEW_PW), 200);
}

/// A password the template sets in its own file: the file has the new hash (logins through the
/// resolver take the new password, not the old), and the portal keeps a hash of its own only
/// for the item's "last set" and the history rule, like its own items; never to verify a login.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_a_resolver_sets_gets_last_set_and_the_history_rule() {
    const NEW: &str = "quartz-meadow-harbor-91";
    let p = Portal::start_with(&Backend::Sqlite, template_options(json!({})), |_| async {}).await;
    write_accounts(&p);
    let item = "TemplateAccounts:carol.file";
    let carol = Client::password(&p.server, "carol.file", FILE_PW);
    let last_set = |c: &Client| {
        let (s, v) = c.call("GET", "/api/password-items", None);
        assert_eq!(s, 200, "{v}");
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let it = items.iter().find(|i| i["id"] == item).cloned();
        it.unwrap_or_else(|| panic!("{v}"))["last_set"].clone()
    };
    assert_eq!(
        last_set(&carol),
        Value::Null,
        "never set through the portal"
    );
    let set = |c: &Client, pw: &str| {
        c.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": [item], "password": pw})),
        )
    };
    let (s, v) = set(&carol, NEW);
    assert_eq!(s, 200, "{v}");
    assert_eq!(p.login_status("carol.file", NEW), 200);
    assert_eq!(
        p.login_status("carol.file", FILE_PW),
        401,
        "the old one is gone"
    );
    let carol = Client::password(&p.server, "carol.file", NEW);
    assert!(last_set(&carol).is_i64(), "last set is known now");
    let (s, v) = set(&carol, NEW);
    assert_eq!(
        s, 422,
        "the same password again breaks the history rule: {v}"
    );
    assert!(v.to_string().contains("history"), "{v}");
    let tail = events(&p, 5).await;
    assert!(
        tail.iter().any(|(e, r)| e == "password.set"
            && r == "TemplateAccounts:carol.file (set by its resolver)"),
        "{tail:?}"
    );
    // The portal's own copy never verifies a login: with the file's line emptied (the portal
    // keeps the password), the account has no password the portal would check.
    std::fs::write(p.scene.path("accounts.txt"), "carol.file:P-CAROL:\n").expect("w");
    assert_eq!(p.login_status("carol.file", NEW), 401);
}

/// The log names an optional resolver's failure (a warning with its plugin and the reason), and a
/// secret setting's value reaches neither the log nor `check` (which shows it as `***`).
#[tokio::test(flavor = "multi_thread")]
async fn an_optional_failure_is_logged_and_secret_settings_are_never_printed() {
    use std::io::Read;
    const SECRET: &str = "tok-SECRET-4711";
    let db = prp_tests::TestDb::new(&Backend::Sqlite).await;
    let store = db.store().await;
    prp_tests::seed(&store).await;
    let scene = prp_tests::Scene::new();
    let config = scene.portal_config_with(
        &db.url,
        Some(prp_tests::TEST_TOKEN),
        json!({}),
        &[artifacts().lib(TEMPLATE)],
    );
    prp_tests::merge_config(
        &config,
        &json!({"Plugins": {
            "Resolvers": ["central-account", "search-table", "template"],
            "Optional": ["template"],
            "Settings": {"template-resolver": {"AccountsFile": "missing.txt", "ApiToken": SECRET}},
        }}),
    );
    let check = stdout(
        &prp_tests::host_command(&config, &["check"])
            .output()
            .expect("runs"),
    );
    assert!(
        check.contains("plugin settings template-resolver: AccountsFile=missing.txt, ApiToken=***"),
        "{check}"
    );
    assert!(!check.contains(SECRET), "{check}");

    let mut server = prp_tests::ServerProcess::start(&config).expect("serves");
    let mut log = server.child.stderr.take().expect("stderr");
    let (status, body) = server.post(
        "/api/login/password",
        &json!({"login_name": "carol", "password": CAROL_CENTRAL}),
    );
    assert_eq!(status, 200, "{body}");
    server.terminate();
    let mut logged = String::new();
    log.read_to_string(&mut logged).expect("log");
    let line = logged
        .lines()
        .find(|l| l.contains(r#"optional resolver "template" (plugin template-resolver) failed to resolve a name"#))
        .unwrap_or_else(|| panic!("{logged}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("missing.txt"), "the reason: {line}");
    assert!(!logged.contains(SECRET), "{logged}");
}
