//! The portal under load, over HTTP against the real `prp-host` (release build) with the real
//! plugin, on a SQLite demo database: the machine's hashing limit measured in the same run,
//! login throughput at saturation for each method, overload at 10× the saturating load, cold
//! start, and the endpoints that don't hash.

use crate::load::{generate, ms, Report};
use prp_host::clock::SystemClock;
use prp_host::security::Hasher;
use prp_host::store::Store;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-application-token-0123456789abcdef";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds the release host and plugin; returns their paths.
fn build() -> anyhow::Result<(PathBuf, PathBuf)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
            "-p",
            "prp-host",
            "-p",
            "password-reset-authenticator",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "cargo build --release failed");
    let (mut host, mut plugin) = (None, None);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(exe) = v["executable"].as_str() {
            if v["target"]["name"] == "prp-host" {
                host = Some(PathBuf::from(exe));
            }
        }
        for f in v["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if f.ends_with("libpassword_reset_authenticator.so") {
                plugin = Some(PathBuf::from(f));
            }
        }
    }
    Ok((
        host.ok_or_else(|| anyhow::anyhow!("no prp-host"))?,
        plugin.ok_or_else(|| anyhow::anyhow!("no plugin"))?,
    ))
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kib_of(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn get(addr: SocketAddr, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> Value {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return Value::Null;
    };
    let b = body.to_string();
    let _ = write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len());
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

/// Starts the server and returns it with the time from spawn to `/health/ready` = 200.
fn start(host: &Path, config: &Path) -> anyhow::Result<(Server, Duration)> {
    let t = Instant::now();
    let mut child = Command::new(host)
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("server ended before listening"))??;
        if let Some(a) = line.strip_prefix("prp-host listening on http://") {
            break a.trim().parse()?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    while get(addr, "/health/ready") != 200 {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "not ready after 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((Server { child, addr }, t.elapsed()))
}

fn line(name: &str, r: &Report, limit: Option<f64>) {
    let handled = r.rate(200) + r.rate(401);
    let vs = limit
        .map(|l| format!(", {:.0} % of the hashing limit", 100.0 * handled / l))
        .unwrap_or_default();
    println!(
        "  {name:<28} {handled:7.1} logins/s{vs}; p50 {:.1} ms, p99 {:.1} ms; {}",
        ms(Report::percentile(&r.latencies, 0.5)),
        ms(Report::percentile(&r.latencies, 0.99)),
        r.summary()
    );
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let seconds: f64 = crate::flag(args, "--seconds", 15.0);
    let overload_clients: usize = crate::flag(args, "--overload-clients", 200);
    let (host, plugin) = build()?;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // The demo identities, the token's hash, and lockouts out of the way of the load.
    rt.block_on(async {
        let store = Store::connect(&url, Arc::new(SystemClock)).await?;
        store.migrate().await?;
        let hasher = Arc::new(Hasher::new(workers, Hasher::MIN_MEMORY_KIB, 2)?);
        prp_host::demo::seed_demo(&store, &hasher).await?;
        let hash = hasher.hash_async(TOKEN).await?;
        store
            .set_parameter(prp_host::config::APPLICATION_TOKEN, Some(&hash))
            .await?;
        store
            .set_parameter(r"PRP\Lockout\Password\MaxFailures", Some("1000"))
            .await?;
        store
            .set_parameter(r"PRP\Lockout\Passcode\MaxFailures", Some("1000"))
            .await?;
        // Four clients answer the same questions at once: give each its own tries.
        store
            .set_parameter(r"PRP\Lockout\Questions\MaxFailures", Some("1000"))
            .await?;
        store
            .set_parameter(r"PRP\Lockout\QuestionMaxFailures", Some("20"))
            .await?;
        anyhow::Ok(())
    })?;
    let config = dir.path().join("appsettings.json");
    std::fs::write(
        &config,
        json!({
            "ConnectionStrings": {"Database": url, prp_host::config::APPLICATION_TOKEN: TOKEN},
            "Host": {"Listen": "127.0.0.1:0", "HashWorkers": workers},
            "Plugins": {"Files": [plugin], "Required": ["password-reset-authenticator"]},
            "Logging": {"Level": "warn"},
        })
        .to_string(),
    )?;

    println!(
        "machine: {workers} cores; argon2id m=19456 KiB, t=2, p=1; {workers} hash workers; SQLite"
    );

    // Cold start, five times.
    let mut starts = Vec::new();
    for _ in 0..5 {
        let (s, t) = start(&host, &config)?;
        starts.push(t);
        drop(s);
    }
    starts.sort();
    println!("cold start to /health/ready (plugins loaded, schema validated): median {:.0} ms, best {:.0} ms", ms(starts[2]), ms(starts[0]));

    let (server, _) = start(&host, &config)?;
    let addr = server.addr;
    let pid = server.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let baseline_kib = kib_of(pid, "VmRSS:");

    let limit_now = || hashing_limit(workers);
    let (limit, verify) = limit_now()?;
    println!(
        "hashing limit: {limit:.1} verifies/s ({workers} workers busy at once; one verify {:.1} ms) — measured again before each run",
        ms(verify)
    );

    // Saturation, each method, at twice as many clients as hash workers.
    let clients = workers * 2;
    let duration = Duration::from_secs_f64(seconds);
    println!("saturation ({clients} clients, {seconds} s each; the limit is re-measured right before each):");
    let password =
        json!({"login_name": "alice", "password": prp_host::demo::DemoPeople::ALICE_PASSWORD})
            .to_string();
    let challenge = post(
        addr,
        "/api/login/questions/challenge",
        &json!({"login_name": "alice"}),
    );
    let answers: Vec<Value> = challenge["questions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| {
            let text = q["question"].as_str().unwrap_or_default();
            let a = prp_host::demo::DemoPeople::ALICE_QUESTIONS
                .iter()
                .find(|(qq, _)| *qq == text)
                .map(|(_, a)| *a)
                .unwrap_or("");
            json!({"question_id": q["id"], "answer": a})
        })
        .collect();
    let questions = json!({"login_name": "alice", "answers": answers}).to_string();
    let runs = [
        ("password (right)", "/api/login/password", password, 1.0),
        (
            "questions (right, 2 hashes)",
            "/api/login/questions",
            questions,
            2.0,
        ),
        (
            "passcode (wrong)",
            "/api/login/passcode",
            json!({"login_name": "bob", "passcode": "0000-0000-0000-0000"}).to_string(),
            1.0,
        ),
        (
            "unknown name (dummy hash)",
            "/api/login/password",
            json!({"login_name": "nobody", "password": "x"}).to_string(),
            1.0,
        ),
    ];
    for (name, path, body, hashes_per_login) in runs {
        let (limit, _) = limit_now()?;
        let r = generate(
            addr,
            "POST",
            path,
            Vec::new(),
            Arc::new(move |_, _| body.clone()),
            clients,
            duration,
        );
        line(name, &r, Some(limit / hashes_per_login));
    }

    // Overload: ten times the saturating load and more.
    let before = audit_logins(&rt, &url)?;
    let password =
        json!({"login_name": "alice", "password": prp_host::demo::DemoPeople::ALICE_PASSWORD})
            .to_string();
    let r = generate(
        addr,
        "POST",
        "/api/login/password",
        Vec::new(),
        Arc::new(move |_, _| password.clone()),
        overload_clients,
        duration,
    );
    let peak_kib = kib_of(pid, "VmHWM:");
    println!("overload ({overload_clients} clients, {seconds} s):");
    println!("  {}", r.summary());
    println!(
        "  accepted (200): {:.1}/s, p50 {:.1} ms, p99 {:.1} ms; turned away (503, Retry-After): {:.1}/s, p50 {:.2} ms, p99 {:.2} ms",
        r.rate(200),
        ms(r.p(200, 0.5)),
        ms(r.p(200, 0.99)),
        r.rate(503),
        ms(r.p(503, 0.5)),
        ms(r.p(503, 0.99))
    );
    let bound_kib = baseline_kib + (workers as u64) * 19_456;
    println!(
        "  peak RSS {} MiB; bound = {} hash workers × 19 MiB + baseline {} MiB = {} MiB ({})",
        peak_kib / 1024,
        workers,
        baseline_kib / 1024,
        bound_kib / 1024,
        if peak_kib <= bound_kib {
            "within"
        } else {
            "ABOVE"
        }
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = audit_logins(&rt, &url)?;
    println!(
        "  audit log: {} login events for {} answered requests ({}); unanswered requests: {}",
        after - before,
        r.total(),
        if (after - before) as u64 == r.total() {
            "nothing lost"
        } else {
            "MISMATCH"
        },
        r.unanswered
    );

    // The endpoints that don't hash.
    let login = post(
        addr,
        "/api/login/password",
        &json!({"login_name": "alice", "password": prp_host::demo::DemoPeople::ALICE_PASSWORD}),
    );
    let auth = vec![(
        "Authorization".to_owned(),
        format!("Bearer {}", login["token"].as_str().unwrap_or_default()),
    )];
    println!("endpoints that don't hash (8 clients, {seconds} s):");
    let r = generate(
        addr,
        "GET",
        "/api/password-items",
        auth.clone(),
        Arc::new(|_, _| String::new()),
        8,
        duration,
    );
    println!(
        "  GET /api/password-items:          {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({})",
        r.rate(200),
        ms(r.p(200, 0.5)),
        ms(r.p(200, 0.99)),
        r.summary()
    );
    let check = json!({"items": ["Person:P-ALICE"], "password": "too-short"}).to_string();
    let r = generate(
        addr,
        "POST",
        "/api/password-items/check",
        auth,
        Arc::new(move |_, _| check.clone()),
        8,
        duration,
    );
    println!(
        "  POST /api/password-items/check:   {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({})",
        r.rate(200),
        ms(r.p(200, 0.5)),
        ms(r.p(200, 0.99)),
        r.summary()
    );
    drop(server);
    Ok(())
}

/// The machine's hashing limit now: `workers` threads verifying back to back for three
/// seconds at the portal's parameters. Returns verifies per second and the time of one.
fn hashing_limit(workers: usize) -> anyhow::Result<(f64, Duration)> {
    let hasher = Arc::new(Hasher::new(workers, Hasher::MIN_MEMORY_KIB, 2)?);
    let phc = hasher.hash("some password")?;
    let start = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (h, phc) = (Arc::clone(&hasher), phc.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while start.elapsed() < Duration::from_secs(3) {
                    std::hint::black_box(h.verify(&phc, "another password"));
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().filter_map(|t| t.join().ok()).sum();
    let per_second = total as f64 / start.elapsed().as_secs_f64();
    Ok((
        per_second,
        Duration::from_secs_f64(workers as f64 / per_second),
    ))
}

fn audit_logins(rt: &tokio::runtime::Runtime, url: &str) -> anyhow::Result<i64> {
    rt.block_on(async {
        let store = Store::connect(url, Arc::new(SystemClock)).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM prp_audit WHERE event = 'login'")
            .fetch_one(store.pool())
            .await?;
        store.pool().close().await;
        anyhow::Ok(n)
    })
}
