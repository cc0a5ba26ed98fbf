//! The config samples are equivalent, and each kind of bad input gets an error that names the
//! file, the line and column where possible, and the setting.

use prp_host::config::{self, ConfigError, Environment, APPLICATION_TOKEN};
use prp_tests::{stdout, workspace_root, Scene};

fn load(path: &std::path::Path) -> Result<config::LoadedConfig, ConfigError> {
    config::load(path, &Environment::default())
}

#[test]
fn json_and_xml_samples_are_equivalent() {
    let samples = workspace_root().join("config-samples");
    let json = load(&samples.join("appsettings.json")).expect("the JSON sample loads");
    let xml = load(&samples.join("prp.config")).expect("the XML sample loads");
    assert_eq!(json.settings, xml.settings);
    // And they say something: the token and the required plugin are there.
    assert!(json.settings.connection_string(APPLICATION_TOKEN).is_some());
    assert_eq!(
        json.settings.plugins.required,
        vec!["password-reset-authenticator".to_owned()]
    );
}

fn error_for(name: &str, text: &str) -> String {
    let scene = Scene::new();
    let path = scene.write(name, text);
    let err = load(&path)
        .expect_err("the file must be refused")
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    err
}

#[test]
fn malformed_json_names_line_and_column() {
    let err = error_for(
        "appsettings.json",
        "{\n  \"Host\": {\n    \"Listen\": \"127.0.0.1:1\",\n  }\n}",
    );
    assert!(
        err.contains("appsettings.json:4:3: trailing comma"),
        "{err}"
    );
}

#[test]
fn malformed_xml_names_line_and_column() {
    let err = error_for("prp.config", "<configuration>\n  <appSettings>\n    <add key=\"Host:Listen\" value=\"x>\n</configuration>");
    assert!(err.contains("prp.config:"), "{err}");
    assert!(err.contains("malformed XML"), "{err}");
}

#[test]
fn unknown_sections_are_refused() {
    let err = error_for("appsettings.json", "{\n  \"Hosts\": {}\n}");
    assert!(
        err.contains("appsettings.json:2:") && err.contains("unknown section \"Hosts\""),
        "{err}"
    );
    let err = error_for(
        "appsettings.json",
        "{\"Host\": {\"Lissen\": \"127.0.0.1:1\"}}",
    );
    assert!(
        err.contains("unknown setting \"Host:Lissen\"") && err.contains("Host:Listen"),
        "{err}"
    );
    let err = error_for(
        "prp.config",
        "<configuration>\n<system.web/>\n</configuration>",
    );
    assert!(
        err.contains("prp.config:2:1: unknown section <system.web>"),
        "{err}"
    );
}

#[test]
fn duplicate_names_are_refused() {
    let err = error_for(
        "appsettings.json",
        "{\"ConnectionStrings\": {\n\"Database\": \"sqlite://a\",\n\"database\": \"sqlite://b\"}}",
    );
    assert!(
        err.contains(":3:") && err.contains("duplicate setting \"ConnectionStrings:database\""),
        "{err}"
    );
    let err = error_for(
        "prp.config",
        "<configuration><connectionStrings>\n<add name=\"Database\" connectionString=\"a\"/>\n<add name=\"Database\" connectionString=\"b\"/>\n</connectionStrings></configuration>",
    );
    assert!(
        err.contains("prp.config:3:1: duplicate setting \"ConnectionStrings:Database\""),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_setting() {
    let err = error_for(
        "appsettings.json",
        "{\"Plugins\": {\"CallTimeoutMs\": \"soon\"}}",
    );
    assert!(
        err.contains("Plugins:CallTimeoutMs: expected a whole number of milliseconds"),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let scene = Scene::new();
    let err = load(&scene.path("appsettings.json"))
        .expect_err("missing")
        .to_string();
    assert!(err.contains("appsettings.json: not found"), "{err}");
}

#[test]
fn check_reports_a_bad_config_and_never_prints_secrets() {
    let scene = Scene::new();
    let bad = scene.write("appsettings.json", "{\"Hots\": {}}");
    let out = scene.run(&bad, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("FAILED  config parsed: "),
        "{}",
        stdout(&out)
    );

    let cfg = serde_json::json!({
        "ConnectionStrings": {
            APPLICATION_TOKEN: "tok-VERYSECRET",
            "Database": "postgres://prp:pw-VERYSECRET@127.0.0.1:1/prp",
        },
    });
    let good = scene.write("appsettings.json", &cfg.to_string());
    let out = scene.run(&good, &["check"]);
    let all = format!("{}{}", stdout(&out), prp_tests::stderr(&out));
    assert_eq!(
        out.status.code(),
        Some(1),
        "the database is unreachable: {all}"
    );
    assert!(
        all.contains("FAILED  database reachable: database postgres://prp:***@127.0.0.1:1/prp"),
        "{all}"
    );
    assert!(!all.contains("VERYSECRET"), "a secret was printed: {all}");
}
