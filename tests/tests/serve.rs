//! `prp-host serve`: health endpoints, and a clean stop on SIGTERM.

use prp_tests::{artifacts, Scene, ServerProcess};

#[tokio::test(flavor = "multi_thread")]
async fn serves_health_and_stops_on_sigterm() {
    let a = artifacts();
    let scene = Scene::new();
    let config = scene.appsettings(
        &[a.lib("password-reset-authenticator")],
        &["password-reset-authenticator"],
        true,
    );
    // Without the identity tables the portal refuses to serve...
    let refused = scene.run(&config, &["serve"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = prp_tests::stderr(&refused);
    assert!(
        err.contains("the identity table \"Person\" does not exist"),
        "{err}"
    );
    // ...and with them it serves.
    let url = format!("sqlite://{}?mode=rwc", scene.path("prp.db").display());
    let clock = std::sync::Arc::new(prp_host::clock::SystemClock);
    let store = prp_host::store::Store::connect(&url, clock)
        .await
        .expect("db");
    prp_host::demo::create_identity_schema(&store)
        .await
        .expect("identity schema");
    let server = ServerProcess::start(&config).expect("server starts");
    let (status, body) = server.get("/health/live");
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/health/ready");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], "ready");
    // The public listener says whether, not why: no plugin names or versions.
    assert!(v.get("plugins").is_none(), "{v}");
    assert_eq!(
        server.terminate(),
        Some(0),
        "SIGTERM must end the server cleanly"
    );
}

#[test]
fn refuses_to_serve_when_the_database_is_unreachable() {
    let a = artifacts();
    let scene = Scene::new();
    let cfg = serde_json::json!({
        "ConnectionStrings": {"Database": "sqlite:///nonexistent-dir/x/prp.db"},
        "Plugins": {"Files": [a.lib("password-reset-authenticator")]},
    });
    let config = scene.write("appsettings.json", &cfg.to_string());
    let out = scene.run(&config, &["serve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        prp_tests::stderr(&out).contains("database sqlite:///nonexistent-dir/x/prp.db"),
        "{}",
        prp_tests::stderr(&out)
    );
}

#[test]
fn logs_can_be_json() {
    let a = artifacts();
    let scene = Scene::new();
    let cfg = serde_json::json!({
        "ConnectionStrings": {"Database": "sqlite:///nonexistent-dir/x/prp.db"},
        "Plugins": {"Files": [a.lib("password-reset-authenticator")]},
        "Logging": {"Level": "info", "Format": "json"},
    });
    let config = scene.write("appsettings.json", &cfg.to_string());
    let out = scene.run(&config, &["serve"]);
    let err = prp_tests::stderr(&out);
    let first = err.lines().next().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(v["level"], "INFO", "{first}");
    assert_eq!(v["fields"]["message"], "configuration loaded", "{first}");
}
