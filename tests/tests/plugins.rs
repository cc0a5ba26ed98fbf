//! The host loads the real plugin and refuses each kind of broken one with the right reason,
//! while it keeps running and the other plugins keep working.

use prp_tests::{
    artifacts, seed, stderr, stdout, Backend, Scene, ServerProcess, TestDb, TEST_TOKEN,
};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
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
    prp_plugin_api::ABI_VERSION
}

#[test]
fn changed_layout_is_rejected_with_a_short_summary() {
    let lib = artifacts().lib("fixture-changed-layout");
    rejected_beside_real(
        lib,
        "layout-mismatch",
        "the plugin's `PluginMod.provides` differs from the host's",
    );
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
        "built for ABI 0.9.0, this host speaks ABI 1.1.0",
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
            "loaded    password-reset-authenticator 0.1.0 (ABI 1.1.0), provides authenticator, resolver:"
        ),
        "{text}"
    );
    assert!(
        lines[1].starts_with("rejected  ")
            && lines[1].contains("libbroken.so: init returned an error"),
        "{text}"
    );
}

/// A plugin built against ABI 1.1 loads in a host whose root module has one more function
/// (as ABI 1.2 would), and that host sees the function as absent.
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

    // Positive control: the same host reads the function from a plugin built against 1.2.
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
    assert_eq!(report["loaded"][0]["abi_version"], "1.2.0");
}

/// Rewrites the `Plugins` section of a JSON config with `changes` merged in.
fn patch_plugins(config: &Path, changes: Value) {
    let text = std::fs::read_to_string(config).expect("read config");
    let mut cfg: Value = serde_json::from_str(&text).expect("config is JSON");
    if let (Some(plugins), Some(changes)) = (cfg["Plugins"].as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            plugins.insert(k.clone(), v.clone());
        }
    }
    std::fs::write(config, cfg.to_string()).expect("write config");
}

/// The middle of the largest segment the dynamic loader maps, the code (64-bit little-endian
/// ELF): a copy cut there has headers that promise more than the file holds, and mapping it
/// used to end in SIGBUS.
fn middle_of_largest_loadable_segment(elf: &[u8]) -> usize {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&elf[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&h| u32::from_le_bytes([elf[h], elf[h + 1], elf[h + 2], elf[h + 3]]) == 1)
        .map(|h| (u64_at(h + 0x20), u64_at(h + 8)))
        .max()
        .map(|(size, offset)| offset + size / 2)
        .expect("the plugin has a loadable segment")
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A truncated copy of the real plugin, and random bytes behind an ELF header's first bytes,
/// used to kill `plugins`, `check` and `serve` with SIGBUS: they are refused before the dynamic
/// loader maps them, with the reason, and every command ends normally.
#[tokio::test(flavor = "multi_thread")]
async fn truncated_and_forged_libraries_are_refused_before_they_are_mapped() {
    let a = artifacts();
    let db = TestDb::new(&Backend::Sqlite).await;
    seed(&db.store().await).await;
    let scene = Scene::new();
    let dir = scene.path("plugins");
    std::fs::create_dir(&dir).expect("mkdir");
    let real = std::fs::read(a.lib(REAL)).expect("read the plugin");
    std::fs::write(dir.join("libprp_auth.so"), &real).expect("copy");
    let truncated = dir.join("libtruncated.so");
    let cut = middle_of_largest_loadable_segment(&real);
    std::fs::write(&truncated, &real[..cut]).expect("write");
    let forged = dir.join("libforged.so");
    let mut bytes = random_bytes(256 * 1024);
    bytes[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
    std::fs::write(&forged, &bytes).expect("write");
    let config = scene.portal_config(&db.url, Some(TEST_TOKEN), json!({}));
    patch_plugins(&config, json!({"Directory": "plugins", "Files": []}));

    let out = scene.run(&config, &["plugins", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(report["loaded"][0]["name"], REAL, "{report}");
    for file in [&truncated, &forged] {
        let r = rejection(&report, file);
        assert_eq!(r["kind"], "not-a-library", "{r}");
    }
    let reason = rejection(&report, &truncated)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.starts_with("not a loadable shared library: ")
            && reason.contains("the file is truncated or corrupt"),
        "{reason}"
    );

    let check = scene.run(&config, &["check"]);
    let text = stdout(&check);
    assert_eq!(check.status.code(), Some(1), "{text}{}", stderr(&check));
    assert!(
        text.contains(&format!(
            "FAILED  plugin library {}: not a loadable shared library:",
            truncated.display()
        )),
        "{text}"
    );
    assert!(text.contains(r#"ok      authenticator "password-reset" (password-reset-authenticator) self-check: passed"#), "{text}");

    let server = ServerProcess::start(&config).expect("serve starts beside the refused files");
    assert_eq!(server.get("/health/live").0, 200);
    assert_eq!(server.terminate(), Some(0));
}

/// The loaded code is a sealed copy of the bytes that were hashed: overwriting the file in
/// place after the load (which used to rewrite, or with a truncation unmap, the code the server
/// runs) changes nothing in the running server.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_file_rewritten_after_the_load_does_not_change_what_runs() {
    let a = artifacts();
    let db = TestDb::new(&Backend::Sqlite).await;
    let store = db.store().await;
    seed(&store).await;
    let scene = Scene::new();
    let copy = scene.path("libprp_auth.so");
    std::fs::copy(a.lib(REAL), &copy).expect("copy");
    let config = scene.portal_config(&db.url, Some(TEST_TOKEN), json!({}));
    patch_plugins(&config, json!({"Files": [copy]}));
    let server = ServerProcess::start(&config).expect("server starts");
    let login = |password: &str| {
        server
            .post(
                "/api/login/password",
                &json!({"login_name": "carol", "password": password}),
            )
            .0
    };
    assert_eq!(login(prp_tests::CAROL_CENTRAL), 200);

    // In place: same inode, first cut to nothing, then filled with other bytes.
    std::fs::write(&copy, random_bytes(64 * 1024)).expect("overwrite in place");
    assert_eq!(login("wrong"), 401);
    assert_eq!(login(prp_tests::CAROL_CENTRAL), 200);
    assert_eq!(server.terminate(), Some(0), "the server survived");
}

#[test]
fn require_pins_refuses_every_unpinned_library() {
    let a = artifacts();
    let scene = Scene::new();
    let lib = a.lib(REAL);
    let (unpinned, _) = report(&scene, &[lib], &[REAL]);
    let sha = unpinned["loaded"][0]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(sha.len(), 64, "{unpinned}");
    let config = scene.appsettings(&[lib], &[REAL], false);
    patch_plugins(&config, json!({"RequirePins": true}));
    let out = scene.run(&config, &["plugins", "--format", "json"]);
    let refused: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(out.status.code(), Some(1), "{refused}");
    let r = rejection(&refused, lib);
    assert_eq!(r["kind"], "unpinned", "{r}");
    let file = lib.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("no Plugins:Sha256 pin for \"{file}\"")),
        "{r}"
    );

    // Pinned, it loads.
    patch_plugins(
        &config,
        json!({"RequirePins": "true", "Sha256": {file: sha}}),
    );
    let out = scene.run(&config, &["plugins", "--format", "json"]);
    let pinned: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(out.status.code(), Some(0), "{pinned}");
    assert_eq!(pinned["loaded"][0]["name"], REAL);
}

#[test]
fn files_and_folders_others_can_write_are_refused() {
    let a = artifacts();
    let scene = Scene::new();
    let dir = scene.path("plugins");
    std::fs::create_dir(&dir).expect("mkdir");
    let lib = dir.join("libprp_auth.so");
    std::fs::copy(a.lib(REAL), &lib).expect("copy");
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    chmod(&dir, 0o755);
    let config = scene.appsettings(&[&lib], &[REAL], false);
    let reason = |expect_loaded: bool| {
        let out = scene.run(&config, &["plugins", "--format", "json"]);
        let report: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
        if expect_loaded {
            assert_eq!(report["loaded"][0]["name"], REAL, "{report}");
            return String::new();
        }
        assert_eq!(out.status.code(), Some(1), "{report}");
        let r = rejection(&report, &lib);
        assert_eq!(r["kind"], "writable-by-others", "{r}");
        r["reason"].as_str().unwrap_or_default().to_owned()
    };
    chmod(&lib, 0o755);
    reason(true);

    chmod(&lib, 0o775);
    let r = reason(false);
    assert!(
        r.starts_with(&format!(
            "{} is writable by others than its owner (mode 0775)",
            lib.display()
        )),
        "{r}"
    );
    chmod(&lib, 0o646);
    assert!(reason(false).contains("(mode 0646)"));

    chmod(&lib, 0o755);
    chmod(&dir, 0o777);
    let r = reason(false);
    assert!(
        r.starts_with(&format!(
            "{} is writable by others than its owner (mode 0777)",
            dir.display()
        )),
        "{r}"
    );
    chmod(&dir, 0o755);
}

/// Only the authenticator's own plugin's resolvers are used unless `Plugins:Resolvers` lists
/// more: a loaded third-party resolver is reported as unused, and its names don't log in.
#[tokio::test(flavor = "multi_thread")]
async fn a_third_party_resolver_is_used_only_when_listed() {
    let a = artifacts();
    let scene = Scene::new();
    let directory = a.lib("fixture-directory-resolver");
    let config = scene.appsettings(&[a.lib(REAL), directory], &[REAL], true);
    let out = scene.run(&config, &["plugins", "--format", "json"]);
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(out.status.code(), Some(0), "{report}");
    let unused = &report["unused_resolvers"];
    assert_eq!(unused.as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(unused[0]["id"], "directory");
    assert_eq!(unused[0]["plugin"], "fixture-directory-resolver");
    assert!(
        unused[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("only the resolvers of password-reset-authenticator"),
        "{unused}"
    );
    let text = stdout(&scene.run(&config, &["plugins"]));
    assert!(
        text.contains(
            r#"unused    resolver "directory" (fixture-directory-resolver): not built in"#
        ),
        "{text}"
    );
    let check = stdout(&scene.run(&config, &["check"]));
    assert!(
        check.contains(
            r#"warn    resolver "directory" (fixture-directory-resolver) not in use: not built in"#
        ),
        "{check}"
    );

    // Listed, it is used; a built-in that is not listed is then unused.
    patch_plugins(
        &config,
        json!({"Resolvers": ["central-account", "directory"]}),
    );
    let out = scene.run(&config, &["plugins", "--format", "json"]);
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(
        report["unused_resolvers"],
        json!([{"plugin": REAL, "id": "search-table", "reason": "not listed in Plugins:Resolvers"}])
    );
}

/// A directory account's login with the third-party resolver not listed finds nobody; listed,
/// the resolver is asked, and when it errors or stalls the audit names it and the reason
/// instead of "password: wrong" or the authenticator.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_resolver_is_named_in_the_audit() {
    let a = artifacts();
    let db = TestDb::new(&Backend::Sqlite).await;
    let store = db.store().await;
    seed(&store).await;
    let scene = Scene::new();
    let directory = a.lib("fixture-directory-resolver");
    let config = scene.portal_config_with(&db.url, Some(TEST_TOKEN), json!({}), &[directory]);
    patch_plugins(&config, json!({"CallTimeoutMs": 3000}));
    let last = || async {
        let e = store.audit_tail(1).await.expect("audit");
        e.first().and_then(|e| e.reason.clone()).unwrap_or_default()
    };
    {
        let server = ServerProcess::start(&config).expect("server starts");
        let status = server
            .post(
                "/api/login/password",
                &json!({"login_name": "carol.dir", "password": "directory-initial-pw"}),
            )
            .0;
        assert_eq!(status, 401, "an unlisted resolver vouches for nobody");
    }

    patch_plugins(
        &config,
        json!({"Resolvers": ["central-account", "search-table", "directory"]}),
    );
    let server = ServerProcess::start(&config).expect("server starts");
    let login = |password: &str| {
        server
            .post(
                "/api/login/password",
                &json!({"login_name": "carol.dir", "password": password}),
            )
            .0
    };
    assert_eq!(login("directory-initial-pw"), 200, "listed, it is used");
    assert_eq!(login("not-the-password"), 401);
    assert_eq!(last().await, "password: wrong");

    assert_eq!(login("directory-errors"), 401);
    assert_eq!(
        last().await,
        r#"resolver "directory" (plugin fixture-directory-resolver) failed to verify the password: unavailable: the directory server is down (fixture)"#
    );

    // A stalled resolver is cut off by its own deadline (inside the authenticator's call) and
    // the login fails naming it; no time is asserted here.
    assert_eq!(login("directory-stalls"), 401);
    let reason = last().await;
    assert!(
        reason.starts_with(
            r#"resolver "directory" (plugin fixture-directory-resolver) did not verify the password within "#
        ),
        "{reason}"
    );
}
