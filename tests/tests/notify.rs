//! Notifications delivered over SMTP to a real server the test starts on a loopback port
//! (Postfix's `smtp-sink`, which writes each message it accepts to a file): delivery in
//! people's words and their language, the server down and back, no second copy after a
//! restart, the four-eyes half to the manager (then purged), no address, and a lock told in
//! the person's language; and over STARTTLS and TLS with a login, to Debian's aiosmtpd
//! (`tests/support/tls_smtp_server.py`), checking the server's certificate.

use prp_tests::{
    hasher, host_command, merge_config, on_each_backend, seed, sink_messages, stdout, Backend,
    Client, Scene, Server, SmtpSink, TestDb, CAROL_CENTRAL, ROOT, TEST_TOKEN,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const NEW_PASSWORD: &str = "violet-harbour-lantern-93";

struct Setup {
    _db: TestDb,
    store: prp_host::store::Store,
    scene: Scene,
    config: PathBuf,
    port: u16,
}

impl Setup {
    fn sink_dir(&self) -> PathBuf {
        self.scene.path("mail")
    }

    fn start_sink(&self) -> SmtpSink {
        SmtpSink::start(self.port, &self.sink_dir())
    }

    fn messages(&self) -> Vec<String> {
        sink_messages(&self.sink_dir())
    }
}

/// A seeded portal configured to deliver to 127.0.0.1:`port` (nothing listens there yet),
/// looking often and retrying soon. Carol (carol@example.test) is managed by Marta.
async fn setup(b: &Backend) -> Setup {
    let db = TestDb::new(b).await;
    let store = db.store().await;
    seed(&store).await;
    prp_tests::marta_manages_carol(&store).await;
    prp_host::demo::set_email(&store, "P-MARTA", Some("marta@example.test"))
        .await
        .expect("email");
    sqlx::query(
        "UPDATE \"Person\" SET \"FirstName\" = 'Carol', \"LastName\" = 'Example' WHERE \"UID_Person\" = 'P-CAROL'",
    )
    .execute(store.pool())
    .await
    .expect("carol");
    // The language of each person, in a column of the operator's choosing.
    sqlx::query("ALTER TABLE \"Person\" ADD COLUMN \"PreferredLanguage\" VARCHAR(16)")
        .execute(store.pool())
        .await
        .expect("language column");
    let scene = Scene::new();
    let config = scene.portal_config(&db.url, Some(TEST_TOKEN), json!({}));
    let port = SmtpSink::free_port();
    merge_config(
        &config,
        &json!({
            "ConnectionStrings": {"Smtp": "sink-password"},
            "Notify": {
                "Smtp": {"Host": "127.0.0.1", "Port": port, "Security": "none", "User": "prp", "TimeoutMs": 5000},
                "From": "Password Reset Portal <prp@portal.example>",
                "LanguageColumn": "PreferredLanguage",
                "Language": "en",
                "HelpDesk": "+49 30 1234-0",
                "PollMs": 200,
                "RetryMinMs": 1000,
                "RetryMaxMs": 2000,
            },
        }),
    );
    Setup {
        _db: db,
        store,
        scene,
        config,
        port,
    }
}

fn start(config: &Path) -> Server {
    Server::start(config).expect("server starts")
}

/// Carol changes her central and ADS passwords.
fn change_carols_password(server: &Server) {
    let carol = Client::password(server, "carol", CAROL_CENTRAL);
    let (s, v) = carol.call(
        "POST",
        "/api/password-items/set",
        Some(json!({"items": ["Person:P-CAROL", "ADSAccount:A-CAROL"], "password": NEW_PASSWORD})),
    );
    assert_eq!(s, 200, "{v}");
}

/// Waits until `cond` holds (panics after `secs` seconds, saying `what`).
async fn wait_for<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The complete messages in the sink (smtp-sink writes a file while it receives).
async fn wait_messages(s: &Setup, n: usize, what: &str) -> Vec<String> {
    wait_for(30, what, || async {
        let m = s.messages();
        // Each message ends with the signature.
        m.len() >= n
            && m.iter()
                .all(|t| decoded(t).contains("Password Reset Portal ("))
    })
    .await;
    s.messages()
}

/// The text of a dumped message with quoted-printable soft breaks and `=XX` escapes undone
/// (enough for the assertions: ASCII and UTF-8 umlauts).
fn decoded(message: &str) -> String {
    let joined = message.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

on_each_backend! {
    async fn password_change_is_delivered_in_peoples_words(b: Backend) {
        if !SmtpSink::available("password_change_is_delivered_in_peoples_words") {
            return;
        }
        let s = setup(&b).await;
        let sink = s.start_sink();
        let server = start(&s.config);
        change_carols_password(&server);
        let messages = wait_messages(&s, 1, "the password-change message").await;
        assert_eq!(messages.len(), 1, "{messages:?}");
        let m = decoded(&messages[0]);
        for want in [
            "X-Rcpt-Args: <carol@example.test>",
            "To: \"Carol Example\" <carol@example.test>",
            "From: \"Password Reset Portal\" <prp@portal.example>",
            "Subject: Your password was changed",
            "Hello Carol Example,",
            "your central account \"carol\"",
            "the account \"Carol Example\" in ADSAccount",
            " UTC (20",
            "If it wasn't you, contact the help desk (+49 30 1234-0) at once",
        ] {
            assert!(m.contains(want), "[{}] {want:?} missing in:\n{m}", b.name());
        }
        for internal in ["P-CAROL", "A-CAROL", "Person:"] {
            assert!(!m.contains(internal), "[{}] internal id {internal} in:\n{m}", b.name());
        }
        // Marked right after the server accepted it (which may be a moment after the file).
        wait_for(10, "the row marked delivered", || async {
            s.store.outbox_states("P-CAROL").await.expect("outbox")[0].delivered_at.is_some()
        })
        .await;
        let states = s.store.outbox_states("P-CAROL").await.expect("outbox");
        let row = states.iter().find(|r| r.kind == "password.changed").expect("row");
        let mid = row.message_id.clone().expect("message id");
        assert!(mid.ends_with("@portal.example>"), "{mid}");
        assert!(
            m.contains(&format!("Message-ID: {mid}")),
            "[{}] the stored Message-ID {mid} is the one sent:\n{m}",
            b.name()
        );
        drop(server);
        sink.stop();
    }
}

on_each_backend! {
    async fn a_german_person_gets_german(b: Backend) {
        if !SmtpSink::available("a_german_person_gets_german") {
            return;
        }
        let s = setup(&b).await;
        sqlx::query("UPDATE \"Person\" SET \"PreferredLanguage\" = 'de-DE' WHERE \"UID_Person\" = 'P-CAROL'")
            .execute(s.store.pool())
            .await
            .expect("german");
        let _sink = s.start_sink();
        let server = start(&s.config);
        change_carols_password(&server);
        let messages = wait_messages(&s, 1, "the German message").await;
        let m = decoded(&messages[0]);
        for want in [
            "Guten Tag Carol Example,",
            "Ihr zentrales Konto \"carol\"",
            "das Konto \"Carol Example\" in ADSAccount",
            "Uhr UTC",
            "wenden Sie sich sofort an den Helpdesk (+49 30 1234-0)",
        ] {
            assert!(m.contains(want), "[{}] {want:?} missing in:\n{m}", b.name());
        }
        assert!(!m.contains("Hello"), "{m}");
    }
}

on_each_backend! {
    /// A lock that wrong passwords put on Carol's password logins reaches her in German, saying
    /// for how long and what still works.
    async fn a_lockout_is_told_in_the_persons_language(b: Backend) {
        if !SmtpSink::available("a_lockout_is_told_in_the_persons_language") {
            return;
        }
        let s = setup(&b).await;
        sqlx::query("UPDATE \"Person\" SET \"PreferredLanguage\" = 'de' WHERE \"UID_Person\" = 'P-CAROL'")
            .execute(s.store.pool())
            .await
            .expect("german");
        for (k, v) in [
            (r"PRP\Lockout\Password\MaxFailures", "2"),
            (r"PRP\Lockout\Password\LockMinutes", "120"),
        ] {
            s.store.set_parameter(k, Some(v)).await.expect("param");
        }
        let _sink = s.start_sink();
        let server = start(&s.config);
        for _ in 0..2 {
            let (st, v) = server.post(
                "/api/login/password",
                &json!({"login_name": "carol", "password": "not-carols-password-1"}),
            );
            assert_eq!(st, 401, "{v}");
        }
        let messages = wait_messages(&s, 1, "the lockout message").await;
        let m = decoded(&messages[0]);
        for want in [
            "Guten Tag Carol Example,",
            "mit Ihrem Passwort wurden nach wiederholten Fehlversuchen für bis zu 2 Stunden angehalten",
            "Uhr UTC",
            "wenden Sie sich an den Helpdesk (+49 30 1234-0)",
        ] {
            assert!(m.contains(want), "[{}] {want:?} missing in:\n{m}", b.name());
        }
        assert!(!m.contains("paused"), "[{}] not the stored English text:\n{m}", b.name());
    }
}

on_each_backend! {
    async fn the_server_down_then_back_gets_the_message_once(b: Backend) {
        if !SmtpSink::available("the_server_down_then_back_gets_the_message_once") {
            return;
        }
        let s = setup(&b).await;
        let server = start(&s.config);
        change_carols_password(&server);
        // Nothing listens: attempts fail and are retried with backoff.
        wait_for(30, "two failed attempts", || async {
            s.store
                .outbox_states("P-CAROL")
                .await
                .expect("outbox")
                .iter()
                .any(|r| r.attempts >= 2 && r.last_error.is_some() && r.delivered_at.is_none())
        })
        .await;
        let before = s.store.outbox_states("P-CAROL").await.expect("outbox");
        // Backoff: 1 s, then 2 s; with PollMs 200 ms that is far fewer than one try a round.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = s.store.outbox_states("P-CAROL").await.expect("outbox");
        assert!(
            after[0].attempts <= before[0].attempts + 2,
            "[{}] retries back off: {before:?} then {after:?}",
            b.name()
        );
        assert!(after[0].undeliverable_at.is_none(), "{after:?}");
        let _sink = s.start_sink();
        let messages = wait_messages(&s, 1, "delivery once the server is back").await;
        assert!(decoded(&messages[0]).contains("Your password was changed"));
        // A few more rounds send nothing more.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(s.messages().len(), 1, "[{}] delivered once", b.name());
        let row = &s.store.outbox_states("P-CAROL").await.expect("outbox")[0];
        assert!(row.delivered_at.is_some() && row.last_error.is_none(), "{row:?}");
    }
}

on_each_backend! {
    async fn a_restart_sends_no_second_copy(b: Backend) {
        if !SmtpSink::available("a_restart_sends_no_second_copy") {
            return;
        }
        let s = setup(&b).await;
        let _sink = s.start_sink();
        let server = start(&s.config);
        change_carols_password(&server);
        wait_messages(&s, 1, "the first message").await;
        drop(server);
        // Two servers on the same database, started after the delivery.
        let again = start(&s.config);
        let other = start(&s.config);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(s.messages().len(), 1, "[{}] no second copy", b.name());
        // A new event is delivered by exactly one of them.
        let carol = Client::password(&again, "carol", NEW_PASSWORD);
        let (st, v) = carol.call(
            "POST",
            "/api/password-items/set",
            Some(json!({"items": ["Person:P-CAROL"], "password": "amber-meadow-compass-57"})),
        );
        assert_eq!(st, 200, "{v}");
        wait_messages(&s, 2, "the second message").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(s.messages().len(), 2, "[{}] once, by one of the two servers", b.name());
        drop(other);
    }
}

on_each_backend! {
    async fn the_four_eyes_half_goes_to_the_manager_and_is_purged(b: Backend) {
        if !SmtpSink::available("the_four_eyes_half_goes_to_the_manager_and_is_purged") {
            return;
        }
        let s = setup(&b).await;
        s.store
            .set_parameter(&format!(r"{ROOT}\PasscodeSplit"), Some("1"))
            .await
            .expect("param");
        let _sink = s.start_sink();
        let server = start(&s.config);
        let out = host_command(&s.config, &["passcode", "new", "carol", "--issued-by", "helpdesk:ann"])
            .output()
            .expect("cli");
        assert!(out.status.success(), "{}", stdout(&out));
        let messages = wait_messages(&s, 1, "the manager's half").await;
        let m = decoded(&messages[0]);
        for want in [
            "X-Rcpt-Args: <marta@example.test>",
            "Subject: Second half of a passcode for Carol Example",
            "Hello Marta Manager,",
            "a passcode was issued for Carol Example",
            "Give it to Carol Example yourself",
        ] {
            assert!(m.contains(want), "[{}] {want:?} missing in:\n{m}", b.name());
        }
        let half = m
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 9 && l.as_bytes()[4] == b'-')
            .expect("the second half in the message")
            .to_owned();
        let first = stdout(&out)
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 9 && l.contains('-'))
            .expect("first half")
            .to_owned();
        wait_for(10, "the half purged", || async {
            s.store
                .outbox_states("P-MARTA")
                .await
                .expect("outbox")
                .iter()
                .all(|r| r.delivered_at.is_some() && !r.has_secret)
        })
        .await;
        let notes = s.store.notifications("P-MARTA").await.expect("outbox");
        assert!(notes.iter().all(|n| n.3.is_none()), "[{}] purged: {notes:?}", b.name());
        // The halves the issuer and the manager got open a session together.
        let (st, _) = server.post(
            "/api/login/passcode",
            &json!({"login_name": "carol", "passcode": format!("{first}-{half}")}),
        );
        assert_eq!(st, 200, "[{}] both halves", b.name());
    }
}

on_each_backend! {
    async fn no_address_is_undeliverable_not_retried(b: Backend) {
        if !SmtpSink::available("no_address_is_undeliverable_not_retried") {
            return;
        }
        let s = setup(&b).await;
        prp_host::demo::set_email(&s.store, "P-CAROL", None).await.expect("no email");
        // And a message for Marta queued long before delivery was set up: too old to send.
        s.store
            .notify("P-MARTA", "question.replaced", "old", "old", None, None)
            .await
            .expect("queue");
        sqlx::query("UPDATE prp_notification_outbox SET created_at = created_at - 100 * 3600 WHERE recipient_uid = 'P-MARTA'")
            .execute(s.store.pool())
            .await
            .expect("age it");
        let _sink = s.start_sink();
        let server = start(&s.config);
        change_carols_password(&server);
        wait_for(20, "the message marked undeliverable", || async {
            s.store
                .outbox_states("P-CAROL")
                .await
                .expect("outbox")
                .iter()
                .any(|r| r.undeliverable_at.is_some())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let row = &s.store.outbox_states("P-CAROL").await.expect("outbox")[0];
        assert_eq!(row.attempts, 1, "[{}] not retried: {row:?}", b.name());
        assert!(row.delivered_at.is_none(), "{row:?}");
        assert!(
            row.last_error.as_deref().unwrap_or_default().contains("no e-mail address"),
            "{row:?}"
        );
        assert!(s.messages().is_empty(), "{:?}", s.messages());
        let old = &s.store.outbox_states("P-MARTA").await.expect("outbox")[0];
        assert!(
            old.undeliverable_at.is_some()
                && old.last_error.as_deref().unwrap_or_default().contains("more than 72 hours"),
            "{old:?}"
        );
        let audit = s.store.audit_tail(20).await.expect("audit");
        assert!(
            audit.iter().any(|e| e.event == "notification.undeliverable"
                && e.person_uid.as_deref() == Some("P-CAROL")),
            "[{}] {audit:?}",
            b.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_says_whether_notifications_are_delivered() {
    let scene = Scene::new();
    let db = TestDb::new(&Backend::Sqlite).await;
    let store = db.store().await;
    seed(&store).await;
    let _ = hasher();
    let config = scene.portal_config(&db.url, Some(TEST_TOKEN), json!({}));
    let out = host_command(&config, &["check"]).output().expect("check");
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("notifications"))
        .unwrap_or_else(|| panic!("no notifications line in:\n{text}"));
    assert!(
        line.contains("warn") && line.contains("not delivered"),
        "{line}"
    );
    merge_config(
        &config,
        &json!({
            "ConnectionStrings": {"Smtp": "pw-SECRET-smtp"},
            "Notify": {"Smtp": {"Host": "smtp.example.org", "User": "prp"}, "From": "prp@example.org"},
        }),
    );
    let out = host_command(&config, &["check"]).output().expect("check");
    let text = stdout(&out);
    assert!(
        text.contains("delivered through smtp.example.org:587 (STARTTLS, as prp)"),
        "{text}"
    );
    assert!(
        !text.contains("SECRET"),
        "the SMTP password is never printed: {text}"
    );
    // A CA file that isn't there, or holds no certificate, fails the check, naming it.
    for (ca, why) in [
        ("missing-ca.pem", "can't be read"),
        ("appsettings.json", "holds no BEGIN CERTIFICATE block"),
    ] {
        merge_config(
            &config,
            &json!({"Notify": {"Smtp": {"Host": "smtp.example.org", "User": "prp", "CaFile": ca}, "From": "prp@example.org"}}),
        );
        let out = host_command(&config, &["check"]).output().expect("check");
        let text = stdout(&out);
        let line = text
            .lines()
            .find(|l| l.contains("CaFile"))
            .unwrap_or_else(|| panic!("no CaFile line in:\n{text}"));
        assert!(
            line.starts_with("FAILED") && line.contains(ca) && line.contains(why),
            "{line}"
        );
        assert!(!out.status.success(), "{text}");
    }
    merge_config(
        &config,
        &json!({"Notify": {"Smtp": {"Host": "smtp.example.org", "User": "prp"}, "From": "prp@example.org"}}),
    );
    // A Person without the address column: a warning naming the column and its DDL.
    sqlx::query("ALTER TABLE \"Person\" DROP COLUMN \"DefaultEmailAddress\"")
        .execute(store.pool())
        .await
        .expect("drop column");
    let text = stdout(&host_command(&config, &["check"]).output().expect("check"));
    assert!(
        text.contains("Person has no column \"DefaultEmailAddress\""),
        "{text}"
    );
}

on_each_backend! {
    async fn a_server_refusing_the_login_gets_retries_not_undeliverable(b: Backend) {
        if !SmtpSink::available("a_server_refusing_the_login_gets_retries_not_undeliverable") {
            return;
        }
        let s = setup(&b).await;
        // The portal authenticates (Notify:Smtp:User): a server that refuses AUTH gets no
        // message, and the message waits for the server to be fixed.
        let refusing = SmtpSink::start_with(s.port, &s.sink_dir(), &["-f", "AUTH"]);
        let server = start(&s.config);
        change_carols_password(&server);
        wait_for(30, "two refused attempts", || async {
            s.store
                .outbox_states("P-CAROL")
                .await
                .expect("outbox")
                .iter()
                .any(|r| r.attempts >= 2)
        })
        .await;
        let row = &s.store.outbox_states("P-CAROL").await.expect("outbox")[0];
        assert!(row.undeliverable_at.is_none() && row.delivered_at.is_none(), "{row:?}");
        assert!(
            row.last_error.as_deref().unwrap_or_default().contains("SMTP server 127.0.0.1"),
            "{row:?}"
        );
        assert!(s.messages().is_empty(), "nothing delivered without authentication");
        refusing.stop();
        let _sink = s.start_sink();
        wait_messages(&s, 1, "delivery once the server accepts the login").await;
    }
}

/// Debian's aiosmtpd (`python3-aiosmtpd`) run by `tests/support/tls_smtp_server.py`: an SMTP
/// server that requires TLS (STARTTLS, or TLS from the first byte) and a login, and writes
/// each message it accepts to a file headed by how it arrived (`X-Test-Tls`, `X-Test-Auth`).
struct TlsSmtp {
    child: std::process::Child,
}

impl TlsSmtp {
    const PYTHON: &'static str = "/usr/bin/python3";

    /// Whether Debian's Python has aiosmtpd; like [`SmtpSink::available`], a test without it
    /// prints SKIPPED, and fails under CI (`.ci/run` installs it).
    fn available(test: &str) -> bool {
        let ok = std::process::Command::new(Self::PYTHON)
            .args(["-c", "import aiosmtpd"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: python3-aiosmtpd is missing (apt-get install python3-aiosmtpd); CI must run this test"
            );
            eprintln!("SKIPPED {test}: python3-aiosmtpd is not installed");
        }
        ok
    }

    /// Starts it on 127.0.0.1:`port` in `mode` (`starttls` or `tls`) with the certificate in
    /// `cert`/`key`, accepting only `prp` with `password`, and waits until it is ready.
    fn start(port: u16, mode: &str, cert: &Path, key: &Path, password: &str, dir: &Path) -> Self {
        use std::io::BufRead;
        std::fs::create_dir_all(dir).expect("mail dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/tls_smtp_server.py");
        let mut child = std::process::Command::new(Self::PYTHON)
            .arg(script)
            .arg(port.to_string())
            .arg(mode)
            .arg(cert)
            .arg(key)
            .arg("prp")
            .arg(password)
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the TLS SMTP server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "ready", "the TLS SMTP server did not start");
        Self { child }
    }
}

impl Drop for TlsSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages the TLS server wrote to `dir`.
fn eml_messages(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// Delivery over STARTTLS and over TLS from the first byte, with a login, to a server whose
/// certificate an in-house CA signed (`Notify:Smtp:CaFile`). Without that CA, or with a wrong
/// password, nothing is delivered: the message waits in the outbox, with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn delivery_over_starttls_and_tls_logs_in_and_checks_the_certificate() {
    let test = "delivery_over_starttls_and_tls_logs_in_and_checks_the_certificate";
    if !TlsSmtp::available(test) {
        return;
    }
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("a certificate");
    for mode in ["starttls", "tls"] {
        let s = setup(&Backend::Sqlite).await;
        let cert = s.scene.write("smtp-cert.pem", &ck.cert.pem());
        let key = s.scene.write("smtp-key.pem", &ck.key_pair.serialize_pem());
        let mail = s.scene.path("tls-mail");
        let server_cfg = |ca: Option<&Path>, password: &str| {
            let mut smtp = json!({
                "Host": "127.0.0.1", "Port": s.port, "Security": mode, "User": "prp", "TimeoutMs": 5000,
            });
            if let Some(ca) = ca {
                smtp["CaFile"] = ca.display().to_string().into();
            }
            let text = std::fs::read_to_string(&s.config).expect("config");
            let mut cfg: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            cfg["Notify"]["Smtp"] = smtp;
            cfg["ConnectionStrings"]["Smtp"] = password.into();
            std::fs::write(&s.config, cfg.to_string()).expect("config");
        };
        let _smtp = TlsSmtp::start(s.port, mode, &cert, &key, "smtp-secret", &mail);

        // 1. The certificate is not trusted: nothing is sent, the reason is kept.
        server_cfg(None, "smtp-secret");
        let server = start(&s.config);
        change_carols_password(&server);
        wait_for(30, "a failed attempt", || async {
            s.store.outbox_states("P-CAROL").await.expect("outbox")[0]
                .last_error
                .is_some()
        })
        .await;
        drop(server);
        let row = &s.store.outbox_states("P-CAROL").await.expect("outbox")[0];
        assert!(
            row.delivered_at.is_none(),
            "[{mode}] not trusted, not sent: {row:?}"
        );
        let why = row.last_error.clone().unwrap_or_default().to_lowercase();
        assert!(why.contains("certificate"), "[{mode}] the reason: {why}");
        assert!(
            eml_messages(&mail).is_empty(),
            "[{mode}] nothing reached the server"
        );

        // 2. Trusted, but the wrong password: refused, still waiting.
        server_cfg(Some(&cert), "not-the-smtp-secret");
        let server = start(&s.config);
        let before = s.store.outbox_states("P-CAROL").await.expect("outbox")[0].attempts;
        wait_for(30, "an attempt with the wrong password", || async {
            s.store.outbox_states("P-CAROL").await.expect("outbox")[0].attempts > before
        })
        .await;
        drop(server);
        let row = &s.store.outbox_states("P-CAROL").await.expect("outbox")[0];
        assert!(
            row.delivered_at.is_none(),
            "[{mode}] wrong login, not sent: {row:?}"
        );
        let why = row.last_error.clone().unwrap_or_default().to_lowercase();
        assert!(
            why.contains("535") || why.contains("credentials"),
            "[{mode}] the reason: {why}"
        );
        assert!(eml_messages(&mail).is_empty(), "[{mode}] nothing accepted");

        // 3. Trusted, the right password: delivered over TLS, logged in as prp.
        server_cfg(Some(&cert), "smtp-secret");
        let server = start(&s.config);
        wait_for(30, "the delivered mark", || async {
            s.store.outbox_states("P-CAROL").await.expect("outbox")[0]
                .delivered_at
                .is_some()
        })
        .await;
        drop(server);
        let messages = eml_messages(&mail);
        assert_eq!(messages.len(), 1, "[{mode}] once: {messages:?}");
        let m = decoded(&messages[0]);
        for want in [
            "X-Test-Tls: yes",
            "X-Test-Auth: prp",
            "X-Test-Rcpt: carol@example.test",
            "Subject: Your password was changed",
        ] {
            assert!(m.contains(want), "[{mode}] {want:?} missing in:\n{m}");
        }
    }
}
