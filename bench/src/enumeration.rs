//! `prp-bench enumeration`: does a failed login take the same time whatever the reason? Every
//! case is a failure that answers the same 401; 200 samples per case are sent interleaved (in
//! a shuffled order each round) to the release portal, on SQLite and on PostgreSQL, and each
//! case's median is reported against the wrong-password median of the same run. Goal: every
//! case within 2 %.
//!
//! The failure counters are cleared between rounds (outside the timed requests), so every
//! sample is a first failure in its window: without that, the 200 samples of one name would
//! turn into locked-name samples part way through.

use crate::portal::{build, passcode_login, password_login, post_timed, start, to_json};
use prp_host::clock::SystemClock;
use prp_host::demo::{self, NewAccount, NewPerson};
use prp_host::security::Hasher;
use prp_host::store::{ApiKeyScope, Store};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "bench-application-token-0123456789abcdef";
const PASSWORD: &str = "the-right-password-1";
const SERVER_B: &str = "bench-passcode-off";

/// Options of `prp-bench enumeration`.
#[derive(clap::Args)]
pub struct Args {
    /// Samples per case.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// A PostgreSQL URL whose user may create databases (default: `PRP_TEST_POSTGRES_URL`;
    /// without either, SQLite only).
    #[arg(long)]
    postgres: Option<String>,
    /// Serve with this `prp-host` binary instead of building the workspace's (with
    /// `--plugin-lib`), e.g. to measure an earlier build side by side.
    #[arg(long, requires = "plugin_lib")]
    host_bin: Option<PathBuf>,
    /// The plugin library to serve with `--host-bin`.
    #[arg(long, requires = "host_bin")]
    plugin_lib: Option<PathBuf>,
}

/// One kind of failure: where it is sent, and with what.
struct Case {
    name: &'static str,
    /// Sent to the second server, whose passcode logins are switched off.
    on_b: bool,
    path: &'static str,
    body: String,
}

fn cases() -> Vec<Case> {
    let pw = |name: &'static str, login: &str| Case {
        name,
        on_b: false,
        path: "/api/login/password",
        body: to_json(&password_login(login, "not-the-password")),
    };
    let pc = |name: &'static str, login: &str, on_b: bool| Case {
        name,
        on_b,
        path: "/api/login/passcode",
        body: to_json(&passcode_login(login, "0000-0000-0000-0000")),
    };
    vec![
        pw("wrong password", "wendy"),
        pw("unknown name", "nobody-at-all"),
        pw("disabled account", "disabled.acct"),
        pw("locked person", "lockie"),
        pw("inactive person", "ina"),
        pc("wrong passcode, live passcode", "petra", false),
        pc("wrong passcode, none issued", "wendy", false),
        pc("method switched off (passcode)", "petra", true),
        // The second server's own baseline.
        Case {
            on_b: true,
            ..pw("wrong password (server B)", "wendy")
        },
    ]
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (host, plugin) = match (&args.host_bin, &args.plugin_lib) {
        (Some(h), Some(p)) => (h.clone(), p.clone()),
        _ => build()?,
    };
    let postgres = args.postgres.clone().or_else(|| {
        std::env::var("PRP_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
    });
    println!(
        "Interleaved failed logins, {} samples per case, one client, sequential; medians against the wrong-password median of the same server and run.",
        args.samples
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("enumeration.db").display()
    );
    one_backend(&rt, "SQLite", &sqlite, &host, &plugin, dir.path(), args)?;
    if let Some(admin) = postgres {
        let db = crate::scratch::ScratchDatabase::create(&rt, &admin, "enum")?;
        let result = one_backend(
            &rt,
            "PostgreSQL",
            db.url(),
            &host,
            &plugin,
            dir.path(),
            args,
        );
        db.remove(&rt)?;
        result?;
    } else {
        println!("PostgreSQL: skipped (no --postgres and no PRP_TEST_POSTGRES_URL)");
    }
    Ok(())
}

async fn seed(store: &Store, hasher: &Arc<Hasher>) -> anyhow::Result<()> {
    store.migrate().await?;
    demo::create_identity_schema(store).await?;
    let person = |uid, central, inactive| NewPerson {
        uid,
        central_account: central,
        first_name: "Bench",
        last_name: central,
        manager_uid: None,
        inactive,
    };
    for p in [
        person("P-WENDY", "wendy", false),
        person("P-LOCKIE", "lockie", false),
        person("P-INA", "ina", true),
        person("P-PETRA", "petra", false),
        person("P-DORA", "dora", false),
    ] {
        demo::insert_person(store, &p).await?;
        demo::set_central_password(store, hasher, p.uid, PASSWORD).await?;
    }
    demo::insert_account(
        store,
        &NewAccount {
            uid: "A-DISABLED",
            person_uid: Some("P-DORA"),
            cn: "Dora",
            sam_account_name: "disabled.acct",
            locked: false,
            disabled: true,
            active: true,
            enabled: true,
        },
    )
    .await?;
    let root = r"QER\Person\PasswordResetAuthenticator";
    for (k, v) in [
        ("SearchTable", "ADSAccount"),
        ("SearchColumn", "CN|SamAccountName"),
        ("DisabledBy", "Locked|Disabled"),
        ("EnabledBy", "Enabled"),
    ] {
        store
            .set_parameter(&format!(r"{root}\{k}"), Some(v))
            .await?;
    }
    store
        .set_parameter(
            prp_host::config::APPLICATION_TOKEN,
            Some(&hasher.hash(TOKEN)?),
        )
        .await?;
    store
        .set_api_key(&ApiKeyScope::Global, "EnablePasscodeLogin", "true")
        .await?;
    store
        .set_api_key(
            &ApiKeyScope::Local(SERVER_B.into()),
            "EnablePasscodeLogin",
            "false",
        )
        .await?;
    let code = prp_host::security::new_passcode();
    let normalized = prp_host::security::normalize_passcode(&code)
        .ok_or_else(|| anyhow::anyhow!("a new passcode doesn't normalise"))?;
    store
        .issue_passcode(
            "P-PETRA",
            &hasher.hash(&normalized)?,
            30 * 24 * 3600,
            "bench",
        )
        .await?;
    reset_counters(store).await
}

/// Clears every failure counter, then locks P-LOCKIE (every method, a day).
async fn reset_counters(store: &Store) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM prp_failure")
        .execute(store.pool())
        .await?;
    sqlx::query(
        "INSERT INTO prp_failure (person_uid, scope, window_start, failures, locked_until) VALUES ('P-LOCKIE', 'all', $1, 100, $2)",
    )
    .bind(store.now())
    .bind(store.now() + 86_400)
    .execute(store.pool())
    .await?;
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn one_backend(
    rt: &tokio::runtime::Runtime,
    label: &str,
    url: &str,
    host: &std::path::Path,
    plugin: &std::path::Path,
    dir: &std::path::Path,
    args: &Args,
) -> anyhow::Result<()> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let store = rt.block_on(async {
        let store = Store::connect(url, Arc::new(SystemClock)).await?;
        let hasher = Arc::new(Hasher::new(workers, Hasher::MIN_MEMORY_KIB, 2)?);
        seed(&store, &hasher).await?;
        anyhow::Ok(store)
    })?;
    let config = |server: &str| -> anyhow::Result<PathBuf> {
        let path = dir.join(format!("{server}.json"));
        std::fs::write(
            &path,
            json!({
                "ConnectionStrings": {"Database": url, prp_host::config::APPLICATION_TOKEN: TOKEN},
                "Host": {"Listen": "127.0.0.1:0", "AdminListen": "127.0.0.1:0", "HashWorkers": workers, "ServerName": server},
                "Plugins": {"Files": [plugin], "Required": ["password-reset-authenticator"]},
                "Logging": {"Level": "error"},
            })
            .to_string(),
        )?;
        Ok(path)
    };
    let (a, _) = start(host, &config("bench-a")?)?;
    let (b, _) = start(host, &config(SERVER_B)?)?;
    let cases = cases();
    let target = |c: &Case| -> SocketAddr {
        if c.on_b {
            b.addr
        } else {
            a.addr
        }
    };
    // Warm up: every case a few times (also fills each server's time floor).
    for _ in 0..5 {
        for c in &cases {
            post_timed(target(c), c.path, &c.body);
        }
        rt.block_on(reset_counters(&store))?;
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(args.samples); cases.len()];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut order: Vec<usize> = (0..cases.len()).collect();
    for _ in 0..args.samples {
        // A shuffled order each round (xorshift; no dependency for it).
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let j = usize::try_from(seed % (i as u64 + 1)).unwrap_or(0);
            order.swap(i, j);
        }
        for &i in &order {
            let c = &cases[i];
            let (status, took) = post_timed(target(c), c.path, &c.body);
            anyhow::ensure!(status == 401, "{}: answered {status}, not 401", c.name);
            samples[i].push(took);
        }
        rt.block_on(reset_counters(&store))?;
    }
    let medians: Vec<Duration> = samples.iter_mut().map(|s| median(s)).collect();
    let base_a = medians[0];
    let base_b = medians[cases.len() - 1];
    println!("{label}:");
    let mut worst: f64 = 0.0;
    for (c, m) in cases.iter().zip(&medians) {
        let base = if c.on_b { base_b } else { base_a };
        let vs = 100.0 * (m.as_secs_f64() / base.as_secs_f64().max(1e-9) - 1.0);
        worst = worst.max(vs.abs());
        println!(
            "  {:<34} median {:7.2} ms  {:+6.1} % vs wrong password{}",
            c.name,
            m.as_secs_f64() * 1e3,
            vs,
            if c.on_b { " (server B)" } else { "" }
        );
    }
    println!(
        "  worst: {worst:.1} % ({} the 2 % goal)",
        if worst <= 2.0 { "within" } else { "outside" }
    );
    Ok(())
}
