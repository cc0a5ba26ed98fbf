//! Crossings of the plugin boundary per login, read from `/metrics` around one login against
//! the real host and the real plugin (on SQLite: the count doesn't depend on the database).
//! The numbers are pinned, so that a login can't silently grow more crossings again; change
//! them here (and in BENCHMARKS.md) only on purpose.

use prp_tests::{seed, Backend, Scene, Server, TestDb, CAROL_ADS, CAROL_CENTRAL, TEST_TOKEN};
use serde_json::json;
use std::collections::BTreeMap;

/// Host→plugin calls by method, plugin→host callbacks by name, as `/metrics` counts them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Crossings {
    calls: BTreeMap<String, u64>,
    callbacks: BTreeMap<String, u64>,
}

impl Crossings {
    fn read(server: &Server) -> Self {
        let (status, text) = server.admin_get("/metrics");
        assert_eq!(status, 200, "{text}");
        let samples = |metric: &str, label: &str| -> BTreeMap<String, u64> {
            let prefix = format!("{metric}{{{label}=\"");
            text.lines()
                .filter_map(|l| {
                    let (name, value) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
                    Some((name.to_owned(), value.trim().parse().ok()?))
                })
                .collect()
        };
        Self {
            calls: samples("prp_plugin_calls_total", "method"),
            callbacks: samples("prp_host_callbacks_total", "callback"),
        }
    }

    /// What happened between `before` and `self`, without the zeros.
    fn since(&self, before: &Self) -> Self {
        let delta = |now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>| {
            now.iter()
                .map(|(k, n)| (k.clone(), n - then.get(k).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        Self {
            calls: delta(&self.calls, &before.calls),
            callbacks: delta(&self.callbacks, &before.callbacks),
        }
    }

    fn total(&self) -> (u64, u64) {
        (self.calls.values().sum(), self.callbacks.values().sum())
    }
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// The crossings of one password login (after a first one, which also checks the token hash).
fn one_login(server: &Server, name: &str, password: &str) -> Crossings {
    let login = || {
        let (status, body) = server.post(
            "/api/login/password",
            &json!({"login_name": name, "password": password}),
        );
        assert_eq!(status, 200, "{body}");
    };
    login();
    let before = Crossings::read(server);
    login();
    Crossings::read(server).since(&before)
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_password_login_makes_a_pinned_number_of_plugin_crossings() {
    let db = TestDb::new(&Backend::Sqlite).await;
    let store = db.store().await;
    seed(&store).await;
    let scene = Scene::new();
    let config = scene.portal_config(&db.url, Some(TEST_TOKEN), json!({}));
    let server = Server::start(&config).expect("server");

    // Before any login, the names are listed with zeros.
    let zero = Crossings::read(&server);
    assert_eq!(zero.calls.get("login"), Some(&0), "{zero:?}");
    assert_eq!(zero.callbacks.get("parameter"), Some(&0), "{zero:?}");

    // The central account: both resolvers, the decision. The central-account resolver is not
    // asked whether it checks passwords itself: it said at load that it doesn't
    // (`Resolver::password_roles`). Callbacks: the central-account lookup; the four
    // SearchTable settings and the search; the stored token hash; the person (served from
    // what the lookup read); the password.
    let central = one_login(&server, "carol", CAROL_CENTRAL);
    assert_eq!(
        central,
        Crossings {
            calls: counts(&[("login", 1), ("resolve", 2)]),
            callbacks: counts(&[
                ("parameter", 5),
                ("persons_by_central_account", 1),
                ("person", 1),
                ("search_accounts", 1),
                ("verify_password", 1),
            ]),
        },
        "crossings of one password login (central account)"
    );
    assert_eq!(central.total(), (3, 9));

    // A SearchTable account: the resolver also checks the account's person.
    let ads = one_login(&server, "cexample", CAROL_ADS);
    assert_eq!(
        ads,
        Crossings {
            calls: counts(&[("login", 1), ("resolve", 2)]),
            callbacks: counts(&[
                ("parameter", 5),
                ("persons_by_central_account", 1),
                ("person", 2),
                ("search_accounts", 1),
                ("verify_password", 1),
            ]),
        },
        "crossings of one password login (SearchTable account)"
    );

    // A question challenge reads each setting once (it read the question counts twice).
    let before = Crossings::read(&server);
    let (status, body) = server.post(
        "/api/login/questions/challenge",
        &json!({"login_name": "quinn"}),
    );
    assert_eq!(status, 200, "{body}");
    let challenge = Crossings::read(&server).since(&before);
    assert_eq!(
        challenge,
        Crossings {
            calls: counts(&[("challenge", 1), ("resolve", 2)]),
            callbacks: counts(&[
                ("api_key", 1),
                ("keyed_digest", 3),
                ("parameter", 7),
                ("person", 1),
                ("persons_by_central_account", 1),
                ("questions", 1),
                ("search_accounts", 1),
            ]),
        },
        "crossings of one question challenge"
    );

    // A question login asks the authenticator's policy once (how many questions it asks: what
    // every question login costs), in the login's scope, before it decides.
    let asked: prp_host::api::ChallengeResponse =
        serde_json::from_str(&body).expect("challenge body");
    let answers = asked
        .questions
        .iter()
        .map(|q| prp_host::api::Answer {
            question_id: q.id.clone(),
            answer: "not the answer".into(),
        })
        .collect();
    let before = Crossings::read(&server);
    let (status, body) = server.post(
        "/api/login/questions",
        &serde_json::to_value(prp_host::api::QuestionsLogin {
            login_name: "quinn".into(),
            answers,
            pow: None,
        })
        .expect("json"),
    );
    assert_eq!(status, 401, "{body}");
    let questions = Crossings::read(&server).since(&before);
    assert_eq!(
        questions.calls,
        counts(&[("login", 1), ("policy", 1), ("resolve", 2)]),
        "calls of one question login: {questions:?}"
    );
    // Callbacks: the policy's three parameters (QueryAnswerDefinitions, QueryAnswerRequests,
    // PasscodeSplit), then the login's seven and the rest of what the decision needs.
    assert_eq!(
        questions.callbacks,
        counts(&[
            ("api_key", 1),
            ("keyed_digest", 3),
            ("parameter", 10),
            ("person", 1),
            ("persons_by_central_account", 1),
            ("questions", 1),
            ("search_accounts", 1),
            ("verify_answers", 1),
        ]),
        "callbacks of one question login"
    );
}
