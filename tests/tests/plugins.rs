//! The host loads the real plugin and refuses each kind of broken one with the right reason,
//! while it keeps running and the other plugins keep working.

use prp_tests::{artifacts, stderr, stdout, Scene};
use serde_json::Value;
use std::path::Path;

const REAL: &str = "password-reset-authenticator";

fn report(scene: &Scene, files: &[&Path], required: &[&str]) -> (Value, i32) {
    let config = scene.appsettings(files, required, true);
    let out = scene.run(&config, &["plugins", "--format", "json"]);
    let json = serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| {
        panic!(
            "plugins printed no JSON ({e}): {}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (json, out.status.code().unwrap_or(-1))
}

fn rejection<'a>(report: &'a Value, file: &Path) -> &'a Value {
    report["rejected"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["path"] == file.to_str().unwrap_or_default())
        })
        .unwrap_or_else(|| panic!("{} was not rejected: {report}", file.display()))
}

/// Loads `fixture` beside the real plugin: the fixture is rejected with `kind` and a reason
/// containing `reason`, and the real plugin still loads and answers its self-check.
fn rejected_beside_real(fixture: &Path, kind: &str, reason: &str) {
    let a = artifacts();
    let scene = Scene::new();
    let (report, code) = report(&scene, &[fixture, a.lib(REAL)], &[REAL]);
    let r = rejection(&report, fixture);
    assert_eq!(r["kind"], kind, "{r}");
    let text = r["reason"].as_str().unwrap_or_default();
    assert!(text.contains(reason), "reason {text:?} lacks {reason:?}");
    assert_eq!(report["loaded"][0]["name"], REAL, "{report}");
    assert_eq!(
        code, 0,
        "an optional plugin's rejection must not fail the report"
    );

    let config = scene.appsettings(&[fixture, a.lib(REAL)], &[REAL], true);
    let check = scene.run(&config, &["check"]);
    let out = stdout(&check);
    assert!(out.contains(r#"ok      authenticator "password-reset" (password-reset-authenticator) self-check: passed"#), "{out}");
}

#[test]
fn the_real_plugin_loads_and_answers() {
    let a = artifacts();
    let scene = Scene::new();
    let (report, code) = report(&scene, &[a.lib(REAL)], &[REAL]);
    assert_eq!(code, 0, "{report}");
    let p = &report["loaded"][0];
    assert_eq!(p["name"], REAL);
    assert_eq!(p["abi_version"], prp_host_abi_version());
    assert_eq!(
        p["provides"],
        serde_json::json!(["authenticator", "resolver"])
    );
    assert_eq!(p["authenticators"], serde_json::json!(["password-reset"]));
    assert_eq!(
        p["resolvers"],
        serde_json::json!(["central-account", "search-table"])
    );
    assert_eq!(p["sha256"].as_str().map(str::len), Some(64));

    // The self-check is a real call through the ABI and the host services: it reads the
    // connection strings the host was given and the token hash in the configuration store.
    let with_token = scene.run(
        &scene.appsettings(&[a.lib(REAL)], &[REAL], true),
        &["check"],
    );
    let out = stdout(&with_token);
    assert!(
        out.contains(r#"ok      authenticator "password-reset" (password-reset-authenticator) self-check: passed"#),
        "{out}"
    );
    let without = scene.run(
        &scene.appsettings(&[a.lib(REAL)], &[REAL], false),
        &["check"],
    );
    let out = stdout(&without);
    assert_eq!(without.status.code(), Some(1), "{out}");
    assert!(out.contains(r"FAILED  authenticator "), "{out}");
    assert!(out.contains(r"ApplicationToken: not set"), "{out}");
}

fn prp_host_abi_version() -> &'static str {
    "1.0.0"
}

#[test]
fn changed_layout_is_rejected_with_a_short_summary() {
    let lib = artifacts().lib("fixture-changed-layout");
    rejected_beside_real(lib, "layout-mismatch", "PluginMod.provides");
    let scene = Scene::new();
    let (report, _) = report(&scene, &[lib], &[]);
    let reason = rejection(&report, lib)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.lines().count() <= 8, "summary too long:\n{reason}");
    assert!(reason.contains("expected u32, found u64"), "{reason}");
}

#[test]
fn older_abi_version_is_rejected() {
    rejected_beside_real(
        artifacts().lib("fixture-old-abi"),
        "version-mismatch",
        "built for ABI 0.9.0, this host speaks ABI 1.0.0",
    );
}

#[test]
fn a_library_that_is_not_a_plugin_is_rejected() {
    rejected_beside_real(
        artifacts().lib("fixture-not-a-plugin"),
        "not-a-plugin",
        "not a prp plugin",
    );
}

#[test]
fn a_file_that_is_not_a_library_is_rejected() {
    let scene = Scene::new();
    let junk = scene.write("libjunk.so", "this is not an ELF file");
    rejected_beside_real(&junk, "not-a-library", "not a loadable shared library");
}

#[test]
fn a_missing_file_is_rejected() {
    let scene = Scene::new();
    rejected_beside_real(&scene.path("libnothere.so"), "missing", "file not found");
}

#[test]
fn init_error_is_rejected() {
    rejected_beside_real(
        artifacts().lib("fixture-init-error"),
        "init-failed",
        "fixture refuses to start: setting X is missing",
    );
}

#[test]
fn init_panic_is_rejected() {
    rejected_beside_real(
        artifacts().lib("fixture-init-panic"),
        "init-panicked",
        "init panicked: fixture init panicked on purpose",
    );
}

#[test]
fn a_method_panic_is_denied_and_the_host_survives() {
    let a = artifacts();
    let scene = Scene::new();
    let fixture = a.lib("fixture-method-panic");
    let config = scene.appsettings(&[fixture, a.lib(REAL)], &[REAL], true);
    let out = scene.run(&config, &["check"]);
    let text = stdout(&out);
    // Exit code 1 (a failed check), not a signal: the process did not abort.
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert!(text.contains(r#"FAILED  authenticator "panicky" (fixture-method-panic) self-check: plugin returned an error: panicked: plugin panicked: fixture method panicked on purpose"#), "{text}");
    // The real plugin, called after the panic, still answers.
    assert!(text.contains(r#"ok      authenticator "password-reset" (password-reset-authenticator) self-check: passed"#), "{text}");
}

#[test]
fn a_required_plugin_that_is_rejected_fails_closed() {
    let a = artifacts();
    let scene = Scene::new();
    let fixture = a.lib("fixture-init-error");
    let (report, code) = report(&scene, &[fixture], &["fixture-init-error"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        report["missing_required"],
        serde_json::json!(["fixture-init-error"])
    );

    let config = scene.appsettings(&[fixture], &["fixture-init-error"], true);
    let serve = scene.run(&config, &["serve"]);
    assert_eq!(serve.status.code(), Some(1));
    let err = stderr(&serve);
    assert!(err.contains("refusing to serve: required plugin \"fixture-init-error\" is not loaded; rejected libraries:"), "{err}");
    assert!(err.contains("(init-failed)"), "{err}");
}

#[test]
fn a_required_plugin_that_does_not_exist_fails_closed() {
    let a = artifacts();
    let scene = Scene::new();
    let (report, code) = report(&scene, &[a.lib(REAL)], &[REAL, "ldap-resolver"]);
    assert_eq!(code, 1);
    assert_eq!(
        report["missing_required"],
        serde_json::json!(["ldap-resolver"])
    );
}

#[test]
fn pinned_sha256_is_enforced_before_opening() {
    let a = artifacts();
    let scene = Scene::new();
    let lib = a.lib(REAL);
    let (first, _) = report(&scene, &[lib], &[REAL]);
    let actual = first["loaded"][0]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let file = lib.file_name().and_then(|n| n.to_str()).unwrap_or_default();

    let pinned = |sha: &str| {
        let cfg = serde_json::json!({
            "ConnectionStrings": {"Database": "sqlite://prp.db?mode=rwc"},
            "Plugins": {"Files": [lib], "Required": [REAL], "Sha256": {file: sha}},
        });
        let config = scene.write("appsettings.json", &cfg.to_string());
        let out = scene.run(&config, &["plugins", "--format", "json"]);
        let json: Value = serde_json::from_str(stdout(&out).trim()).unwrap_or_default();
        (json, out.status.code())
    };
    let (good, code) = pinned(&actual);
    assert_eq!(code, Some(0), "{good}");
    assert_eq!(good["loaded"][0]["name"], REAL);

    let wrong = "0".repeat(64);
    let (bad, code) = pinned(&wrong);
    assert_eq!(
        code,
        Some(1),
        "a required plugin with a wrong pin must fail: {bad}"
    );
    let r = rejection(&bad, lib);
    assert_eq!(r["kind"], "sha256-mismatch");
    assert!(
        r["reason"].as_str().unwrap_or_default().contains(&actual),
        "{r}"
    );
}

#[test]
fn every_library_in_the_plugin_directory_is_loaded() {
    let a = artifacts();
    let scene = Scene::new();
    let dir = scene.path("plugins");
    std::fs::create_dir(&dir).expect("mkdir");
    for (pkg, name) in [
        (REAL, "libprp_auth.so"),
        ("fixture-init-error", "libbroken.so"),
    ] {
        std::fs::copy(a.lib(pkg), dir.join(name)).expect("copy");
    }
    std::fs::write(
        dir.join("README.txt"),
        "not a library, and not a .so: ignored",
    )
    .expect("write");
    let cfg = serde_json::json!({
        "ConnectionStrings": {"Database": "sqlite://prp.db?mode=rwc"},
        "Plugins": {"Directory": "plugins", "Required": [REAL]},
    });
    let config = scene.write("appsettings.json", &cfg.to_string());
    let out = scene.run(&config, &["plugins"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(
            "loaded    password-reset-authenticator 0.1.0 (ABI 1.0.0), provides authenticator, resolver:"
        ),
        "{text}"
    );
    assert!(
        lines[1].starts_with("rejected  ")
            && lines[1].contains("libbroken.so: init returned an error"),
        "{text}"
    );
}

/// A plugin built against ABI 1.0 loads in a host whose root module has one more function
/// (as ABI 1.1 would), and that host sees the function as absent.
#[test]
fn a_plugin_built_against_the_previous_abi_loads_in_a_newer_host() {
    let a = artifacts();
    let out = std::process::Command::new(&a.abi_next_host)
        .arg(a.lib(REAL))
        .output()
        .expect("abi-next-host runs");
    let line = stdout(&out);
    assert!(out.status.success(), "{line}{}", stderr(&out));
    let v: Value = serde_json::from_str(line.trim()).expect("json");
    assert_eq!(v["loaded"], true);
    assert_eq!(v["name"], REAL);
    assert_eq!(
        v["next_probe"],
        Value::Null,
        "the appended function must read as absent"
    );

    // Positive control: the same host reads the function from a plugin built against 1.1.
    let out = std::process::Command::new(&a.abi_next_host)
        .arg(a.lib("fixture-next-abi-plugin"))
        .output()
        .expect("abi-next-host runs");
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(v["next_probe"], 42, "{v}");

    // A genuinely different layout is still refused by the newer host.
    let out = std::process::Command::new(&a.abi_next_host)
        .arg(a.lib("fixture-changed-layout"))
        .output()
        .expect("abi-next-host runs");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

/// And the other way round: a plugin built against a newer minor ABI loads in this host.
#[test]
fn a_plugin_built_against_a_newer_minor_abi_loads() {
    let a = artifacts();
    let scene = Scene::new();
    let lib = a.lib("fixture-next-abi-plugin");
    let (report, code) = report(&scene, &[lib], &["fixture-next-abi-plugin"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["loaded"][0]["abi_version"], "1.1.0");
}
