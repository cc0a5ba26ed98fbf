//! The portal end to end over HTTP, against the real host with the real plugin (and a
//! third-party directory resolver), on SQLite and (when `PRP_TEST_POSTGRES_URL` is set)
//! PostgreSQL: password items, each policy rule, history, the all-or-nothing multi-item reset,
//! id tampering, CSRF, session revocation, managers' passcodes, the four-eyes split, question
//! management, metrics.

use prp_tests::{
    artifacts, host_command, request, stdout, Backend, Client, Portal, PortalOptions, CAROL_ADS,
    CAROL_CENTRAL, FLAG_PW,
};
use serde_json::{json, Value};

async fn portal(backend: &Backend) -> Portal {
    portal_with(backend, json!({})).await
}

/// A seeded portal where P-MARTA manages P-CAROL, with the third-party directory resolver
/// (used because `Plugins:Resolvers` lists it), and extra `Host` settings.
async fn portal_with(backend: &Backend, host: Value) -> Portal {
    let directory = artifacts().lib("fixture-directory-resolver");
    let options = PortalOptions {
        host,
        plugins: json!({"Resolvers": ["central-account", "search-table", "directory"]}),
        extra_plugins: &[directory],
    };
    Portal::start_with(backend, options, |store| async move {
        prp_tests::marta_manages_carol(&store).await;
    })
    .await
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn rules(v: &Value, id: &str) -> Vec<String> {
    v["items"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["id"] == id))
        .and_then(|i| i["violations"].as_array())
        .map(|vs| {
            vs.iter()
                .map(|x| x["rule"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

const GOOD: &str = "orchard-velvet-lantern-42";

prp_tests::on_each_backend! {
    async fn items_policies_history_and_the_all_or_nothing_reset(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        let carol = Client::password(&p.server, "carol", CAROL_CENTRAL);

        // The person's own items: central, the ADS account (shown by its CN), the directory.
        let (s, items) = carol.call("GET", "/api/password-items", None);
        assert_eq!(s, 200, "[{tag}] {items}");
        assert_eq!(
            ids(&items),
            vec![
                "Person:P-CAROL",
                "ADSAccount:A-CAROL",
                "Directory:DIR-CAROL"
            ],
            "[{tag}]"
        );
        assert_eq!(items["items"][1]["display_name"], "Carol Example");
        assert!(items["items"][0]["policy"]["description"]
            .as_str()
            .unwrap_or_default()
            .contains("12 to 128 characters"));

        // Each rule, in words, without saving anything.
        let all = json!(["Person:P-CAROL", "ADSAccount:A-CAROL"]);
        for (pw, rule) in [
            ("short-1", "min_length"),
            (&*"x".repeat(129), "max_length"),
            ("1qaz2wsx3edc", "common"),
            ("carol-is-my-name-2026", "contains_name"),
            ("Example-Orchard-Lantern", "contains_name"),
        ] {
            let (s, v) = carol.call(
                "POST",
                "/api/password-items/check",
                Some(json!({"items": all, "password": pw})),
            );
            assert_eq!(s, 200, "[{tag}] {v}");
            assert_eq!(v["ok"], false, "[{tag}] {pw}");
            assert!(
                rules(&v, "Person:P-CAROL").contains(&rule.to_owned()),
                "[{tag}] {pw}: {v}"
            );
            let message = v["items"][0]["violations"][0]["message"]
                .as_str()
                .unwrap_or_default();
            assert!(
                message.ends_with('.') && message.len() > 20,
                "[{tag}] a sentence: {message}"
            );
        }
        let (_, v) = carol.call(
            "POST",
            "/api/password-items/check",
            Some(json!({"items": all, "password": GOOD})),
        );
        assert_eq!(v["ok"], true, "[{tag}] {v}");
        assert_eq!(
            p.login_status("carol", CAROL_CENTRAL),
            200,
            "[{tag}] a check saves nothing"
        );

        // Policy per table: the ADS table wants 30 characters.
        p.store
            .set_parameter(r"PRP\PasswordPolicy\ADSAccount\MinLength", Some("30"))
            .await
            .expect("param");
        let (_, v) = carol.call(
            "POST",
            "/api/password-items/check",
            Some(json!({"items": all, "password": GOOD})),
        );
        assert_eq!(
            rules(&v, "Person:P-CAROL"),
            Vec::<String>::new(),
            "[{tag}] {v}"
        );
        assert_eq!(
            rules(&v, "ADSAccount:A-CAROL"),
            vec!["min_length"],
            "[{tag}] {v}"
        );

        // All or nothing: one item's policy fails, so neither changes.
        let (s, v) = carol.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": all, "password": GOOD})),
        );
        assert_eq!(s, 422, "[{tag}] {v}");
        assert_eq!(p.login_status("carol", CAROL_CENTRAL), 200, "[{tag}]");
        assert_eq!(p.login_status("cexample", CAROL_ADS), 200, "[{tag}]");
        // All or nothing: the directory refuses synchronously, so the central password stays.
        let both = json!(["Person:P-CAROL", "Directory:DIR-CAROL"]);
        let refused = "orchard-directory-refuses-42";
        let (s, v) = carol.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": both, "password": refused})),
        );
        assert_eq!(s, 502, "[{tag}] {v}");
        assert_eq!(
            p.login_status("carol", CAROL_CENTRAL),
            200,
            "[{tag}] nothing changed"
        );
        assert_eq!(
            p.login_status("carol.dir", "directory-initial-pw"),
            200,
            "[{tag}]"
        );

        // One call sets all three.
        p.store
            .set_parameter(r"PRP\PasswordPolicy\ADSAccount\MinLength", Some("12"))
            .await
            .expect("param");
        let carol = Client::password(&p.server, "carol", CAROL_CENTRAL);
        let three = json!([
            "Person:P-CAROL",
            "ADSAccount:A-CAROL",
            "Directory:DIR-CAROL"
        ]);
        let (s, v) = carol.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": three, "password": GOOD})),
        );
        assert_eq!(s, 200, "[{tag}] {v}");
        for name in ["carol", "cexample", "carol.dir"] {
            assert_eq!(
                p.login_status(name, GOOD),
                200,
                "[{tag}] {name} with the new password"
            );
        }
        assert_eq!(
            p.login_status("carol", CAROL_CENTRAL),
            401,
            "[{tag}] the old one is gone"
        );
        let events = p
            .store
            .provisioning_events("P-CAROL")
            .await
            .expect("outbox");
        assert_eq!(
            events,
            vec![
                ("Person".to_owned(), "P-CAROL".to_owned()),
                ("ADSAccount".to_owned(), "A-CAROL".to_owned())
            ],
            "[{tag}] provisioning events for the portal-stored items; the directory set its own"
        );
        let notes = p.store.notifications("P-CAROL").await.expect("outbox");
        assert_eq!(notes.len(), 1, "[{tag}]");
        assert_eq!(notes[0].0, "password.changed");
        assert!(
            notes[0].3.is_none() && !notes[0].2.contains(GOOD),
            "[{tag}] no secret in the notification"
        );
        assert!(
            !notes[0].2.contains("P-CAROL") && !notes[0].2.contains("A-CAROL"),
            "[{tag}] no internal id in the stored text either: {}",
            notes[0].2
        );
        let audit = p.store.audit_tail(50).await.expect("audit");
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.event == "password.set" && e.outcome == "success")
                .count(),
            3,
            "[{tag}]"
        );
        assert!(
            audit
                .iter()
                .all(|e| !e.reason.clone().unwrap_or_default().contains(GOOD)),
            "[{tag}] no secret audited"
        );

        // History: the same password again, or the one before, is refused.
        let carol = Client::password(&p.server, "carol", GOOD);
        let central = json!(["Person:P-CAROL"]);
        let (s, v) = carol.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": central, "password": GOOD})),
        );
        assert_eq!(s, 422, "[{tag}] {v}");
        assert_eq!(
            rules(&v["checks"], "Person:P-CAROL"),
            vec!["history"],
            "[{tag}] {v}"
        );
        let second = "quartz-meadow-harbor-77";
        assert_eq!(
            carol
                .call(
                    "POST",
                    "/api/password-items/set",
                    Some(json!({"items": central, "password": second}))
                )
                .0,
            200
        );
        let (s, v) = carol.call(
            "POST",
            "/api/password-items/check",
            Some(json!({"items": central, "password": GOOD})),
        );
        assert_eq!(
            (s, rules(&v, "Person:P-CAROL")),
            (200, vec!["history".to_owned()]),
            "[{tag}] {v}"
        );
        p.store
            .set_parameter(r"PRP\PasswordPolicy\Default\HistoryCount", Some("0"))
            .await
            .expect("param");
        let (_, v) = carol.call(
            "POST",
            "/api/password-items/check",
            Some(json!({"items": central, "password": GOOD})),
        );
        assert_eq!(v["ok"], true, "[{tag}] history off: {v}");
    }
}

prp_tests::on_each_backend! {
    async fn another_persons_items_and_questions_are_out_of_reach(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        let carol = Client::password(&p.server, "carol", CAROL_CENTRAL);
        for other in [
            "ADSAccount:A-OK",
            "Person:P-OKKO",
            "Directory:DIR-OKKO",
            "ADSAccount:A-CAROL' OR '1'='1",
        ] {
            let (s, v) = carol.call(
                "POST",
                "/api/password-items/set",
                Some(json!({"items": [other], "password": GOOD})),
            );
            assert_eq!(s, 404, "[{tag}] {other}: {v}");
            let (s, _) = carol.call(
                "POST",
                "/api/password-items/check",
                Some(json!({"items": ["Person:P-CAROL", other], "password": GOOD})),
            );
            assert_eq!(s, 404, "[{tag}] {other}");
        }
        assert_eq!(
            p.login_status("ok.acct", FLAG_PW),
            200,
            "[{tag}] okko's password is untouched"
        );
        assert_eq!(
            p.login_status("carol", CAROL_CENTRAL),
            200,
            "[{tag}] and carol's too"
        );
        let (_, items) = carol.call("GET", "/api/password-items", None);
        assert!(
            !ids(&items)
                .iter()
                .any(|i| i.contains("OKKO") || i.contains("A-OK")),
            "[{tag}] {items}"
        );
        // Quinn's questions: not listed, not deletable, not replaceable, not unlockable.
        let quinns = p.store.questions("P-QUINN").await.expect("q");
        let (_, mine) = carol.call("GET", "/api/questions", None);
        assert_eq!(
            mine["questions"].as_array().map(Vec::len),
            Some(0),
            "[{tag}] {mine}"
        );
        let id = &quinns[0].id;
        assert_eq!(
            carol
                .call("DELETE", &format!("/api/questions/{id}"), None)
                .0,
            404,
            "[{tag}]"
        );
        let body = json!({"question": "Whose question is this?", "answer": "not yours"});
        assert_eq!(
            carol
                .call("PUT", &format!("/api/questions/{id}"), Some(body))
                .0,
            404,
            "[{tag}]"
        );
        assert_eq!(
            carol
                .call("POST", &format!("/api/questions/{id}/unlock"), None)
                .0,
            404,
            "[{tag}]"
        );
        assert_eq!(
            p.store.questions("P-QUINN").await.expect("q"),
            quinns,
            "[{tag}] unchanged"
        );
    }
}

prp_tests::on_each_backend! {
    async fn browser_requests_need_the_csrf_token(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        let carol = Client::password(&p.server, "carol", CAROL_CENTRAL);
        let cookie = format!("prp_session={}", carol.token);
        let body = json!({"items": ["Person:P-CAROL"], "password": GOOD});
        let path = "/api/password-items/check";
        let (s, _, _) = request(
            p.server.addr,
            "GET",
            "/api/password-items",
            &[("Cookie", &cookie)],
            None,
        );
        assert_eq!(s, 200, "[{tag}] reading needs no CSRF token");
        let (s, _, text) = request(
            p.server.addr,
            "POST",
            path,
            &[("Cookie", &cookie)],
            Some(&body),
        );
        assert_eq!(s, 403, "[{tag}] {text}");
        assert!(text.contains("\"csrf\""), "[{tag}] {text}");
        let (s, _, _) = request(
            p.server.addr,
            "POST",
            path,
            &[("Cookie", &cookie), ("X-CSRF-Token", "forged")],
            Some(&body),
        );
        assert_eq!(s, 403, "[{tag}]");
        let other = Client::password(&p.server, "ok.acct", FLAG_PW);
        let (s, _, _) = request(
            p.server.addr,
            "POST",
            path,
            &[("Cookie", &cookie), ("X-CSRF-Token", &other.csrf)],
            Some(&body),
        );
        assert_eq!(s, 403, "[{tag}] another session's token");
        let (s, _, _) = request(
            p.server.addr,
            "POST",
            path,
            &[("Cookie", &cookie), ("X-CSRF-Token", &carol.csrf)],
            Some(&body),
        );
        assert_eq!(s, 200, "[{tag}]");
        assert_eq!(
            carol.call("POST", path, Some(body)).0,
            200,
            "[{tag}] bearer clients need none"
        );
        // The login sets both cookies: the session's HttpOnly, the CSRF one readable.
        let (_, head, _) = request(
            p.server.addr,
            "POST",
            "/api/login/password",
            &[],
            Some(&json!({"login_name": "carol", "password": CAROL_CENTRAL})),
        );
        let head = head.to_ascii_lowercase();
        let cookie = |name: &str| {
            head.lines()
                .find(|l| l.starts_with(&format!("set-cookie: {name}=")))
                .unwrap_or_else(|| panic!("[{tag}] no {name} cookie: {head}"))
                .to_owned()
        };
        // The session cookie is HttpOnly; the CSRF cookie must be readable by the page.
        let session = cookie("prp_session");
        assert!(session.contains("; httponly"), "[{tag}] {session}");
        assert!(session.contains("samesite=strict"), "[{tag}] {session}");
        let csrf = cookie("prp_csrf");
        assert!(!csrf.contains("httponly"), "[{tag}] {csrf}");
        assert!(csrf.contains("samesite=strict"), "[{tag}] {csrf}");
    }
}

prp_tests::on_each_backend! {
    async fn a_password_change_revokes_the_other_sessions_and_logout_ends_this_one(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        let first = Client::password(&p.server, "carol", CAROL_CENTRAL);
        let second = Client::password(&p.server, "cexample", CAROL_ADS);
        let okko = Client::password(&p.server, "ok.acct", FLAG_PW);
        let (s, _) = first.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": ["Person:P-CAROL"], "password": GOOD})),
        );
        assert_eq!(s, 200, "[{tag}]");
        assert_eq!(
            first.call("GET", "/api/session", None).0,
            200,
            "[{tag}] the changing session stays"
        );
        assert_eq!(
            second.call("GET", "/api/session", None).0,
            401,
            "[{tag}] the other one is revoked"
        );
        assert_eq!(
            okko.call("GET", "/api/session", None).0,
            200,
            "[{tag}] other people keep theirs"
        );
        assert_eq!(first.call("POST", "/api/logout", None).0, 204, "[{tag}]");
        assert_eq!(
            first.call("GET", "/api/session", None).0,
            401,
            "[{tag}] logged out"
        );
    }
}

prp_tests::on_each_backend! {
    async fn a_password_reset_clears_the_password_lock(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        for _ in 0..3 {
            p.login_status("carol", "wrong");
        }
        assert_eq!(
            p.login_status("carol", CAROL_CENTRAL),
            401,
            "[{tag}] locked"
        );
        let code = stdout(
            &host_command(&p.config, &["passcode", "new", "carol"])
                .output()
                .expect("cli"),
        );
        let code = code
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 19)
            .expect("passcode")
            .to_owned();
        let (s, body) = p.server.post(
            "/api/login/passcode",
            &json!({"login_name": "carol", "passcode": code}),
        );
        assert_eq!(
            s, 200,
            "[{tag}] a passcode still gets in: lockout must not stop recovery"
        );
        let reset = Client::from_login(p.server.addr, &body);
        let (s, v) = reset.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": ["Person:P-CAROL"], "password": GOOD})),
        );
        assert_eq!(s, 200, "[{tag}] {v}");
        assert_eq!(p.login_status("carol", GOOD), 200, "[{tag}] unlocked");
    }
}

prp_tests::on_each_backend! {
    async fn managers_issue_passcodes_to_their_reports_only(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        let marta = Client::password(&p.server, "marta", prp_tests::MARTA_CENTRAL);
        let (s, v) = marta.call("GET", "/api/reports", None);
        assert_eq!(
            (s, v["reports"][0]["person_uid"].clone()),
            (200, json!("P-CAROL")),
            "[{tag}] {v}"
        );
        let (s, v) = marta.call("POST", "/api/reports/P-CAROL/passcode", None);
        assert_eq!(s, 200, "[{tag}] {v}");
        assert_eq!(v["split"], false);
        assert_eq!(v["valid_hours"], 8);
        let code = v["passcode"].as_str().unwrap_or_default().to_owned();
        let (s, _) = p.server.post(
            "/api/login/passcode",
            &json!({"login_name": "cexample", "passcode": code}),
        );
        assert_eq!(s, 200, "[{tag}] carol logs in with it");

        // Not a report: refused, and audited.
        let (s, _) = marta.call("POST", "/api/reports/P-OKKO/passcode", None);
        assert_eq!(s, 403, "[{tag}]");
        let carol = Client::password(&p.server, "carol", CAROL_CENTRAL);
        assert_eq!(
            carol.call("POST", "/api/reports/P-CAROL/passcode", None).0,
            403,
            "[{tag}] not for oneself"
        );
        assert_eq!(
            carol.call("POST", "/api/reports/P-MARTA/passcode", None).0,
            403,
            "[{tag}] not for one's manager"
        );
        assert!(
            p.store.passcode("P-OKKO").await.expect("q").is_none()
                && p.store.passcode("P-MARTA").await.expect("q").is_none()
        );

        // A reset session (from a passcode) can't issue passcodes, even to a report.
        let code = stdout(
            &host_command(&p.config, &["passcode", "new", "marta"])
                .output()
                .expect("cli"),
        );
        let code = code
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 19)
            .expect("passcode")
            .to_owned();
        let (s, body) = p.server.post(
            "/api/login/passcode",
            &json!({"login_name": "marta", "passcode": code}),
        );
        assert_eq!(s, 200, "[{tag}]");
        let reset = Client::from_login(p.server.addr, &body);
        let (s, v) = reset.call("POST", "/api/reports/P-CAROL/passcode", None);
        assert_eq!(s, 403, "[{tag}] {v}");
    }
}

prp_tests::on_each_backend! {
    async fn four_eyes_passcodes_are_split_between_issuer_and_manager(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        p.store
            .set_parameter(&format!(r"{}\PasscodeSplit", prp_tests::ROOT), Some("1"))
            .await
            .expect("param");
        // Marta can't issue for carol: she would receive both halves.
        let marta = Client::password(&p.server, "marta", prp_tests::MARTA_CENTRAL);
        let (s, v) = marta.call("POST", "/api/reports/P-CAROL/passcode", None);
        assert_eq!(s, 409, "[{tag}] {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("ask the help desk"),
            "[{tag}] {v}"
        );
        // The help desk issues for carol: it sees the first half, marta gets the second.
        let out = host_command(
            &p.config,
            &["passcode", "new", "carol", "--issued-by", "helpdesk:ann"],
        )
        .output()
        .expect("cli");
        let text = stdout(&out);
        assert!(out.status.success(), "[{tag}] {text}");
        assert!(text.contains("First half"), "[{tag}] {text}");
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 9 && l.contains('-'))
            .expect("first half")
            .to_owned();
        let notes = p.store.notifications("P-MARTA").await.expect("outbox");
        let second = notes
            .iter()
            .find(|n| n.0 == "passcode.half")
            .and_then(|n| n.3.clone())
            .expect("the manager's half");
        assert_eq!(second.len(), 9, "[{tag}] {second}");
        assert!(
            !notes.iter().any(|n| n.2.contains(&first)),
            "[{tag}] the manager never sees the first half"
        );
        let (s, _) = p.server.post(
            "/api/login/passcode",
            &json!({"login_name": "carol", "passcode": first.clone()}),
        );
        assert_eq!(s, 401, "[{tag}] half a passcode is not enough");
        let code = stdout(
            &host_command(&p.config, &["passcode", "new", "carol"])
                .output()
                .expect("cli"),
        );
        let first = code
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 9 && l.contains('-'))
            .expect("first half")
            .to_owned();
        let notes = p.store.notifications("P-MARTA").await.expect("outbox");
        let second = notes
            .iter()
            .rev()
            .find(|n| n.0 == "passcode.half")
            .and_then(|n| n.3.clone())
            .expect("half");
        let (s, _) = p.server.post(
            "/api/login/passcode",
            &json!({"login_name": "carol", "passcode": format!("{first}-{second}")}),
        );
        assert_eq!(s, 200, "[{tag}] both halves together");
        let audit = p.store.audit_tail(30).await.expect("audit");
        assert!(
            audit
                .iter()
                .all(|e| !e.reason.clone().unwrap_or_default().contains(&second)),
            "[{tag}]"
        );

        // Without a manager, splitting fails clearly.
        let out = host_command(&p.config, &["passcode", "new", "ok.acct"])
            .output()
            .expect("cli");
        assert_eq!(out.status.code(), Some(1), "[{tag}]");
        let err = prp_tests::stderr(&out);
        assert!(
            err.contains("PasscodeSplit is on, but person P-OKKO has no manager"),
            "[{tag}] {err}"
        );

        // The split is the authenticator's word (its policy): a PasscodeSplit it can't read
        // issues nothing, rather than whole passcodes, and the error names the parameter.
        p.store
            .set_parameter(
                &format!(r"{}\PasscodeSplit", prp_tests::ROOT),
                Some("perhaps"),
            )
            .await
            .expect("param");
        let halves = p.store.notifications("P-MARTA").await.expect("outbox").len();
        let out = host_command(&p.config, &["passcode", "new", "carol"])
            .output()
            .expect("cli");
        assert_eq!(out.status.code(), Some(1), "[{tag}]");
        let err = prp_tests::stderr(&out);
        assert!(
            err.contains(r#"PasscodeSplit: "perhaps" is not a boolean"#),
            "[{tag}] {err}"
        );
        let (s, v) = marta.call("POST", "/api/reports/P-CAROL/passcode", None);
        assert_eq!(s, 500, "[{tag}] {v}");
        assert_eq!(
            p.store.notifications("P-MARTA").await.expect("outbox").len(),
            halves,
            "[{tag}] nothing was issued"
        );
    }
}

prp_tests::on_each_backend! {
    async fn questions_are_managed_within_their_limits(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        // Quinn has three questions and QueryAnswerDefinitions is 3: log in with them.
        let (_, v) = p.server.post(
            "/api/login/questions/challenge",
            &json!({"login_name": "quinn"}),
        );
        let asked: Value = serde_json::from_str(&v).expect("json");
        let answers: Vec<Value> = asked["questions"]
            .as_array()
            .expect("questions")
            .iter()
            .map(|q| {
                let a = match q["question"].as_str().unwrap_or_default() {
                    "Colour of the sky?" => "blue",
                    "Best number?" => "seven",
                    _ => "porto",
                };
                json!({"question_id": q["id"], "answer": a})
            })
            .collect();
        let (s, body) = p.server.post(
            "/api/login/questions",
            &json!({"login_name": "quinn", "answers": answers}),
        );
        assert_eq!(s, 200, "[{tag}] {body}");
        let quinn = Client::from_login(p.server.addr, &body);

        let (s, list) = quinn.call("GET", "/api/questions", None);
        assert_eq!(s, 200);
        assert_eq!(list["required"], 3);
        assert_eq!(list["questions"].as_array().map(Vec::len), Some(3));
        assert!(
            !list.to_string().to_lowercase().contains("porto"),
            "[{tag}] answers are never shown"
        );
        let first_id = list["questions"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();

        for (q, a, why) in [
            ("Why?", "because", "A question needs"),
            ("What was my first bicycle?", "ab", "An answer needs"),
            (
                "What was my first bicycle?",
                &*"a".repeat(65),
                "An answer needs",
            ),
            (
                "Colour of the sky?",
                "green",
                "You already have this question",
            ),
            (
                "What was my first bicycle?",
                " PORTO ",
                "Each question needs a different answer",
            ),
            (
                "Where is porto airport?",
                "porto",
                "must not appear in the question",
            ),
        ] {
            let (s, v) = quinn.call(
                "POST",
                "/api/questions",
                Some(json!({"question": q, "answer": a})),
            );
            assert_eq!(s, 422, "[{tag}] {q} / {a}: {v}");
            assert!(
                v["message"].as_str().unwrap_or_default().contains(why),
                "[{tag}] {v}"
            );
        }
        let (s, v) = quinn.call("DELETE", &format!("/api/questions/{first_id}"), None);
        assert_eq!(s, 422, "[{tag}] can't go below QueryAnswerDefinitions: {v}");
        let (s, v) = quinn.call(
            "POST",
            "/api/questions",
            Some(json!({"question": "What was my first bicycle?", "answer": "Raleigh"})),
        );
        assert_eq!(s, 201, "[{tag}] {v}");
        let new_id = v["id"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            quinn
                .call("DELETE", &format!("/api/questions/{first_id}"), None)
                .0,
            204,
            "[{tag}]"
        );
        let (s, _) = quinn.call(
            "PUT",
            &format!("/api/questions/{new_id}"),
            Some(json!({"question": "Name of my first bike?", "answer": "Peugeot"})),
        );
        assert_eq!(s, 200, "[{tag}]");
        sqlx::query("UPDATE prp_question SET locked = 1, failures = 3 WHERE id = $1")
            .bind(&new_id)
            .execute(p.store.pool())
            .await
            .expect("lock");
        let (s, v) = quinn.call("POST", &format!("/api/questions/{new_id}/unlock"), None);
        assert_eq!((s, v["locked"].clone()), (200, json!(false)), "[{tag}]");
        let stored = p.store.questions("P-QUINN").await.expect("q");
        let replaced = stored
            .iter()
            .find(|q| q.id == new_id)
            .expect("replaced question");
        assert_eq!(replaced.question, "Name of my first bike?");
        assert!(
            !replaced.locked && replaced.answer_hash.starts_with("$argon2id$"),
            "[{tag}]"
        );
        for _ in 0..7 {
            let n = p.store.questions("P-QUINN").await.expect("q").len();
            let (s, _) = quinn.call("POST", "/api/questions", Some(json!({"question": format!("Filler question number {n}?"), "answer": format!("filler answer {n}")})));
            if n < 10 {
                assert_eq!(s, 201, "[{tag}] question {n}");
            } else {
                assert_eq!(s, 422, "[{tag}] at most 10 questions");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_logins_on_the_admin_listener() {
    let b = Backend::Sqlite;
    let p = portal(&b).await;
    p.login_status("carol", CAROL_CENTRAL);
    p.login_status("carol", "wrong");
    let text = p.server.metrics();
    assert!(
        text.contains("prp_logins_total{method=\"password\",outcome=\"success\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("prp_logins_total{method=\"password\",outcome=\"failure\"} 1"),
        "{text}"
    );
    assert!(text.contains("prp_hash_queue_depth "), "{text}");
    assert!(
        text.contains("prp_login_duration_seconds_count 2"),
        "{text}"
    );
    // Not on the public listener.
    let (s, body) = p.server.get("/metrics");
    assert_eq!(s, 404, "{body}");
}

/// Issues a four-eyes passcode for carol through the CLI: (the help desk's first half, the
/// second half as queued for her manager).
async fn issue_split(p: &Portal) -> (String, String) {
    let out = host_command(&p.config, &["passcode", "new", "carol"])
        .output()
        .expect("cli");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 9 && l.contains('-'))
        .expect("first half")
        .to_owned();
    let second = p
        .store
        .notifications("P-MARTA")
        .await
        .expect("outbox")
        .into_iter()
        .rev()
        .find(|n| n.0 == "passcode.half")
        .and_then(|n| n.3)
        .expect("the manager's half");
    (first, second)
}

/// The passcode halves still held in clear in the outbox.
async fn halves_in_clear(p: &Portal) -> Vec<String> {
    p.store
        .notifications("P-MARTA")
        .await
        .expect("outbox")
        .into_iter()
        .filter(|n| n.0 == "passcode.half")
        .filter_map(|n| n.3)
        .collect()
}

prp_tests::on_each_backend! {
    async fn passcodes_end_with_a_password_change_and_their_halves_leave_the_outbox(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        p.store
            .set_parameter(&format!(r"{}\PasscodeSplit", prp_tests::ROOT), Some("1"))
            .await
            .expect("param");
        let passcode = |first: &str, second: &str| {
            p.server
                .post(
                    "/api/login/passcode",
                    &json!({"login_name": "carol", "passcode": format!("{first}-{second}")}),
                )
                .0
        };

        // Replaced: the earlier passcode's half is purged when a new one is issued.
        let (_, replaced) = issue_split(&p).await;
        let (first, second) = issue_split(&p).await;
        assert_eq!(
            halves_in_clear(&p).await,
            vec![second.clone()],
            "[{tag}] {replaced}"
        );
        // Used: purged with the login that used it.
        assert_eq!(passcode(&first, &second), 200, "[{tag}]");
        assert!(halves_in_clear(&p).await.is_empty(), "[{tag}] used");

        // A password change removes the outstanding passcode (and its half), in its transaction.
        let (first, second) = issue_split(&p).await;
        let carol = Client::password(&p.server, "carol", CAROL_CENTRAL);
        let (s, v) = carol.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": ["Person:P-CAROL"], "password": GOOD})),
        );
        assert_eq!(s, 200, "[{tag}] {v}");
        assert_eq!(
            p.store.passcode("P-CAROL").await.expect("read"),
            None,
            "[{tag}] the passcode is gone with the old password"
        );
        assert!(halves_in_clear(&p).await.is_empty(), "[{tag}] changed");
        assert_eq!(passcode(&first, &second), 401, "[{tag}]");

        // Expired: purged (by the login that finds it expired, and by the periodic sweep).
        let (first, second) = issue_split(&p).await;
        sqlx::query("UPDATE prp_passcode SET expires_at = 1 WHERE person_uid = 'P-CAROL'")
            .execute(p.store.pool())
            .await
            .expect("expire");
        assert_eq!(passcode(&first, &second), 401, "[{tag}]");
        assert!(halves_in_clear(&p).await.is_empty(), "[{tag}] expired");
        let (_, second) = issue_split(&p).await;
        assert_eq!(halves_in_clear(&p).await, vec![second], "[{tag}]");
        sqlx::query("UPDATE prp_passcode SET expires_at = 1 WHERE person_uid = 'P-CAROL'")
            .execute(p.store.pool())
            .await
            .expect("expire");
        assert_eq!(p.store.purge_expired_passcodes().await.expect("sweep"), 1);
        assert!(halves_in_clear(&p).await.is_empty(), "[{tag}] swept");
    }
}

/// Quinn's reset session, from answering two of his questions.
fn quinn_reset_session(p: &Portal) -> Client {
    let (_, v) = p.server.post(
        "/api/login/questions/challenge",
        &json!({"login_name": "quinn"}),
    );
    let asked: Value = serde_json::from_str(&v).expect("json");
    let answers: Vec<Value> = asked["questions"]
        .as_array()
        .expect("questions")
        .iter()
        .map(|q| {
            let a = match q["question"].as_str().unwrap_or_default() {
                "Colour of the sky?" => "blue",
                "Best number?" => "seven",
                _ => "porto",
            };
            json!({"question_id": q["id"], "answer": a})
        })
        .collect();
    let (s, body) = p.server.post(
        "/api/login/questions",
        &json!({"login_name": "quinn", "answers": answers}),
    );
    assert_eq!(s, 200, "{body}");
    Client::from_login(p.server.addr, &body)
}

prp_tests::on_each_backend! {
    async fn replacing_or_unlocking_a_question_tells_the_person(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        let quinn = quinn_reset_session(&p);
        let (_, list) = quinn.call("GET", "/api/questions", None);
        let ids: Vec<String> = list["questions"]
            .as_array()
            .expect("questions")
            .iter()
            .map(|q| q["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        let before = p
            .store
            .notifications("P-QUINN")
            .await
            .expect("outbox")
            .len();
        let (s, v) = quinn.call(
            "PUT",
            &format!("/api/questions/{}", ids[0]),
            Some(json!({"question": "First pet's name?", "answer": "Rex the dog"})),
        );
        assert_eq!(s, 200, "[{tag}] {v}");
        let (s, v) = quinn.call("POST", &format!("/api/questions/{}/unlock", ids[1]), None);
        assert_eq!(s, 200, "[{tag}] {v}");
        let notes = p.store.notifications("P-QUINN").await.expect("outbox");
        let kinds: Vec<&str> = notes[before..].iter().map(|n| n.0.as_str()).collect();
        assert_eq!(
            kinds,
            vec!["question.replaced", "question.unlocked"],
            "[{tag}] the person is told of each change"
        );
        assert!(
            notes.iter().all(|n| n.3.is_none() && !n.2.contains("Rex")),
            "[{tag}] no answer in the outbox"
        );
    }
}

prp_tests::on_each_backend! {
    async fn reject_names_looks_at_every_login_name_of_the_person(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        // Carol's ADS login name is a name nothing else of hers contains: it reaches the rule
        // only through the search-table resolver's `login_names_of`.
        sqlx::query("UPDATE \"ADSAccount\" SET \"SamAccountName\" = 'kestrel7' WHERE \"UID_ADSAccount\" = 'A-CAROL'")
            .execute(p.store.pool())
            .await
            .expect("rename");
        let carol = Client::password(&p.server, "carol", CAROL_CENTRAL);
        // Only the central account is chosen; the names come from her other accounts: the
        // ADS login name (SamAccountName, any case) and the ADS display name (CN "Carol
        // Example").
        for (password, name) in [
            ("orchard-KESTREL7-velvet-42", "kestrel7"),
            ("orchard-EXAMPLE-velvet-42", "Example"),
        ] {
            let (s, v) = carol.call(
                "POST",
                "/api/password-items/check",
                Some(json!({"items": ["Person:P-CAROL"], "password": password})),
            );
            assert_eq!(s, 200, "[{tag}] {v}");
            assert_eq!(
                rules(&v, "Person:P-CAROL"),
                vec!["contains_name"],
                "[{tag}] {password}: {v}"
            );
            assert!(
                v["items"][0]["violations"][0]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("\"{name}\""))),
                "[{tag}] {password}: {v}"
            );
            // And a change with it is refused, nothing set.
            let (s, v) = carol.call(
                "POST",
                "/api/password-items/set",
                Some(json!({"items": ["Person:P-CAROL"], "password": password})),
            );
            assert_eq!(s, 422, "[{tag}] {password}: {v}");
        }
        assert_eq!(p.login_status("carol", CAROL_CENTRAL), 200, "[{tag}]");
    }
}

prp_tests::on_each_backend! {
    async fn a_resolver_change_whose_database_step_fails_is_audited_and_explained(b: Backend) {
        let tag = b.name();
        let p = portal(&b).await;
        let carol = Client::password(&p.server, "carol", CAROL_CENTRAL);
        // The portal's own step of the change fails, as a database error would.
        prp_tests::fail_inserts(
            &p.store,
            "prp_notification_outbox",
            Some("NEW.kind = 'password.changed'"),
            "the database step fails",
        )
        .await;
        let (s, v) = carol.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": ["Directory:DIR-CAROL"], "password": GOOD})),
        );
        assert_eq!(s, 502, "[{tag}] {v}");
        assert_eq!(v["error"], "partial", "[{tag}] {v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("Directory:DIR-CAROL") && message.contains("directory"),
            "[{tag}] the person is told which password changed: {message}"
        );
        // The directory did change; the portal's records did not.
        assert_eq!(p.login_status("carol.dir", GOOD), 200, "[{tag}]");
        assert_eq!(p.login_status("carol", CAROL_CENTRAL), 200, "[{tag}]");
        let audit = p.store.audit_tail(20).await.expect("audit");
        let partial = audit
            .iter()
            .find(|e| e.event == "password.set")
            .expect("the partial change is audited");
        assert_eq!(partial.outcome, "unknown", "[{tag}] {partial:?}");
        let reason = partial.reason.clone().unwrap_or_default();
        assert!(
            reason.contains("Directory:DIR-CAROL") && reason.contains("directory"),
            "[{tag}] {reason}"
        );
        assert!(!reason.contains(GOOD), "[{tag}] no secret in the audit log");
    }
}

prp_tests::on_each_backend! {
    async fn a_flood_of_checks_is_turned_away_and_a_login_still_gets_through(b: Backend) {
        let tag = b.name();
        // One hashing worker: requests other than logins may keep one hash going at a time.
        let p = portal_with(&b, json!({"HashWorkers": 1})).await;
        let carol = Client::password(&p.server, "carol", CAROL_CENTRAL);
        let before = prp_tests::hash_count(&p.server);
        let addr = p.server.addr;
        let auth = format!("Bearer {}", carol.token);
        let flood: Vec<_> = (0..24)
            .map(|_| {
                let auth = auth.clone();
                std::thread::spawn(move || {
                    let (s, head, _) = request(
                        addr,
                        "POST",
                        "/api/password-items/check",
                        &[("Authorization", &auth)],
                        Some(&json!({"items": ["Person:P-CAROL"], "password": GOOD})),
                    );
                    (s, head.to_ascii_lowercase().contains("retry-after: 1"))
                })
            })
            .collect();
        // An honest login in the middle of the flood.
        let (login, body) = p.server.post(
            "/api/login/password",
            &json!({"login_name": "cexample", "password": CAROL_ADS}),
        );
        let answers: Vec<(u16, bool)> = flood
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(login, 200, "[{tag}] the login gets through: {body}");
        let busy = answers.iter().filter(|(s, _)| *s == 503).count();
        let checked = answers.iter().filter(|(s, _)| *s == 200).count();
        assert!(busy > 0, "[{tag}] {answers:?}");
        assert_eq!(busy + checked, 24, "[{tag}] {answers:?}");
        assert!(
            answers.iter().all(|(s, retry)| *s != 503 || *retry),
            "[{tag}] 503 with Retry-After"
        );
        // Each check that was let in compared one earlier hash; the login hashed once; the
        // ones turned away hashed nothing.
        assert_eq!(
            prp_tests::hash_count(&p.server) - before,
            checked as u64 + 1,
            "[{tag}]"
        );
    }
}
