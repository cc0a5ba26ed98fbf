//! The database going away under load: a private PostgreSQL stopped (`pg_ctl stop -m
//! immediate`) and started again, and a SQLite file locked by another connection and released.
//! Meanwhile every request gets a prompt `503` with a JSON body and `Retry-After` (never a hang,
//! never a `500`, never a `401` decided on a database error), `/health/ready` says not ready,
//! the portal recovers without a restart, and every login answered `200` or `401` has its audit
//! record.

use prp_tests::{seed, Backend, Scene, Server, TestDb, CAROL_CENTRAL, TEST_TOKEN};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// No request may take longer than this, database or not.
const BOUND: Duration = Duration::from_secs(20);
/// How long the database stays away.
const OUTAGE: Duration = Duration::from_secs(12);
/// Client threads.
const CLIENTS: usize = 4;

// ---------------------------------------------------------------------------------------------
// A client that never waits forever and never panics on a dropped connection.

#[derive(Debug, Clone)]
struct Answer {
    kind: Kind,
    status: u16,
    retry_after: bool,
    body: String,
    started: Instant,
    ended: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Carol with her password: 200 when the database is there.
    GoodLogin,
    /// A name nobody has: 401.
    UnknownName,
    /// A wrong password for a real person: 401.
    WrongPassword,
    /// `GET /api/session` with a session from before the outage.
    Session,
    /// `GET /api/password-items` with that session.
    Items,
    /// `POST /api/login/questions/challenge` (not a login: not audited).
    Challenge,
}

impl Kind {
    fn is_login(self) -> bool {
        matches!(
            self,
            Kind::GoodLogin | Kind::UnknownName | Kind::WrongPassword
        )
    }
}

fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(BOUND + Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body.as_bytes()))
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {raw:?}"))?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    Ok((status, head.to_owned(), body.to_owned()))
}

fn login_body(name: &str, password: &str) -> String {
    serde_json::json!({"login_name": name, "password": password}).to_string()
}

fn ask(addr: SocketAddr, kind: Kind, n: usize, token: &str) -> Result<Answer, String> {
    let started = Instant::now();
    let auth = format!("Bearer {token}");
    let (status, head, body) = match kind {
        Kind::GoodLogin => send(
            addr,
            "POST",
            "/api/login/password",
            &[],
            &login_body("carol", CAROL_CENTRAL),
        ),
        Kind::UnknownName => send(
            addr,
            "POST",
            "/api/login/password",
            &[],
            &login_body(&format!("nobody-{n}"), "whatever"),
        ),
        Kind::WrongPassword => send(
            addr,
            "POST",
            "/api/login/password",
            &[],
            &login_body("ok.acct", "not-the-password"),
        ),
        Kind::Session => send(addr, "GET", "/api/session", &[("Authorization", &auth)], ""),
        Kind::Items => send(
            addr,
            "GET",
            "/api/password-items",
            &[("Authorization", &auth)],
            "",
        ),
        Kind::Challenge => send(
            addr,
            "POST",
            "/api/login/questions/challenge",
            &[],
            &serde_json::json!({"login_name": "quinn"}).to_string(),
        ),
    }?;
    Ok(Answer {
        kind,
        status,
        retry_after: head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("retry-after:")),
        body,
        started,
        ended: Instant::now(),
    })
}

// ---------------------------------------------------------------------------------------------
// The scenario, the same for both databases.

/// Audit events of logins, by outcome.
async fn login_audit(db_url: &str) -> std::collections::BTreeMap<String, i64> {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(db_url)
        .await
        .expect("connect for the audit count");
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT outcome, COUNT(*) FROM prp_audit WHERE event = 'login' GROUP BY outcome",
    )
    .fetch_all(&mut conn)
    .await
    .expect("count audit events");
    rows.into_iter().collect()
}

/// Login failures audited with a reason that is really a database failure.
async fn failures_blamed_on_database(db_url: &str) -> Vec<String> {
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(db_url)
        .await
        .expect("connect for the audit reasons");
    sqlx::query_scalar::<_, String>(
        "SELECT COALESCE(reason, '') FROM prp_audit WHERE event = 'login' AND outcome = 'failure'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("audit reasons")
    .into_iter()
    .filter(|r| {
        let r = r.to_ascii_lowercase();
        r.contains("unavailable") || r.contains("database") || r.contains("resolution failed")
    })
    .collect()
}

fn count(map: &std::collections::BTreeMap<String, i64>, outcome: &str) -> i64 {
    map.get(outcome).copied().unwrap_or(0)
}

/// Runs load against a portal on `db_url`, takes the database away with `down` and brings it
/// back with `up`, and checks everything the outage must not break. `reads_work`: the outage
/// only takes writes away (a SQLite write lock), so a question challenge, which only reads,
/// may still be answered.
fn outage(
    label: &str,
    db: &TestDb,
    rt: &tokio::runtime::Runtime,
    reads_work: bool,
    down: &dyn Fn(),
    up: &dyn Fn(),
) {
    let scene = Scene::new();
    let config = scene.portal_config(&db.url, Some(TEST_TOKEN), serde_json::json!({}));
    let server = Server::start(&config).unwrap_or_else(|e| panic!("{label}: {e}"));
    let addr = server.addr;

    let (status, body) = server.post(
        "/api/login/password",
        &serde_json::json!({"login_name": "carol", "password": CAROL_CENTRAL}),
    );
    assert_eq!(status, 200, "{label}: login before the outage: {body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).expect("login json")["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(server.get("/health/ready").0, 200, "{label}: ready before");
    let baseline = rt.block_on(login_audit(&db.url));

    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let kinds = [
        Kind::GoodLogin,
        Kind::UnknownName,
        Kind::WrongPassword,
        Kind::Session,
        Kind::Items,
        Kind::Challenge,
    ];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, answers, failures, token) = (
                Arc::clone(&stop),
                Arc::clone(&answers),
                Arc::clone(&failures),
                token.clone(),
            );
            std::thread::spawn(move || {
                let mut n = c;
                // Bounded: at most this many requests per client, whatever happens.
                while !stop.load(Ordering::SeqCst) && n < c + 4000 {
                    let kind = kinds[n % kinds.len()];
                    match ask(addr, kind, n, &token) {
                        Ok(a) => answers.lock().expect("answers").push(a),
                        Err(e) => failures
                            .lock()
                            .expect("failures")
                            .push(format!("{kind:?}: {e}")),
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(2));
    down();
    let went_down = Instant::now();
    // Let requests that were in flight when the database went away finish.
    std::thread::sleep(Duration::from_secs(1));
    let (public, public_body) = server.get("/health/ready");
    let (admin, admin_body) = server.admin_get("/health/ready");
    std::thread::sleep(OUTAGE.saturating_sub(Duration::from_secs(1)));
    let coming_back = Instant::now();
    up();

    // The portal recovers by itself: a login succeeds again, without a restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    let recovered = loop {
        if let Ok(a) = ask(addr, Kind::GoodLogin, 0, "") {
            let ok = a.status == 200;
            let ended = a.ended;
            answers.lock().expect("answers").push(a);
            if ok {
                break Some(ended);
            }
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let ready_again = (0..40).any(|_| {
        let ok = server.get("/health/ready").0 == 200;
        if !ok {
            std::thread::sleep(Duration::from_millis(250));
        }
        ok
    });
    // Some load after the recovery too.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }

    assert!(
        recovered.is_some(),
        "{label}: no successful login within 60 s of the database coming back"
    );
    assert!(
        ready_again,
        "{label}: /health/ready not 200 again after the database came back"
    );
    assert_eq!(
        public, 503,
        "{label}: public /health/ready while the database is away: {public_body}"
    );
    assert_eq!(
        admin, 503,
        "{label}: admin /health/ready while the database is away: {admin_body}"
    );
    assert!(
        admin_body.contains("database"),
        "{label}: the admin readiness should name the database: {admin_body}"
    );

    let failures = failures.lock().expect("failures").clone();
    assert!(
        failures.is_empty(),
        "{label}: requests without an answer: {failures:?}"
    );
    let answers = answers.lock().expect("answers").clone();
    let mut problems = Vec::new();
    let mut in_outage = 0;
    for a in &answers {
        let took = a.ended - a.started;
        if took > BOUND {
            problems.push(format!(
                "{:?} took {took:?}: {} {}",
                a.kind, a.status, a.body
            ));
        }
        if !matches!(a.status, 200 | 401 | 503) {
            problems.push(format!("{:?} answered {}: {}", a.kind, a.status, a.body));
        }
        if a.status == 503 {
            let json: serde_json::Value =
                serde_json::from_str(&a.body).unwrap_or(serde_json::Value::Null);
            if json["error"].as_str().is_none() || !a.retry_after {
                problems.push(format!(
                    "{:?}: a 503 without JSON error or Retry-After: {}",
                    a.kind, a.body
                ));
            }
        }
        // Asked and answered entirely while the database was away: nothing can be decided.
        if a.started >= went_down + Duration::from_millis(500) && a.ended <= coming_back {
            in_outage += 1;
            let read_only = reads_work && a.kind == Kind::Challenge && a.status == 200;
            if a.status != 503 && !read_only {
                problems.push(format!(
                    "{:?} during the outage answered {}: {}",
                    a.kind, a.status, a.body
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{label}: {problems:#?}");
    assert!(
        in_outage >= CLIENTS / 2,
        "{label}: too few requests during the outage ({in_outage}) to show anything"
    );
    let decided = |kind_status: &dyn Fn(&Answer) -> bool| {
        answers
            .iter()
            .filter(|a| a.kind.is_login() && kind_status(a))
            .count() as i64
    };
    let ok = decided(&|a| a.status == 200);
    let denied = decided(&|a| a.status == 401);
    let refused = decided(&|a| a.status == 503);
    assert!(ok > 0 && denied > 0, "{label}: no decided logins at all");

    // Every answered login has its audit record: the decided ones before they were answered,
    // the ones refused with 503 (kept in memory) once the database was back. At most one
    // record more: a commit the database made just as it went away, answered 503.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = rt.block_on(login_audit(&db.url));
        let success = count(&now, "success") - count(&baseline, "success");
        let failure = count(&now, "failure") - count(&baseline, "failure");
        let unavailable = count(&now, "unavailable") - count(&baseline, "unavailable");
        if success >= ok && failure >= denied && unavailable >= refused {
            assert!(
                success + failure <= ok + denied + 1,
                "{label}: {failure} failures audited for {denied} answered 401: a database failure audited as a failed login?"
            );
            assert_eq!(
                unavailable, refused,
                "{label}: logins audited unavailable vs. answered 503"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: audit log incomplete: {success} successes for {ok} answered 200, {failure} failures for {denied} answered 401, {unavailable} unavailable for {refused} answered 503"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let metrics = server.metrics();
    assert!(
        metrics.contains(&format!(
            "prp_logins_total{{method=\"password\",outcome=\"unavailable\"}} {refused}"
        )),
        "{label}: /metrics should count the {refused} logins answered 503: {metrics}"
    );
    let blamed = rt.block_on(failures_blamed_on_database(&db.url));
    assert!(
        blamed.is_empty(),
        "{label}: database failures audited as failed logins: {blamed:?}"
    );
    eprintln!(
        "{label}: {} answers ({in_outage} during the outage); logins: {ok} × 200, {denied} × 401, {refused} × 503",
        answers.len()
    );
}

// ---------------------------------------------------------------------------------------------
// SQLite: another connection holds the write lock.

#[test]
fn sqlite_locked_by_another_connection() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(async {
        let db = TestDb::new(&Backend::Sqlite).await;
        seed(&db.store().await).await;
        db
    });
    let lock = WriteLock::new(&db.url);
    outage("sqlite", &db, &rt, true, &|| lock.set(true), &|| {
        lock.set(false)
    });
}

/// A connection of its own, on a thread of its own, that begins an exclusive transaction on
/// `set(true)` (no other connection can write) and rolls it back on `set(false)`.
struct WriteLock {
    cmd: Option<std::sync::mpsc::Sender<bool>>,
    ack: std::sync::mpsc::Receiver<Result<(), String>>,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl WriteLock {
    fn new(url: &str) -> Self {
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<bool>();
        let (ack_tx, ack_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let url = url.to_owned();
        let holder = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                sqlx::any::install_default_drivers();
                let mut conn = match <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await
                {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ack_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                while let Ok(lock) = cmd_rx.recv() {
                    let sql = if lock { "BEGIN EXCLUSIVE" } else { "ROLLBACK" };
                    let r = sqlx::query(sql)
                        .execute(&mut conn)
                        .await
                        .map(drop)
                        .map_err(|e| format!("{sql}: {e}"));
                    let _ = ack_tx.send(r);
                }
            });
        });
        Self {
            cmd: Some(cmd_tx),
            ack: ack_rx,
            holder: Some(holder),
        }
    }

    fn set(&self, lock: bool) {
        self.cmd
            .as_ref()
            .expect("lock holder")
            .send(lock)
            .expect("lock holder");
        self.ack
            .recv_timeout(Duration::from_secs(30))
            .expect("lock holder answers")
            .expect("lock command");
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        self.cmd.take();
        if let Some(h) = self.holder.take() {
            let _ = h.join();
        }
    }
}

/// A login flow's step while the database can't be written: `503` with `Retry-After` (never a
/// `401`, never a session), and its audit record is written once the database is back.
#[test]
fn a_flow_step_during_an_outage_answers_503_and_is_audited() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(async {
        let db = TestDb::new(&Backend::Sqlite).await;
        seed(&db.store().await).await;
        db
    });
    let scene = Scene::new();
    let config = scene.portal_config(&db.url, Some(TEST_TOKEN), serde_json::json!({}));
    let server = Server::start(&config).expect("portal starts");
    let (status, body) = server.post(
        "/api/login/start",
        &serde_json::json!({"flow": "password", "login_name": "carol"}),
    );
    assert_eq!(status, 200, "{body}");
    let attempt = serde_json::from_str::<serde_json::Value>(&body).expect("json")["attempt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let steps = || {
        rt.block_on(async {
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
                .await
                .expect("connect");
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM prp_audit WHERE event = 'login.step'",
            )
            .fetch_one(&mut conn)
            .await
            .expect("count")
        })
    };
    let before = steps();
    let lock = WriteLock::new(&db.url);
    lock.set(true);
    let (status, head, body) = prp_tests::request(
        server.addr,
        "POST",
        "/api/login/step",
        &[],
        Some(&serde_json::json!({
            "attempt": attempt,
            "method": "password",
            "values": {"password": CAROL_CENTRAL},
        })),
    );
    lock.set(false);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"error\""), "the JSON error shape: {body}");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while steps() <= before {
        assert!(
            Instant::now() < deadline,
            "the step's audit record was never written"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a private cluster of the test's own, stopped and started again.

/// The directory with `initdb` and `pg_ctl`: on the PATH, or Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
fn postgres_bin() -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(d) = std::env::split_paths(&path).find(|d| has_tools(d)) {
            return Some(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_tools(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL cluster in a temporary directory on a free loopback port, trust auth, the
/// superuser named `postgres`. PostgreSQL refuses to run as root: then every command runs as
/// the `postgres` OS user, who owns the directory.
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

/// A free loopback port below the kernel's ephemeral range: while PostgreSQL is stopped, an
/// ephemeral port could be taken by one of the many outgoing connections of the test and keep
/// it from starting again.
fn free_port_outside_ephemeral_range() -> Result<u16, String> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let start = 20000.min(low.saturating_sub(1000));
    // Spread concurrent test runs over the range, starting from the process id.
    let span = u32::from(low - start);
    let first = std::process::id() % span;
    (0..span)
        .map(|i| start + ((first + i * 7) % span) as u16)
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .ok_or_else(|| format!("no free port in {start}..{low}"))
}

impl PrivatePostgres {
    fn create(bin: PathBuf) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let as_postgres = is_root();
        if as_postgres {
            let chown = Command::new("chown")
                .args(["postgres:"])
                .arg(dir.path())
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !chown.status.success() {
                return Err(format!("chown: {}", String::from_utf8_lossy(&chown.stderr)));
            }
        }
        let port = free_port_outside_ephemeral_range()?;
        let pg = Self {
            bin,
            dir,
            port,
            as_postgres,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        pg.start()?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<Output, String> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        // The tools must not inherit a directory the postgres user can't enter.
        cmd.current_dir(self.dir.path()).args(args);
        let out = cmd.output().map_err(|e| format!("{tool}: {e}"))?;
        if out.status.success() {
            Ok(out)
        } else {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            Err(format!(
                "{tool} {args:?}: {}{}\nserver log (last lines, newest first):\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail.join("\n")
            ))
        }
    }

    fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map(drop)
    }

    fn stop(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
        .map(drop)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[test]
fn postgres_stopped_and_started_again() {
    let Some(bin) = postgres_bin() else {
        let why = "initdb and pg_ctl not found (on the PATH or in /usr/lib/postgresql/*/bin)";
        assert!(
            std::env::var_os("CI").is_none(),
            "{why}: CI must have PostgreSQL installed"
        );
        eprintln!("SKIPPED postgres_stopped_and_started_again: {why}");
        return;
    };
    let pg = PrivatePostgres::create(bin).unwrap_or_else(|e| panic!("private PostgreSQL: {e}"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(async {
        let db = TestDb::new(&Backend::Postgres(pg.url())).await;
        seed(&db.store().await).await;
        db
    });
    outage(
        "postgres",
        &db,
        &rt,
        false,
        &|| pg.stop().expect("pg_ctl stop"),
        &|| pg.start().expect("pg_ctl start"),
    );
    drop(db);
}
