//! Logging in over HTTP against the real host and the real plugin, on SQLite and (when
//! `PRP_TEST_POSTGRES_URL` is set) PostgreSQL: each way in, each refusal, the same answer for
//! every failure, lockouts, passcode races, questions, and misconfiguration.

use prp_host::store::{ApiKeyScope, LockScope, Store};
use prp_tests::{
    hasher, host_command, seed, stdout, Portal, PortalOptions, Scene, Server, TestDb, CAROL_ADS,
    CAROL_CENTRAL, FLAG_PW, ROOT, TEST_TOKEN,
};
use serde_json::{json, Value};

fn token_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).expect("json");
    v["token"].as_str().unwrap_or_default().to_owned()
}

fn quinn_answer(question: &str) -> &'static str {
    match question {
        "Colour of the sky?" => " BLUE ",
        "Best number?" => "seven",
        _ => "Porto",
    }
}

prp_tests::on_each_backend! {
    async fn each_way_in_works(b: Backend) {
        let p = Portal::start(&b).await;
        let tag = b.name();
        // User name and password: central account (any case of A-Z), and the ADS account by
        // either search column.
        let (s, body) = p.password("CAROL", CAROL_CENTRAL);
        assert_eq!(s, 200, "[{tag}] {body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["session_kind"], "full");
        let token = token_of(&body);
        let (s, session) = prp_tests::http(p.server.addr, "GET", "/api/session", None);
        assert_eq!(s, 401, "[{tag}] no credentials, no session: {session}");
        let auth = format!("Bearer {token}");
        let (s, _, session) = prp_tests::request(
            p.server.addr,
            "GET",
            "/api/session",
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(s, 200, "[{tag}] {session}");
        assert!(
            session.contains("\"person_uid\":\"P-CAROL\""),
            "[{tag}] {session}"
        );
        let cookie = format!("prp_session={token}");
        let (s, _, _) = prp_tests::request(
            p.server.addr,
            "GET",
            "/api/session",
            &[("Cookie", &cookie)],
            None,
        );
        assert_eq!(s, 200, "[{tag}] the cookie opens the same session");
        assert_eq!(
            p.password("cexample", CAROL_ADS).0,
            200,
            "[{tag}] SamAccountName"
        );
        assert_eq!(p.password("Carol Example", CAROL_ADS).0, 200, "[{tag}] CN");
        assert_eq!(
            p.password("carol", CAROL_ADS).0,
            401,
            "[{tag}] only a matched account's own password counts"
        );

        // Passcode, issued by the help desk CLI, typed in lower case.
        let out = p.cli(&["passcode", "new", "pat"]);
        let text = stdout(&out);
        assert!(out.status.success(), "[{tag}] {text}");
        let code = text
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 19 && l.matches('-').count() == 3)
            .expect("the passcode is printed")
            .to_owned();
        let (s, body) = p.passcode("pat", &code.to_lowercase());
        assert_eq!(s, 200, "[{tag}] {body}");
        assert!(
            body.contains("\"session_kind\":\"reset\""),
            "[{tag}] {body}"
        );
        assert_eq!(
            p.passcode("pat", &code).0,
            401,
            "[{tag}] a passcode works once"
        );

        // Questions: the challenge, answered with the normalisation rule.
        let qs = p.challenge("quinn");
        assert_eq!(qs.len(), 2, "[{tag}] QueryAnswerRequests");
        let answers: Vec<(String, &str)> = qs
            .iter()
            .map(|(id, q)| (id.clone(), quinn_answer(q)))
            .collect();
        let (s, body) = p.answer("quinn", &answers);
        assert_eq!(s, 200, "[{tag}] {body}");
        assert!(
            body.contains("\"session_kind\":\"reset\""),
            "[{tag}] {body}"
        );
    }
}

prp_tests::on_each_backend! {
    async fn refusals_ambiguity_flags_and_inactive_persons(b: Backend) {
        let p = Portal::start(&b).await;
        let tag = b.name();
        // "shared" is P-SAM's central account and P-DAN's SamAccountName: never pick one.
        assert_eq!(p.password("shared", "anything").0, 401, "[{tag}]");
        assert!(
            p.last_reason().await.contains("ambiguous"),
            "[{tag}] {}",
            p.last_reason().await
        );
        let explain = stdout(&p.cli(&["explain-login", "shared"]));
        assert!(
            explain.contains("ambiguous: the name matches accounts of 2 different persons"),
            "[{tag}] {explain}"
        );

        for (name, flag) in [
            ("locked.acct", "DisabledBy: Locked"),
            ("disabled.acct", "DisabledBy: Disabled"),
            ("notenabled.acct", "EnabledBy: Enabled"),
        ] {
            assert_eq!(p.password(name, FLAG_PW).0, 401, "[{tag}] {name}");
            assert!(
                p.last_reason().await.contains(flag),
                "[{tag}] {name}: {}",
                p.last_reason().await
            );
            let explain = stdout(&p.cli(&["explain-login", name]));
            assert!(
                explain.contains(&format!("REFUSED: {flag}")),
                "[{tag}] {explain}"
            );
            assert!(
                explain.contains("every account the name matches is refused")
                    && !explain.contains("can complete it"),
                "[{tag}] the flows agree the name can't log in: {explain}"
            );
        }
        assert_eq!(
            p.password("ok.acct", FLAG_PW).0,
            200,
            "[{tag}] the same password on a clean account"
        );
        assert_eq!(
            p.password("ingrid", "ingrid-pw").0,
            401,
            "[{tag}] inactive person"
        );
        assert!(p.last_reason().await.contains("inactive"), "[{tag}]");
    }
}

prp_tests::on_each_backend! {
    async fn every_failure_gets_the_same_answer(b: Backend) {
        let p = Portal::start(&b).await;
        let tag = b.name();
        // Lock P-OKKO's password method (MaxFailures 3).
        for _ in 0..3 {
            p.password("ok.acct", "wrong");
        }
        let unknown = p.password("no-such-person", FLAG_PW);
        let disabled = p.password("disabled.acct", FLAG_PW);
        let locked = p.password("ok.acct", FLAG_PW);
        let wrong = p.password("carol", "wrong");
        let ambiguous = p.password("shared", "x");
        assert_eq!(
            p.last_reason().await,
            "ambiguous: the name matches accounts of 2 different persons"
        );
        p.store
            .set_api_key(&ApiKeyScope::Global, "EnablePasscodeLogin", "false")
            .await
            .expect("key");
        let method_off = p.passcode("pat", "7KQ2-M9XD-4HBW-R1TZ");
        assert!(
            p.last_reason().await.contains("passcode login is off"),
            "[{tag}]"
        );
        // A name with failures behind it asks a proof of work, real or not: the locked
        // person's answer is that of an unknown name with as many failures.
        for _ in 0..3 {
            p.password("no-such-person-2", "wrong");
        }
        let unknown_failed = p.password("no-such-person-2", FLAG_PW);
        let shape = |r: &(u16, String)| {
            let mut v: Value = serde_json::from_str(&r.1).expect("json");
            if let Some(pow) = v.get_mut("pow") {
                pow["challenge"] = Value::Null;
                pow["expires_at"] = Value::Null;
            }
            (r.0, v)
        };
        assert_eq!(shape(&locked), shape(&unknown_failed), "[{tag}] locked");
        for (what, r) in [
            ("disabled", &disabled),
            ("wrong", &wrong),
            ("ambiguous", &ambiguous),
            ("method off", &method_off),
        ] {
            assert_eq!(r, &unknown, "[{tag}] {what} differs from unknown");
        }
        assert_eq!(unknown.0, 401);
        let reasons: Vec<String> = p
            .store
            .audit_tail(8)
            .await
            .expect("audit")
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        assert!(
            reasons.iter().any(|r| r.starts_with("password: locked")),
            "[{tag}] {reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r == "unknown login name"),
            "[{tag}] {reasons:?}"
        );
    }
}

prp_tests::on_each_backend! {
    async fn lockout_counts_failures_across_the_login_names_of_one_person(b: Backend) {
        let p = Portal::start(&b).await;
        let tag = b.name();
        assert_eq!(p.password("carol", "wrong-1").0, 401);
        assert_eq!(p.password("cexample", "wrong-2").0, 401);
        assert_eq!(p.password("Carol Example", "wrong-3").0, 401);
        // Three failures through three names of one person: the person is locked.
        assert_eq!(p.password("carol", CAROL_CENTRAL).0, 401, "[{tag}] locked");
        assert_eq!(p.last_reason().await, "password: locked", "[{tag}]");
        assert_eq!(
            p.password("cexample", CAROL_ADS).0,
            401,
            "[{tag}] locked under every name"
        );
        let explain = stdout(&p.cli(&["explain-login", "carol"]));
        assert!(
            explain.contains("person P-CAROL is locked for password"),
            "[{tag}] {explain}"
        );
        // The lock is the person's, not the method's everywhere: other people still log in.
        assert_eq!(p.password("ok.acct", FLAG_PW).0, 200, "[{tag}]");
    }
}

prp_tests::on_each_backend! {
    async fn a_right_password_settles_the_persons_counters_with_its_grant(b: Backend) {
        let p = Portal::start(&b).await;
        let tag = b.name();
        let day = 24 * 3600;
        let failures = |scope: LockScope| {
            let store = p.store.clone();
            async move { store.failures("P-CAROL", scope, day).await.expect("failures") }
        };
        assert_eq!(p.password("carol", "wrong-1").0, 401);
        assert_eq!(p.password("cexample", "wrong-2").0, 401);
        assert_eq!(failures(LockScope::Password).await, 2, "[{tag}]");
        assert_eq!(p.password("carol", CAROL_CENTRAL).0, 200, "[{tag}]");
        // Settled with the grant: the method starts afresh, `all` gets the right try back.
        assert_eq!(failures(LockScope::Password).await, 0, "[{tag}] settled");
        assert_eq!(failures(LockScope::All).await, 2, "[{tag}] the right try taken back");
        // So two more failures don't lock her (three in a window would).
        assert_eq!(p.password("carol", "wrong-3").0, 401);
        assert_eq!(p.password("Carol Example", "wrong-4").0, 401);
        assert_eq!(p.password("carol", CAROL_CENTRAL).0, 200, "[{tag}] not locked");
    }
}

prp_tests::on_each_backend! {
    async fn a_passcode_raced_by_20_logins_is_used_exactly_once(b: Backend) {
        let p = Portal::start(&b).await;
        let tag = b.name();
        let code = prp_host::security::new_passcode();
        let normalized = prp_host::security::normalize_passcode(&code).expect("passcode");
        let hash = hasher().hash_async(&normalized).await.expect("hash");
        p.store
            .issue_passcode("P-PAT", &hash, 3600, "test")
            .await
            .expect("issue");
        let addr = p.server.addr;
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let code = code.clone();
                std::thread::spawn(move || {
                    prp_tests::http(
                        addr,
                        "POST",
                        "/api/login/passcode",
                        Some(&json!({"login_name": "pat", "passcode": code}).to_string()),
                    )
                    .0
                })
            })
            .collect();
        let statuses: Vec<u16> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "[{tag}] {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 401),
            "[{tag}] {statuses:?}"
        );
        let audit = p.store.audit_tail(20).await.expect("audit");
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.event == "login" && e.outcome == "success")
                .count(),
            1,
            "[{tag}]"
        );
        assert_eq!(
            audit.iter().filter(|e| e.event == "login").count(),
            20,
            "[{tag}] every attempt is audited"
        );
    }
}

prp_tests::on_each_backend! {
    async fn a_new_passcode_replaces_the_old_one_and_others_guesses_dont_burn_it(b: Backend) {
        let p = Portal::start(&b).await;
        let tag = b.name();
        let issue = |code: String| {
            let store = p.store.clone();
            async move {
                let hash = hasher()
                    .hash_async(&prp_host::security::normalize_passcode(&code).expect("code"))
                    .await
                    .expect("hash");
                store
                    .issue_passcode("P-PAT", &hash, 3600, "test")
                    .await
                    .expect("issue");
            }
        };
        let first = prp_host::security::new_passcode();
        issue(first.clone()).await;
        let second = prp_host::security::new_passcode();
        issue(second.clone()).await;
        assert_eq!(p.passcode("pat", &first).0, 401, "[{tag}] replaced");
        for _ in 0..2 {
            assert_eq!(p.passcode("pat", "0000-0000-0000-0000").0, 401);
        }
        // Wrong guesses from a client that isn't one of the person's devices don't wear the
        // passcode out (they are throttled per source and name instead: tests/abuse.rs).
        assert_eq!(p.passcode("pat", &second).0, 200, "[{tag}] still usable");
    }
}

/// `id` is a version 4, RFC 4122 UUID in its lowercase hyphenated form.
fn is_uuid_v4(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => *c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

prp_tests::on_each_backend! {
    async fn questions_decoys_locks_and_invalidation(b: Backend) {
        let p = Portal::start(&b).await;
        let tag = b.name();
        let first = p.challenge("quinn");
        assert_eq!(first, p.challenge("QUINN"), "[{tag}] stable across calls");
        // Unknown, disabled and inactive names get decoys: stable, same shape.
        for name in ["nobody-here", "disabled.acct", "ingrid", "carol"] {
            let d = p.challenge(name);
            assert_eq!(d.len(), 2, "[{tag}] {name}");
            assert_eq!(
                d,
                p.challenge(name),
                "[{tag}] {name}: the same decoys every time"
            );
            // Shaped like a real question's id (a version 4 UUID) to the last bit: the new-user
            // trial told real names from made-up ones by the version digit alone.
            assert!(d.iter().all(|(id, _)| is_uuid_v4(id)), "[{tag}] {d:?}");
        }
        assert!(first.iter().all(|(id, _)| is_uuid_v4(id)), "[{tag}] {first:?}");
        assert_ne!(
            p.challenge("nobody-here"),
            p.challenge("nobody-else"),
            "[{tag}] decoys depend on the name"
        );
        // Answers to decoys never log in.
        let d = p.challenge("nobody-here");
        let answers: Vec<(String, &str)> = d.iter().map(|(id, _)| (id.clone(), "x")).collect();
        assert_eq!(p.answer("nobody-here", &answers).0, 401);

        // Answering other questions than those asked fails.
        let all_three = p.store.questions("P-QUINN").await.expect("questions");
        let not_asked = all_three
            .iter()
            .find(|q| !first.iter().any(|(id, _)| *id == q.id))
            .expect("a third question");
        let answers = vec![
            (first[0].0.clone(), quinn_answer(&first[0].1)),
            (not_asked.id.clone(), quinn_answer(&not_asked.question)),
        ];
        assert_eq!(p.answer("quinn", &answers).0, 401, "[{tag}]");

        // Three wrong answers to one question lock it, and a different set is asked.
        let wrong: Vec<(String, &str)> = vec![
            (first[0].0.clone(), "wrong"),
            (first[1].0.clone(), quinn_answer(&first[1].1)),
        ];
        for _ in 0..3 {
            assert_eq!(p.answer("quinn", &wrong).0, 401);
        }
        let locked: Vec<_> = p
            .store
            .questions("P-QUINN")
            .await
            .expect("q")
            .into_iter()
            .filter(|q| q.locked)
            .collect();
        assert_eq!(locked.len(), 1, "[{tag}]");
        assert_eq!(locked[0].id, first[0].0, "[{tag}]");
        let second = p.challenge("quinn");
        assert!(
            !second.iter().any(|(id, _)| *id == first[0].0),
            "[{tag}] the locked question is not asked"
        );
        let right: Vec<(String, &str)> = second
            .iter()
            .map(|(id, q)| (id.clone(), quinn_answer(q)))
            .collect();
        assert_eq!(p.answer("quinn", &right).0, 200, "[{tag}]");

        // InvalidateUsedQuery: correctly answered questions are deleted after the login, and
        // with too few left the method is unavailable (decoys from then on).
        p.store
            .set_parameter(&format!(r"{ROOT}\InvalidateUsedQuery"), Some("1"))
            .await
            .expect("param");
        let third = p.challenge("quinn");
        let right: Vec<(String, &str)> = third
            .iter()
            .map(|(id, q)| (id.clone(), quinn_answer(q)))
            .collect();
        assert_eq!(p.answer("quinn", &right).0, 200, "[{tag}]");
        let left = p.store.questions("P-QUINN").await.expect("q");
        assert_eq!(left.len(), 1, "[{tag}] the two used questions are gone");
        let after = p.challenge("quinn");
        assert_eq!(after.len(), 2, "[{tag}] decoys");
        assert!(
            after.iter().all(|(id, _)| *id != left[0].id),
            "[{tag}] {after:?}"
        );
    }
}

prp_tests::on_each_backend! {
    async fn local_keys_override_global_ones_and_parameters_follow_their_parents(b: Backend) {
        let p = Portal::start(&b).await;
        let tag = b.name();
        let out = p.cli(&["keys", "set", "EnablePasscodeLogin", "false", "--global"]);
        assert!(out.status.success(), "[{tag}] {}", prp_tests::stderr(&out));
        let out = p.cli(&["keys", "set", "EnablePasscodeLogin", "true", "--local"]);
        assert!(out.status.success());
        let got = stdout(&p.cli(&["keys", "get", "EnablePasscodeLogin"]));
        assert_eq!(got.trim(), "EnablePasscodeLogin = true  (local)", "[{tag}]");
        // Both changes are audited, an unset too (the new-user trial found it wasn't).
        let out = p.cli(&["keys", "unset", "EnablePasscodeLogin", "--local"]);
        assert!(out.status.success(), "[{tag}] {}", prp_tests::stderr(&out));
        let audit = stdout(&p.cli(&["audit", "--limit", "5"]));
        assert!(
            audit.contains("apikey.set") && audit.contains("apikey.unset"),
            "[{tag}] {audit}"
        );
        assert!(audit.contains("EnablePasscodeLogin (local to server"), "[{tag}] {audit}");
        let out = p.cli(&["keys", "set", "EnablePasscodeLogin", "true", "--local"]);
        assert!(out.status.success());
        let bad = p.cli(&["keys", "set", "EnablePasscodeLogin", "perhaps"]);
        assert_eq!(bad.status.code(), Some(1));
        assert!(
            prp_tests::stderr(&bad).contains("is not a boolean"),
            "[{tag}]"
        );

        // Disabling SearchTable: ADS names stop resolving, the central account keeps working.
        let search_table = format!(r"{ROOT}\SearchTable");
        assert!(p
            .cli(&["params", "disable", &search_table])
            .status
            .success());
        assert_eq!(p.password("cexample", CAROL_ADS).0, 401, "[{tag}]");
        assert_eq!(p.password("carol", CAROL_CENTRAL).0, 200, "[{tag}]");
        assert!(p.cli(&["params", "enable", &search_table]).status.success());
        assert_eq!(
            p.password("cexample", CAROL_ADS).0,
            200,
            "[{tag}] picked up without a restart"
        );

        // Disabling a parent takes everything under it out of force, the ApplicationToken's
        // hash included: the authenticator then refuses every login (fail closed).
        assert!(p
            .cli(&["params", "disable", r"QER\Person"])
            .status
            .success());
        let shown = stdout(&p.cli(&["params", "get", &search_table]));
        assert!(
            shown.contains(r"not in force: QER\Person is disabled"),
            "[{tag}] {shown}"
        );
        assert_eq!(p.password("carol", CAROL_CENTRAL).0, 401, "[{tag}]");
        assert!(
            p.last_reason().await.contains("a disabled parent disables it"),
            "[{tag}] {}",
            p.last_reason().await
        );
        assert!(p
            .cli(&["params", "enable", "QER | Person"])
            .status
            .success());
        assert_eq!(p.password("carol", CAROL_CENTRAL).0, 200, "[{tag}]");
        assert_eq!(p.password("cexample", CAROL_ADS).0, 200, "[{tag}]");
    }
}

prp_tests::on_each_backend! {
    async fn a_misconfigured_search_table_is_reported_and_refused(b: Backend) {
        let tag = b.name();
        for (param, value, expected) in [
            (
                "SearchTable",
                "NoSuchTable",
                "table \"NoSuchTable\" does not exist",
            ),
            (
                "SearchColumn",
                "CN|NoSuchColumn",
                "table \"ADSAccount\" has no column \"NoSuchColumn\"",
            ),
            ("DisabledBy", "CN", "column \"ADSAccount.CN\" is"),
            (
                "SearchTable",
                "Orphans",
                "column \"UID_Person\" is not a foreign key to Person(UID_Person)",
            ),
            (
                "SearchColumn",
                "CN; DROP TABLE Person",
                "is not a valid column name",
            ),
        ] {
            let db = TestDb::new(&b).await;
            let store = db.store().await;
            seed(&store).await;
            sqlx::query("CREATE TABLE \"Orphans\" (\"UID_Orphans\" VARCHAR(38) PRIMARY KEY, \"UID_Person\" VARCHAR(38), \"CN\" VARCHAR(64))")
                .execute(store.pool())
                .await
                .expect("orphans");
            store
                .set_parameter(&format!(r"{ROOT}\{param}"), Some(value))
                .await
                .expect("param");
            let scene = Scene::new();
            let config = scene.portal_config(&db.url, Some(TEST_TOKEN), json!({}));
            let check = host_command(&config, &["check"])
                .output()
                .expect("check runs");
            let text = stdout(&check);
            assert_eq!(
                check.status.code(),
                Some(1),
                "[{tag}] {param}={value}: {text}"
            );
            assert!(text.contains(expected), "[{tag}] {param}={value}: {text}");
            assert!(
                text.contains(&format!(r"{ROOT}\")),
                "[{tag}] names the parameter: {text}"
            );
            let serve = host_command(&config, &["serve"])
                .output()
                .expect("serve runs");
            assert_eq!(serve.status.code(), Some(1), "[{tag}] serve must refuse");
            assert!(
                prp_tests::stderr(&serve).contains("refusing to serve"),
                "[{tag}]"
            );
        }
    }
}

prp_tests::on_each_backend! {
    /// `check` warns of each login-name column without an index the case-folded lookup can use,
    /// with the statement that adds one: the host of its own `Person.CentralAccount`, the
    /// authenticator's self-check of its search table's columns (asked of the host through
    /// `unindexed_login_columns`). Warnings only: the portal still serves.
    async fn check_advises_an_index_for_each_login_column_without_one(b: Backend) {
        let tag = b.name();
        let p = Portal::start(&b).await;
        let warnings = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("warn") && l.contains("has no index for login lookups"))
                .map(str::to_owned)
                .collect()
        };
        let out = p.cli(&["check"]);
        let text = stdout(&out);
        assert!(out.status.success(), "[{tag}] {text}");
        assert_eq!(warnings(&text), Vec::<String>::new(), "[{tag}] {text}");

        // DDL on one connection: another SQLite connection may hold the schema as it was.
        let mut conn = p.store.pool().acquire().await.expect("connection");
        for index in ["ADSAccount_SamAccountName_login", "Person_CentralAccount_login"] {
            sqlx::query(&format!("DROP INDEX \"{index}\""))
                .execute(&mut *conn)
                .await
                .expect("drop");
        }
        let out = p.cli(&["check"]);
        let text = stdout(&out);
        assert!(out.status.success(), "[{tag}] warnings don't fail the check: {text}");
        let found = warnings(&text);
        assert_eq!(found.len(), 2, "[{tag}] {text}");
        let person = found
            .iter()
            .find(|l| l.contains("login index") && l.contains("Person.CentralAccount"))
            .unwrap_or_else(|| panic!("[{tag}] the host's own column: {text}"));
        assert!(
            person.contains(r#"add one: CREATE INDEX "Person_CentralAccount_login" ON "Person""#),
            "[{tag}] {person}"
        );
        let ads = found
            .iter()
            .find(|l| l.contains("ADSAccount.SamAccountName"))
            .unwrap_or_else(|| panic!("[{tag}] the plugin's column: {text}"));
        assert!(
            ads.contains(r#"authenticator "password-reset" (password-reset-authenticator) self-check"#)
                && ads.contains(&format!(r"{ROOT}\SearchColumn"))
                && ads.contains("so each login reads the whole table")
                && ads.contains(r#"add one: CREATE INDEX "ADSAccount_SamAccountName_login" ON "ADSAccount""#),
            "[{tag}] {ads}"
        );
        // The advice, run, clears the warning.
        let ddl = ads.split("add one: ").nth(1).unwrap_or_default().trim_end_matches(';');
        sqlx::query(ddl).execute(&mut *conn).await.expect("advice");
        let text = stdout(&p.cli(&["check"]));
        assert_eq!(warnings(&text).len(), 1, "[{tag}] {text}");
    }
}

prp_tests::on_each_backend! {
    async fn a_missing_or_wrong_application_token_fails_closed(b: Backend) {
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        seed(&store).await;
        let scene = Scene::new();

        // No token in the host's ConnectionStrings.
        let config = scene.portal_config(&db.url, None, json!({}));
        let text = stdout(&host_command(&config, &["check"]).output().expect("check"));
        assert!(
            text.contains(r"ApplicationToken: not set"),
            "[{tag}] {text}"
        );
        let serve = host_command(&config, &["serve"]).output().expect("serve");
        assert_eq!(serve.status.code(), Some(1), "[{tag}]");

        // A token that doesn't match the stored hash.
        let config = scene.portal_config(&db.url, Some("some-other-token"), json!({}));
        let text = stdout(&host_command(&config, &["check"]).output().expect("check"));
        assert!(
            text.contains("ApplicationToken: does not match the token hash"),
            "[{tag}] {text}"
        );
        assert_eq!(
            host_command(&config, &["serve"])
                .output()
                .expect("serve")
                .status
                .code(),
            Some(1)
        );

        // Rotation: `token new` prints a token once; with it in the config, all is well, and
        // the old one stops working.
        let out = host_command(&config, &["token", "new"])
            .output()
            .expect("token new");
        let printed = stdout(&out);
        let token = printed
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 64 && l.chars().all(|c| c.is_ascii_hexdigit()))
            .expect("the new token is printed")
            .to_owned();
        assert!(
            printed.contains(
                "<add name=\"QER\\Person\\PasswordResetAuthenticator\\ApplicationToken\""
            ),
            "[{tag}] {printed}"
        );
        let hash = store
            .parameter_value(prp_host::config::APPLICATION_TOKEN)
            .await
            .expect("param")
            .unwrap_or_default();
        assert!(
            hash.starts_with("$argon2id$") && !hash.contains(&token),
            "[{tag}] only the hash is stored"
        );
        let config = scene.portal_config(&db.url, Some(&token), json!({}));
        let check = host_command(&config, &["check"]).output().expect("check");
        assert!(check.status.success(), "[{tag}] {}", stdout(&check));
        let old = scene.portal_config(&db.url, Some(TEST_TOKEN), json!({}));
        assert_eq!(
            host_command(&old, &["check"])
                .output()
                .expect("check")
                .status
                .code(),
            Some(1),
            "[{tag}] old token"
        );
    }
}

prp_tests::on_each_backend! {
    async fn a_flood_of_logins_gets_a_fast_503_and_every_attempt_is_audited(b: Backend) {
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        seed(&store).await;
        let scene = Scene::new();
        let config = scene.portal_config(
            &db.url,
            Some(TEST_TOKEN),
            json!({"HashWorkers": 1, "MaxPendingLogins": 2}),
        );
        let server = Server::start(&config).unwrap_or_else(|e| panic!("[{tag}] {e}"));
        let addr = server.addr;
        let threads: Vec<_> = (0..16)
            .map(|i| {
                std::thread::spawn(move || {
                    let body = json!({"login_name": "ok.acct", "password": format!("wrong-{i}")});
                    // The status line and headers, as one string.
                    prp_tests::request(addr, "POST", "/api/login/password", &[], Some(&body)).1
                })
            })
            .collect();
        let responses: Vec<String> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let busy: Vec<&String> = responses
            .iter()
            .filter(|r| r.starts_with("HTTP/1.1 503"))
            .collect();
        let denied = responses
            .iter()
            .filter(|r| r.starts_with("HTTP/1.1 401"))
            .count();
        assert!(
            !busy.is_empty(),
            "[{tag}] with 2 logins allowed in progress, some of 16 must be turned away"
        );
        assert!(denied >= 1, "[{tag}] the admitted ones are answered");
        assert_eq!(
            busy.len() + denied,
            16,
            "[{tag}] nothing hangs or fails otherwise"
        );
        assert!(
            busy.iter()
                .all(|r| r.to_ascii_lowercase().contains("retry-after: 1")),
            "[{tag}]"
        );
        let audit = store.audit_tail(100).await.expect("audit");
        assert_eq!(
            audit.iter().filter(|e| e.event == "login").count(),
            16,
            "[{tag}] every attempt is in the audit log"
        );
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.reason.as_deref() == Some("overloaded: too many logins in progress"))
                .count(),
            busy.len(),
            "[{tag}]"
        );
    }
}

fn hashes(server: &Server) -> u64 {
    let text = server.metrics();
    text.lines()
        .find_map(|l| l.strip_prefix("prp_argon2_hashes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("prp_argon2_hashes_total")
}

prp_tests::on_each_backend! {
    /// Timing follows the work done, so every login costs the same number of argon2 hashes,
    /// whatever its outcome: one for a password or passcode, one per answer for questions.
    async fn every_login_costs_the_same_number_of_hashes(b: Backend) {
        let p = Portal::start(&b).await;
        let tag = b.name();
        // P-OKKO's central account name is also his ADS login name: the name matches two of
        // his accounts, and still only one password is checked.
        sqlx::query(
            "UPDATE \"Person\" SET \"CentralAccount\" = 'ok.acct' WHERE \"UID_Person\" = 'P-OKKO'",
        )
        .execute(p.store.pool())
        .await
        .expect("update");
        sqlx::query(
            "INSERT INTO prp_failure (person_uid, scope, window_start, failures, locked_until)
             VALUES ('P-DAN', 'password', 0, 10, 9999999999)",
        )
        .execute(p.store.pool())
        .await
        .expect("lock");
        type Attempt<'a> = Box<dyn Fn() -> (u16, String) + 'a>;
        let cases: Vec<(&str, Attempt)> = vec![
            (
                "right password",
                Box::new(|| p.password("carol", CAROL_CENTRAL)),
            ),
            ("wrong password", Box::new(|| p.password("carol", "wrong"))),
            ("unknown name", Box::new(|| p.password("no-such-name", "x"))),
            (
                "disabled account",
                Box::new(|| p.password("disabled.acct", FLAG_PW)),
            ),
            ("ambiguous name", Box::new(|| p.password("shared", "x"))),
            (
                "inactive person",
                Box::new(|| p.password("ingrid", "ingrid-pw")),
            ),
            (
                "two accounts match",
                Box::new(|| p.password("ok.acct", FLAG_PW)),
            ),
            (
                "no passcode issued",
                Box::new(|| p.passcode("carol", "0000-0000-0000-0000")),
            ),
            (
                "malformed passcode",
                Box::new(|| p.passcode("carol", "not a passcode")),
            ),
            ("empty name", Box::new(|| p.password("", "x"))),
        ];
        for (what, login) in cases {
            let before = hashes(&p.server);
            let (status, _) = login();
            assert_eq!(
                hashes(&p.server) - before,
                1,
                "[{tag}] {what} (status {status})"
            );
        }
        assert_eq!(
            p.password("ok.acct", FLAG_PW).0,
            200,
            "[{tag}] the matched account's password works"
        );
        for (what, name) in [
            ("questions of a real name", "quinn"),
            ("questions of an unknown name", "nobody-here"),
        ] {
            let qs = p.challenge(name);
            let answers: Vec<(String, &str)> =
                qs.iter().map(|(id, _)| (id.clone(), "wrong")).collect();
            let before = hashes(&p.server);
            assert_eq!(p.answer(name, &answers).0, 401);
            assert_eq!(
                hashes(&p.server) - before,
                2,
                "[{tag}] {what}: one hash per answer"
            );
        }
    }
}

/// A hasher whose one verification outlasts a short plugin call timeout: three times the
/// portal's memory and t = 200, within the four times of each the portal verifies (with
/// `Host:Argon2Iterations` 50). t = 200 at the portal's memory alone took about 1.6 s here,
/// and once, in CI, less than the 1.5 s timeout.
fn slow_hasher() -> std::sync::Arc<prp_host::security::Hasher> {
    let memory = 3 * prp_host::security::Hasher::MIN_MEMORY_KIB;
    std::sync::Arc::new(prp_host::security::Hasher::new(1, memory, 200).expect("hasher"))
}

/// Waits until the server has made `n` more hashes than `before` (a login that ran out of
/// time goes on in the background), then a moment for what follows them.
fn wait_for_hashes(server: &Server, before: u64, n: u64) {
    let start = std::time::Instant::now();
    while prp_tests::hash_count(server) < before + n {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the hashes never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
}

prp_tests::on_each_backend! {
    async fn a_login_that_runs_out_of_time_consumes_nothing(b: Backend) {
        let tag = b.name();
        // Stored secrets of `slow_hasher` take seconds to verify; the authenticator gets 1.5 s.
        // (Host:Argon2Iterations 50 lets hashes of up to four times that cost be verified.)
        let p = Portal::start_with(
            &b,
            PortalOptions {
                host: json!({"Argon2Iterations": 50}),
                plugins: json!({"CallTimeoutMs": 1500}),
                ..Default::default()
            },
            |_| async {},
        )
        .await;
        let slow = slow_hasher();

        let code = prp_host::security::new_passcode();
        let normalized = prp_host::security::normalize_passcode(&code).expect("passcode");
        let hash = slow.hash_async(&normalized).await.expect("hash");
        p.store
            .issue_passcode("P-PAT", &hash, 3600, "test")
            .await
            .expect("issue");
        let before = prp_tests::hash_count(&p.server);
        assert_eq!(p.passcode("pat", &code).0, 401, "[{tag}] timed out");
        wait_for_hashes(&p.server, before, 1);
        assert!(
            p.store.passcode("P-PAT").await.expect("read").is_some(),
            "[{tag}] the passcode of a login that was not granted is still there"
        );

        // A right password whose login runs out of time is not counted against the person:
        // the call's thread settles it when the check ends.
        let normalized = prp_host::security::normalize_password(CAROL_CENTRAL);
        let hash = slow.hash_async(&normalized).await.expect("hash");
        p.store
            .set_credential("Person", "P-CAROL", "P-CAROL", &hash)
            .await
            .expect("set");
        let before = prp_tests::hash_count(&p.server);
        assert_eq!(p.password("carol", CAROL_CENTRAL).0, 401, "[{tag}] timed out");
        wait_for_hashes(&p.server, before, 1);
        assert_eq!(
            p.store
                .failures("P-CAROL", LockScope::Password, 24 * 3600)
                .await
                .expect("failures"),
            0,
            "[{tag}] the right password is settled though its login timed out"
        );

        // The same for questions with InvalidateUsedQuery.
        p.store
            .set_parameter(&format!(r"{ROOT}\InvalidateUsedQuery"), Some("1"))
            .await
            .expect("param");
        for q in p.store.questions("P-QUINN").await.expect("q") {
            let answer = prp_host::security::normalize_answer(quinn_answer(&q.question));
            let slow_hash = slow.hash_async(&answer).await.expect("hash");
            sqlx::query("UPDATE prp_question SET answer_hash = $1 WHERE id = $2")
                .bind(slow_hash)
                .bind(&q.id)
                .execute(p.store.pool())
                .await
                .expect("update");
        }
        let asked = p.challenge("quinn");
        let right: Vec<(String, &str)> = asked
            .iter()
            .map(|(id, q)| (id.clone(), quinn_answer(q)))
            .collect();
        let before = prp_tests::hash_count(&p.server);
        assert_eq!(p.answer("quinn", &right).0, 401, "[{tag}] timed out");
        wait_for_hashes(&p.server, before, 2);
        assert_eq!(
            p.store.questions("P-QUINN").await.expect("q").len(),
            3,
            "[{tag}] no question is used up by a login that was not granted"
        );
    }
}

prp_tests::on_each_backend! {
    async fn a_questions_attempt_costs_the_same_whatever_is_sent(b: Backend) {
        let tag = b.name();
        let p = Portal::start(&b).await;
        let asked = p.challenge("quinn");
        assert_eq!(asked.len(), 2, "[{tag}] QueryAnswerRequests");
        // Two questions are asked, so every attempt costs two hashes: more answers (up to and
        // past the limit of 10), or fewer, change nothing.
        for count in [1usize, 3, 10, 11, 10_000] {
            let answers: Vec<(String, &str)> = (0..count)
                .map(|i| {
                    let id = asked
                        .get(i)
                        .map(|(id, _)| id.clone())
                        .unwrap_or_else(|| format!("made-up-{i}"));
                    (id, "wrong")
                })
                .collect();
            let before = hashes(&p.server);
            let (status, body) = p.answer("quinn", &answers);
            let spent = hashes(&p.server) - before;
            match status {
                401 => assert_eq!(spent, 2, "[{tag}] {count} answers"),
                // More answers than a login takes, or a body over the limit, are refused
                // before anything is hashed (and before the name is looked at).
                400 | 413 if count > 10 => assert_eq!(spent, 0, "[{tag}] {count} answers"),
                other => panic!("[{tag}] {count} answers: {other} {body}"),
            }
        }
    }
}

prp_tests::on_each_backend! {
    async fn foreign_hashes_fail_closed_and_weak_ones_are_rehashed(b: Backend) {
        let tag = b.name();
        // The portal hashes with t = 3; the seeded hashes have t = 2 (weaker, still accepted).
        let p = Portal::start_with(
            &b,
            PortalOptions {
                host: json!({"Argon2Iterations": 3}),
                ..Default::default()
            },
            |_| async {},
        )
        .await;
        let central = |store: &Store| {
            let store = store.clone();
            async move {
                sqlx::query_scalar::<_, String>(
                    "SELECT hash FROM prp_credential WHERE source = 'ADSAccount' AND account_uid = 'A-OK'",
                )
                .fetch_one(store.pool())
                .await
                .expect("hash")
            }
        };
        assert!(central(&p.store).await.contains("t=2,"), "[{tag}]");
        let before = hashes(&p.server);
        assert_eq!(p.password("ok.acct", FLAG_PW).0, 200, "[{tag}]");
        assert_eq!(
            hashes(&p.server) - before,
            2,
            "[{tag}] the check and the rehash"
        );
        let rehashed = central(&p.store).await;
        assert!(
            rehashed.contains("$argon2id$v=19$m=19456,t=3,p=1$"),
            "[{tag}] {rehashed}"
        );
        assert_eq!(p.password("ok.acct", FLAG_PW).0, 200, "[{tag}] still works");

        // A hash costlier than four times the portal's cost is refused unverified, even with
        // the right password: one hash spent, counted as a wrong password.
        let costly =
            prp_host::security::Hasher::new(1, prp_host::security::Hasher::MIN_MEMORY_KIB, 13)
                .expect("hasher");
        let planted = costly.hash(CAROL_CENTRAL).expect("hash");
        sqlx::query("UPDATE prp_credential SET hash = $1 WHERE source = 'Person' AND account_uid = 'P-CAROL'")
            .bind(&planted)
            .execute(p.store.pool())
            .await
            .expect("plant");
        let before = hashes(&p.server);
        assert_eq!(p.password("carol", CAROL_CENTRAL).0, 401, "[{tag}]");
        assert_eq!(hashes(&p.server) - before, 1, "[{tag}]");
        assert_eq!(p.last_reason().await, "password: wrong", "[{tag}]");
    }
}

prp_tests::on_each_backend! {
    async fn passwords_are_compared_in_nfkc_and_old_unnormalised_ones_still_work(b: Backend) {
        let tag = b.name();
        let p = Portal::start(&b).await;
        // Set with a decomposed "é" (e + U+0301); logged in with the composed one.
        let decomposed = "Cafe\u{301}-orchard-velvet-42";
        let composed = "Caf\u{e9}-orchard-velvet-42";
        let carol = prp_tests::Client::password(&p.server, "carol", CAROL_CENTRAL);
        let (s, v) = carol.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": ["Person:P-CAROL"], "password": decomposed})),
        );
        assert_eq!(s, 200, "[{tag}] {v}");
        assert_eq!(p.password("carol", composed).0, 200, "[{tag}] composed");
        assert_eq!(p.password("carol", decomposed).0, 200, "[{tag}] decomposed");
        assert_eq!(
            p.password("carol", "Ｃａｆé-orchard-velvet-42").0,
            200,
            "[{tag}] full-width letters are the same password"
        );

        // A hash stored before passwords were normalised is of the password as typed: it still
        // works as typed, costs one hash like any check, and is rehashed to the NFKC form.
        let legacy = hasher().hash_async(decomposed).await.expect("hash");
        sqlx::query(
            "UPDATE prp_credential SET hash = $1, normalized = 0 WHERE source = 'ADSAccount' AND account_uid = 'A-OK'",
        )
        .bind(&legacy)
        .execute(p.store.pool())
        .await
        .expect("legacy");
        let before = hashes(&p.server);
        assert_eq!(p.password("ok.acct", "wrong").0, 401, "[{tag}]");
        assert_eq!(
            hashes(&p.server) - before,
            1,
            "[{tag}] a failure costs one hash"
        );
        assert_eq!(p.password("ok.acct", decomposed).0, 200, "[{tag}] as typed");
        let normalized: i64 = sqlx::query_scalar(
            "SELECT normalized FROM prp_credential WHERE source = 'ADSAccount' AND account_uid = 'A-OK'",
        )
        .fetch_one(p.store.pool())
        .await
        .expect("flag");
        assert_eq!(normalized, 1, "[{tag}] rehashed");
        assert_eq!(
            p.password("ok.acct", composed).0,
            200,
            "[{tag}] and now in any form"
        );
        let before = hashes(&p.server);
        assert_eq!(p.password("ok.acct", "wrong").0, 401, "[{tag}]");
        assert_eq!(hashes(&p.server) - before, 1, "[{tag}]");
    }
}

prp_tests::on_each_backend! {
    async fn a_granted_login_whose_audit_record_cannot_be_written_gets_no_token(b: Backend) {
        let tag = b.name();
        let p = Portal::start(&b).await;
        assert_eq!(p.password("carol", "wrong").0, 401, "[{tag}]");
        // The audit record of a granted login can't be written.
        prp_tests::fail_inserts(
            &p.store,
            "prp_audit",
            Some("NEW.event = 'login' AND NEW.outcome = 'success'"),
            "the audit log is full",
        )
        .await;
        let (status, body) = p.password("carol", CAROL_CENTRAL);
        assert_eq!(status, 503, "[{tag}] {body}");
        assert!(!body.contains("token"), "[{tag}] no token without its record: {body}");
        // The answer is recorded as `unavailable`, once the writer gets to it.
        let start = std::time::Instant::now();
        let kept = loop {
            let audit = p.store.audit_tail(20).await.expect("audit");
            if let Some(e) = audit
                .into_iter()
                .find(|e| e.event == "login" && e.outcome == "unavailable")
            {
                break e;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "[{tag}] the refused grant is never recorded"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert_eq!(kept.person_uid.as_deref(), Some("P-CAROL"), "[{tag}] {kept:?}");
        assert!(
            kept.reason.as_deref().is_some_and(|r| r.contains("granted")),
            "[{tag}] {kept:?}"
        );
        let audit = p.store.audit_tail(50).await.expect("audit");
        assert!(
            !audit.iter().any(|e| e.outcome == "success"),
            "[{tag}] no success is recorded: {audit:?}"
        );
        // The right password's settlement goes with the grant: not written, the attempt
        // stays counted against her (fail closed), with the wrong one before it.
        let counted = |scope: LockScope| {
            let store = p.store.clone();
            async move { store.failures("P-CAROL", scope, 24 * 3600).await.expect("failures") }
        };
        assert_eq!(counted(LockScope::Password).await, 2, "[{tag}] not settled");
        prp_tests::allow_inserts(&p.store, "prp_audit").await;
        assert_eq!(p.password("carol", CAROL_CENTRAL).0, 200, "[{tag}] and once it can be");
        assert_eq!(counted(LockScope::Password).await, 0, "[{tag}] settled with its grant");
        assert_eq!(counted(LockScope::All).await, 2, "[{tag}] the right try taken back");
    }
}
