//! The portal's rules at the level of the store and the host services, with a clock the test
//! controls: expiry at the boundary, lockout windows, the append-only audit log, parameter
//! hierarchy. On SQLite and (when `PRP_TEST_POSTGRES_URL` is set) PostgreSQL.

use prp_host::clock::ManualClock;
use prp_host::plugins::{host_services, HostContext};
use prp_host::store::{
    Afresh, ApiKeyScope, AuditEvent, Counter, LockScope, LockoutPolicy, SessionKind, Settlement,
    Store,
};
use prp_plugin_api::abi_stable::std_types::{RString, RVec};
use prp_plugin_api::{AccountQuery, ErrorKind, HostServicesBox, SecretCheck};
use prp_tests::{hasher, TestDb};
use std::sync::{Arc, OnceLock};

const T0: i64 = 1_800_000_000;

fn services(store: &Store) -> HostServicesBox {
    let ctx = Arc::new(HostContext {
        connection_strings: Vec::new(),
        store: Some(store.clone()),
        hasher: hasher(),
        server_name: "test-server".into(),
        runtime: tokio::runtime::Handle::current(),
        resolvers: OnceLock::new(),
        plugin_settings: Default::default(),
        config_dir: std::path::PathBuf::from("."),
    });
    host_services("test", ctx)
}

/// Host services block on the database: call them on a blocking thread, as plugins are called.
async fn passcode(services: &HostServicesBox, person: &str, code: &str) -> SecretCheck {
    let s = services.clone();
    let (p, c) = (person.to_owned(), code.to_owned());
    tokio::task::spawn_blocking(move || {
        s.verify_passcode(p.as_str().into(), c.as_str().into())
            .into_result()
    })
    .await
    .expect("join")
    .expect("service")
}

async fn issue(store: &Store, person: &str, valid_for: i64) -> String {
    let code = prp_host::security::new_passcode();
    let hash = hasher()
        .hash_async(&prp_host::security::normalize_passcode(&code).expect("code"))
        .await
        .expect("hash");
    store
        .issue_passcode(person, &hash, valid_for, "test")
        .await
        .expect("issue");
    code
}

prp_tests::on_each_backend! {
    async fn a_passcode_expires_exactly_at_its_hour(b: Backend) {
        let tag = b.name();
        let (_db, clock, store) = at_t0(&b).await;
        let s = services(&store);

        let code = issue(&store, "P-1", 3600).await;
        clock.set(T0 + 3599);
        assert_eq!(
            passcode(&s, "P-1", &code).await,
            SecretCheck::OK,
            "[{tag}] valid in its last second"
        );
        assert_eq!(
            store.passcode("P-1").await.expect("read"),
            None,
            "[{tag}] outside a login, a right passcode is consumed at once (fail closed)"
        );

        let code = issue(&store, "P-1", 3600).await;
        clock.set(T0 + 3599 + 3600);
        assert_eq!(
            passcode(&s, "P-1", &code).await,
            SecretCheck::EXPIRED,
            "[{tag}] expired at its hour"
        );
        assert_eq!(
            store.passcode("P-1").await.expect("read"),
            None,
            "[{tag}] an expired passcode is removed"
        );
    }
}

prp_tests::on_each_backend! {
    async fn concurrent_consumption_lets_exactly_one_through(b: Backend) {
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        let s = services(&store);
        let code = issue(&store, "P-1", 3600).await;
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let s = s.clone();
                let code = code.clone();
                tokio::task::spawn_blocking(move || {
                    prp_host::begin_deferring();
                    let r = s
                        .verify_passcode("P-1".into(), code.as_str().into())
                        .into_result();
                    (r, prp_host::take_deferred())
                })
            })
            .collect();
        // A right passcode is consumed when the login's session is opened: of the logins
        // that verified it, exactly one opens a session.
        let mut opened = Vec::new();
        for t in tasks {
            let (r, consumed) = t.await.expect("join");
            let r = r.expect("service");
            assert_eq!(consumed.is_empty(), r != SecretCheck::OK, "[{tag}] {r:?}");
            if r == SecretCheck::OK {
                let store = store.clone();
                opened.push(tokio::spawn(async move {
                    store
                        .create_session_consuming(
                            "P-1",
                            "passcode",
                            SessionKind::Reset,
                            60,
                            &consumed,
                        )
                        .await
                        .expect("session")
                        .is_some()
                }));
            }
            assert!(
                r == SecretCheck::OK
                    || r == SecretCheck::ALREADY_USED
                    || r == SecretCheck::NONE
                    // attempts beyond the passcode tries of the hour are turned away unchecked
                    || r == SecretCheck::LOCKED,
                "[{tag}] {r:?}"
            );
        }
        let mut ok = 0;
        for o in opened {
            ok += usize::from(o.await.expect("join"));
        }
        assert_eq!(ok, 1, "[{tag}]");
    }
}

/// A database of the test's own, with a store whose clock starts at `T0` and moves only when
/// the test moves it. Keep the database as long as the store.
async fn at_t0(b: &prp_tests::Backend) -> (TestDb, Arc<ManualClock>, Store) {
    let db = TestDb::new(b).await;
    let clock = ManualClock::at(T0);
    let store = db.store_with(clock.clone()).await;
    (db, clock, store)
}

/// A failed attempt as the host services make one: reserved first, then settled as wrong.
/// Returns `None` when the reservation was refused (locked or out of tries), else whether the
/// failure locked.
async fn fail(
    store: &Store,
    person: &str,
    scope: LockScope,
    policy: &LockoutPolicy,
) -> Option<bool> {
    if !store
        .reserve_attempt(person, scope, policy)
        .await
        .expect("reserve")
    {
        return None;
    }
    Some(
        store
            .settle_failure(person, scope, policy)
            .await
            .expect("settle"),
    )
}

prp_tests::on_each_backend! {
    async fn locks_follow_the_window_and_expire(b: Backend) {
        let tag = b.name();
        let (_db, clock, store) = at_t0(&b).await;
        let mut policy = LockoutPolicy::default();
        policy.password.max_failures = 3;
        policy.password.window = 600;
        policy.password.lock = 900;
        let pw = LockScope::Password;

        assert_eq!(fail(&store, "P-1", pw, &policy).await, Some(false));
        assert_eq!(fail(&store, "P-1", pw, &policy).await, Some(false));
        clock.advance(601);
        // The window restarted: this is the first failure of a new window.
        assert_eq!(
            fail(&store, "P-1", pw, &policy).await,
            Some(false),
            "[{tag}]"
        );
        assert_eq!(fail(&store, "P-1", pw, &policy).await, Some(false));
        assert_eq!(
            fail(&store, "P-1", pw, &policy).await,
            Some(true),
            "[{tag}] third in the window locks"
        );
        assert_eq!(
            store.locked_until("P-1", pw).await.expect("q"),
            Some(store.now() + 900)
        );
        assert_eq!(
            fail(&store, "P-1", pw, &policy).await,
            None,
            "[{tag}] a locked scope takes no attempt"
        );
        assert_eq!(
            store
                .locked_until("P-1", LockScope::Questions)
                .await
                .expect("q"),
            None,
            "[{tag}] other methods stay open"
        );
        clock.advance(900);
        assert_eq!(
            store.locked_until("P-1", pw).await.expect("q"),
            None,
            "[{tag}] the lock ends"
        );
        assert_eq!(
            fail(&store, "P-1", pw, &policy).await,
            Some(false),
            "[{tag}] and counting starts afresh"
        );

        // A right secret takes its attempt back; `all` counts every method together.
        policy.all.max_failures = 4;
        let db2 = TestDb::new(&b).await;
        let store2 = db2.store_with(clock.clone()).await;
        assert!(store2
            .reserve_attempt("P-2", pw, &policy)
            .await
            .expect("reserve"));
        store2.settle_success("P-2", pw).await.expect("settle");
        for scope in [
            LockScope::Password,
            LockScope::Questions,
            LockScope::Passcode,
        ] {
            assert_eq!(
                fail(&store2, "P-2", scope, &policy).await,
                Some(false),
                "[{tag}]"
            );
        }
        assert_eq!(
            store2
                .locked_until("P-2", LockScope::Passcode)
                .await
                .expect("q"),
            None
        );
        assert_eq!(
            fail(&store2, "P-2", LockScope::Questions, &policy).await,
            Some(true),
            "[{tag}]"
        );
        assert!(
            store2
                .locked_until("P-2", LockScope::Passcode)
                .await
                .expect("q")
                .is_some(),
            "[{tag}] all methods locked"
        );

        // Parallel attempts get no more tries than the limit between them.
        let db3 = TestDb::new(&b).await;
        let store3 = db3.store_with(clock.clone()).await;
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (s, p) = (store3.clone(), policy);
                tokio::spawn(async move {
                    s.reserve_attempt("P-3", LockScope::Password, &p)
                        .await
                        .expect("reserve")
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.expect("join"));
        }
        assert_eq!(granted, 3, "[{tag}] exactly the three tries of the window");
    }
}

prp_tests::on_each_backend! {
    async fn a_password_reservation_reads_the_credential_in_the_same_call(b: Backend) {
        let tag = b.name();
        let (_db, clock, store) = at_t0(&b).await;
        let mut policy = LockoutPolicy::default();
        policy.password.max_failures = 2;
        policy.password.window = 600;
        policy.all.max_failures = 100;
        let pw = LockScope::Password;
        store
            .set_credential("Person", "P-R", "P-R", "$argon2id$central")
            .await
            .expect("set");
        store
            .set_credential("ADS", "acc-1", "P-R", "$argon2id$account")
            .await
            .expect("set");
        store
            .set_credential("ADS", "acc-2", "P-OTHER", "$argon2id$other")
            .await
            .expect("set");
        let reserve = |credential: (&'static str, &'static str)| {
            let (store, policy) = (store.clone(), policy);
            async move {
                let (counted, stored) = store
                    .reserve_attempt_reading("P-R", pw, &policy, credential)
                    .await
                    .expect("reserve");
                (counted, stored.map(|s| (s.hash, s.normalized)))
            }
        };

        assert_eq!(
            reserve(("Person", "P-R")).await,
            (true, Some(("$argon2id$central".into(), true))),
            "[{tag}] counted, and the central account's hash read"
        );
        assert_eq!(
            reserve(("ADS", "acc-1")).await,
            (true, Some(("$argon2id$account".into(), true))),
            "[{tag}] an account's own hash"
        );
        // Out of tries: nothing counted, the hash still read (the caller decides).
        assert_eq!(
            reserve(("Person", "P-R")).await,
            (false, Some(("$argon2id$central".into(), true))),
            "[{tag}] refused"
        );
        assert_eq!(store.failures("P-R", pw, 600).await.expect("q"), 2, "[{tag}]");
        assert_eq!(
            store.failures("P-R", LockScope::All, 600).await.expect("q"),
            2,
            "[{tag}] the refused attempt counted nowhere"
        );
        // Another person's credential, or none, reads as no hash.
        clock.advance(601);
        assert_eq!(reserve(("ADS", "acc-2")).await, (true, None), "[{tag}]");
        assert_eq!(reserve(("ADS", "nobody")).await, (true, None), "[{tag}]");
    }
}

prp_tests::on_each_backend! {
    async fn the_gate_counts_an_attempt_only_while_its_guards_are_under_their_limits(b: Backend) {
        let tag = b.name();
        let (_db, clock, store) = at_t0(&b).await;
        let mut policy = LockoutPolicy::default();
        policy.password.max_failures = 5;
        policy.password.window = 600;
        let pw = LockScope::Password;
        let guards = [
            (
                Counter {
                    subject: "n:x",
                    scope: pw,
                    window: 600,
                },
                2,
            ),
            (
                Counter {
                    subject: "s:10.0.0.1",
                    scope: LockScope::All,
                    window: 900,
                },
                3,
            ),
        ];
        let own = |store: &Store| {
            let store = store.clone();
            async move { store.failures("n:x@10.0.0.1", pw, 600).await.expect("q") }
        };

        assert_eq!(
            store
                .reserve_unless_over("n:x@10.0.0.1", pw, &policy, &guards, true)
                .await
                .expect("reserve"),
            (vec![0, 0], true),
            "[{tag}] under every limit: counted"
        );
        for _ in 0..3 {
            store.count_failure("s:10.0.0.1", LockScope::All, 900).await.expect("count");
        }
        store.count_failure("n:x", pw, 600).await.expect("count");
        assert_eq!(
            store
                .reserve_unless_over("n:x@10.0.0.1", pw, &policy, &guards, true)
                .await
                .expect("reserve"),
            (vec![1, 3], false),
            "[{tag}] the source over its limit: nothing counted"
        );
        assert_eq!(own(&store).await, 1, "[{tag}]");
        assert_eq!(
            store
                .reserve_unless_over("n:x@10.0.0.1", pw, &policy, &guards, false)
                .await
                .expect("reserve"),
            (vec![1, 3], true),
            "[{tag}] a client that paid is counted whatever the guards read"
        );
        assert_eq!(own(&store).await, 2, "[{tag}]");
        // Both windows end.
        clock.advance(1000);
        assert_eq!(
            store
                .reserve_unless_over("n:x@10.0.0.1", pw, &policy, &guards, true)
                .await
                .expect("reserve"),
            (vec![0, 0], true),
            "[{tag}] windows that ended read as none"
        );
        // Without guards (a device), only the reservation's own limits count.
        store.count_failure("n:x", pw, 600).await.expect("count");
        store.count_failure("n:x", pw, 600).await.expect("count");
        assert_eq!(
            store
                .reserve_unless_over("d:device-1", pw, &policy, &[], true)
                .await
                .expect("reserve"),
            (vec![], true),
            "[{tag}]"
        );
        assert_eq!(
            store
                .reserve_unless_over("n:x@10.0.0.1", pw, &policy, &guards, true)
                .await
                .expect("reserve"),
            (vec![2, 0], false),
            "[{tag}] the name at its limit"
        );
        // `own` out of tries while the guards are under their limits: refused, and the guards
        // read as they are (the caller then denies without asking for a proof of work).
        policy.password.max_failures = 1;
        let other = [(
            Counter {
                subject: "n:y",
                scope: pw,
                window: 600,
            },
            2,
        )];
        let reserve = |policy: LockoutPolicy| {
            let store = store.clone();
            async move {
                store
                    .reserve_unless_over("n:y@10.0.0.1", pw, &policy, &other, true)
                    .await
                    .expect("reserve")
            }
        };
        assert_eq!(reserve(policy).await, (vec![0], true), "[{tag}]");
        assert_eq!(reserve(policy).await, (vec![0], false), "[{tag}] own refused");
    }
}

prp_tests::on_each_backend! {
    async fn counters_move_together_in_one_statement(b: Backend) {
        let tag = b.name();
        let (_db, clock, store) = at_t0(&b).await;
        let mut policy = LockoutPolicy::default();
        policy.password.max_failures = 5;
        policy.password.window = 600;
        policy.all.max_failures = 2;
        let pw = LockScope::Password;
        let count = |subject, scope| {
            let store = store.clone();
            async move { store.failures(subject, scope, 600).await.expect("read") }
        };

        // `all` is out of tries while the scope isn't: refused, and the scope's count taken
        // back, so the refused attempt counts nowhere.
        assert!(store.reserve_attempt("P-4", pw, &policy).await.expect("r"));
        assert!(store.reserve_attempt("P-4", pw, &policy).await.expect("r"));
        assert!(!store.reserve_attempt("P-4", pw, &policy).await.expect("r"), "[{tag}]");
        assert_eq!(count("P-4", pw).await, 2, "[{tag}] the scope's count taken back");
        assert_eq!(count("P-4", LockScope::All).await, 2, "[{tag}]");

        // The scope out of tries while `all` isn't: `all` is not counted either.
        policy.all.max_failures = 100;
        policy.password.max_failures = 2;
        assert!(!store.reserve_attempt("P-4", pw, &policy).await.expect("r"), "[{tag}]");
        assert_eq!(count("P-4", LockScope::All).await, 2, "[{tag}] all not counted");

        // A right secret: the scope reads as if it had no row, and `all` gets its try back;
        // the next failure starts a window of its own (not one from before the success).
        store.settle_success("P-4", pw).await.expect("settle");
        assert_eq!(count("P-4", pw).await, 0, "[{tag}]");
        assert_eq!(count("P-4", LockScope::All).await, 1, "[{tag}]");
        assert_eq!(store.locked_until("P-4", pw).await.expect("q"), None);
        clock.advance(599);
        assert_eq!(fail(&store, "P-4", pw, &policy).await, Some(false), "[{tag}]");
        clock.advance(2);
        assert_eq!(
            fail(&store, "P-4", pw, &policy).await,
            Some(true),
            "[{tag}] two failures within 600 s of the first one after the success lock"
        );

        // Several counters counted and read in one statement each, in the order asked.
        let counters = [
            Counter { subject: "n:x", scope: pw, window: 600 },
            Counter { subject: "s:10.0.0.0", scope: LockScope::All, window: 60 },
        ];
        assert_eq!(store.count_failures(&counters).await.expect("c"), vec![1, 1]);
        assert_eq!(store.count_failures(&counters).await.expect("c"), vec![2, 2]);
        clock.advance(61);
        // The source's window ran out, the name's didn't.
        assert_eq!(store.failures_of(&counters).await.expect("f"), vec![2, 0], "[{tag}]");
        assert_eq!(store.count_failures(&counters).await.expect("c"), vec![3, 1], "[{tag}]");
        // The same counter twice is counted twice.
        let twice = [counters[0], counters[0]];
        assert_eq!(store.count_failures(&twice).await.expect("c"), vec![4, 5], "[{tag}]");
    }
}

prp_tests::on_each_backend! {
    async fn counters_that_read_as_none_are_purged(b: Backend) {
        let tag = b.name();
        let (_db, clock, store) = at_t0(&b).await;
        let mut policy = LockoutPolicy::default();
        policy.password.max_failures = 1;
        policy.password.lock = 8 * 24 * 3600;
        // A name's failure, and a person locked for longer than any window.
        store.count_failure("n:gone", LockScope::Password, 600).await.expect("count");
        assert_eq!(fail(&store, "P-L", LockScope::Password, &policy).await, Some(true));
        assert_eq!(store.purge_stale_counters().await.expect("purge"), 0, "[{tag}] all fresh");
        clock.advance(7 * 24 * 3600 + 1);
        // The name's row and the person's `all` row read as none: gone. The lock stays.
        assert_eq!(store.purge_stale_counters().await.expect("purge"), 2, "[{tag}]");
        assert!(
            store
                .locked_until("P-L", LockScope::Password)
                .await
                .expect("q")
                .is_some(),
            "[{tag}] a lock in force is kept"
        );
        assert_eq!(store.failures("n:gone", LockScope::Password, 600).await.expect("f"), 0);
    }
}

prp_tests::on_each_backend! {
    async fn concurrent_attempts_on_one_person_never_deadlock(b: Backend) {
        // Logins of one person in parallel, each reserving, then settling one way or the
        // other, on two methods: every statement must go through (a deadlock between two
        // statements that each lock both of the person's rows would fail one of them).
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        let mut policy = LockoutPolicy::default();
        policy.password.max_failures = 1_000_000;
        policy.questions.max_failures = 1_000_000;
        policy.all.max_failures = 1_000_000;
        let tasks: Vec<_> = (0..24)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let scope = if t % 2 == 0 {
                        LockScope::Password
                    } else {
                        LockScope::Questions
                    };
                    for i in 0..25 {
                        store.reserve_attempt("P-D", scope, &policy).await?;
                        match (t + i) % 3 {
                            0 => store.settle_success("P-D", scope).await?,
                            1 => {
                                store.settle_failure("P-D", scope, &policy).await?;
                            }
                            _ => store.refund_attempt("P-D", scope).await?,
                        }
                    }
                    Ok::<_, prp_host::store::StoreError>(())
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("join").unwrap_or_else(|e| panic!("[{tag}] {e}"));
        }
        // Nothing lost: every attempt that failed is still counted in `all`, every other one
        // was taken back.
        let failed = (0..24)
            .flat_map(|t| (0..25).map(move |i| (t + i) % 3 == 1))
            .filter(|f| *f)
            .count();
        assert_eq!(
            store.failures("P-D", LockScope::All, 3600).await.expect("read"),
            i64::try_from(failed).expect("small"),
            "[{tag}]"
        );
    }
}

prp_tests::on_each_backend! {
    async fn the_audit_log_is_append_only(b: Backend) {
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        store
            .audit(&AuditEvent {
                event: "login",
                outcome: "failure",
                reason: Some("test"),
                ..Default::default()
            })
            .await
            .expect("append");
        let update = sqlx::query("UPDATE prp_audit SET outcome = 'success'")
            .execute(store.pool())
            .await;
        assert!(update.is_err(), "[{tag}] update must be refused");
        let delete = sqlx::query("DELETE FROM prp_audit")
            .execute(store.pool())
            .await;
        assert!(delete.is_err(), "[{tag}] delete must be refused");
        assert_eq!(
            store.audit_tail(10).await.expect("read").len(),
            1,
            "[{tag}]"
        );
    }
}

prp_tests::on_each_backend! {
    async fn parameters_are_in_force_only_with_all_their_parents(b: Backend) {
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        let path = r"QER\Person\PasswordResetAuthenticator\SearchTable";
        store
            .set_parameter(path, Some("ADSAccount"))
            .await
            .expect("set");
        assert_eq!(
            store.parameter_value(path).await.expect("get").as_deref(),
            Some("ADSAccount")
        );
        assert_eq!(
            store
                .parameter_value(&path.to_lowercase())
                .await
                .expect("get")
                .as_deref(),
            Some("ADSAccount"),
            "[{tag}] paths are case-insensitive"
        );
        store
            .set_parameter_enabled("QER", false)
            .await
            .expect("disable");
        assert_eq!(
            store.parameter_value(path).await.expect("get"),
            None,
            "[{tag}] grandparent disabled"
        );
        let p = store.parameter(path).await.expect("get").expect("stored");
        assert_eq!(p.disabled_by.as_deref(), Some("QER"));
        store
            .set_parameter_enabled("QER", true)
            .await
            .expect("enable");
        store
            .set_parameter_enabled(path, false)
            .await
            .expect("disable leaf");
        assert_eq!(
            store.parameter_value(path).await.expect("get"),
            None,
            "[{tag}] itself disabled"
        );
        store
            .set_parameter_enabled(path, true)
            .await
            .expect("enable");
        assert_eq!(
            store.parameter_value(path).await.expect("get").as_deref(),
            Some("ADSAccount")
        );
        assert!(
            store.set_parameter(r"QER\\Bad", Some("x")).await.is_err(),
            "[{tag}] empty segment"
        );

        // API keys: default, global, local over global, unset falls back.
        let local = ApiKeyScope::Local("srv-a".into());
        assert_eq!(
            store
                .api_key("srv-a", "EnablePasscodeLogin")
                .await
                .expect("key")
                .source,
            "default"
        );
        store
            .set_api_key(&ApiKeyScope::Global, "EnablePasscodeLogin", "1")
            .await
            .expect("set");
        store
            .set_api_key(&local, "EnablePasscodeLogin", "false")
            .await
            .expect("set");
        let v = store
            .api_key("srv-a", "EnablePasscodeLogin")
            .await
            .expect("key");
        assert_eq!((v.value.as_str(), v.source), ("false", "local"), "[{tag}]");
        let other = store
            .api_key("srv-b", "EnablePasscodeLogin")
            .await
            .expect("key");
        assert_eq!(
            (other.value.as_str(), other.source),
            ("true", "global"),
            "[{tag}] local is per server"
        );
        store
            .unset_api_key(&local, "EnablePasscodeLogin")
            .await
            .expect("unset");
        assert_eq!(
            store
                .api_key("srv-a", "EnablePasscodeLogin")
                .await
                .expect("key")
                .source,
            "global"
        );
        assert!(store
            .set_api_key(
                &ApiKeyScope::Global,
                "VI_Employee_MasterData_PassCode_HoursValid",
                "0"
            )
            .await
            .is_err());
    }
}

prp_tests::on_each_backend! {
    async fn sessions_end_when_idle_or_at_their_absolute_end(b: Backend) {
        use prp_host::store::SessionKind;
        let tag = b.name();
        let (_db, clock, store) = at_t0(&b).await;
        let idle = 900;
        let s = store
            .create_session("P-1", "password", SessionKind::Full, 3600)
            .await
            .expect("session");
        clock.advance(899);
        assert!(
            store.session(&s.token, idle).await.expect("q").is_some(),
            "[{tag}] used in time"
        );
        clock.advance(899);
        assert!(
            store.session(&s.token, idle).await.expect("q").is_some(),
            "[{tag}] each use restarts the idle clock"
        );
        clock.advance(900);
        assert!(
            store.session(&s.token, idle).await.expect("q").is_none(),
            "[{tag}] idle too long"
        );

        let s = store
            .create_session("P-1", "password", SessionKind::Full, 3600)
            .await
            .expect("session");
        for _ in 0..4 {
            clock.advance(800);
            assert!(
                store.session(&s.token, idle).await.expect("q").is_some(),
                "[{tag}]"
            );
        }
        clock.advance(800);
        assert!(
            store.session(&s.token, idle).await.expect("q").is_none(),
            "[{tag}] past the absolute end"
        );

        let s = store
            .create_session("P-1", "passcode", SessionKind::Reset, 900)
            .await
            .expect("session");
        let live = store
            .session(&s.token, idle)
            .await
            .expect("q")
            .expect("live");
        assert!(
            live.csrf_matches(&s.csrf_token) && !live.csrf_matches("forged"),
            "[{tag}]"
        );
        store
            .revoke_session(&live.token_hash)
            .await
            .expect("revoke");
        assert!(
            store.session(&s.token, idle).await.expect("q").is_none(),
            "[{tag}] revoked"
        );
    }
}

/// The search of ADSAccount by CN and SamAccountName, as the reference plugin's parameters
/// describe it to the host.
fn ads_query(columns: &[&str]) -> AccountQuery {
    AccountQuery {
        table: "ADSAccount".into(),
        columns: columns.iter().map(|c| RString::from(*c)).collect(),
        disabled_by: RVec::new(),
        enabled_by: RVec::new(),
        login_name: RString::new(),
    }
}

/// `unindexed_login_columns` through the real host services, on a blocking thread.
async fn unindexed(s: &HostServicesBox, query: &AccountQuery) -> Vec<(String, String)> {
    let (s, query) = (s.clone(), query.clone());
    tokio::task::spawn_blocking(move || s.unindexed_login_columns(&query).into_result())
        .await
        .expect("join")
        .expect("service")
        .into_iter()
        .map(|m| (m.column.into_string(), m.create_index.into_string()))
        .collect()
}

prp_tests::on_each_backend! {
    /// The host's own login column (`Person.CentralAccount`) is the host's to check; the search
    /// table's columns the plugin asks about through `unindexed_login_columns`. Either way a
    /// plain index doesn't serve the case-folded lookup, and the advice, run, clears it.
    async fn check_finds_login_columns_without_a_usable_index(b: Backend) {
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        prp_host::demo::create_identity_schema(&store)
            .await
            .expect("schema");
        let s = services(&store);
        let query = ads_query(&["CN", "SamAccountName"]);
        assert_eq!(store.missing_login_indexes().await.expect("check"), Vec::new(), "[{tag}]");
        assert_eq!(unindexed(&s, &query).await, Vec::new(), "[{tag}]");
        // DDL on one connection: another SQLite connection may hold the schema as it was.
        let mut conn = store.pool().acquire().await.expect("connection");
        for drop in ["DROP INDEX \"ADSAccount_CN_login\"", "DROP INDEX \"Person_CentralAccount_login\""] {
            sqlx::query(drop).execute(&mut *conn).await.expect("drop");
        }
        // A plain index on the column doesn't serve the case-folded lookup either.
        sqlx::query("CREATE INDEX plain_cn ON \"ADSAccount\" (\"CN\")")
            .execute(&mut *conn)
            .await
            .expect("index");
        let person = store.missing_login_indexes().await.expect("check");
        assert_eq!(person.len(), 1, "[{tag}] {person:?}");
        assert_eq!(person[0].column, "Person.CentralAccount");
        let missing = unindexed(&s, &query).await;
        assert_eq!(missing.len(), 1, "[{tag}] {missing:?}");
        assert_eq!(missing[0].0, "ADSAccount.CN");
        assert!(
            unindexed(&s, &ads_query(&["SamAccountName"])).await.is_empty(),
            "[{tag}] only the query's columns"
        );
        // The advice works: running it makes the warning go away.
        for ddl in [&missing[0].1, &person[0].create_index] {
            sqlx::query(ddl.trim_end_matches(';'))
                .execute(&mut *conn)
                .await
                .expect("advice");
        }
        assert_eq!(store.missing_login_indexes().await.expect("check"), Vec::new(), "[{tag}]");
        assert_eq!(unindexed(&s, &query).await, Vec::new(), "[{tag}]");
        // A query the live schema doesn't have fails, naming what is wrong, as a search does.
        let (s2, bad) = (s.clone(), ads_query(&["NoSuchColumn"]));
        let e = tokio::task::spawn_blocking(move || s2.unindexed_login_columns(&bad).into_result())
            .await
            .expect("join")
            .expect_err("no such column");
        assert_eq!(e.kind, ErrorKind::CONFIG, "[{tag}] {e:?}");
        assert!(e.message.contains("NoSuchColumn"), "[{tag}] {e:?}");
    }
}

prp_tests::on_each_backend! {
    /// `account_login_names`: the values of the query's columns in the person's rows of the
    /// table, refused accounts' included, NULLs and repeats left out; other persons' never.
    async fn account_login_names_lists_the_persons_names_in_the_queried_columns(b: Backend) {
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        prp_tests::seed(&store).await;
        // A second account of Carol's, disabled, whose CN is NULL and whose name repeats.
        sqlx::query(
            "INSERT INTO \"ADSAccount\" (\"UID_ADSAccount\", \"UID_Person\", \"CN\", \"SamAccountName\", \"Disabled\") VALUES ('A-CAROL-2', 'P-CAROL', NULL, 'carol.admin', TRUE), ('A-CAROL-3', 'P-CAROL', 'carol.admin', NULL, FALSE)",
        )
        .execute(store.pool())
        .await
        .expect("insert");
        let s = services(&store);
        let names = |query: AccountQuery, person: &'static str| {
            let s = s.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    s.account_login_names(&query, person.into()).into_result()
                })
                .await
                .expect("join")
            }
        };
        let mut carol = names(ads_query(&["CN", "SamAccountName"]), "P-CAROL")
            .await
            .expect("names")
            .into_iter()
            .map(RString::into_string)
            .collect::<Vec<_>>();
        carol.sort();
        assert_eq!(carol, vec!["Carol Example", "carol.admin", "cexample"], "[{tag}]");
        let sam = names(ads_query(&["samaccountname"]), "P-CAROL").await.expect("names");
        assert_eq!(sam.len(), 2, "[{tag}] the schema's spelling of the column: {sam:?}");
        assert!(
            names(ads_query(&["CN"]), "P-NOBODY").await.expect("names").is_empty(),
            "[{tag}]"
        );
        let e = names(
            AccountQuery {
                table: "NoSuchTable".into(),
                ..ads_query(&["CN"])
            },
            "P-CAROL",
        )
        .await
        .expect_err("no such table");
        assert_eq!(e.kind, ErrorKind::CONFIG, "[{tag}] {e:?}");
        assert!(e.message.contains("NoSuchTable"), "[{tag}] {e:?}");
    }
}

prp_tests::on_each_backend! {
    /// Wrong answers sent in parallel get no more tries between them than one person typing: the
    /// attempt is counted before the answer is checked.
    async fn parallel_guesses_at_a_question_get_no_more_than_its_tries(b: Backend) {
        use prp_plugin_api::abi_stable::std_types::RVec;
        use prp_plugin_api::QuestionAnswer;
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        let id =
            prp_host::demo::add_question(&store, &hasher(), "P-1", "Colour of the sky?", "Blue")
                .await
                .expect("question");
        let s = services(&store);
        let guess = |answer: &'static str| {
            let (s, id) = (s.clone(), id.clone());
            tokio::task::spawn_blocking(move || {
                let answers: RVec<QuestionAnswer> = RVec::from(vec![QuestionAnswer {
                    question_id: id.as_str().into(),
                    answer: answer.into(),
                }]);
                s.verify_answers("P-1".into(), answers.as_rslice())
                    .into_result()
            })
        };
        let tasks: Vec<_> = (0..10).map(|_| guess("green")).collect();
        for t in tasks {
            let r = t.await.expect("join").expect("service");
            assert_ne!(r, SecretCheck::OK, "[{tag}]");
        }
        let q = store.questions("P-1").await.expect("q").remove(0);
        assert_eq!(
            q.failures, 3,
            "[{tag}] exactly the three allowed tries were counted"
        );
        assert!(q.locked, "[{tag}]");
        let r = guess("blue").await.expect("join").expect("service");
        assert_ne!(
            r,
            SecretCheck::OK,
            "[{tag}] the right answer to a locked question is refused"
        );
    }
}

/// Stores a value as an older version (or a hand-edited database) would have, unchecked.
async fn store_unchecked(store: &Store, path: &str, value: &str) {
    sqlx::query(
        "INSERT INTO prp_parameter (path_key, path, value, enabled, updated_at) VALUES ($1, $2, $3, 1, 0)",
    )
    .bind(path.to_ascii_lowercase())
    .bind(path)
    .bind(value)
    .execute(store.pool())
    .await
    .expect("insert");
}

prp_tests::on_each_backend! {
    async fn host_parameters_outside_their_range_are_refused_when_set(b: Backend) {
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        for (path, value, allowed) in [
            (
                r"PRP\Lockout\All\MaxFailures",
                "100000",
                "a whole number from 1 to 100",
            ),
            (
                r"PRP\Lockout\Password\LockMinutes",
                "0",
                "a whole number from 1 to 525600",
            ),
            (
                r"PRP\PasswordPolicy\Default\MinLength",
                "abc",
                "a whole number from 8 to 128",
            ),
            (
                r"PRP\PasswordPolicy\Default\MaxLength",
                "20",
                "a whole number from 64 to 1024",
            ),
            (
                r"PRP\PasswordPolicy\ADSAccount\MaxLength",
                "4096",
                "a whole number from 64 to 1024",
            ),
            (r"PRP\PasswordPolicy\Default\RejectNames", "maybe", "1 or 0"),
        ] {
            let err = store
                .set_parameter(path, Some(value))
                .await
                .expect_err(&format!("[{tag}] {path} {value}"))
                .to_string();
            assert!(err.contains(path) && err.contains(allowed), "[{tag}] {err}");
            assert_eq!(
                store.parameter(path).await.expect("read"),
                None,
                "[{tag}] nothing stored for {path}"
            );
        }
        // A misspelt name in a branch the host reads would be silently ignored: refused.
        let err = store
            .set_parameter(r"PRP\Lockout\All\MaxFailure", Some("5"))
            .await
            .expect_err("misspelt")
            .to_string();
        assert!(
            err.contains(r"PRP\Lockout\All\MaxFailures"),
            "[{tag}] {err}"
        );
        // Values in range are stored (and other parameters aren't checked here).
        for (path, value) in [
            (r"PRP\Lockout\All\MaxFailures", "100"),
            (r"PRP\PasswordPolicy\Default\MaxLength", "1024"),
            (r"PRP\PasswordPolicy\ADSAccount\MinLength", "100"),
            (r"QER\Person\PasswordResetAuthenticator\Anything", "x"),
        ] {
            store
                .set_parameter(path, Some(value))
                .await
                .unwrap_or_else(|e| panic!("[{tag}] {path}: {e}"));
        }
        // MinLength may not exceed MaxLength, also through what a source inherits.
        let err = store
            .set_parameter(r"PRP\PasswordPolicy\ADSAccount\MaxLength", Some("64"))
            .await
            .expect_err("min above max")
            .to_string();
        assert!(
            err.contains("MinLength 100 is above MaxLength 64"),
            "[{tag}] {err}"
        );
        let err = store
            .set_parameter(r"PRP\PasswordPolicy\Default\MaxLength", Some("90"))
            .await
            .expect_err("inherited max below min")
            .to_string();
        assert!(
            err.contains(r"PRP\PasswordPolicy\ADSAccount: MinLength 100 is above MaxLength 90"),
            "[{tag}] {err}"
        );
        // Disabling a value brings the next level's back, which must fit as well.
        store
            .set_parameter_enabled(r"PRP\PasswordPolicy\Default\MaxLength", false)
            .await
            .unwrap_or_else(|e| panic!("[{tag}] 128 applies again, above 100: {e}"));
        store
            .set_parameter(r"PRP\PasswordPolicy\ADSAccount\MaxLength", Some("200"))
            .await
            .expect("own max");
        store
            .set_parameter_enabled(r"PRP\PasswordPolicy\Default\MaxLength", true)
            .await
            .expect("enabled");
        store
            .set_parameter(r"PRP\PasswordPolicy\Default\MaxLength", Some("64"))
            .await
            .expect("ADSAccount has its own MaxLength");
        let err = store
            .set_parameter_enabled(r"PRP\PasswordPolicy\ADSAccount\MaxLength", false)
            .await
            .expect_err("then ADSAccount would inherit 64, below its MinLength")
            .to_string();
        assert!(
            err.contains("MinLength 100 is above MaxLength 64"),
            "[{tag}] {err}"
        );
        assert!(
            store
                .parameter(r"PRP\PasswordPolicy\ADSAccount\MaxLength")
                .await
                .expect("read")
                .is_some_and(|p| p.in_force()),
            "[{tag}] still enabled"
        );
    }
}

prp_tests::on_each_backend! {
    async fn stored_values_the_portal_cant_use_fall_back_and_are_reported(b: Backend) {
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        store_unchecked(&store, r"PRP\Lockout\All\MaxFailures", "100000").await;
        store_unchecked(&store, r"PRP\Lockout\Passcode\LockMinutes", "15").await;
        store_unchecked(&store, r"PRP\PasswordPolicy\Default\MinLength", "abc").await;
        store_unchecked(&store, r"PRP\PasswordPolicy\ADSAccount\MinLength", "100").await;
        store_unchecked(&store, r"PRP\PasswordPolicy\ADSAccount\MaxLength", "80").await;
        store_unchecked(&store, r"PRP\Lockout\All\MaxFailure", "7").await;

        let (lockout, problems) = store.lockout_policy().await.expect("lockout");
        assert_eq!(lockout.all.max_failures, 100, "[{tag}] the default applies");
        assert_eq!(
            lockout.passcode.lock,
            15 * 60,
            "[{tag}] valid values still apply"
        );
        assert_eq!(
            problems,
            vec![r#"PRP\Lockout\All\MaxFailures: "100000" is not a whole number from 1 to 100; the default (100) applies"#.to_owned()],
            "[{tag}]"
        );
        let (policy, problems) = store.password_policy("ADSAccount").await.expect("policy");
        assert_eq!((policy.min_length, policy.max_length), (12, 128), "[{tag}]");
        assert_eq!(problems.len(), 2, "[{tag}] {problems:?}");
        assert!(
            problems[0].contains(r"PRP\PasswordPolicy\Default\MinLength")
                && problems[0].contains("from 8 to 128"),
            "[{tag}] {problems:?}"
        );
        assert!(
            problems[1].contains("MinLength 100 is above MaxLength 80"),
            "[{tag}] {problems:?}"
        );

        let all = store.parameter_problems().await.expect("problems");
        assert_eq!(all.len(), 4, "[{tag}] {all:?}");
        assert!(
            all.iter()
                .any(|p| p
                    .starts_with(r"PRP\Lockout\All\MaxFailure: not a parameter the portal reads")),
            "[{tag}] {all:?}"
        );

        // What `params get` shows: the stored value with why it isn't used.
        let view = store
            .parameter_view(r"PRP\Lockout\All\MaxFailures")
            .await
            .expect("view")
            .expect("stored");
        assert!(!view.is_default(), "[{tag}]");
        assert!(
            view.problem.is_some_and(|p| p.contains("from 1 to 100")),
            "[{tag}]"
        );
    }
}

prp_tests::on_each_backend! {
    async fn documented_parameters_show_their_defaults(b: Backend) {
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        let view = store
            .parameter_view(r"PRP | PasswordPolicy | Default | MinLength")
            .await
            .expect("view")
            .expect("documented");
        assert!(
            view.is_default() && view.stored.is_none(),
            "[{tag}] {view:?}"
        );
        assert_eq!(view.value(), Some("12"), "[{tag}]");
        assert!(
            view.known
                .is_some_and(|k| k.allowed == "a whole number from 8 to 128"),
            "[{tag}]"
        );
        assert_eq!(
            store
                .parameter_view(r"PRP\Nothing\Here")
                .await
                .expect("view"),
            None,
            "[{tag}]"
        );

        // A table's policy inherits the Default policy's value.
        store
            .set_parameter(r"PRP\PasswordPolicy\Default\MinLength", Some("14"))
            .await
            .expect("set");
        let view = store
            .parameter_view(r"PRP\PasswordPolicy\ADSAccount\MinLength")
            .await
            .expect("view")
            .expect("documented");
        assert_eq!(view.value(), Some("14"), "[{tag}]");
        assert!(view.is_default(), "[{tag}]");

        let listed = store
            .list_parameter_views(Some(r"PRP\PasswordPolicy"))
            .await
            .expect("list");
        let shown: Vec<(String, Option<String>, bool)> = listed
            .iter()
            .map(|v| (v.path.clone(), v.value().map(str::to_owned), v.is_default()))
            .collect();
        assert_eq!(
            shown,
            vec![
                (
                    r"PRP\PasswordPolicy\Default\HistoryCount".to_owned(),
                    Some("5".to_owned()),
                    true
                ),
                (
                    r"PRP\PasswordPolicy\Default\MaxLength".to_owned(),
                    Some("128".to_owned()),
                    true
                ),
                (
                    r"PRP\PasswordPolicy\Default\MinLength".to_owned(),
                    Some("14".to_owned()),
                    false
                ),
                (
                    r"PRP\PasswordPolicy\Default\RejectCommon".to_owned(),
                    Some("1".to_owned()),
                    true
                ),
                (
                    r"PRP\PasswordPolicy\Default\RejectNames".to_owned(),
                    Some("1".to_owned()),
                    true
                ),
            ],
            "[{tag}]"
        );
        let lockout = store
            .list_parameter_views(Some(r"PRP\Lockout"))
            .await
            .expect("list");
        assert_eq!(lockout.len(), 19, "[{tag}]");
        assert!(lockout.iter().all(|v| v.is_default()), "[{tag}]");
    }
}

prp_tests::on_each_backend! {
    /// A plugin reads `Person` columns it names: checked against the live schema, compared
    /// exactly, and an unknown column or a name that isn't one is an error of kind config
    /// naming it.
    async fn plugins_read_person_columns_checked_against_the_schema(b: Backend) {
        use prp_plugin_api::ErrorKind;
        let tag = b.name();
        let db = TestDb::new(&b).await;
        let store = db.store().await;
        prp_tests::seed(&store).await;
        let services = services(&store);
        let found = tokio::task::spawn_blocking(move || {
            let by_mail = services
                .persons_by_column("defaultemailaddress".into(), "dan@example.test".into())
                .into_result()
                .map(|v| v.iter().map(|p| p.uid.to_string()).collect::<Vec<_>>());
            let case = services
                .persons_by_column("DefaultEmailAddress".into(), "DAN@example.test".into())
                .into_result()
                .map(|v| v.len());
            let one = services
                .person_column("P-CAROL".into(), "CentralAccount".into())
                .into_result()
                .map(|v| v.into_option().map(|s| s.into_string()));
            let nobody = services
                .person_column("P-NOBODY".into(), "CentralAccount".into())
                .into_result()
                .map(|v| v.into_option().map(|s| s.into_string()));
            let unknown = services
                .persons_by_column("NoSuchColumn".into(), "x".into())
                .into_result()
                .map(|v| v.len());
            let injected = services
                .person_column("P-CAROL".into(), "\"UID_Person\" OR 1=1 --".into())
                .into_result()
                .map(|v| v.is_some());
            (by_mail, case, one, nobody, unknown, injected)
        })
        .await
        .expect("join");
        let (by_mail, case, one, nobody, unknown, injected) = found;
        assert_eq!(by_mail, Ok(vec!["P-DAN".to_owned()]), "[{tag}]");
        assert_eq!(case, Ok(0), "[{tag}] values compare exactly");
        assert_eq!(one, Ok(Some("carol".to_owned())), "[{tag}]");
        assert_eq!(nobody, Ok(None), "[{tag}]");
        let e = unknown.expect_err("unknown column");
        assert_eq!(e.kind, ErrorKind::CONFIG, "[{tag}] {e}");
        assert!(e.message.contains("NoSuchColumn"), "[{tag}] {e}");
        let e = injected.expect_err("not a column name");
        assert_eq!(e.kind, ErrorKind::CONFIG, "[{tag}] {e}");
    }
}

/// The store keeps connections warm between statements instead of the pool's ping after each
/// (`store::WarmConnections`). A PostgreSQL server that drops them (a restart, a failover, an
/// operator's `pg_terminate_backend`) must not fail requests that come after a moment's quiet:
/// a connection idle longer than `ALIVE_BYPASS` is pinged first, and a connection that failed
/// is never kept.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(prp_postgres),
    ignore = "PRP_TEST_POSTGRES_URL was not set when the tests were built: no PostgreSQL run"
)]
async fn warm_connections_a_postgres_server_dropped_are_replaced() {
    let db = TestDb::new(&prp_tests::Backend::postgres()).await;
    let store = db.store().await;
    // Three statements at once leave three connections warm.
    let warm_three = || async {
        let sleep = || sqlx::query("SELECT pg_sleep(0.05)").execute(store.db());
        let (a, b, c) = tokio::join!(sleep(), sleep(), sleep());
        a.and(b).and(c).expect("three statements at once");
        assert_eq!(store.db().idle_count(), 3);
    };
    // Every other session of the database ended, waiting until each is gone.
    let kill_all = || async {
        let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
            .await
            .expect("connect");
        sqlx::query(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut admin)
        .await
        .expect("terminate");
    };

    // After a moment's quiet, the dropped connections are found by a ping and replaced.
    warm_three().await;
    kill_all().await;
    tokio::time::sleep(prp_host::store::warm::ALIVE_BYPASS * 2).await;
    store
        .parameters()
        .await
        .expect("a read after the connections were dropped");

    // Right away (no ping within the bypass window), a statement meets a dropped connection
    // and fails; every warm connection is then let go, and the next statement works.
    warm_three().await;
    kill_all().await;
    assert!(
        store.parameters().await.is_err(),
        "a statement on a dropped connection"
    );
    assert_eq!(
        store.db().idle_count(),
        0,
        "the other warm connections were kept"
    );
    store
        .parameters()
        .await
        .expect("the read after a failed one");
}

/// A granted password login's writes (a full session of an hour), as the login service makes
/// them.
async fn grant(
    store: &Store,
    person_uid: &str,
    event: &AuditEvent<'_>,
    afresh: Afresh<'_>,
) -> Result<prp_host::store::NewSession, prp_host::store::StoreError> {
    store
        .open_session_audited(
            person_uid,
            "password",
            SessionKind::Full,
            3600,
            event,
            afresh,
        )
        .await
}

prp_tests::on_each_backend! {
    async fn a_granted_logins_session_record_and_cleared_counters_are_written_together(b: Backend) {
        let tag = b.name();
        let (_db, clock, store) = at_t0(&b).await;
        let window = 600;
        let counted = [
            ("n:alice", LockScope::Password),
            ("n:alice", LockScope::All),
            ("n:alice@10.0.0.1", LockScope::Password),
            ("n:alice@10.0.0.2", LockScope::Questions),
            // Not under `n:alice`: another name, one that a `LIKE` wildcard would match, and
            // the client source.
            ("n:alicex", LockScope::Password),
            ("n:aliceX@10.0.0.1", LockScope::Password),
            ("s:10.0.0.1", LockScope::All),
            // The persons' counters, which their grants settle.
            ("P-1", LockScope::Password),
            ("P-1", LockScope::Password),
            ("P-1", LockScope::All),
            ("P-1", LockScope::All),
            ("P-1", LockScope::All),
            ("P-2", LockScope::Password),
            ("P-2", LockScope::All),
        ];
        for (subject, scope) in counted {
            store
                .count_failure(subject, scope, window)
                .await
                .expect("count");
        }
        let failures = |subject: &'static str, scope: LockScope| {
            let store = store.clone();
            async move {
                store
                    .failures(subject, scope, window)
                    .await
                    .expect("failures")
            }
        };
        let event = AuditEvent {
            event: "login",
            outcome: "success",
            method: Some("password"),
            login_name: Some("alice"),
            person_uid: Some("P-1"),
            reason: Some("password: right"),
            actor: None,
            remote_addr: Some("10.0.0.1"),
        };

        // A subject with `LIKE`'s wildcards in it clears only itself and what is under it.
        // An attempt let through on the person's device (not counted against the person)
        // clears the method's counter and leaves `all` as it was.
        let on_device = Settlement {
            person_uid: "P-2".into(),
            scope: LockScope::Password,
            counted: false,
        };
        grant(
            &store,
            "P-2",
            &event,
            Afresh {
                name: "n:alic_",
                person: Some(&on_device),
            },
        )
        .await
        .expect("grant");
        assert_eq!(failures("n:alice@10.0.0.1", LockScope::Password).await, 1, "[{tag}]");
        assert_eq!(failures("P-2", LockScope::Password).await, 0, "[{tag}] device: cleared");
        assert_eq!(failures("P-2", LockScope::All).await, 1, "[{tag}] device: all kept");

        clock.advance(5);
        // An attempt counted against the person: the method starts afresh, and the attempt
        // is taken back from `all`.
        let counted = Settlement {
            person_uid: "P-1".into(),
            scope: LockScope::Password,
            counted: true,
        };
        let s = grant(
            &store,
            "P-1",
            &event,
            Afresh {
                name: "n:alice",
                person: Some(&counted),
            },
        )
        .await
        .expect("grant");
        assert_eq!(failures("P-1", LockScope::Password).await, 0, "[{tag}] settled");
        assert_eq!(failures("P-1", LockScope::All).await, 2, "[{tag}] one taken back");
        assert_eq!(failures("P-2", LockScope::All).await, 1, "[{tag}] another person kept");
        let live = store
            .session(&s.token, 900)
            .await
            .expect("q")
            .expect("the session is stored");
        assert_eq!(
            (live.person_uid.as_str(), live.method.as_str(), live.kind),
            ("P-1", "password", SessionKind::Full),
            "[{tag}]"
        );
        assert_eq!((live.created_at, live.expires_at), (T0 + 5, T0 + 5 + 3600), "[{tag}]");
        assert!(live.csrf_matches(&s.csrf_token), "[{tag}]");

        let record = store.audit_tail(1).await.expect("tail");
        let record = record.first().expect("the record is written");
        assert_eq!(
            (
                record.at,
                record.event.as_str(),
                record.outcome.as_str(),
                record.person_uid.as_deref(),
                record.login_name.as_deref(),
                record.reason.as_deref(),
                record.method.as_deref(),
                record.actor.as_deref()
            ),
            (
                T0 + 5,
                "login",
                "success",
                Some("P-1"),
                Some("alice"),
                Some("password: right"),
                Some("password"),
                None
            ),
            "[{tag}]"
        );

        for (subject, scope) in [
            ("n:alice", LockScope::Password),
            ("n:alice", LockScope::All),
            ("n:alice@10.0.0.1", LockScope::Password),
            ("n:alice@10.0.0.2", LockScope::Questions),
        ] {
            assert_eq!(failures(subject, scope).await, 0, "[{tag}] {subject} {scope:?} cleared");
        }
        for (subject, scope) in [
            ("n:alicex", LockScope::Password),
            ("n:aliceX@10.0.0.1", LockScope::Password),
            ("s:10.0.0.1", LockScope::All),
        ] {
            assert_eq!(failures(subject, scope).await, 1, "[{tag}] {subject} {scope:?} kept");
        }
    }
}

prp_tests::on_each_backend! {
    async fn a_grant_whose_audit_record_fails_keeps_the_counters(b: Backend) {
        let tag = b.name();
        let (_db, _clock, store) = at_t0(&b).await;
        prp_tests::fail_inserts(&store, "prp_audit", None, "the audit log is full").await;
        for subject in ["n:bob@10.0.0.1", "P-BOB"] {
            store
                .count_failure(subject, LockScope::Password, 600)
                .await
                .expect("count");
        }
        let event = AuditEvent {
            event: "login",
            outcome: "success",
            person_uid: Some("P-BOB"),
            ..Default::default()
        };
        let settled = Settlement {
            person_uid: "P-BOB".into(),
            scope: LockScope::Password,
            counted: true,
        };
        let refused = grant(
            &store,
            "P-BOB",
            &event,
            Afresh {
                name: "n:bob",
                person: Some(&settled),
            },
        )
        .await;
        assert!(refused.is_err(), "[{tag}] the record can't be written");
        for subject in ["n:bob@10.0.0.1", "P-BOB"] {
            assert_eq!(
                store
                    .failures(subject, LockScope::Password, 600)
                    .await
                    .expect("failures"),
                1,
                "[{tag}] {subject}: counters are cleared and settled only once the record is written"
            );
        }
        let sessions: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM prp_session WHERE person_uid = 'P-BOB'")
                .fetch_one(store.pool())
                .await
                .expect("count");
        match store.dialect() {
            // One statement: nothing is written.
            prp_host::store::Dialect::Postgres => assert_eq!(sessions, 0, "[{tag}]"),
            // The session came first; its token was never handed out.
            prp_host::store::Dialect::Sqlite => assert!(sessions <= 1, "[{tag}]"),
        }
    }
}
