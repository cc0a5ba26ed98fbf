//! `prp-host serve`: health endpoints, and a clean stop on SIGTERM.

use prp_tests::{artifacts, Scene, Server};

#[test]
fn serves_health_and_stops_on_sigterm() {
    let a = artifacts();
    let scene = Scene::new();
    let config = scene.appsettings(
        &[a.lib("password-reset-authenticator")],
        &["password-reset-authenticator"],
        true,
    );
    let server = Server::start(&config).expect("server starts");
    let (status, body) = server.get("/health/live");
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/health/ready");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], "ready");
    assert_eq!(v["plugins"][0]["name"], "password-reset-authenticator");
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
