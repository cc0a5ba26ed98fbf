//! Login flows (ABI 1.1) end to end: password then TOTP with a code computed from the secret
//! enrolled over HTTP, a reused code refused, a step taken on a second server of the same
//! database, expiry, single-use attempt tokens, the same answer and cost for every failure,
//! and a plugin built against ABI 1.0 loading and working in this host.

use prp_host::store::Store;
use prp_tests::{
    artifacts, hash_count, seed, Backend, Client, Scene, Server, TestDb, CAROL_CENTRAL,
    MARTA_CENTRAL, TEST_TOKEN,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use totp_authenticator::crypto;

const FLOW: &str = "mfa";

/// A seeded portal with the TOTP plugin, a FactorKey and the flow `password` then `totp`.
struct Portal {
    server: Server,
    store: Store,
    config: PathBuf,
    scene: Scene,
    _db: TestDb,
}

async fn portal(backend: &Backend) -> Portal {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    seed(&store).await;
    for (path, value) in [
        (r"PRP\Flows\mfa\Steps", "password,totp"),
        (r"PRP\Flows\mfa\Label", "Password and authenticator app"),
        (r"PRP\Flows\mfa\Session", "full"),
    ] {
        store.set_parameter(path, Some(value)).await.expect("flow");
    }
    let scene = Scene::new();
    let config = scene.portal_config_with(
        &db.url,
        Some(TEST_TOKEN),
        json!({}),
        &[artifacts().lib("totp-authenticator")],
    );
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    v["ConnectionStrings"]["FactorKey"] = "a test factor key, not a secret anywhere else".into();
    let config = scene.write("appsettings.json", &v.to_string());
    let server = Server::start(&config).unwrap_or_else(|e| panic!("[{}] {e}", backend.name()));
    Portal {
        server,
        store,
        config,
        scene,
        _db: db,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn code(secret: &[u8], at: i64) -> String {
    crypto::totp(secret, at, 30, 6).unwrap()
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Logs Carol in by password, enrolls her in TOTP and confirms it; returns her secret.
fn enroll_carol(p: &Portal) -> Vec<u8> {
    let carol = Client::password(&p.server, "carol", CAROL_CENTRAL);
    let (status, list) = carol.call("GET", "/api/factors", None);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["factors"][0]["method"], "totp");
    assert_eq!(list["factors"][0]["enrolled"], false);
    let (status, enrolled) = carol.call("POST", "/api/factors/totp/enroll", None);
    assert_eq!(status, 200, "{enrolled}");
    let secret_b32 = enrolled["shown"]["secret"].as_str().unwrap().to_owned();
    let uri = enrolled["shown"]["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/prp:carol?secret="), "{uri}");
    assert!(uri.contains(&secret_b32));
    let secret = crypto::base32_decode(&secret_b32).unwrap();
    // A wrong code doesn't confirm.
    let wrong = if code(&secret, now()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (status, _) = carol.call(
        "POST",
        "/api/factors/totp/confirm",
        Some(json!({"values": {"code": wrong}})),
    );
    assert_eq!(status, 422);
    let (status, body) = carol.call(
        "POST",
        "/api/factors/totp/confirm",
        Some(json!({"values": {"code": code(&secret, now())}})),
    );
    assert_eq!(status, 204, "{body}");
    let (_, list) = carol.call("GET", "/api/factors", None);
    assert_eq!(list["factors"][0]["enrolled"], true);
    secret
}

fn start(server: &Server, name: &str) -> String {
    let (status, body) = server.post(
        "/api/login/start",
        &json!({"flow": FLOW, "login_name": name}),
    );
    assert_eq!(status, 200, "{body}");
    let v = json_of(&body);
    assert_eq!(v["step"]["index"], 0);
    assert_eq!(v["step"]["methods"][0]["id"], "password");
    v["attempt"].as_str().unwrap().to_owned()
}

fn step(server: &Server, attempt: &str, method: &str, values: Value) -> (u16, Value) {
    let (status, body) = server.post(
        "/api/login/step",
        &json!({"attempt": attempt, "method": method, "values": values}),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A step's answer that granted a full session: its person and method, as the session says.
fn full_session_of(server: &Server, status: u16, done: &Value) -> (String, String) {
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["session_kind"], "full", "{done}");
    let client = Client::from_login(server.addr, &done.to_string());
    let (status, me) = client.call("GET", "/api/session", None);
    assert_eq!(status, 200, "{me}");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (text(&me["person_uid"]), text(&me["method"]))
}

/// The first step by password; returns the next attempt token.
fn password_step(server: &Server, name: &str, password: &str) -> String {
    let attempt = start(server, name);
    let (status, next) = step(server, &attempt, "password", json!({"password": password}));
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["step"]["index"], 1);
    assert_eq!(next["step"]["methods"][0]["id"], "totp");
    assert_eq!(next["step"]["methods"][0]["fields"][0]["name"], "code");
    next["attempt"].as_str().unwrap().to_owned()
}

prp_tests::on_each_backend! {
    async fn password_then_totp_logs_in_and_a_code_is_accepted_once(b: Backend) {
        let p = portal(&b).await;
        let (status, flows) = p.server.get("/api/login/flows");
        assert_eq!(status, 200, "{flows}");
        let flows = json_of(&flows);
        let mfa = flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == FLOW)
            .unwrap_or_else(|| panic!("no flow {FLOW}: {flows}"));
        assert_eq!(mfa["steps"], json!([["password"], ["totp"]]));
        assert_eq!(mfa["session_kind"], "full");
        let totp = flows["methods"].as_array().unwrap().iter().find(|m| m["id"] == "totp").unwrap();
        assert_eq!(totp["fields"][0], json!({"name": "code", "kind": "secret", "label": "6-digit code"}));
        assert_eq!(totp["hashes"], 0);

        let secret = enroll_carol(&p);
        // The secret is at rest only encrypted.
        let stored: String = sqlx::query_scalar("SELECT data FROM prp_factor WHERE person_uid = 'P-CAROL'")
            .fetch_one(p.store.pool())
            .await
            .unwrap();
        assert!(!stored.contains(&crypto::base32_encode(&secret)));
        assert!(!stored.to_ascii_lowercase().contains(&hex_of(&secret)));

        // The confirming code used up the current time step: the next one logs in.
        let code_now = code(&secret, now() + 30);
        let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
        let (status, done) = step(&p.server, &attempt, "totp", json!({"code": code_now}));
        assert_eq!(full_session_of(&p.server, status, &done), ("P-CAROL".into(), "flow:mfa".into()));

        // The same code again, in a new attempt: refused, like any failure.
        let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
        let (status, body) = step(&p.server, &attempt, "totp", json!({"code": code_now}));
        assert_eq!(status, 401);
        assert_eq!(body["error"], "login_failed");
        // A used attempt token is gone.
        let (status, _) = step(&p.server, &attempt, "totp", json!({"code": code_now}));
        assert_eq!(status, 401);
    }
}

prp_tests::on_each_backend! {
    /// Both reviews found a person's TOTP never asked for: the built-in `password` flow and
    /// `POST /api/login/password` granted full sessions on the password alone.
    async fn an_enrolled_factor_is_asked_for_by_every_full_login(b: Backend) {
        let p = portal(&b).await;
        prp_tests::marta_manages_carol(&p.store).await;
        let secret = enroll_carol(&p);
        // The classic endpoint can't ask: a right password answers 403, with no session.
        let (status, body) = p.server.post(
            "/api/login/password",
            &json!({"login_name": "carol", "password": CAROL_CENTRAL}),
        );
        assert_eq!(status, 403, "{body}");
        let v = json_of(&body);
        assert_eq!(v["error"], "factor_required", "{body}");
        assert!(v.get("token").is_none(), "{body}");
        // Right passwords answered so don't count against the client: more of them than the
        // password limit leave the flow open (the review of the fix found they did).
        for _ in 0..11 {
            let (status, body) = p.server.post(
                "/api/login/password",
                &json!({"login_name": "carol", "password": CAROL_CENTRAL}),
            );
            assert_eq!(status, 403, "{body}");
        }
        // A wrong password still looks like any failure.
        let (status, body) = p.server.post(
            "/api/login/password",
            &json!({"login_name": "carol", "password": "not her password"}),
        );
        assert_eq!(status, 401, "{body}");

        // The built-in `password` flow goes on to the factor step, which offers every
        // enrollable method.
        // The built-in `password` flow's first step, by the right password.
        let by_password = |name: &str, password: &str| {
            let (status, body) = p.server.post(
                "/api/login/start",
                &json!({"flow": "password", "login_name": name}),
            );
            assert_eq!(status, 200, "{body}");
            let attempt = json_of(&body)["attempt"].as_str().unwrap().to_owned();
            let (status, next) = step(&p.server, &attempt, "password", json!({"password": password}));
            assert_eq!(status, 200, "{next}");
            next
        };
        let start_password = || {
            let next = by_password("carol", CAROL_CENTRAL);
            assert!(next.get("token").is_none(), "no session before the factor: {next}");
            assert_eq!(next["step"]["index"], 1, "{next}");
            assert_eq!(next["step"]["methods"][0]["id"], "totp", "{next}");
            next["attempt"].as_str().unwrap().to_owned()
        };
        let attempt = start_password();
        let (status, body) = step(&p.server, &attempt, "totp", json!({"code": "12345"}));
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "login_failed");
        let attempt = start_password();
        let (status, done) = step(&p.server, &attempt, "totp", json!({"code": code(&secret, now() + 30)}));
        assert_eq!(
            full_session_of(&p.server, status, &done),
            ("P-CAROL".into(), "password+totp".into())
        );

        // Someone without the factor: the built-in flow grants at once, as before.
        let done = by_password("marta", MARTA_CENTRAL);
        assert_eq!(done["session_kind"], "full", "{done}");

        // The help desk removes a lost factor: audited, the person told, and the password
        // alone is a full login again.
        let out = p.scene.run(&p.config, &["flows", "remove-factor", "CAROL", "totp"]);
        assert!(out.status.success(), "{}", prp_tests::stderr(&out));
        assert!(prp_tests::stdout(&out).contains("person P-CAROL: factor totp removed"), "{}", prp_tests::stdout(&out));
        let out = p.scene.run(&p.config, &["flows", "remove-factor", "carol", "totp"]);
        assert!(!out.status.success());
        assert!(prp_tests::stderr(&out).contains("person P-CAROL has no totp factor"), "{}", prp_tests::stderr(&out));
        let out = p.scene.run(&p.config, &["audit", "--limit", "20"]);
        assert!(prp_tests::stdout(&out).contains("factor removed by the help desk"), "{}", prp_tests::stdout(&out));
        let (status, body) = p.server.post(
            "/api/login/password",
            &json!({"login_name": "carol", "password": CAROL_CENTRAL}),
        );
        assert_eq!(status, 200, "{body}");
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

prp_tests::on_each_backend! {
    async fn every_failure_at_every_step_looks_the_same_and_ends_the_attempt(b: Backend) {
        let p = portal(&b).await;
        let secret = enroll_carol(&p);
        let failed = |status: u16, body: &Value| {
            assert_eq!(status, 401, "{body}");
            body.clone()
        };
        // Every failed step is held to the failure time floor, as a classic login's failure
        // is (the security review found flows and the web sign-in answered at once).
        let held = || prp_tests::metric(&p.server, "prp_failures_held_total");
        let held_before = held();
        // First step: an unknown name and a wrong password answer alike, for one hash each.
        let before = hash_count(&p.server);
        let attempt = start(&p.server, "nobody-at-all");
        let (s, unknown) = step(&p.server, &attempt, "password", json!({"password": "x"}));
        let unknown = failed(s, &unknown);
        let after_unknown = hash_count(&p.server);
        let attempt = start(&p.server, "carol");
        let (s, wrong) = step(&p.server, &attempt, "password", json!({"password": "wrong"}));
        let wrong = failed(s, &wrong);
        let after_wrong = hash_count(&p.server);
        assert_eq!(unknown, wrong);
        // ... and exactly as the login endpoints answer a failure.
        let (_, classic) = p.server.post(
            "/api/login/password",
            &json!({"login_name": "carol", "password": "wrong"}),
        );
        assert_eq!(json_of(&classic), wrong);
        assert_eq!(hash_count(&p.server) - after_wrong, 1, "the endpoint costs what the step costs");
        assert_eq!(after_unknown - before, 1);
        assert_eq!(after_wrong - after_unknown, 1);
        assert_eq!(held() - held_before, 3, "two failed steps and one failed login, each held");
        // That attempt is over: its token doesn't take the step again, even with the password.
        let (s, again) = step(&p.server, &attempt, "password", json!({"password": CAROL_CENTRAL}));
        assert_eq!(failed(s, &again), wrong);

        // Second step: a wrong code, a method the step doesn't offer: the same answer, the
        // same cost as a failed first step (the flow's: one hash, though a code costs none),
        // and the attempt ends.
        let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
        let before = hash_count(&p.server);
        let bad = if code(&secret, now()) == "123456" { "654321" } else { "123456" };
        let (s, wrong_code) = step(&p.server, &attempt, "totp", json!({"code": bad}));
        assert_eq!(failed(s, &wrong_code), wrong);
        assert_eq!(hash_count(&p.server) - before, 1);
        let (s, after) = step(&p.server, &attempt, "totp", json!({"code": code(&secret, now() + 30)}));
        assert_eq!(failed(s, &after), wrong);
        assert_eq!(held() - held_before, 6, "a used token twice and a failed second step, each held");
        let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
        let before = hash_count(&p.server);
        let (s, other) = step(&p.server, &attempt, "password", json!({"password": CAROL_CENTRAL}));
        assert_eq!(failed(s, &other), wrong);
        assert_eq!(hash_count(&p.server) - before, 1);

        // An expired attempt is refused, the same way.
        let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
        sqlx::query("UPDATE prp_login_attempt SET expires_at = 0")
            .execute(p.store.pool())
            .await
            .unwrap();
        let (s, expired) = step(&p.server, &attempt, "totp", json!({"code": code(&secret, now() + 30)}));
        assert_eq!(failed(s, &expired), wrong);

        // The wrong codes counted towards Carol's factor lock like any failure.
        let failures: i64 = sqlx::query_scalar(
            "SELECT failures FROM prp_failure WHERE person_uid = 'P-CAROL' AND scope = 'factor'",
        )
        .fetch_one(p.store.pool())
        .await
        .unwrap();
        assert!(failures >= 1, "{failures}");

        // Unknown flows are the client's error, whoever logs in.
        let (s, _) = p.server.post("/api/login/start", &json!({"flow": "nope", "login_name": "carol"}));
        assert_eq!(s, 404);
        // No session was opened by any of it, and Carol's own flow still works.
        let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
        let before = hash_count(&p.server);
        let (s, done) = step(&p.server, &attempt, "totp", json!({"code": code(&secret, now() + 30)}));
        assert_eq!(s, 200, "{done}");
        assert_eq!(hash_count(&p.server) - before, 0, "a code that passes costs no hash");
    }
}

prp_tests::on_each_backend! {
    async fn a_step_taken_on_a_second_server_of_the_same_database_works(b: Backend) {
        let p = portal(&b).await;
        let secret = enroll_carol(&p);
        let second = Server::start(&p.config).expect("second server");
        let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
        let code_next = code(&secret, now() + 30);
        let (status, done) = step(&second, &attempt, "totp", json!({"code": code_next}));
        assert_eq!(status, 200, "[{}] {done}", b.name());
        assert_eq!(done["session_kind"], "full");
        // The code was accepted on the second server: the first refuses it.
        let attempt = password_step(&second, "carol", CAROL_CENTRAL);
        let (status, _) = step(&p.server, &attempt, "totp", json!({"code": code_next}));
        assert_eq!(status, 401);
    }
}

prp_tests::on_each_backend! {
    async fn the_classic_methods_are_single_step_flows(b: Backend) {
        let p = portal(&b).await;
        let (_, flows) = p.server.get("/api/login/flows");
        let flows = json_of(&flows);
        let ids: Vec<&str> = flows["flows"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["password", "passcode", "questions", "mfa"]);
        let (s, body) = p.server.post("/api/login/start", &json!({"flow": "password", "login_name": "carol"}));
        assert_eq!(s, 200, "{body}");
        let attempt = json_of(&body)["attempt"].as_str().unwrap().to_owned();
        let (s, done) = step(&p.server, &attempt, "password", json!({"password": CAROL_CENTRAL}));
        assert_eq!(s, 200, "{done}");
        assert_eq!(done["session_kind"], "full");
        assert!(done["token"].as_str().is_some_and(|t| !t.is_empty()));
    }
}

prp_tests::on_each_backend! {
    async fn a_plugin_built_against_abi_1_0_loads_and_works_in_this_host(b: Backend) {
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        seed(&store).await;
        let scene = Scene::new();
        let config = scene.portal_config_with(
            &db.url,
            Some(TEST_TOKEN),
            json!({"Authenticator": "v1-classic"}),
            &[artifacts().lib("fixture-v1-0-plugin")],
        );
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        v["Plugins"]["Resolvers"] = json!(["central-account"]);
        v["Plugins"]["Required"] = json!(["password-reset-authenticator", "fixture-v1-0-plugin"]);
        let config = scene.write("appsettings.json", &v.to_string());
        let server = Server::start(&config).unwrap_or_else(|e| panic!("[{}] {e}", b.name()));
        // Its login decides, through the host's password check.
        let (status, body) = server.post(
            "/api/login/password",
            &json!({"login_name": "carol", "password": CAROL_CENTRAL}),
        );
        assert_eq!(status, 200, "{body}");
        let (status, _) = server.post(
            "/api/login/password",
            &json!({"login_name": "carol", "password": "wrong"}),
        );
        assert_eq!(status, 401);
        // It has no `methods`: the host takes it as offering the classic three.
        let (_, flows) = server.get("/api/login/flows");
        let flows = json_of(&flows);
        let ids: Vec<&str> = flows["methods"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["password", "passcode", "questions"]);
        // And a flow over it works like its endpoint.
        let (_, body) = server.post("/api/login/start", &json!({"flow": "password", "login_name": "carol"}));
        let attempt = json_of(&body)["attempt"].as_str().unwrap().to_owned();
        let (status, done) = step(&server, &attempt, "password", json!({"password": CAROL_CENTRAL}));
        assert_eq!(status, 200, "{done}");
        // Its passcode method is "password only": denied by the plugin itself.
        let (status, _) = server.post(
            "/api/login/passcode",
            &json!({"login_name": "carol", "passcode": "ABCD-EFGH"}),
        );
        assert_eq!(status, 401);
    }
}

/// The operator's side: the demo enrolls Alice and configures the flow, `flows list` shows it,
/// `check` passes, refuses a flow naming a method no plugin offers, and `explain-login` says
/// which flows a person can complete.
#[test]
fn demo_flows_list_check_and_explain_login() {
    use prp_tests::{stderr, stdout};
    let a = artifacts();
    let scene = Scene::new();
    let config = scene.appsettings(
        &[
            a.lib("password-reset-authenticator"),
            a.lib("totp-authenticator"),
        ],
        &["password-reset-authenticator"],
        true,
    );
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    v["ConnectionStrings"]["FactorKey"] = "demo factor key".into();
    let config = scene.write("appsettings.json", &v.to_string());

    let out = scene.run(&config, &["demo"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}{}", text, stderr(&out));
    let line = text
        .lines()
        .find(|l| l.contains("totp secret"))
        .unwrap_or_else(|| panic!("no totp secret line: {text}"));
    let secret_b32 = line.rsplit(' ').next().unwrap();
    let secret = crypto::base32_decode(secret_b32).expect("base32");
    assert_eq!(secret.len(), 20, "{line}");
    assert!(text.contains("flow id password-totp"), "{text}");
    assert!(!text.contains("FactorKey\": \"demo factor key"));

    let out = scene.run(&config, &["flows", "list"]);
    let list = stdout(&out);
    assert!(out.status.success(), "{list}{}", stderr(&out));
    assert!(
        list.lines()
            .any(|l| l.starts_with("password-totp\tpassword then totp\tfull session")),
        "{list}"
    );
    assert!(
        list.contains(
            "method totp\tplugin totp-authenticator\tcontinues\t0 hash(es)\tcode (secret)"
        ),
        "{list}"
    );

    let out = scene.run(&config, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("flow \"password-totp\": password then totp"));

    let out = scene.run(&config, &["explain-login", "alice"]);
    let explained = stdout(&out);
    assert!(
        explained.contains("flow password-totp (password then totp): P-ALICE can complete it"),
        "{explained}"
    );
    assert!(
        explained.contains("person P-ALICE has the second factor totp (active since"),
        "{explained}"
    );
    let out = scene.run(&config, &["explain-login", "bob"]);
    assert!(
        stdout(&out).contains("person P-BOB has no second factor"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("flow password-totp (password then totp): P-BOB can't complete it: not enrolled in totp"),
        "{}",
        stdout(&out)
    );

    // A flow naming a method no loaded plugin offers: check fails and names it.
    let out = scene.run(
        &config,
        &["params", "set", r"PRP\Flows\sms\Steps", "password,sms-code"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = scene.run(&config, &["check"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains(
            "flow \"sms\": step 2 names the method \"sms-code\", which no loaded plugin offers"
        ),
        "{}",
        stdout(&out)
    );
    let out = scene.run(&config, &["flows", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sms-code"));
}

prp_tests::on_each_backend! {
    async fn changing_factors_takes_a_full_session_and_tells_the_person(b: Backend) {
        let p = portal(&b).await;
        // A flow that grants only a reset session, for the person's own passwords.
        for (path, value) in [(r"PRP\Flows\plain\Steps", "password"), (r"PRP\Flows\plain\Session", "reset")] {
            p.store.set_parameter(path, Some(value)).await.unwrap();
        }
        let attempt = start_flow(&p.server, "plain", "carol");
        let (s, done) = step(&p.server, &attempt, "password", json!({"password": CAROL_CENTRAL}));
        assert_eq!(s, 200, "{done}");
        assert_eq!(done["session_kind"], "reset");
        let reset = Client::from_login(p.server.addr, &done.to_string());
        let (s, _) = reset.call("GET", "/api/factors", None);
        assert_eq!(s, 200);
        let (s, _) = reset.call("POST", "/api/factors/totp/enroll", None);
        assert_eq!(s, 403);

        let full = Client::password(&p.server, "carol", CAROL_CENTRAL);
        let (s, _) = full.call("POST", "/api/factors/totp/confirm", Some(json!({"values": {"code": "123456"}})));
        assert_eq!(s, 409, "nothing to confirm before enrolling");
        let (s, _) = full.call("POST", "/api/factors/nope/enroll", None);
        assert_eq!(s, 404);
        enroll_carol(&p);
        let (s, _) = reset.call("DELETE", "/api/factors/totp", None);
        assert_eq!(s, 403);
        let (s, _) = full.call("DELETE", "/api/factors/totp", None);
        assert_eq!(s, 204);
        let (s, _) = full.call("DELETE", "/api/factors/totp", None);
        assert_eq!(s, 404);
        let kinds: Vec<String> = p
            .store
            .notifications("P-CAROL")
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.0)
            .collect();
        assert!(kinds.contains(&"factor.enrolled".to_owned()), "{kinds:?}");
        assert!(kinds.contains(&"factor.removed".to_owned()), "{kinds:?}");
        // Without the factor, the two-step flow can't be completed: the code step fails.
        let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
        let (s, _) = step(&p.server, &attempt, "totp", json!({"code": "123456"}));
        assert_eq!(s, 401);

        // Without a FactorKey nothing can be enrolled (and nothing stored in the clear).
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p.config).unwrap()).unwrap();
        v["ConnectionStrings"].as_object_mut().unwrap().remove("FactorKey");
        let keyless = p.scene.write("keyless.json", &v.to_string());
        let server = Server::start(&keyless).expect("server without a FactorKey");
        let client = Client::password(&server, "carol", CAROL_CENTRAL);
        let (s, body) = client.call("POST", "/api/factors/totp/enroll", None);
        assert_eq!(s, 503, "{body}");
    }
}

fn start_flow(server: &Server, flow: &str, name: &str) -> String {
    let (status, body) = server.post(
        "/api/login/start",
        &json!({"flow": flow, "login_name": name}),
    );
    assert_eq!(status, 200, "{body}");
    json_of(&body)["attempt"].as_str().unwrap().to_owned()
}

prp_tests::on_each_backend! {
    async fn questions_are_a_flow_step_too(b: Backend) {
        let p = portal(&b).await;
        let (s, body) = p.server.post("/api/login/questions/challenge", &json!({"login_name": "quinn"}));
        assert_eq!(s, 200, "{body}");
        let asked = json_of(&body)["questions"].as_array().unwrap().clone();
        assert_eq!(asked.len(), 2);
        let answer = |q: &str| match q {
            "Colour of the sky?" => "blue",
            "Best number?" => "seven",
            _ => "porto",
        };
        let right: serde_json::Map<String, Value> = asked
            .iter()
            .map(|q| (q["id"].as_str().unwrap().to_owned(), json!(answer(q["question"].as_str().unwrap()))))
            .collect();
        let mut wrong = right.clone();
        if let Some(v) = wrong.values_mut().next() {
            *v = json!("not it");
        }
        let before = hash_count(&p.server);
        let attempt = start_flow(&p.server, "questions", "quinn");
        let (s, _) = step(&p.server, &attempt, "questions", Value::Object(wrong));
        assert_eq!(s, 401);
        assert_eq!(hash_count(&p.server) - before, 2, "one hash per question asked");
        let attempt = start_flow(&p.server, "questions", "quinn");
        let (s, done) = step(&p.server, &attempt, "questions", Value::Object(right));
        assert_eq!(s, 200, "{done}");
        assert_eq!(done["session_kind"], "reset");
    }
}

/// The 1.0 plugin also loads in a host of the next minor ABI (1.2, the test-only probe), which
/// reads it through the same frozen 1.0 layouts.
#[test]
fn a_1_0_plugin_loads_in_the_next_minor_host_too() {
    let a = artifacts();
    let out = std::process::Command::new(&a.abi_next_host)
        .arg(a.lib("fixture-v1-0-plugin"))
        .output()
        .expect("abi-next-host runs");
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("json");
    assert_eq!(v["loaded"], true, "{v}");
    assert_eq!(v["name"], "fixture-v1-0-plugin");
    assert_eq!(v["next_probe"], Value::Null);
}

prp_tests::on_each_backend! {
    async fn an_attempt_token_is_taken_once_even_by_parallel_steps(b: Backend) {
        let p = portal(&b).await;
        let attempt = start(&p.server, "carol");
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (server, attempt) = (&p.server, attempt.as_str());
                    s.spawn(move || {
                        step(server, attempt, "password", json!({"password": CAROL_CENTRAL})).0
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 3, "{statuses:?}");
    }
}

prp_tests::on_each_backend! {
    async fn wrong_codes_lock_the_code_step_like_any_method(b: Backend) {
        let p = portal(&b).await;
        let secret = enroll_carol(&p);
        // Anyone's wrong passcodes for Carol lock her passcode logins, but not the step every
        // full login of hers now takes (the review of the factor fix found they did).
        for _ in 0..6 {
            let (s, _) = p.server.post(
                "/api/login/passcode",
                &json!({"login_name": "carol", "passcode": "0000-0000-0000-0000"}),
            );
            assert_eq!(s, 401);
        }
        let passcode_lock: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM prp_failure WHERE person_uid = 'P-CAROL' AND scope = 'passcode' AND locked_until > 0",
        )
        .fetch_one(p.store.pool())
        .await
        .unwrap();
        assert_eq!(passcode_lock, 1, "the passcode lock is set");
        let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
        let (s, body) = step(&p.server, &attempt, "totp", json!({"code": code(&secret, now() + 30)}));
        assert_eq!(s, 200, "{body}");
        // Its own lock: two wrong codes with Factor\MaxFailures at 2.
        p.store
            .set_parameter(r"PRP\Lockout\Factor\MaxFailures", Some("2"))
            .await
            .unwrap();
        let right = code(&secret, now() + 60);
        let bad = if right == "000000" { "111111" } else { "000000" };
        for _ in 0..2 {
            let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
            let (s, _) = step(&p.server, &attempt, "totp", json!({"code": bad}));
            assert_eq!(s, 401);
        }
        // Locked: even the right code fails now, and isn't used up by the refusal.
        let attempt = password_step(&p.server, "carol", CAROL_CENTRAL);
        let (s, _) = step(&p.server, &attempt, "totp", json!({"code": right}));
        assert_eq!(s, 401);
        let last: Option<i64> = sqlx::query_scalar("SELECT last_step FROM prp_factor WHERE person_uid = 'P-CAROL'")
            .fetch_one(p.store.pool())
            .await
            .unwrap();
        assert!(last.is_some_and(|l| l < (now() + 60) / 30), "{last:?}");
    }
}
