//! Abuse resistance (issue 8 §2–§4): an attacker who knows a login name can't take away the
//! person's own way back in, can't tell real names from unknown ones by the answers, and the
//! question challenge is throttled and doesn't change while the person is locked.
//!
//! Client addresses are set with `X-Forwarded-For` from the trusted proxy 127.0.0.1; the proof
//! of work is made easy (4 bits) so the tests solve it at once.

use prp_host::store::Store;
use prp_tests::{
    hasher, host_command, on_each_backend, request, seed, stdout, Backend, Scene, Server, TestDb,
    CAROL_CENTRAL, TEST_TOKEN,
};
use serde_json::{json, Value};

const ATTACKER: &str = "203.0.113.7";
const PERSON: &str = "198.51.100.9";
const WRONG: &str = "0000-0000-0000-0000";

struct Portal {
    server: Server,
    store: Store,
    config: std::path::PathBuf,
    _scene: Scene,
    _db: TestDb,
}

/// A seeded portal behind a trusted proxy, with the given lockout parameters.
async fn portal(backend: &Backend, params: &[(&str, &str)]) -> Portal {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    seed(&store).await;
    store
        .set_parameter(r"PRP\Lockout\ProofOfWorkBits", Some("4"))
        .await
        .expect("param");
    for (k, v) in params {
        store.set_parameter(k, Some(v)).await.expect("param");
    }
    let scene = Scene::new();
    let config = scene.portal_config(
        &db.url,
        Some(TEST_TOKEN),
        json!({"TrustedProxies": ["127.0.0.1"]}),
    );
    let server = Server::start(&config).unwrap_or_else(|e| panic!("[{}] {e}", backend.name()));
    Portal {
        server,
        store,
        config,
        _scene: scene,
        _db: db,
    }
}

/// One answer: status, the `Set-Cookie` value of the device cookie (if any), the JSON body.
struct Answer {
    status: u16,
    device: Option<String>,
    body: Value,
}

impl Answer {
    /// The proof of work the body asks for, solved.
    fn solved(&self) -> Option<Value> {
        let pow = self.body.get("pow")?;
        let challenge = pow["challenge"].as_str()?;
        let bits = u32::try_from(pow["bits"].as_u64()?).ok()?;
        let solution = prp_host::throttle::solve_pow(challenge, bits, 1 << 24)?;
        Some(json!({"challenge": challenge, "solution": solution}))
    }

    /// The body with the (random) challenge taken out: what may differ between two answers.
    fn shape(&self) -> Value {
        let mut b = self.body.clone();
        if let Some(pow) = b.get_mut("pow") {
            pow["challenge"] = "…".into();
            pow["expires_at"] = 0.into();
        }
        json!({"status": self.status, "body": b})
    }
}

impl Portal {
    fn post(&self, path: &str, from: &str, device: Option<&str>, body: &Value) -> Answer {
        let cookie = device.map(|d| format!("prp_device={d}"));
        let mut headers = vec![("X-Forwarded-For", from)];
        if let Some(c) = cookie.as_deref() {
            headers.push(("Cookie", c));
        }
        let (status, head, text) = request(self.server.addr, "POST", path, &headers, Some(body));
        let device = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, v)| v.trim().strip_prefix("prp_device="))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        Answer {
            status,
            device,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// A login that solves the proof of work when it is asked for one (at most once).
    fn login(&self, kind: &str, from: &str, device: Option<&str>, body: Value) -> Answer {
        let path = format!("/api/login/{kind}");
        let first = self.post(&path, from, device, &body);
        match first.solved() {
            Some(pow) if first.status == 401 => {
                let mut again = body;
                again["pow"] = pow;
                self.post(&path, from, device, &again)
            }
            _ => first,
        }
    }

    /// A one-step flow (`/api/login/start`, then `/api/login/step` with `values` and `pow`).
    fn flow(
        &self,
        from: &str,
        device: Option<&str>,
        flow: &str,
        name: &str,
        values: Value,
        pow: Option<Value>,
    ) -> Answer {
        let started = self.post(
            "/api/login/start",
            from,
            device,
            &json!({"flow": flow, "login_name": name}),
        );
        assert_eq!(started.status, 200, "{}", started.body);
        let mut step = json!({
            "attempt": started.body["attempt"],
            "method": flow,
            "values": values,
        });
        if let Some(pow) = pow {
            step["pow"] = pow;
        }
        self.post("/api/login/step", from, device, &step)
    }

    async fn issue(&self, person: &str) -> String {
        let code = prp_host::security::new_passcode();
        let hash = hasher()
            .hash_async(&prp_host::security::normalize_passcode(&code).expect("code"))
            .await
            .expect("hash");
        self.store
            .issue_passcode(person, &hash, 3600, "test")
            .await
            .expect("issue");
        code
    }
}

/// Sends `n` wrong passcodes for `name` from `from`, on four connections at a time; none may
/// get in, and none asks anything but the one failure.
fn hammer(p: &Portal, name: &str, from: &str, n: usize) {
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..n / 4 {
                    let a = p.post(
                        "/api/login/passcode",
                        from,
                        None,
                        &json!({"login_name": name, "passcode": WRONG}),
                    );
                    assert_eq!(a.status, 401, "{}", a.body);
                    assert_eq!(a.body["error"], "login_failed", "{}", a.body);
                }
            });
        }
    });
}

on_each_backend! {
    /// A thousand wrong guesses from one address neither lock the person out nor burn the
    /// passcode the help desk gives them: they log in with it from another address.
    async fn a_thousand_wrong_guesses_cannot_keep_the_person_from_their_passcode(b: Backend) {
        let p = portal(&b, &[]).await;
        let code = p.issue("P-PAT").await;
        hammer(&p, "pat", ATTACKER, 1000);
        // The attacker's own address is locked for the name, whatever it sends.
        let a = p.login("passcode", ATTACKER, None, json!({"login_name": "pat", "passcode": code}));
        assert_eq!(a.status, 401, "{}", a.body);
        // The person, elsewhere, is asked a proof of work, and gets in with it.
        let a = p.login("passcode", PERSON, None, json!({"login_name": "pat", "passcode": code}));
        assert_eq!(a.status, 200, "[{}] {}", b.name(), a.body);
        assert!(a.device.is_some(), "a device cookie comes with a login");
        // The person was told about the lock.
        let told = p.store.notifications("P-PAT").await.expect("outbox");
        assert!(told.iter().any(|(kind, ..)| kind == "lockout"), "{told:?}");
    }
}

on_each_backend! {
    /// A client the person logged in from before keeps working while the person is locked for
    /// everyone else, without a proof of work.
    async fn the_persons_device_keeps_working_while_others_are_locked(b: Backend) {
        let p = portal(&b, &[]).await;
        let first = p.login(
            "password",
            PERSON,
            None,
            json!({"login_name": "carol", "password": CAROL_CENTRAL}),
        );
        assert_eq!(first.status, 200, "{}", first.body);
        let device = first.device.expect("device cookie");
        for n in 0..10 {
            let a = p.post(
                "/api/login/password",
                ATTACKER,
                None,
                &json!({"login_name": "carol", "password": format!("wrong-{n}")}),
            );
            assert_eq!(a.status, 401);
        }
        // Another client of the person's needs the proof of work now …
        let other = p.post(
            "/api/login/password",
            "192.0.2.44",
            None,
            &json!({"login_name": "carol", "password": CAROL_CENTRAL}),
        );
        assert_eq!(other.status, 401, "{}", other.body);
        assert!(other.body.get("pow").is_some(), "{}", other.body);
        // A forged device cookie is no device (its last digit changed).
        let last = if device.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &device[..device.len() - 1]);
        let a = p.post(
            "/api/login/password",
            "192.0.2.45",
            Some(&forged),
            &json!({"login_name": "carol", "password": CAROL_CENTRAL}),
        );
        assert_eq!(a.status, 401, "{}", a.body);
        // The device needs no proof of work (and its login starts the counters afresh).
        let a = p.post(
            "/api/login/password",
            "192.0.2.44",
            Some(&device),
            &json!({"login_name": "carol", "password": CAROL_CENTRAL}),
        );
        assert_eq!(a.status, 200, "[{}] {}", b.name(), a.body);
    }
}

on_each_backend! {
    /// The security review found that any valid device cookie lifted the name's and the
    /// source's limits for every name: an attacker with an account of their own could spray
    /// guesses at everybody else's without ever being asked a proof of work. A cookie now
    /// vouches only for the name it was issued for.
    async fn a_device_cookie_vouches_only_for_its_own_name(b: Backend) {
        let p = portal(&b, &[]).await;
        let own = p.login(
            "password",
            ATTACKER,
            None,
            json!({"login_name": "carol", "password": CAROL_CENTRAL}),
        );
        assert_eq!(own.status, 200, "{}", own.body);
        let device = own.device.expect("device cookie");
        let asked = (0..12).any(|n| {
            let a = p.post(
                "/api/login/password",
                ATTACKER,
                Some(&device),
                &json!({"login_name": "dan", "password": format!("guess-{n}")}),
            );
            assert_eq!(a.status, 401, "{}", a.body);
            a.body.get("pow").is_some()
        });
        assert!(asked, "[{}] another name's guesses were never asked a proof of work", b.name());
        // For its own name (in any case of A-Z) the cookie still vouches: no proof of work.
        let a = p.post(
            "/api/login/password",
            ATTACKER,
            Some(&device),
            &json!({"login_name": "CAROL", "password": CAROL_CENTRAL}),
        );
        assert_eq!(a.status, 200, "[{}] {}", b.name(), a.body);
    }
}

on_each_backend! {
    /// Wrong guesses for a real name and for a name nobody has get the same answers, the
    /// proof of work included, as they add up.
    async fn real_and_unknown_names_get_the_same_answers_as_failures_add_up(b: Backend) {
        let p = portal(&b, &[]).await;
        for n in 0..8 {
            let real = p.post(
                "/api/login/passcode",
                ATTACKER,
                None,
                &json!({"login_name": "pat", "passcode": WRONG}),
            );
            let unknown = p.post(
                "/api/login/passcode",
                ATTACKER,
                None,
                &json!({"login_name": "nobody-here", "passcode": WRONG}),
            );
            assert_eq!(real.shape(), unknown.shape(), "[{}] attempt {n}", b.name());
        }
    }
}

on_each_backend! {
    /// With the proof of work off, a person-level lock holds for every client but the
    /// person's devices; a new passcode clears the passcode lock, and `prp-host unlock`
    /// clears the others (audited).
    async fn a_new_passcode_and_unlock_clear_the_locks(b: Backend) {
        let p = portal(&b, &[(r"PRP\Lockout\ProofOfWorkBits", "0")]).await;
        let tag = b.name();
        hammer(&p, "pat", ATTACKER, 8);
        let old = p.issue("P-PAT").await;
        // Issued after the lock: usable at once.
        let a = p.login("passcode", PERSON, None, json!({"login_name": "pat", "passcode": old}));
        assert_eq!(a.status, 200, "[{tag}] {}", a.body);

        for n in 0..4 {
            let a = p.post(
                "/api/login/password",
                ATTACKER,
                None,
                &json!({"login_name": "carol", "password": format!("wrong-{n}")}),
            );
            assert_eq!(a.status, 401);
        }
        let locked = p.login(
            "password",
            PERSON,
            None,
            json!({"login_name": "carol", "password": CAROL_CENTRAL}),
        );
        assert_eq!(locked.status, 401, "[{tag}] locked");
        assert!(locked.body.get("pow").is_none(), "{}", locked.body);
        let out = host_command(&p.config, &["unlock", "carol", "--method", "password"])
            .output()
            .expect("prp-host runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout(&out).contains("person P-CAROL unlocked for password"), "{}", stdout(&out));
        let a = p.login(
            "password",
            PERSON,
            None,
            json!({"login_name": "carol", "password": CAROL_CENTRAL}),
        );
        assert_eq!(a.status, 200, "[{tag}] unlocked: {}", a.body);
        let audit = p.store.audit_tail(20).await.expect("audit");
        assert!(
            audit.iter().any(|e| e.event == "lock.cleared"
                && e.person_uid.as_deref() == Some("P-CAROL")),
            "[{tag}] audited"
        );
    }
}

fn questions_of(a: &Answer) -> Vec<(String, String)> {
    a.body["questions"]
        .as_array()
        .map(|qs| {
            qs.iter()
                .map(|q| {
                    (
                        q["id"].as_str().unwrap_or_default().to_owned(),
                        q["question"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

on_each_backend! {
    /// The question challenge doesn't change when the person gets locked by someone's wrong
    /// answers, and it is throttled per source like the logins.
    async fn the_question_challenge_is_stable_and_throttled(b: Backend) {
        let p = portal(
            &b,
            &[
                (r"PRP\Lockout\Questions\MaxFailures", "3"),
                (r"PRP\Lockout\Source\MaxFailures", "20"),
            ],
        )
        .await;
        let tag = b.name();
        let challenge = |from: &str| {
            p.login("questions/challenge", from, None, json!({"login_name": "quinn"}))
        };
        let before = challenge(ATTACKER);
        assert_eq!(before.status, 200, "{}", before.body);
        let shown = questions_of(&before);
        assert_eq!(shown.len(), 2);
        for _ in 0..3 {
            let answers: Vec<Value> = shown
                .iter()
                .map(|(id, _)| json!({"question_id": id, "answer": "wrong"}))
                .collect();
            let a = p.login(
                "questions",
                ATTACKER,
                None,
                json!({"login_name": "quinn", "answers": answers}),
            );
            assert_eq!(a.status, 401);
        }
        let after = challenge(PERSON);
        assert_eq!(after.status, 200, "{}", after.body);
        assert_eq!(questions_of(&after), shown, "[{tag}] the challenge gave the lock away");

        // One source asking for many challenges must solve a proof of work for each.
        let mut asked = None;
        for n in 0..30 {
            let name = format!("name-{n}");
            let a = p.post(
                "/api/login/questions/challenge",
                "192.0.2.80",
                None,
                &json!({"login_name": name}),
            );
            if a.status == 401 {
                asked = Some((name, a));
                break;
            }
        }
        let (name, asked) = asked.expect("throttled");
        assert!(asked.body.get("pow").is_some(), "{}", asked.body);
        let mut again = json!({"login_name": name});
        again["pow"] = asked.solved().expect("solvable");
        let a = p.post("/api/login/questions/challenge", "192.0.2.80", None, &again);
        assert_eq!(a.status, 200, "[{tag}] {}", a.body);
        // Spent: the same solution doesn't buy a second challenge.
        let a = p.post("/api/login/questions/challenge", "192.0.2.80", None, &again);
        assert_eq!(a.status, 401, "[{tag}] {}", a.body);
    }
}

on_each_backend! {
    /// Login flows are throttled as the classic logins are: once the name is over its limit, a
    /// first step from a client without a device cookie is answered with a proof of work; the
    /// next attempt's first step carries it solved and gets in, and the device cookie that
    /// comes with the session lets that client in by itself while the name stays over.
    async fn flows_ask_a_proof_of_work_and_honour_device_cookies(b: Backend) {
        let p = portal(&b, &[(r"PRP\Lockout\Password\MaxFailures", "3")]).await;
        let wrong = || json!({"login_name": "carol", "password": "not-carols-password"});
        for _ in 0..4 {
            let a = p.post("/api/login/password", ATTACKER, None, &wrong());
            assert_eq!(a.status, 401, "{}", a.body);
        }
        let right = || json!({"password": CAROL_CENTRAL});
        let first = p.flow(PERSON, None, "password", "carol", right(), None);
        assert_eq!(first.status, 401, "[{}] {}", b.name(), first.body);
        assert_eq!(first.body["error"], "login_failed", "{}", first.body);
        let pow = first.solved().expect("a proof of work is asked for");
        // A solution that doesn't solve it is no better than none.
        let mut bad = pow.clone();
        bad["solution"] = "x".into();
        let refused = p.flow(PERSON, None, "password", "carol", right(), Some(bad));
        assert_eq!(refused.status, 401, "{}", refused.body);
        let second = p.flow(PERSON, None, "password", "carol", right(), Some(pow));
        assert_eq!(second.status, 200, "[{}] {}", b.name(), second.body);
        assert_eq!(second.body["session_kind"], "full", "{}", second.body);
        let device = second.device.expect("a device cookie comes with the flow's session");
        for _ in 0..4 {
            p.post("/api/login/password", ATTACKER, None, &wrong());
        }
        let third = p.flow(PERSON, Some(&device), "password", "carol", right(), None);
        assert_eq!(third.status, 200, "[{}] the device gets in by itself: {}", b.name(), third.body);
        // Its login started the name's counters afresh; once they are over again, the same
        // client without its device cookie is asked again.
        for _ in 0..4 {
            p.post("/api/login/password", ATTACKER, None, &wrong());
        }
        let fourth = p.flow(PERSON, None, "password", "carol", right(), None);
        assert_eq!(fourth.status, 401, "{}", fourth.body);
        assert!(fourth.body.get("pow").is_some(), "{}", fourth.body);
    }
}
