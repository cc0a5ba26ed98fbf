//! Shared helpers for the end-to-end tests: build the host, the real plugin and the fixture
//! plugins once per test run (with `cargo build --message-format=json`, since `cargo test`
//! doesn't produce the `.so` files), run `prp-host`, and talk HTTP to it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Paths of everything the tests run or load.
pub struct Artifacts {
    pub host: PathBuf,
    /// cdylibs by package name, e.g. `password-reset-authenticator`, `fixture-init-panic`.
    pub libs: HashMap<String, PathBuf>,
    /// The host built against the next minor ABI (see tests/fixtures/abi-next-host).
    pub abi_next_host: PathBuf,
}

impl Artifacts {
    pub fn lib(&self, package: &str) -> &Path {
        self.libs
            .get(package)
            .unwrap_or_else(|| panic!("no library was built for {package}"))
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Builds once per test process. Packages whose features must not mix (the changed-layout
/// fixture, the next-ABI host) are built in invocations of their own, so that cargo's feature
/// unification doesn't hand their plugin-api to the others.
pub fn artifacts() -> &'static Artifacts {
    static ONCE: OnceLock<Artifacts> = OnceLock::new();
    ONCE.get_or_init(|| {
        let mut libs = HashMap::new();
        let mut bins = HashMap::new();
        for packages in [
            &[
                "prp-host",
                "password-reset-authenticator",
                "totp-authenticator",
                "fixture-v1-0-plugin",
                "fixture-old-abi",
                "fixture-init-error",
                "fixture-init-panic",
                "fixture-method-panic",
                "fixture-not-a-plugin",
                "fixture-directory-resolver",
                "ldap-resolver",
                "template-resolver",
            ][..],
            &["fixture-changed-layout"][..],
            &["abi-next-host", "fixture-next-abi-plugin"][..],
        ] {
            build(packages, &mut libs, &mut bins);
        }
        Artifacts {
            host: bins.remove("prp-host").expect("prp-host was built"),
            abi_next_host: bins
                .remove("abi-next-host")
                .expect("abi-next-host was built"),
            libs,
        }
    })
}

fn build(
    packages: &[&str],
    libs: &mut HashMap<String, PathBuf>,
    bins: &mut HashMap<String, PathBuf>,
) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--message-format=json-render-diagnostics"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("cargo runs");
    assert!(out.status.success(), "cargo build {packages:?} failed");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let package = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .replace('_', "-");
        let kinds: Vec<&str> = msg["target"]["kind"]
            .as_array()
            .map(|a| a.iter().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        if let Some(exe) = msg["executable"].as_str() {
            bins.insert(package.clone(), PathBuf::from(exe));
        }
        if kinds.contains(&"cdylib") {
            for f in msg["filenames"].as_array().into_iter().flatten() {
                let f = f.as_str().unwrap_or_default();
                if f.ends_with(std::env::consts::DLL_SUFFIX) {
                    libs.insert(package.clone(), PathBuf::from(f));
                }
            }
        }
    }
}

/// A scratch directory with a config file in it.
pub struct Scene {
    pub dir: tempfile::TempDir,
}

impl Scene {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// An appsettings.json with a SQLite database in the scene, the given plugin files and
    /// required plugins, and the ApplicationToken when `token` is set.
    pub fn appsettings(&self, files: &[&Path], required: &[&str], token: bool) -> PathBuf {
        let mut cs = serde_json::json!({"Database": "sqlite://prp.db?mode=rwc"});
        if token {
            cs[prp_host::config::APPLICATION_TOKEN] = TEST_TOKEN.into();
        }
        let cfg = serde_json::json!({
            "ConnectionStrings": cs,
            "Host": {"Listen": "127.0.0.1:0"},
            "Plugins": {"Files": files, "Required": required, "CallTimeoutMs": 5000},
            "Logging": {"Level": "info"},
        });
        let path = self.write("appsettings.json", &cfg.to_string());
        if token {
            // Store the token's hash, as an operator does once per installation.
            let out = host_command(&path, &["token", "adopt"])
                .output()
                .expect("prp-host runs");
            assert!(out.status.success(), "token adopt failed: {}", stderr(&out));
        }
        path
    }

    /// Runs `prp-host ARGS --config CONFIG` to completion.
    pub fn run(&self, config: &Path, args: &[&str]) -> Output {
        host_command(config, args).output().expect("prp-host runs")
    }
}

impl Default for Scene {
    fn default() -> Self {
        Self::new()
    }
}

pub fn host_command(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(&artifacts().host);
    cmd.args(args).arg("--config").arg(config);
    cmd.env_remove("RUST_LOG").env_remove("PRP_ENVIRONMENT");
    cmd
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A portal served in this process through the library's entry ([`prp_host::Service`],
/// [`prp_host::Listeners`], [`prp_host::serve`]) on a runtime of its own; stopped (gracefully)
/// when dropped.
pub struct Server {
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`, `/health/ready` with detail), when configured.
    pub admin: Option<SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Loads the configuration, builds the portal and serves it (errors name what failed).
    pub fn start(config: &Path) -> Result<Self, String> {
        let env = prp_host::config::Environment::from_process();
        let settings = prp_host::config::load(config, &env)
            .map_err(|e| e.to_string())?
            .settings;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                let started = async {
                    let service = prp_host::Service::build(settings)
                        .await
                        .map_err(|e| e.to_string())?;
                    let listeners = prp_host::Listeners::bind(service.settings())
                        .await
                        .map_err(|e| e.to_string())?;
                    let addr = listeners.public_addr().map_err(|e| e.to_string())?;
                    Ok::<_, String>((service, listeners, addr))
                };
                match started.await {
                    Ok((service, listeners, addr)) => {
                        let admin = listeners.admin_addr();
                        let _ = ready_tx.send(Ok((addr, admin)));
                        let stop = async {
                            let _ = stop_rx.await;
                        };
                        if let Err(e) = prp_host::serve(service, listeners, stop).await {
                            eprintln!("server ended: {e}");
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        });
        match ready_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok((addr, admin))) => Ok(Self {
                addr,
                admin,
                shutdown: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(format!("server did not start: {e}")),
            Err(_) => Err("server did not start within 120 s".into()),
        }
    }

    /// A GET request; returns (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.addr, "GET", path, None)
    }

    /// A GET request on the admin listener; returns (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let admin = self.admin.expect("the test config sets Host:AdminListen");
        http(admin, "GET", path, None)
    }

    /// The Prometheus text of `/metrics` (admin listener).
    pub fn metrics(&self) -> String {
        let (status, text) = self.admin_get("/metrics");
        assert_eq!(status, 200, "{text}");
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `prp-host serve` process (for what only the binary does: signals, exit codes, log
/// format); killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// POSTs JSON; returns (status, body).
    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        http(self.addr, "POST", path, Some(&body.to_string()))
    }

    /// Starts the binary and waits for its "listening on" line (up to 60 s).
    pub fn start(config: &Path) -> Result<Self, String> {
        let mut child = host_command(config, &["serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("prp-host listening on http://") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok(Self {
                child,
                addr: addr
                    .parse()
                    .map_err(|e| format!("bad address {addr}: {e}"))?,
            }),
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(format!("server did not start ({status}): {err}"))
            }
        }
    }

    /// A GET request; returns (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.addr, "GET", path, None)
    }

    /// Sends SIGTERM and waits (up to 30 s) for the process to end; returns its exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client for the tests: one request per connection.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let (status, _, body) = exchange(addr, method, path, &[], body.unwrap_or(""));
    (status, body)
}

/// One request on a connection of its own; returns (status, head, body).
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
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
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body.as_bytes()).expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    (status, head.to_owned(), body.to_owned())
}

/// One test per database backend: `async fn NAME(b: Backend) { … }` becomes the tests
/// `NAME::sqlite` and `NAME::postgres`, so a SQLite failure doesn't hide the PostgreSQL run.
/// The PostgreSQL one shows as ignored, with the reason, when `PRP_TEST_POSTGRES_URL` was not
/// set when the tests were built (`.ci/run` sets it).
#[macro_export]
macro_rules! on_each_backend {
    ($(#[$meta:meta])* async fn $name:ident($b:ident: Backend) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                run($crate::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread")]
            #[cfg_attr(
                not(prp_postgres),
                ignore = "PRP_TEST_POSTGRES_URL was not set when the tests were built: no PostgreSQL run"
            )]
            async fn postgres() {
                run($crate::Backend::postgres()).await
            }

            async fn run($b: $crate::Backend) $body
        }
    };
}

impl Backend {
    /// PostgreSQL at `PRP_TEST_POSTGRES_URL` (panics, naming the variable, when it is unset).
    pub fn postgres() -> Self {
        match std::env::var("PRP_TEST_POSTGRES_URL") {
            Ok(url) if !url.trim().is_empty() => Self::Postgres(url),
            _ => panic!("PRP_TEST_POSTGRES_URL is not set; set it to a PostgreSQL URL whose user may create databases"),
        }
    }
}

/// The databases the portal is tested on: SQLite always, PostgreSQL when
/// `PRP_TEST_POSTGRES_URL` is set (`.ci/run` sets it).
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// The backends to run a test on, saying so when PostgreSQL is skipped.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    match std::env::var("PRP_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => out.push(Backend::Postgres(url)),
        _ => {
            eprintln!("PRP_TEST_POSTGRES_URL is not set: skipping the PostgreSQL run of this test")
        }
    }
    out
}

/// A database of its own for one test: a SQLite file in a scratch directory, or a PostgreSQL
/// database created for the test and dropped afterwards.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: &Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("portal.db").display()
                );
                Self {
                    url,
                    backend: backend.clone(),
                    admin_url: None,
                    name: String::new(),
                    _dir: Some(dir),
                }
            }
            Backend::Postgres(admin) => {
                sqlx::any::install_default_drivers();
                let name = format!("prp_t_{}", &prp_host::security::random_token()[..16]);
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin)
                    .await
                    .expect("connect to PRP_TEST_POSTGRES_URL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
                Self {
                    url: format!("{base}/{name}"),
                    backend: backend.clone(),
                    admin_url: Some(admin.clone()),
                    name,
                    _dir: None,
                }
            }
        }
    }

    /// The portal's store on this database, migrated, on the given clock.
    pub async fn store_with(
        &self,
        clock: std::sync::Arc<dyn prp_host::clock::Clock>,
    ) -> prp_host::store::Store {
        let store = prp_host::store::Store::connect(&self.url, clock)
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    pub async fn store(&self) -> prp_host::store::Store {
        self.store_with(std::sync::Arc::new(prp_host::clock::SystemClock))
            .await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin) = self.admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Best effort, on a thread of its own: Drop may run inside a runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// The ApplicationToken the test portals are configured with.
pub const TEST_TOKEN: &str = "test-application-token-0123456789";

/// A hasher for seeding (OWASP minimum parameters, one worker per core).
pub fn hasher() -> std::sync::Arc<prp_host::security::Hasher> {
    static ONCE: OnceLock<std::sync::Arc<prp_host::security::Hasher>> = OnceLock::new();
    ONCE.get_or_init(|| {
        std::sync::Arc::new(
            prp_host::security::Hasher::new(2, prp_host::security::Hasher::MIN_MEMORY_KIB, 2)
                .expect("hasher"),
        )
    })
    .clone()
}

/// Stores the hash of `token` as the ApplicationToken parameter, as `prp-host token` does.
pub async fn store_token(store: &prp_host::store::Store, token: &str) {
    let hash = hasher().hash_async(token).await.expect("hash");
    store
        .set_parameter(prp_host::config::APPLICATION_TOKEN, Some(&hash))
        .await
        .expect("store token hash");
}

impl Scene {
    /// A config for a portal on `db_url` with the real plugin required and `token` (if any) in
    /// its ConnectionStrings. Extra `Host` settings can be merged in.
    pub fn portal_config(
        &self,
        db_url: &str,
        token: Option<&str>,
        host: serde_json::Value,
    ) -> PathBuf {
        self.portal_config_with(db_url, token, host, &[])
    }

    /// `portal_config` with more plugin libraries beside the real one.
    pub fn portal_config_with(
        &self,
        db_url: &str,
        token: Option<&str>,
        host: serde_json::Value,
        extra_plugins: &[&Path],
    ) -> PathBuf {
        let mut files = vec![artifacts()
            .lib("password-reset-authenticator")
            .to_path_buf()];
        files.extend(extra_plugins.iter().map(|p| p.to_path_buf()));
        let mut cs = serde_json::json!({ "Database": db_url });
        if let Some(t) = token {
            cs[prp_host::config::APPLICATION_TOKEN] = t.into();
        }
        let mut host_section = serde_json::json!({
            "Listen": "127.0.0.1:0",
            "AdminListen": "127.0.0.1:0",
            "ServerName": "test-server",
        });
        if let (Some(h), Some(extra)) = (host_section.as_object_mut(), host.as_object()) {
            for (k, v) in extra {
                h.insert(k.clone(), v.clone());
            }
        }
        let cfg = serde_json::json!({
            "ConnectionStrings": cs,
            "Host": host_section,
            "Plugins": {
                "Files": files,
                "Required": ["password-reset-authenticator"],
                "CallTimeoutMs": 20000,
            },
            "Logging": {"Level": "warn"},
        });
        self.write("appsettings.json", &cfg.to_string())
    }
}

impl Server {
    /// POSTs a typed request body (`prp_host::api`); returns (status, body).
    pub fn send<T: serde::Serialize>(&self, path: &str, body: &T) -> (u16, String) {
        let text = serde_json::to_string(body).expect("serialise");
        http(self.addr, "POST", path, Some(&text))
    }

    /// POSTs JSON; returns (status, body).
    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        http(self.addr, "POST", path, Some(&body.to_string()))
    }
}

use prp_host::demo::{self, NewAccount, NewPerson};
use prp_host::store::{ApiKeyScope, Store};

pub const ROOT: &str = r"QER\Person\PasswordResetAuthenticator";
pub const CAROL_CENTRAL: &str = "carol-central-pw";
pub const CAROL_ADS: &str = "carol-ads-pw";
/// Marta's central password (`marta`, see [`marta_manages_carol`]).
pub const MARTA_CENTRAL: &str = "marta-central-pw";

/// Adds Marta (`P-MARTA`, central account `marta`, password [`MARTA_CENTRAL`]) as Carol's
/// manager, to a seeded database.
pub async fn marta_manages_carol(store: &Store) {
    demo::insert_person(
        store,
        &demo::NewPerson {
            uid: "P-MARTA",
            central_account: "marta",
            first_name: "Marta",
            last_name: "Manager",
            manager_uid: None,
            inactive: false,
        },
    )
    .await
    .expect("marta");
    demo::set_central_password(store, &hasher(), "P-MARTA", MARTA_CENTRAL)
        .await
        .expect("marta's password");
    sqlx::query(
        "UPDATE \"Person\" SET \"UID_PersonHead\" = 'P-MARTA' WHERE \"UID_Person\" = 'P-CAROL'",
    )
    .execute(store.pool())
    .await
    .expect("carol's manager");
}
pub const FLAG_PW: &str = "flag-account-pw";

fn person<'a>(uid: &'a str, central: &'a str) -> NewPerson<'a> {
    NewPerson {
        uid,
        central_account: central,
        first_name: "Test",
        last_name: uid,
        manager_uid: None,
        inactive: false,
    }
}

fn account<'a>(uid: &'a str, person_uid: &'a str, cn: &'a str, sam: &'a str) -> NewAccount<'a> {
    NewAccount {
        uid,
        person_uid: Some(person_uid),
        cn,
        sam_account_name: sam,
        locked: false,
        disabled: false,
        active: true,
        enabled: true,
    }
}

/// The identities every login test starts from.
pub async fn seed(store: &Store) {
    let h = hasher();
    demo::create_identity_schema(store)
        .await
        .expect("identity schema");
    for p in [
        person("P-CAROL", "carol"),
        person("P-DAN", "dan"),
        person("P-SAM", "shared"),
        person("P-LARS", "lars"),
        person("P-DORA", "dora"),
        person("P-NED", "ned"),
        person("P-OKKO", "okko"),
        person("P-QUINN", "quinn"),
        person("P-PAT", "pat"),
        NewPerson {
            inactive: true,
            ..person("P-INGRID", "ingrid")
        },
    ] {
        demo::insert_person(store, &p).await.expect("person");
        let email = format!("{}@example.test", p.central_account);
        demo::set_email(store, p.uid, Some(&email))
            .await
            .expect("email");
    }
    for a in [
        account("A-CAROL", "P-CAROL", "Carol Example", "cexample"),
        account("A-DAN", "P-DAN", "Dan Shared", "shared"),
        NewAccount {
            locked: true,
            ..account("A-LOCKED", "P-LARS", "Lars", "locked.acct")
        },
        NewAccount {
            disabled: true,
            ..account("A-DISABLED", "P-DORA", "Dora", "disabled.acct")
        },
        NewAccount {
            enabled: false,
            ..account("A-NOTENABLED", "P-NED", "Ned", "notenabled.acct")
        },
        account("A-OK", "P-OKKO", "Okko", "ok.acct"),
    ] {
        demo::insert_account(store, &a).await.expect("account");
    }
    demo::set_central_password(store, &h, "P-CAROL", CAROL_CENTRAL)
        .await
        .expect("pw");
    demo::set_central_password(store, &h, "P-INGRID", "ingrid-pw")
        .await
        .expect("pw");
    demo::set_account_password(store, &h, "ADSAccount", "A-CAROL", "P-CAROL", CAROL_ADS)
        .await
        .expect("pw");
    for a in ["A-LOCKED", "A-DISABLED", "A-NOTENABLED", "A-OK"] {
        let p = match a {
            "A-LOCKED" => "P-LARS",
            "A-DISABLED" => "P-DORA",
            "A-NOTENABLED" => "P-NED",
            _ => "P-OKKO",
        };
        demo::set_account_password(store, &h, "ADSAccount", a, p, FLAG_PW)
            .await
            .expect("pw");
    }
    for (q, a) in [
        ("Colour of the sky?", "Blue"),
        ("Best number?", "Seven"),
        ("Home town?", "Porto"),
    ] {
        demo::add_question(store, &h, "P-QUINN", q, a)
            .await
            .expect("question");
    }
    for (k, v) in [
        ("SearchTable", "ADSAccount"),
        ("SearchColumn", "CN|SamAccountName"),
        ("DisabledBy", "Locked|Disabled"),
        ("EnabledBy", "Enabled"),
        ("QueryAnswerDefinitions", "3"),
        ("QueryAnswerRequests", "2"),
    ] {
        store
            .set_parameter(&format!(r"{ROOT}\{k}"), Some(v))
            .await
            .expect("param");
    }
    store
        .set_parameter(r"PRP\Lockout\Password\MaxFailures", Some("3"))
        .await
        .expect("param");
    store
        .set_api_key(&ApiKeyScope::Global, "EnablePasscodeLogin", "true")
        .await
        .expect("key");
    store
        .set_api_key(&ApiKeyScope::Global, "EnablePasswordProfileLogin", "true")
        .await
        .expect("key");
    store
        .set_parameter(prp_host::store::ACCOUNT_TABLES, Some("ADSAccount"))
        .await
        .expect("param");
    store
        .set_parameter(
            &format!(r"{}\ADSAccount", prp_host::store::DISPLAY_COLUMN),
            Some("CN"),
        )
        .await
        .expect("param");
    store_token(store, TEST_TOKEN).await;
}

/// One HTTP/1.1 request with extra headers; returns (status, headers, body).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> (u16, String, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    exchange(addr, method, path, headers, &body)
}

/// A logged-in client: its bearer token and CSRF token.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
    pub csrf: String,
}

impl Client {
    /// Logs in with a password (panics when that fails).
    pub fn password(server: &Server, login_name: &str, password: &str) -> Self {
        let (status, body) = server.send(
            "/api/login/password",
            &prp_host::api::PasswordLogin {
                login_name: login_name.into(),
                password: password.into(),
                pow: None,
            },
        );
        assert_eq!(status, 200, "login of {login_name} failed: {body}");
        Self::from_login(server.addr, &body)
    }

    pub fn from_login(addr: SocketAddr, body: &str) -> Self {
        let v: prp_host::api::LoginResponse = serde_json::from_str(body).expect("login json");
        Self {
            addr,
            token: v.token,
            csrf: v.csrf_token,
        }
    }

    /// A request with the bearer token; returns (status, JSON body or Null).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {}", self.token);
        let (status, _, text) = request(
            self.addr,
            method,
            path,
            &[("Authorization", &auth)],
            body.as_ref(),
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// The value of a counter or gauge in the server's `/metrics` (panics when it's missing).
pub fn metric(server: &Server, name: &str) -> u64 {
    let text = server.metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("{name} is not in /metrics"))
}

/// Argon2 computations the server made so far (`prp_argon2_hashes_total`).
pub fn hash_count(server: &Server) -> u64 {
    metric(server, "prp_argon2_hashes_total")
}

/// A seeded portal (the `seed` identities, the real plugin, the test token) served in this
/// process, with its store and configuration: the setup the login and portal tests share.
pub struct Portal {
    pub server: Server,
    pub store: Store,
    pub config: PathBuf,
    pub scene: Scene,
    _db: TestDb,
}

/// What a [`Portal`] is started with beyond the defaults.
#[derive(Default)]
pub struct PortalOptions<'a> {
    /// Merged into the `Host` section.
    pub host: serde_json::Value,
    /// Merged into the `Plugins` section (e.g. `Resolvers`, `CallTimeoutMs`).
    pub plugins: serde_json::Value,
    /// More plugin libraries beside the real one.
    pub extra_plugins: &'a [&'a Path],
}

impl Portal {
    /// A seeded portal with the default settings.
    pub async fn start(backend: &Backend) -> Self {
        Self::start_with(backend, PortalOptions::default(), |_| async {}).await
    }

    /// A seeded portal; `prepare` runs on the store after seeding, before the server starts.
    pub async fn start_with<F, Fut>(
        backend: &Backend,
        options: PortalOptions<'_>,
        prepare: F,
    ) -> Self
    where
        F: FnOnce(Store) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        seed(&store).await;
        prepare(store.clone()).await;
        let scene = Scene::new();
        let host = if options.host.is_null() {
            serde_json::json!({})
        } else {
            options.host
        };
        let mut config =
            scene.portal_config_with(&db.url, Some(TEST_TOKEN), host, options.extra_plugins);
        if let Some(extra) = options.plugins.as_object() {
            let mut v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&config).expect("config"))
                    .expect("json");
            for (k, value) in extra {
                v["Plugins"][k] = value.clone();
            }
            config = scene.write("appsettings.json", &v.to_string());
        }
        let server = Server::start(&config).unwrap_or_else(|e| panic!("[{}] {e}", backend.name()));
        Self {
            server,
            store,
            config,
            scene,
            _db: db,
        }
    }

    /// `POST /api/login/password`; returns (status, body).
    pub fn password(&self, name: &str, password: &str) -> (u16, String) {
        self.server.send(
            "/api/login/password",
            &prp_host::api::PasswordLogin {
                login_name: name.into(),
                password: password.into(),
                pow: None,
            },
        )
    }

    /// The status of a password login.
    pub fn login_status(&self, name: &str, password: &str) -> u16 {
        self.password(name, password).0
    }

    /// `POST /api/login/passcode`; returns (status, body).
    pub fn passcode(&self, name: &str, passcode: &str) -> (u16, String) {
        self.server.send(
            "/api/login/passcode",
            &prp_host::api::PasscodeLogin {
                login_name: name.into(),
                passcode: passcode.into(),
                pow: None,
            },
        )
    }

    /// The questions asked for a name, as (id, question).
    pub fn challenge(&self, name: &str) -> Vec<(String, String)> {
        let (status, body) = self.server.send(
            "/api/login/questions/challenge",
            &prp_host::api::ChallengeRequest {
                login_name: name.into(),
                pow: None,
            },
        );
        assert_eq!(status, 200, "{body}");
        let v: prp_host::api::ChallengeResponse = serde_json::from_str(&body).expect("json");
        v.questions
            .into_iter()
            .map(|q| (q.id, q.question))
            .collect()
    }

    /// `POST /api/login/questions` with (question id, answer) pairs; returns (status, body).
    pub fn answer(&self, name: &str, answers: &[(String, &str)]) -> (u16, String) {
        self.server.send(
            "/api/login/questions",
            &prp_host::api::QuestionsLogin {
                login_name: name.into(),
                answers: answers
                    .iter()
                    .map(|(id, a)| prp_host::api::Answer {
                        question_id: id.clone(),
                        answer: (*a).into(),
                    })
                    .collect(),
                pow: None,
            },
        )
    }

    /// Runs `prp-host ARGS` on this portal's configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        host_command(&self.config, args)
            .output()
            .expect("prp-host runs")
    }

    /// The reason of the newest audit event.
    pub async fn last_reason(&self) -> String {
        let e = self.store.audit_tail(1).await.expect("audit");
        e.first().and_then(|e| e.reason.clone()).unwrap_or_default()
    }
}

/// Merges `extra` into the JSON configuration file at `path`, section by section (an object
/// in `extra` adds to or replaces the keys of the file's object of that name).
pub fn merge_config(path: &Path, extra: &serde_json::Value) {
    let text = std::fs::read_to_string(path).expect("read config");
    let mut cfg: serde_json::Value = serde_json::from_str(&text).expect("config is JSON");
    if let (Some(cfg), Some(extra)) = (cfg.as_object_mut(), extra.as_object()) {
        for (section, value) in extra {
            match (cfg.get_mut(section), value.as_object()) {
                (Some(serde_json::Value::Object(existing)), Some(add)) => {
                    for (k, v) in add {
                        existing.insert(k.clone(), v.clone());
                    }
                }
                _ => {
                    cfg.insert(section.clone(), value.clone());
                }
            }
        }
    }
    std::fs::write(path, cfg.to_string()).expect("write config");
}

/// Postfix's `smtp-sink`, a real SMTP server that writes each message it accepts to a file
/// in `dir`; killed when dropped.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl SmtpSink {
    /// Where Debian's `postfix` package installs it.
    pub const PATH: &'static str = "/usr/sbin/smtp-sink";

    /// Whether `smtp-sink` is installed. When it isn't, a test prints SKIPPED and returns,
    /// unless `CI` is set (`.ci/run` installs it): then it fails.
    pub fn available(test: &str) -> bool {
        if Path::new(Self::PATH).exists() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {} is missing (apt-get install postfix); CI must run this test",
            Self::PATH
        );
        eprintln!(
            "SKIPPED {test}: {} is not installed (apt-get install postfix)",
            Self::PATH
        );
        false
    }

    /// A loopback port nothing listens on (yet).
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    /// Starts `smtp-sink` on 127.0.0.1:`port`, dumping messages into `dir` (created), and
    /// waits until it accepts connections.
    pub fn start(port: u16, dir: &Path) -> Self {
        Self::start_with(port, dir, &[])
    }

    /// [`SmtpSink::start`] with more `smtp-sink` options (e.g. `-f AUTH`: refuse AUTH).
    pub fn start_with(port: u16, dir: &Path, options: &[&str]) -> Self {
        std::fs::create_dir_all(dir).expect("sink dir");
        let mut cmd = Command::new(Self::PATH);
        // As root, smtp-sink must drop privileges (-u); the directory must then be writable.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
                .expect("chmod sink dir");
            cmd.args(["-u", "nobody"]);
        }
        let template = format!("{}/%M.", dir.display());
        cmd.args(options)
            .args(["-h", "sink.test", "-d", &template])
            .arg(format!("127.0.0.1:{port}"))
            .arg("10")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = cmd.spawn().expect("start smtp-sink");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "smtp-sink did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    /// The messages received so far (each file's text), in no particular order.
    pub fn messages(&self) -> Vec<String> {
        sink_messages(&self.dir)
    }

    /// Stops the server.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages `smtp-sink` wrote into `dir` (each file's text).
pub fn sink_messages(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// Makes every insert into `table` fail as a database error would (with `message`), or only
/// those matching `when`, a condition on `NEW` (e.g. `NEW.kind = 'password.changed'`);
/// [`allow_inserts`] takes it back.
pub async fn fail_inserts(store: &Store, table: &str, when: Option<&str>, message: &str) {
    let name = format!("prp_test_fail_{table}");
    let statements = match store.dialect() {
        prp_host::store::Dialect::Sqlite => vec![format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON {table} {}
             BEGIN SELECT RAISE(ABORT, '{message}'); END",
            when.map(|w| format!("WHEN {w}")).unwrap_or_default()
        )],
        prp_host::store::Dialect::Postgres => vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger AS $$
                 BEGIN RAISE EXCEPTION '{message}'; END $$ LANGUAGE plpgsql"
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW {}
                 EXECUTE FUNCTION {name}()",
                when.map(|w| format!("WHEN ({w})")).unwrap_or_default()
            ),
        ],
    };
    for sql in statements {
        sqlx::query(&sql)
            .execute(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Takes back [`fail_inserts`] on `table`.
pub async fn allow_inserts(store: &Store, table: &str) {
    let name = format!("prp_test_fail_{table}");
    let sql = match store.dialect() {
        prp_host::store::Dialect::Sqlite => format!("DROP TRIGGER {name}"),
        prp_host::store::Dialect::Postgres => format!("DROP TRIGGER {name} ON {table}"),
    };
    sqlx::query(&sql)
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
