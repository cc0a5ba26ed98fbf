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

/// A self-signed certificate for localhost and 127.0.0.1: (certificate PEM, key PEM, DER).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a certificate");
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
    store.pool().close().await;
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
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = sock.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closes the connection");
    assert!(started.elapsed() < Duration::from_secs(10));
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
