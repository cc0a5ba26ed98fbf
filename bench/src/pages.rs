//! The web portal's pages: each page's weight (HTML + CSS + JS, uncompressed) and its server
//! render time at load, next to `GET /api/password-items`, the API call behind My passwords.
//! Against the release `prp-host` with the demo people, over HTTP with the session cookie.

use crate::load::{generate, ms, Report};
use prp_host::clock::SystemClock;
use prp_host::security::Hasher;
use prp_host::store::Store;
use serde_json::json;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "bench-application-token-0123456789abcdef";
/// The goal: no page heavier than this, uncompressed.
const MAX_WEIGHT: usize = 60 * 1024;

/// Request headers.
type Headers = Vec<(String, String)>;

#[derive(clap::Args)]
pub struct Args {
    /// Length of each timed run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Clients at once in each timed run.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Serve with this `prp-host` binary instead of building the workspace's (with
    /// `--plugin-lib`).
    #[arg(long, requires = "plugin_lib")]
    host_bin: Option<PathBuf>,
    /// The plugin library to serve with `--host-bin`.
    #[arg(long, requires = "host_bin")]
    plugin_lib: Option<PathBuf>,
}

/// One request on its own connection; returns (status, body).
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let _ = s.write_all(req.as_bytes());
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Signs in by password through the API; returns the cookie header of the session.
fn session_cookie(
    addr: SocketAddr,
    name: &str,
    password: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let body = crate::portal::to_json(&crate::portal::password_login(name, password));
    let (status, text) = exchange(addr, "POST", "/api/login/password", &[], &body);
    anyhow::ensure!(status == 200, "login of {name}: {status} {text}");
    let granted: prp_host::api::LoginResponse = serde_json::from_str(&text)?;
    let (token, csrf) = (granted.token, granted.csrf_token);
    // The portal listens on loopback over http: the cookies have their plain names.
    Ok(vec![(
        "Cookie".into(),
        format!("prp_session={token}; prp_csrf={csrf}"),
    )])
}

fn median(r: &Report) -> Duration {
    Report::percentile(&r.latencies, 50.0)
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (host, plugin) = match (&args.host_bin, &args.plugin_lib) {
        (Some(h), Some(p)) => (h.clone(), p.clone()),
        _ => crate::portal::build()?,
    };
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
    rt.block_on(async {
        let store = Store::connect(&url, Arc::new(SystemClock)).await?;
        store.migrate().await?;
        let hasher = Arc::new(Hasher::new(workers, Hasher::MIN_MEMORY_KIB, 2)?);
        prp_host::demo::seed_demo(&store, &hasher).await?;
        let hash = hasher.hash(TOKEN)?;
        store
            .set_parameter(prp_host::config::APPLICATION_TOKEN, Some(&hash))
            .await?;
        anyhow::Ok(())
    })?;
    let config = dir.path().join("appsettings.json");
    std::fs::write(
        &config,
        json!({
            "ConnectionStrings": {"Database": url, prp_host::config::APPLICATION_TOKEN: TOKEN},
            "Host": {"Listen": "127.0.0.1:0", "AdminListen": "127.0.0.1:0", "HashWorkers": workers},
            "Plugins": {"Files": [plugin], "Required": ["password-reset-authenticator"]},
            "Logging": {"Level": "warn"},
        })
        .to_string(),
    )?;
    let (server, _) = crate::portal::start(&host, &config)?;
    let addr = server.addr;
    let alice = session_cookie(addr, "alice", prp_host::demo::DemoPeople::ALICE_PASSWORD)?;
    let marta = session_cookie(addr, "marta", prp_host::demo::DemoPeople::MARTA_PASSWORD)?;
    let css = exchange(addr, "GET", "/static/portal.css", &[], "").1.len();
    let js = exchange(addr, "GET", "/static/portal.js", &[], "").1.len();
    let duration = Duration::from_secs_f64(args.seconds.max(0.1));
    let no_body: crate::load::BodyFn = Arc::new(|_, _| String::new());
    let timed = |path: &str, headers: &[(String, String)]| {
        generate(
            addr,
            "GET",
            path,
            headers.to_vec(),
            Arc::clone(&no_body),
            args.clients,
            duration,
        )
    };
    println!(
        "pages of the release prp-host, demo people, SQLite; {} clients for {:.0} s each; CSS {css} B and JS {js} B on every page",
        args.clients, args.seconds
    );
    let api = timed("/api/password-items", &alice);
    anyhow::ensure!(
        api.count(200) > 0,
        "GET /api/password-items: {}",
        api.summary()
    );
    let api_median = median(&api);
    println!(
        "| `GET /api/password-items` (JSON) | – | {:.3} ms | {:.0}/s | – |",
        ms(api_median),
        api.rate(200)
    );
    println!("| page | weight (HTML + CSS + JS) | median at load | requests/s | vs the API call |");
    println!("|---|---|---|---|---|");
    let none = Headers::new();
    let pages: [(&str, &str, &Headers); 7] = [
        ("start (signed out)", "/", &none),
        ("sign in: password", "/sign-in?flow=password", &none),
        ("My passwords", "/passwords", &alice),
        ("My password questions", "/questions", &alice),
        ("My factors", "/factors", &alice),
        ("My team", "/team", &marta),
        ("My passwords (Marta)", "/passwords", &marta),
    ];
    let mut heaviest = 0;
    for (name, path, headers) in pages {
        let (status, html) = exchange(addr, "GET", path, headers, "");
        anyhow::ensure!(status == 200, "{path}: {status}");
        let weight = html.len() + css + js;
        heaviest = heaviest.max(weight);
        let r = timed(path, headers);
        anyhow::ensure!(r.count(200) > 0, "{path}: {}", r.summary());
        let m = median(&r);
        let vs = (ms(m) / ms(api_median) - 1.0) * 100.0;
        println!(
            "| {name} (`{path}`) | {:.1} KB ({} B HTML) | {:.3} ms | {:.0}/s | {vs:+.0} % |",
            weight as f64 / 1024.0,
            html.len(),
            ms(m),
            r.rate(200)
        );
    }
    println!(
        "heaviest page: {:.1} KB (goal: at most {} KB)",
        heaviest as f64 / 1024.0,
        MAX_WEIGHT / 1024
    );
    drop(server);
    Ok(())
}
