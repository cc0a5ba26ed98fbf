//! The documented install (README.md, "Install"): deploy/install.sh into a staging root, the
//! production sample configuration edited as the steps say, then `check` and `serve` from the
//! installed layout; and `systemd-analyze verify` on the installed unit.

use prp_tests::{artifacts, workspace_root};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs deploy/install.sh with `DESTDIR=root` and the test build's binary and plugin.
fn install(root: &Path) -> Output {
    let a = artifacts();
    Command::new("sh")
        .arg(workspace_root().join("deploy/install.sh"))
        .env("DESTDIR", root)
        .env("PRP_HOST_BIN", &a.host)
        .env("PRP_PLUGINS", a.lib("password-reset-authenticator"))
        .output()
        .expect("sh runs")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The installed binary, with the staging root's plugin directory (the default,
/// /usr/lib/prp/plugins, is outside the staging root) given as the documented environment
/// override.
fn prp(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(root.join("usr/bin/prp-host"));
    cmd.arg("--config")
        .arg(root.join("etc/prp/appsettings.json"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("PRP_ENVIRONMENT")
        .env_remove("PRP_CONFIG")
        .env(
            "Plugins__Directory",
            root.join("usr/lib/prp/plugins").as_os_str(),
        );
    cmd
}

fn run(root: &Path, args: &[&str]) -> Output {
    prp(root, args).output().expect("prp-host runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn installs_and_serves_from_the_documented_layout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let out = install(&root);
    assert!(out.status.success(), "{}", prp_tests::stderr(&out));

    // The layout.
    for (path, want) in [
        ("usr/bin/prp-host", 0o755),
        ("usr/lib/prp/plugins", 0o755),
        (
            "usr/lib/prp/plugins/libpassword_reset_authenticator.so",
            0o644,
        ),
        ("etc/prp/appsettings.json", 0o640),
        ("var/lib/prp", 0o750),
        ("lib/systemd/system/prp.service", 0o644),
        ("usr/lib/sysusers.d/prp.conf", 0o644),
        ("usr/share/doc/prp/nginx-prp.conf", 0o644),
    ] {
        assert_eq!(mode(&root.join(path)), want, "{path}");
    }

    // The configuration: the production sample with the installed plugin pinned.
    let config_path = root.join("etc/prp/appsettings.json");
    let text = std::fs::read_to_string(&config_path).expect("config");
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let pin = config["Plugins"]["Sha256"]["libpassword_reset_authenticator.so"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        pin.len() == 64 && pin.chars().all(|c| c.is_ascii_hexdigit()),
        "{text}"
    );
    assert_eq!(config["Host"]["PublicUrl"], "https://prp.example.org");
    assert!(config["Plugins"].get("Files").is_none(), "no demo paths");

    // Installing again keeps the operator's configuration.
    std::fs::write(
        &config_path,
        text.replace("prp.example.org", "kept.example.org"),
    )
    .expect("write");
    let again = install(&root);
    assert!(again.status.success());
    assert!(prp_tests::stdout(&again).contains("kept the existing"));
    assert!(std::fs::read_to_string(&config_path)
        .expect("config")
        .contains("kept.example.org"));
    config["Host"]["PublicUrl"] = "https://kept.example.org".into();

    // The steps: the database (here SQLite in the state directory), ports free for a test.
    let state = root.join("var/lib/prp");
    let db = format!("sqlite://{}/prp.db?mode=rwc", state.display());
    config["ConnectionStrings"]["Database"] = db.clone().into();
    config["Host"]["Listen"] = "127.0.0.1:0".into();
    config["Host"]["AdminListen"] = "127.0.0.1:0".into();
    std::fs::write(&config_path, config.to_string()).expect("write");

    // migrate, the identity tables (the operator's; here the test's), then a token.
    let out = run(&root, &["migrate"]);
    assert!(out.status.success(), "{}", prp_tests::stderr(&out));
    let store =
        prp_host::store::Store::connect(&db, std::sync::Arc::new(prp_host::clock::SystemClock))
            .await
            .expect("db");
    prp_host::demo::create_identity_schema(&store)
        .await
        .expect("identity schema");
    store.close().await;
    let out = run(&root, &["token", "new"]);
    assert!(out.status.success(), "{}", prp_tests::stderr(&out));
    let printed = prp_tests::stdout(&out);
    let token = printed
        .lines()
        .skip_while(|l| !l.starts_with("New ApplicationToken"))
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("New ApplicationToken"))
        .expect("the token is printed")
        .to_owned();
    config["ConnectionStrings"][prp_host::config::APPLICATION_TOKEN] = token.into();
    std::fs::write(&config_path, config.to_string()).expect("write");

    let out = run(&root, &["check"]);
    assert!(
        out.status.success(),
        "{}{}",
        prp_tests::stdout(&out),
        prp_tests::stderr(&out)
    );

    // serve, from the installed layout.
    let log = std::fs::File::create(tmp.path().join("serve.log")).expect("log file");
    let mut child = prp(&root, &["serve"])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let lines = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut out = BufReader::new(stdout);
        let mut raw = Vec::new();
        // Every line, read as bytes: one that isn't UTF-8 doesn't end the watch.
        while out.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&raw).into_owned();
            raw.clear();
            if let Ok(mut seen) = lines.lock() {
                seen.push_str(&line);
            }
            if let Some(a) = line.strip_prefix("prp-host listening on http://") {
                let _ = tx.send(a.trim().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60));
    let Ok(addr) = addr else {
        let _ = child.kill();
        let ended = child.wait();
        let log = std::fs::read_to_string(tmp.path().join("serve.log")).unwrap_or_default();
        let out = seen.lock().map(|s| s.clone()).unwrap_or_default();
        panic!("the installed server did not start ({addr:?}, {ended:?}); its output:\n{out}\nits log:\n{log}");
    };
    let addr = addr.parse().expect("address");
    let (status, body) = prp_tests::http(addr, "GET", "/health/ready", None);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let ended = child.wait().expect("wait");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ready"), "{body}");
    assert!(ended.success(), "SIGTERM ends the server cleanly: {ended}");
}

/// The directory a program is found in, if it is installed.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = which("systemd-analyze") else {
        println!("SKIPPED: systemd-analyze is not installed");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let out = install(root);
    assert!(out.status.success(), "{}", prp_tests::stderr(&out));
    // The targets the unit is ordered against, and the commands it runs, as on a system.
    let units = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).expect("mkdir");
    for dir in ["/lib/systemd/system", "/usr/lib/systemd/system"] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "target") && path.is_file() {
                let _ = std::fs::copy(&path, units.join(entry.file_name()));
            }
        }
    }
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy(which("kill").expect("kill"), root.join("bin/kill")).expect("copy kill");

    let out = Command::new(&analyze)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("prp.service")
        .output()
        .expect("systemd-analyze runs");
    let said = format!("{}{}", prp_tests::stdout(&out), prp_tests::stderr(&out));
    assert!(out.status.success(), "{said}");
    assert!(said.trim().is_empty(), "warnings: {said}");

    // systemd's own exposure score stays "OK" (at most 2.0 of 10).
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(format!("--root={}", root.display()))
        .arg("prp.service")
        .output()
        .expect("systemd-analyze runs");
    let said = prp_tests::stdout(&out);
    assert!(out.status.success(), "{said}{}", prp_tests::stderr(&out));
    assert!(said.contains("Overall exposure level"), "{said}");

    // And it fails on a broken unit, so the check above means something.
    let unit = root.join("lib/systemd/system/prp.service");
    let text = std::fs::read_to_string(&unit).expect("unit");
    std::fs::write(&unit, text.replace("User=prp", "User=prp\nNoSuchSetting=1")).expect("write");
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("prp.service")
        .output()
        .expect("systemd-analyze runs");
    let said = format!("{}{}", prp_tests::stdout(&out), prp_tests::stderr(&out));
    assert!(said.contains("NoSuchSetting"), "{said}");
}
