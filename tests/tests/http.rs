//! The HTTP layer's rules, from outside: JSON bodies only, one error shape, browser headers,
//! cookie names, limits and timeouts, the admin listener, and the OpenAPI document held
//! against the router.

use prp_tests::{
    host_command, request, seed, Backend, Scene, Server, TestDb, CAROL_CENTRAL, TEST_TOKEN,
};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Portal {
    server: Server,
    config: std::path::PathBuf,
    _scene: Scene,
    _db: TestDb,
}

async fn portal(host: Value) -> Portal {
    let db = TestDb::new(&Backend::Sqlite).await;
    let store = db.store().await;
    seed(&store).await;
    let scene = Scene::new();
    let config = scene.portal_config(&db.url, Some(TEST_TOKEN), host);
    let server = Server::start(&config).expect("server starts");
    Portal {
        server,
        config,
        _scene: scene,
        _db: db,
    }
}

/// One request with a raw body and content type; returns (status, head, body).
fn raw(p: &Portal, path: &str, content_type: Option<&str>, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(p.server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (h, b) = out.split_once("\r\n\r\n").unwrap_or((out.as_str(), ""));
    (status, h.to_ascii_lowercase(), b.to_owned())
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_json_objects_are_taken_and_every_error_has_the_json_shape() {
    let p = portal(json!({})).await;
    let good = json!({"login_name": "carol", "password": CAROL_CENTRAL}).to_string();
    let (s, _, _) = raw(
        &p,
        "/api/login/password",
        Some("application/json; charset=utf-8"),
        &good,
    );
    assert_eq!(s, 200, "a JSON login works");

    // A cross-site form can't send JSON: text/plain and form bodies are refused.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let (s, _, body) = raw(&p, "/api/login/password", ct, &good);
        assert_eq!(s, 415, "{ct:?}: {body}");
        assert_eq!(error_code(&body), "unsupported_media_type");
    }
    // A JSON array is not a login.
    let array = json!(["carol", CAROL_CENTRAL]).to_string();
    let (s, _, body) = raw(&p, "/api/login/password", Some("application/json"), &array);
    assert_eq!(s, 400, "{body}");
    assert_eq!(error_code(&body), "bad_request");
    // Unknown fields are named.
    let extra = json!({"login_name": "carol", "password": "x", "pasword": "y"}).to_string();
    let (s, _, body) = raw(&p, "/api/login/password", Some("application/json"), &extra);
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("pasword"), "{body}");

    // 404, 405 and 413 in the JSON shape.
    let (s, _, body) = request(p.server.addr, "GET", "/nothing-here", &[], None);
    assert_eq!(
        (s, error_code(&body).as_str()),
        (404, "not_found"),
        "{body}"
    );
    let (s, head, body) = request(p.server.addr, "GET", "/api/login/password", &[], None);
    assert_eq!(
        (s, error_code(&body).as_str()),
        (405, "method_not_allowed"),
        "{body}"
    );
    assert!(head.to_ascii_lowercase().contains("allow: post"), "{head}");
    let big = json!({"login_name": "carol", "password": "x".repeat(20_000)}).to_string();
    let (s, _, body) = raw(&p, "/api/login/password", Some("application/json"), &big);
    assert_eq!(
        (s, error_code(&body).as_str()),
        (413, "payload_too_large"),
        "{body}"
    );

    // A login name the portal never resolves is the client's error, never a 5xx.
    for (len, status) in [(5000, 413), (1000, 400)] {
        let long = json!({"login_name": "a".repeat(len)}).to_string();
        let (s, _, body) = raw(
            &p,
            "/api/login/questions/challenge",
            Some("application/json"),
            &long,
        );
        assert_eq!(s, status, "{len}: {body}");
        error_code(&body);
    }
    // More answers than a login takes cost nothing and say so.
    let answers: Vec<Value> = (0..11)
        .map(|i| json!({"question_id": format!("q{i}"), "answer": "x"}))
        .collect();
    let body = json!({"login_name": "carol", "answers": answers}).to_string();
    let (s, _, text) = raw(&p, "/api/login/questions", Some("application/json"), &body);
    assert_eq!(s, 400, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_carry_the_browser_rules_and_loopback_cookies() {
    let p = portal(json!({})).await;
    let body = json!({"login_name": "carol", "password": CAROL_CENTRAL}).to_string();
    let (s, head, _) = raw(&p, "/api/login/password", Some("application/json"), &body);
    assert_eq!(s, 200);
    for h in [
        "cache-control: no-store",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "frame-ancestors 'none'",
        "x-request-id: ",
    ] {
        assert!(head.contains(h), "{h} missing: {head}");
    }
    assert!(!head.contains("strict-transport-security"), "{head}");
    // Plain http on loopback: cookies without Secure, so a browser keeps them.
    assert!(head.contains("set-cookie: prp_session="), "{head}");
    assert!(!head.contains("secure"), "{head}");
    // Errors too.
    let (_, head, _) = raw(&p, "/api/login/password", Some("application/json"), "{}");
    assert!(head.contains("cache-control: no-store"), "{head}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_portal_sets_host_prefixed_secure_cookies_and_hsts() {
    let p = portal(json!({"PublicUrl": "https://portal.example.com"})).await;
    let body = json!({"login_name": "carol", "password": CAROL_CENTRAL}).to_string();
    let (s, head, _) = raw(&p, "/api/login/password", Some("application/json"), &body);
    assert_eq!(s, 200, "{head}");
    assert!(
        head.contains("strict-transport-security: max-age="),
        "{head}"
    );
    let cookies: Vec<&str> = head
        .lines()
        .filter(|l| l.starts_with("set-cookie:"))
        .collect();
    // Session, CSRF and device cookies.
    assert_eq!(cookies.len(), 3, "{head}");
    for c in &cookies {
        assert!(c.starts_with("set-cookie: __host-prp_"), "{c}");
        assert!(c.contains("secure") && c.contains("path=/"), "{c}");
        assert!(!c.contains("domain="), "{c}");
    }
    // The session cookie under its __Host- name authenticates; the old name doesn't.
    let v: Value = serde_json::from_str(
        &p.server
            .post(
                "/api/login/password",
                &json!({"login_name": "carol", "password": CAROL_CENTRAL}),
            )
            .1,
    )
    .expect("json");
    let token = v["token"].as_str().expect("token");
    let good = format!("__Host-prp_session={token}");
    let (s, _, _) = request(p.server.addr, "GET", "/api/me", &[("Cookie", &good)], None);
    assert_eq!(s, 200);
    let old = format!("prp_session={token}");
    let (s, _, _) = request(p.server.addr, "GET", "/api/me", &[("Cookie", &old)], None);
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_detail_is_on_the_admin_listener_and_follows_the_token() {
    let p = portal(json!({})).await;
    let (s, body) = p.server.get("/health/ready");
    assert_eq!(s, 200, "{body}");
    assert!(!body.contains("password-reset-authenticator"), "{body}");
    let (s, body) = p.server.admin_get("/health/ready");
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("password-reset-authenticator"), "{body}");

    // After `token new`, this server's configured token no longer matches: logins can't
    // succeed, so it is not ready (within the readiness cache's few seconds).
    let out = host_command(&p.config, &["token", "new"])
        .output()
        .expect("token new");
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, body) = p.server.admin_get("/health/ready");
        if s == 503 {
            assert!(body.contains("ApplicationToken"), "{body}");
            assert_eq!(p.server.get("/health/ready").0, 503);
            break;
        }
        assert!(Instant::now() < deadline, "still ready: {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_request_is_closed() {
    let p = portal(json!({"HeaderTimeoutMs": 1000, "BodyTimeoutMs": 1000})).await;
    // Headers that never end.
    let mut s = TcpStream::connect(p.server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    s.write_all(b"POST /api/login/password HTTP/1.1\r\nHost: x\r\n")
        .expect("send");
    // The server closes it (end of stream) long before this client's own 20 s read timeout
    // would give up (an error): no time is asserted, only who ended the connection.
    let mut buf = Vec::new();
    let read = s.read_to_end(&mut buf);
    assert!(read.is_ok(), "the connection stayed open: {read:?}");
    // A body that stalls halfway.
    let mut s = TcpStream::connect(p.server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    s.write_all(b"POST /api/login/password HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"login_name\"")
        .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    // A web form that stalls halfway: the same (the security review found a page's form
    // could be trickled forever, holding a connection slot).
    let mut s = TcpStream::connect(p.server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    s.write_all(b"POST /sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nflow=pass")
        .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_matches_the_router() {
    let p = portal(json!({})).await;
    let (s, text) = p.server.get("/openapi.json");
    assert_eq!(s, 200);
    let served: Value = serde_json::from_str(&text).expect("json");
    let generated = serde_json::to_value(prp_host::openapi()).expect("doc");
    assert_eq!(served, generated);
    let paths = served["paths"].as_object().expect("paths");
    assert!(paths.len() >= 18, "{paths:?}");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("item") {
            operations += 1;
            // Every operation says what success looks like.
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {path} has no success response"
            );
            // And the router has it: never 404 or 405 for a documented operation.
            let concrete = path.replace("{id}", "x").replace("{uid}", "x");
            let (s, _, body) = request(
                p.server.addr,
                &method.to_ascii_uppercase(),
                &concrete,
                &[],
                None,
            );
            assert!(
                s != 404
                    || body.contains("\"not_found\"") && !body.contains("nothing at this address"),
                "{method} {path}: {s} {body}"
            );
            assert_ne!(s, 405, "{method} {path}: {body}");
        }
    }
    assert!(operations >= 20, "{operations}");
}
