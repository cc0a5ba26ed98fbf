//! https served directly (`Host:Certificate`, `Host:PrivateKey`; reloaded on SIGHUP without
//! dropping connections), and the nginx example of deploy/nginx/prp.conf (TLS terminated at
//! nginx, `X-Forwarded-For` believed from the trusted proxy). Certificates are generated here.

use prp_tests::{host_command, Scene};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A self-signed certificate for localhost, 127.0.0.1 and the example's prp.example.org:
/// (certificate PEM, key PEM, DER).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let names = ["localhost", "127.0.0.1", "prp.example.org"].map(String::from);
    let ck = rcgen::generate_simple_self_signed(names.to_vec()).expect("generate a certificate");
    (
        ck.cert.pem(),
        ck.key_pair.serialize_pem(),
        ck.cert.der().clone(),
    )
}

/// A TLS client that trusts exactly `roots`.
fn client_config(roots: &[&CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).expect("add root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth(),
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let name = ServerName::try_from("localhost").expect("name");
    let conn =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    // Finish the handshake now, so a refused certificate shows here.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The certificate the server presented.
fn peer(tls: &Tls) -> CertificateDer<'static> {
    tls.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a peer certificate")
        .clone()
        .into_owned()
}

/// One keep-alive GET on an open connection: (status, head, body).
fn get(tls: &mut Tls, path: &str) -> std::io::Result<(u16, String, String)> {
    write!(tls, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    tls.flush()?;
    let mut reader = BufReader::new(tls);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
}

/// `prp-host serve` over https; its stderr is collected.
struct HttpsServer {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl HttpsServer {
    fn start(config: &Path) -> Self {
        let mut child = host_command(config, &["serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prp-host runs");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("prp-host listening on https://") {
                        let addr = a.trim().parse().expect("address");
                        return Self {
                            child,
                            addr,
                            stderr,
                        };
                    }
                    assert!(
                        !line.starts_with("prp-host listening on http://"),
                        "served plain http: {line}"
                    );
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(200));
                    panic!("server did not start: {}", self_stderr(&stderr));
                }
            }
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    fn stderr(&self) -> String {
        self_stderr(&self.stderr)
    }
}

fn self_stderr(s: &Arc<Mutex<String>>) -> String {
    s.lock().map(|s| s.clone()).unwrap_or_default()
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scene with the identity tables, the real plugin and its token, and the given `Host`.
async fn https_scene(host: serde_json::Value) -> (Scene, PathBuf) {
    let scene = Scene::new();
    let url = format!("sqlite://{}?mode=rwc", scene.path("prp.db").display());
    let store = prp_host::store::Store::connect(&url, Arc::new(prp_host::clock::SystemClock))
        .await
        .expect("db");
    store.migrate().await.expect("migrate");
    prp_host::demo::create_identity_schema(&store)
        .await
        .expect("identity schema");
    prp_tests::store_token(&store, prp_tests::TEST_TOKEN).await;
    store.close().await;
    let config = scene.portal_config(
        "sqlite://prp.db?mode=rwc",
        Some(prp_tests::TEST_TOKEN),
        host,
    );
    (scene, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_https_and_reloads_the_certificate_on_sighup() {
    let (first_pem, first_key, first_der) = certificate();
    let (second_pem, second_key, second_der) = certificate();
    let (scene, config) = https_scene(serde_json::json!({
        // Relative to the configuration file.
        "Certificate": "tls/cert.pem",
        "PrivateKey": "tls/key.pem",
    }))
    .await;
    std::fs::create_dir(scene.path("tls")).expect("mkdir");
    scene.write("tls/cert.pem", &first_pem);
    scene.write("tls/key.pem", &first_key);
    let server = HttpsServer::start(&config);
    let both = client_config(&[&first_der, &second_der]);

    // https with the first certificate; the portal counts as https without a PublicUrl.
    let mut open = connect(server.addr, &client_config(&[&first_der])).expect("TLS handshake");
    assert_eq!(peer(&open), first_der);
    let (status, head, body) = get(&mut open, "/health/ready").expect("GET");
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "{head}"
    );
    // A client that doesn't trust the certificate is refused.
    assert!(connect(server.addr, &client_config(&[&second_der])).is_err());

    // Replace the files and send SIGHUP: new connections get the second certificate...
    scene.write("tls/cert.pem", &second_pem);
    scene.write("tls/key.pem", &second_key);
    server.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = connect(server.addr, &both).expect("TLS handshake");
        if peer(&c) == second_der {
            break;
        }
        assert!(Instant::now() < deadline, "still the old certificate");
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...and the connection opened before the reload still works.
    let (status, _, body) = get(&mut open, "/health/live").expect("GET on the open connection");
    assert_eq!(status, 200, "{body}");

    // A reload that fails keeps the certificate in force, and says why.
    scene.write("tls/key.pem", "not a key");
    server.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server
        .stderr()
        .contains("still serving the previous certificate")
    {
        assert!(Instant::now() < deadline, "no log of the failed reload");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !server.stderr().contains("not a key"),
        "the key file is never quoted"
    );
    let mut c = connect(server.addr, &both).expect("TLS handshake after a failed reload");
    assert_eq!(peer(&c), second_der);
    let (status, _, body) = get(&mut c, "/health/live").expect("GET");
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = get(&mut open, "/health/live").expect("GET on the open connection");
    assert_eq!(status, 200);

    // SIGTERM still ends the server cleanly, with a TLS connection open.
    let mut server = server;
    server.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}: {}", server.stderr());
    drop(open);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_client_is_closed_within_the_header_timeout() {
    let (pem, key, _) = certificate();
    let (scene, config) = https_scene(serde_json::json!({
        "Certificate": "cert.pem",
        "PrivateKey": "key.pem",
        "HeaderTimeoutMs": 1000,
    }))
    .await;
    scene.write("cert.pem", &pem);
    scene.write("key.pem", &key);
    let server = HttpsServer::start(&config);
    // Connects and never starts the handshake.
    let mut sock = TcpStream::connect(server.addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    // The server ends the connection (0 bytes, end of stream) before this client's own 20 s
    // read timeout would give up with an error.
    let mut buf = [0u8; 16];
    let n = sock.read(&mut buf);
    assert!(
        matches!(n, Ok(0)),
        "the server closes the connection: {n:?}"
    );
}

#[test]
fn certificate_settings_are_checked() {
    let scene = Scene::new();
    let base = |host: serde_json::Value| {
        let cfg = serde_json::json!({
            "ConnectionStrings": {"Database": "sqlite://prp.db?mode=rwc"},
            "Host": host,
            "Plugins": {"Files": ["none.so"]},
        });
        scene.write("appsettings.json", &cfg.to_string())
    };
    // One without the other.
    let config = base(serde_json::json!({"Listen": "127.0.0.1:0", "Certificate": "c.pem"}));
    let out = scene.run(&config, &["serve"]);
    assert_eq!(out.status.code(), Some(1));
    let err = prp_tests::stderr(&out);
    assert!(
        err.contains("Host:Certificate and Host:PrivateKey go together"),
        "{err}"
    );
    // https:// in Listen points at the certificate settings.
    let config = base(serde_json::json!({"Listen": "https://127.0.0.1:0"}));
    let out = scene.run(&config, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = prp_tests::stdout(&out);
    assert!(
        text.contains("https is served when Host:Certificate"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_certificate_is_refused_at_start() {
    let (scene, config) = https_scene(serde_json::json!({
        "Certificate": "missing.pem",
        "PrivateKey": "missing-key.pem",
    }))
    .await;
    let out = scene.run(&config, &["serve"]);
    assert_eq!(out.status.code(), Some(1));
    let err = prp_tests::stderr(&out);
    assert!(
        err.contains("cannot read certificate") && err.contains("missing.pem"),
        "{err}"
    );
}

/// A free port on loopback (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The path of `tool`, or None: SKIPPED, or a failure under CI (`.ci/run` installs them).
fn tool(name: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed; .ci/run installs it"
        );
        println!("SKIPPED: {name} is not installed");
    }
    found
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_in_through_the_nginx_example() {
    let (Some(nginx), Some(curl_bin)) = (tool("nginx"), tool("curl")) else {
        return;
    };
    // The portal on loopback, plain http, nginx (127.0.0.1) as its trusted proxy.
    let scene = Scene::new();
    let url = format!("sqlite://{}?mode=rwc", scene.path("prp.db").display());
    let store = prp_host::store::Store::connect(&url, Arc::new(prp_host::clock::SystemClock))
        .await
        .expect("db");
    store.migrate().await.expect("migrate");
    prp_tests::seed(&store).await;
    let config = scene.portal_config(
        "sqlite://prp.db?mode=rwc",
        Some(prp_tests::TEST_TOKEN),
        serde_json::json!({
            "PublicUrl": "https://prp.example.org",
            "TrustedProxies": ["127.0.0.1"],
        }),
    );
    let portal = prp_tests::ServerProcess::start(&config).expect("portal starts");

    // nginx with deploy/nginx/prp.conf, its ports and files replaced.
    let (cert, key, _) = certificate();
    let dir = scene.path("nginx");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("cert.pem"), &cert).expect("write");
    std::fs::write(dir.join("key.pem"), &key).expect("write");
    let (https_port, http_port) = (free_port(), free_port());
    let mut site =
        std::fs::read_to_string(prp_tests::workspace_root().join("deploy/nginx/prp.conf"))
            .expect("deploy/nginx/prp.conf");
    for (from, to) in [
        ("server 127.0.0.1:8080;", format!("server {};", portal.addr)),
        ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
        (
            "listen 443 ssl;",
            format!("listen 127.0.0.1:{https_port} ssl;"),
        ),
        (
            "/etc/ssl/prp/fullchain.pem",
            dir.join("cert.pem").display().to_string(),
        ),
        (
            "/etc/ssl/prp/privkey.pem",
            dir.join("key.pem").display().to_string(),
        ),
    ] {
        assert!(site.contains(from), "the example no longer has {from}");
        site = site.replace(from, &to);
    }
    std::fs::write(dir.join("prp.conf"), site).expect("write");
    let d = dir.display();
    let main = format!(
        "worker_processes 1;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/prp.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).expect("write");
    let child = Command::new(&nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-g")
        .arg(format!(
            "daemon off; pid {d}/nginx.pid; error_log {d}/error.log info;"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx runs");
    let mut nginx = Nginx(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", https_port)).is_err() {
        let log = || std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        if let Ok(Some(status)) = nginx.0.try_wait() {
            panic!("nginx ended ({status}): {}", log());
        }
        assert!(Instant::now() < deadline, "nginx did not start: {}", log());
        std::thread::sleep(Duration::from_millis(100));
    }

    // The client connects from 127.0.0.2 and claims another address; nginx appends the real one.
    let curl = |args: &[&str]| {
        let out = Command::new(&curl_bin)
            .args(["-sS", "-i", "--max-time", "60", "--cacert"])
            .arg(dir.join("cert.pem"))
            .args([
                "--resolve",
                &format!("prp.example.org:{https_port}:127.0.0.1"),
            ])
            .args(args)
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "curl: {}", prp_tests::stderr(&out));
        prp_tests::stdout(&out)
    };
    let body = serde_json::json!({"login_name": "carol", "password": prp_tests::CAROL_CENTRAL});
    let answer = curl(&[
        "--interface",
        "127.0.0.2",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        "--data",
        &body.to_string(),
        &format!("https://prp.example.org:{https_port}/api/login/password"),
    ]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("set-cookie: __host-prp_session="),
        "{answer}"
    );
    assert!(lower.contains("strict-transport-security"), "{answer}");

    let remote: Option<String> = sqlx::query_scalar(
        "SELECT remote_addr FROM prp_audit WHERE event = 'login' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(store.pool())
    .await
    .expect("the login's audit event");
    assert_eq!(remote.as_deref(), Some("127.0.0.2"));

    // Plain http is redirected to https.
    let out = Command::new(&curl_bin)
        .args(["-sS", "-i", "--max-time", "30"])
        .arg(format!("http://127.0.0.1:{http_port}/api/me"))
        .args(["-H", "Host: prp.example.org"])
        .output()
        .expect("curl runs");
    let text = prp_tests::stdout(&out);
    assert!(text.starts_with("HTTP/1.1 301"), "{text}");
    assert!(
        text.contains("Location: https://prp.example.org/api/me"),
        "{text}"
    );
    drop(nginx);
}
