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
    assert!(err.contains("--config FILE or PRP_CONFIG"), "{err}");
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

#[test]
fn an_xml_root_that_is_never_closed_is_refused() {
    let err = error_for(
        "prp.config",
        "<configuration>\n  <appSettings>\n    <add key=\"Host:Listen\" value=\"127.0.0.1:1\"/>\n  </appSettings>\n",
    );
    assert!(
        err.contains("prp.config:5:1: ")
            && err.contains("<configuration> (line 1) is never closed"),
        "{err}"
    );
    let err = error_for("prp.config", "<configuration>\n  <appSettings>");
    assert!(
        err.contains("prp.config:2:16: ") && err.contains("<appSettings> (line 2) is never closed"),
        "{err}"
    );
}

#[test]
fn a_byte_order_mark_is_accepted_in_both_formats() {
    let scene = Scene::new();
    let json = scene.write(
        "appsettings.json",
        "\u{feff}{\"Host\": {\"Listen\": \"127.0.0.1:7\"}}",
    );
    let loaded = load(&json).expect("JSON with a BOM loads");
    assert_eq!(loaded.settings.listen.to_string(), "127.0.0.1:7");
    let xml = scene.write(
        "prp.config",
        "\u{feff}<configuration><appSettings><add key=\"Host:Listen\" value=\"127.0.0.1:7\"/></appSettings></configuration>",
    );
    let loaded = load(&xml).expect("XML with a BOM loads");
    assert_eq!(loaded.settings.listen.to_string(), "127.0.0.1:7");
    // Positions after a BOM are still counted from the first visible character.
    let with_bom = error_for("appsettings.json", "\u{feff}{\"Hosts\": {}}");
    let without = error_for("appsettings.json", "{\"Hosts\": {}}");
    let position = |e: &str| {
        e.split(": ")
            .next()
            .unwrap_or_default()
            .rsplit_once(".json")
            .map(|(_, p)| p.to_owned())
    };
    assert_eq!(position(&with_bom), position(&without), "{with_bom}");
    assert!(with_bom.contains("unknown section"), "{with_bom}");
}

#[test]
fn a_file_that_is_not_utf8_names_the_first_bad_byte() {
    for name in ["appsettings.json", "prp.config"] {
        let scene = Scene::new();
        let path = scene.path(name);
        // "Müller" in Latin-1 on line 3, after two characters of that line.
        let mut bytes = b"{\n\"Host\": {\n  \"ServerName\": \"M".to_vec();
        bytes.push(0xFC);
        bytes.extend_from_slice(b"ller\"}}");
        std::fs::write(&path, &bytes).expect("write");
        let err = load(&path).expect_err("refused").to_string();
        assert!(
            err.contains(&format!("{name}:3:19: "))
                && err.contains("not UTF-8")
                && err.contains("0xFC"),
            "{err}"
        );
    }
}

#[test]
fn files_over_the_size_limit_are_refused_without_being_read() {
    const LIMIT: usize = 1024 * 1024;
    let scene = Scene::new();
    // A sparse 10 MB file: refused from its size alone.
    let big = scene.path("appsettings.json");
    let file = std::fs::File::create(&big).expect("create");
    file.set_len(10 * 1024 * 1024).expect("grow");
    let err = load(&big).expect_err("refused").to_string();
    assert!(
        err.contains("appsettings.json")
            && err.contains("10485760 bytes")
            && err.contains("at most 1 MiB"),
        "{err}"
    );
    // Exactly at the limit is fine.
    let mut text = String::from("{\"Host\": {\"Listen\": \"127.0.0.1:9\"}}");
    text.push_str(&" ".repeat(LIMIT - text.len()));
    let ok = scene.write("appsettings.json", &text);
    assert_eq!(
        load(&ok).expect("at the limit").settings.listen.to_string(),
        "127.0.0.1:9"
    );
    // One byte more isn't.
    text.push(' ');
    let over = scene.write("appsettings.json", &text);
    assert!(load(&over).is_err());
}

/// A fresh clone's configuration before `prp-host demo`: the database file doesn't exist yet.
/// `check` says so in one FAILED line that names the file and what to run, skips what fails
/// only for want of it, and creates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn check_creates_no_database() {
    let scene = Scene::new();
    let cfg = serde_json::json!({
        "ConnectionStrings": {"Database": "sqlite://data/prp.db?mode=rwc"},
        "Host": {"Listen": "127.0.0.1:0"},
        "Plugins": {
            "Files": [prp_tests::artifacts().lib("password-reset-authenticator")],
            "Required": ["password-reset-authenticator"],
        },
    });
    let path = scene.write("appsettings.json", &cfg.to_string());
    let out = scene.run(&path, &["check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAILED")).collect();
    assert_eq!(failed.len(), 1, "one failure, one line: {text}");
    assert!(
        failed[0].starts_with("FAILED  database reachable: ")
            && failed[0].contains(&format!(
                "{} does not exist",
                scene.path("data/prp.db").display()
            ))
            && failed[0].contains("`prp-host demo`")
            && failed[0].contains("`prp-host migrate`"),
        "{text}"
    );
    // The authenticator's self-check needs the database: skipped, not failed again.
    assert!(
        text.lines().any(
            |l| l.starts_with("skip    authenticator \"password-reset\"")
                && l.contains("needs the portal database")
        ),
        "{text}"
    );
    assert!(text.contains("1 check(s) failed, 1 skipped"), "{text}");
    assert!(
        !scene.path("data").exists(),
        "check created the database or its directory"
    );
    // Without ?mode=rwc the portal can't create the file either: the line says so.
    let mut plain = cfg.clone();
    plain["ConnectionStrings"]["Database"] = "sqlite://data/prp.db".into();
    let plain = scene.write("plain.json", &plain.to_string());
    let text = stdout(&scene.run(&plain, &["check"]));
    assert!(text.contains("add ?mode=rwc"), "{text}");
    assert!(!scene.path("data").exists());

    // Once it exists, check reads it (and still writes nothing of its own), also when the
    // file isn't in WAL mode (switching to it would be a write).
    let migrate = scene.run(&path, &["migrate"]);
    assert!(migrate.status.success(), "{}", prp_tests::stderr(&migrate));
    let url = format!("sqlite://{}", scene.path("data/prp.db").display());
    let pool = sqlx::sqlite::SqlitePool::connect(&url).await.expect("open");
    sqlx::query("PRAGMA journal_mode = DELETE")
        .execute(&pool)
        .await
        .expect("journal mode");
    pool.close().await;
    let out = scene.run(&path, &["check"]);
    let text = stdout(&out);
    assert!(
        text.contains("ok      database reachable: ")
            && text.contains("ok      portal schema: up to date"),
        "{text}"
    );
    let pool = sqlx::sqlite::SqlitePool::connect(&url).await.expect("open");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .expect("journal mode");
    assert_eq!(mode, "delete", "check changed the database's journal mode");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_value_the_portal_cant_use_fails_check_and_is_logged_once() {
    use prp_tests::{seed, Backend, ServerProcess, TestDb, CAROL_CENTRAL, TEST_TOKEN};
    use std::io::Read;
    let db = TestDb::new(&Backend::Sqlite).await;
    let store = db.store().await;
    seed(&store).await;
    // As an older version (or a hand-edited database) stored it: `params set` refuses it now.
    sqlx::query(
        "INSERT INTO prp_parameter (path_key, path, value, enabled, updated_at) VALUES ($1, $2, $3, 1, 0)",
    )
    .bind(r"prp\lockout\all\maxfailures")
    .bind(r"PRP\Lockout\All\MaxFailures")
    .bind("100000")
    .execute(store.pool())
    .await
    .expect("insert");
    let problem = r#"PRP\Lockout\All\MaxFailures: "100000" is not a whole number from 1 to 100; the default (100) applies"#;

    let scene = Scene::new();
    let config = scene.portal_config(&db.url, Some(TEST_TOKEN), serde_json::json!({}));
    let check = scene.run(&config, &["check"]);
    let text = stdout(&check);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("FAILED  host parameter: {problem}")),
        "{text}"
    );
    assert_eq!(text.matches("FAILED").count(), 1, "{text}");

    let mut server = ServerProcess::start(&config).expect("serves");
    let mut log = server.child.stderr.take().expect("stderr");
    for _ in 0..3 {
        let (status, body) = server.post(
            "/api/login/password",
            &serde_json::json!({"login_name": "carol", "password": format!("{CAROL_CENTRAL}-not")}),
        );
        assert_eq!(status, 401, "{body}");
    }
    server.terminate();
    let mut logged = String::new();
    log.read_to_string(&mut logged).expect("log");
    assert_eq!(logged.matches(problem).count(), 1, "{logged}");
}
