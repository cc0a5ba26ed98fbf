//! The web portal in a real browser: headless Chromium driven through chromedriver
//! (fantoccini), against a seeded portal served in this process. One test per journey; axe-core
//! runs on every screen and must find nothing serious or critical. On failure a test saves a
//! screenshot and the page's HTML under `target/browser-failures/` and names them.
//!
//! Without chromium and chromedriver the journeys print SKIPPED and pass, unless `CI` is set
//! (then they fail): `.ci/run` installs both, and axe-core (pinned, checksummed) into
//! `target/axe-core/axe.min.js` (or `PRP_AXE_JS`).

use fantoccini::{Client, ClientBuilder, Locator};
use prp_host::store::Store;
use prp_tests::{
    artifacts, hasher, request, seed, Backend, Scene, Server, TestDb, CAROL_CENTRAL, MARTA_CENTRAL,
    TEST_TOKEN,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use totp_authenticator::crypto;

const NEW_PASSWORD: &str = "Violet-Harbour-Lantern-93";

/// A seeded SQLite portal with the TOTP plugin, a FactorKey, the flow `mfa` (password, then a
/// TOTP code), and Marta managing Carol.
struct Portal {
    server: Server,
    store: Store,
    _scene: Scene,
    _db: TestDb,
}

async fn portal() -> Portal {
    let db = TestDb::new(&Backend::Sqlite).await;
    let store = db.store().await;
    seed(&store).await;
    for (path, value) in [
        (r"PRP\Flows\mfa\Steps", "password,totp"),
        (r"PRP\Flows\mfa\Label", "Password and authenticator app"),
        (r"PRP\Flows\mfa\Session", "full"),
    ] {
        store.set_parameter(path, Some(value)).await.expect("flow");
    }
    prp_tests::marta_manages_carol(&store).await;
    sqlx::query(
        "UPDATE \"Person\" SET \"FirstName\" = 'Carol', \"LastName\" = 'Example' WHERE \"UID_Person\" = 'P-CAROL'",
    )
    .execute(store.pool())
    .await
    .expect("carol's name");
    let scene = Scene::new();
    let config = scene.portal_config_with(
        &db.url,
        Some(TEST_TOKEN),
        json!({}),
        &[artifacts().lib("totp-authenticator")],
    );
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("config")).expect("json");
    v["ConnectionStrings"]["FactorKey"] = "a browser test factor key".into();
    let config = scene.write("appsettings.json", &v.to_string());
    let server = Server::start(&config).expect("portal starts");
    Portal {
        server,
        store,
        _scene: scene,
        _db: db,
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

fn found(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// chromedriver and the browser, or None (SKIPPED) when they aren't installed outside CI.
fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let driver = found("chromedriver");
    let browser = found("chromium").or_else(|| found("chromium-browser"));
    match (driver, browser) {
        (Some(d), Some(b)) => Some((d, b)),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "{test}: chromium and chromedriver are required under CI (.ci/run installs them)"
            )
        }
        _ => {
            println!("SKIPPED {test}: chromium and chromedriver are not installed");
            None
        }
    }
}

fn axe_source() -> Option<String> {
    let path = std::env::var_os("PRP_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/axe-core/axe.min.js"));
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("axe-core is required under CI ({}): {e}", path.display())
        }
        Err(_) => {
            println!(
                "axe-core not found at {}: accessibility checks SKIPPED",
                path.display()
            );
            None
        }
    }
}

/// A headless browser session with its chromedriver; the driver is stopped on drop.
struct Browser {
    client: Client,
    driver: Child,
    base: String,
    axe: Option<String>,
    test: &'static str,
    screens: usize,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

type R<T = ()> = Result<T, String>;

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Browser {
    async fn open(test: &'static str, server: &Server) -> Option<Self> {
        let (driver_path, browser_path) = tools(test)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({
            "goog:chromeOptions": {
                "binary": browser_path,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         "--lang=en-US", "--no-first-run"],
                "prefs": {"intl.accept_languages": "en-US,en"}
            }
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session");
        Some(Self {
            client,
            driver,
            base: format!("http://{}", server.addr),
            axe: axe_source(),
            test,
            screens: 0,
        })
    }

    async fn goto(&self, path: &str) -> R {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .map_err(err(path))
    }

    async fn path(&self) -> R<String> {
        let url = self.client.current_url().await.map_err(err("url"))?;
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        })
    }

    async fn fill(&self, css: &str, value: &str) -> R {
        let e = self
            .client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .map_err(err(css))?;
        e.clear().await.map_err(err(css))?;
        e.send_keys(value).await.map_err(err(css))
    }

    async fn click(&self, css: &str) -> R {
        self.client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .map_err(err(css))?
            .click()
            .await
            .map_err(err(css))
    }

    async fn text(&self, css: &str) -> R<String> {
        self.client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .map_err(err(css))?
            .text()
            .await
            .map_err(err(css))
    }

    /// Waits until `css` has text containing `want`.
    async fn wait_text(&self, css: &str, want: &str) -> R<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.text(css).await.unwrap_or_default();
            if got.contains(want) {
                return Ok(got);
            }
            if Instant::now() > deadline {
                return Err(format!("{css} never said {want:?} (it says {got:?})"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// axe-core on the current screen: no serious or critical violations.
    async fn axe(&mut self, screen: &str) -> R {
        self.screens += 1;
        let Some(axe) = &self.axe else {
            return Ok(());
        };
        self.client
            .execute(axe, vec![])
            .await
            .map_err(err("inject axe-core"))?;
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']}).then(r => done(
                   r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at ' +
                          v.nodes.map(n => n.target.join(' ')).join(', '))
                 )).catch(e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .map_err(err("axe.run"))?;
        let list: Vec<String> = serde_json::from_value(found).map_err(err("axe result"))?;
        if list.is_empty() {
            Ok(())
        } else {
            Err(format!("axe-core on {screen}: {}", list.join("; ")))
        }
    }

    /// Signs in by a flow whose first step has one method with these fields.
    async fn sign_in(&mut self, flow: &str, name: &str, fields: &[(&str, &str)]) -> R {
        self.goto("/").await?;
        self.axe("the start page").await?;
        self.click(&format!("a[href='/sign-in?flow={flow}']"))
            .await?;
        self.axe(&format!("sign-in ({flow})")).await?;
        self.fill("#login_name", name).await?;
        for (css, value) in fields {
            self.fill(css, value).await?;
        }
        self.click("form button[type=submit]").await
    }

    async fn sign_out(&mut self) -> R {
        self.click("nav form[action='/sign-out'] button").await?;
        self.wait_text("#live", "You have signed out.").await?;
        self.axe("signed out").await
    }

    /// Saves a screenshot and the HTML of the current page; returns their names.
    async fn save_failure(&self) -> String {
        let dir = workspace().join("target/browser-failures");
        let _ = std::fs::create_dir_all(&dir);
        let png = dir.join(format!("{}.png", self.test));
        let html = dir.join(format!("{}.html", self.test));
        if let Ok(shot) = self.client.screenshot().await {
            let _ = std::fs::write(&png, shot);
        }
        if let Ok(source) = self.client.source().await {
            let _ = std::fs::write(&html, source);
        }
        format!("screenshot {}, page {}", png.display(), html.display())
    }

    /// Ends the session; fails the test with the saved page when the journey failed.
    async fn finish(self, result: R) {
        if let Err(e) = result {
            let saved = self.save_failure().await;
            let url = self.path().await.unwrap_or_default();
            let _ = self.client.clone().close().await;
            panic!("{}: {e} (at {url}; {saved})", self.test);
        }
        let _ = self.client.clone().close().await;
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn issue_passcode(store: &Store, uid: &str) -> String {
    let code = prp_host::security::new_passcode();
    let normalized = prp_host::security::normalize_passcode(&code).expect("passcode");
    let hash = hasher().hash_async(&normalized).await.expect("hash");
    store
        .issue_passcode(uid, &hash, 3600, "test")
        .await
        .expect("issue");
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passcode_sign_in_then_a_new_password_for_every_item() {
    let p = portal().await;
    let Some(mut b) = Browser::open("passcode_new_password", &p.server).await else {
        return;
    };
    let code = issue_passcode(&p.store, "P-CAROL").await;
    let journey = async {
        b.sign_in("passcode", "carol", &[("#passcode-passcode", &code)])
            .await?;
        b.wait_text("main h1", "My passwords").await?;
        b.axe("My passwords").await?;
        // Every item is offered and chosen; the live check explains a short password.
        let items = b
            .client
            .find_all(Locator::Css("input[name=items]:checked"))
            .await
            .map_err(err("items"))?;
        if items.len() != 2 {
            return Err(format!("expected Carol's 2 items, found {}", items.len()));
        }
        b.fill("#password", "short").await?;
        b.wait_text("#check-result", "at least").await?;
        b.axe("My passwords with live feedback").await?;
        b.fill("#password", NEW_PASSWORD).await?;
        b.wait_text("#check-result", "meets every rule").await?;
        b.fill("#confirm", NEW_PASSWORD).await?;
        b.click("#set-password button[type=submit]").await?;
        b.wait_text("#live", "the new password is set for 2")
            .await?;
        b.axe("password set").await?;
        b.sign_out().await?;
        b.sign_in("password", "carol", &[("#password-password", NEW_PASSWORD)])
            .await?;
        b.wait_text("main", "Signed in as Carol Example (carol)")
            .await?;
        Ok(())
    }
    .await;
    b.finish(journey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_password_questions() {
    let p = portal().await;
    let Some(mut b) = Browser::open("questions_sign_in", &p.server).await else {
        return;
    };
    let journey = async {
        b.sign_in("questions", "quinn", &[]).await?;
        b.wait_text("main h1", "Password questions").await?;
        b.axe("the questions step").await?;
        let labels = b
            .client
            .find_all(Locator::Css("form label"))
            .await
            .map_err(err("labels"))?;
        if labels.len() != 2 {
            return Err(format!("expected 2 questions, found {}", labels.len()));
        }
        for label in labels {
            let question = label.text().await.map_err(err("label"))?;
            let input = label
                .attr("for")
                .await
                .map_err(err("for"))?
                .unwrap_or_default();
            let answer = match question.as_str() {
                "Colour of the sky?" => "Blue",
                "Best number?" => "Seven",
                "Home town?" => "Porto",
                other => return Err(format!("unexpected question {other:?}")),
            };
            b.fill(&format!("#{input}"), answer).await?;
        }
        b.click("form button[type=submit]").await?;
        b.wait_text("main h1", "My passwords").await?;
        b.wait_text(
            "main",
            "You signed in with a passcode or password questions",
        )
        .await?;
        b.axe("My passwords after questions").await?;
        b.click("nav a[href='/questions']").await?;
        b.wait_text("#question-rules", "Keep at least 3").await?;
        b.axe("My password questions").await?;
        // A stale page's form, for a question that is gone: a notice that says so, not an
        // outage (the new-user trial was told "the portal can't do this right now").
        b.client
            .execute(
                "const f = document.querySelector(\"form[action$='/delete']\"); \
                 f.action = '/questions/00000000-0000-4000-8000-000000000000/delete'; f.submit();",
                vec![],
            )
            .await
            .map_err(err("post a stale form"))?;
        b.wait_text("#live", "That is no longer on this page")
            .await?;
        b.wait_text("#question-rules", "Keep at least 3").await?;
        // 320 px wide: nothing scrolls sideways.
        b.client
            .set_window_size(320, 900)
            .await
            .map_err(err("narrow the window"))?;
        let widths = b
            .client
            .execute(
                "return [window.innerWidth, document.documentElement.scrollWidth];",
                vec![],
            )
            .await
            .map_err(err("widths"))?;
        let widths: Vec<u64> = serde_json::from_value(widths).map_err(err("widths"))?;
        if widths.first().is_none_or(|w| *w > 400) || widths.get(1) > widths.first() {
            return Err(format!(
                "at 320 px: [inner width, scroll width] = {widths:?}"
            ));
        }
        b.axe("My password questions at 320 px").await
    }
    .await;
    b.finish(journey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_issues_a_passcode_and_the_report_signs_in_with_it() {
    let p = portal().await;
    let Some(mut b) = Browser::open("manager_passcode", &p.server).await else {
        return;
    };
    let journey = async {
        b.sign_in(
            "password",
            "marta",
            &[("#password-password", MARTA_CENTRAL)],
        )
        .await?;
        b.wait_text("main h1", "My passwords").await?;
        b.click("nav a[href='/team']").await?;
        b.wait_text("main table", "Carol Example").await?;
        b.axe("My team").await?;
        b.click("form[action='/team/P-CAROL/passcode'] button")
            .await?;
        b.wait_text("main h1", "Passcode for Carol Example").await?;
        b.wait_text("main", "Valid for 8 hours").await?;
        b.axe("the issued passcode").await?;
        let code = b.text("#passcode").await?;
        b.sign_out().await?;
        b.sign_in("passcode", "cexample", &[("#passcode-passcode", &code)])
            .await?;
        b.wait_text("main", "Signed in as Carol Example (carol)")
            .await?;
        Ok(())
    }
    .await;
    b.finish(journey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_enrollment_then_sign_in_by_password_and_code() {
    let p = portal().await;
    let Some(mut b) = Browser::open("totp_enrollment", &p.server).await else {
        return;
    };
    let journey = async {
        b.sign_in(
            "password",
            "carol",
            &[("#password-password", CAROL_CENTRAL)],
        )
        .await?;
        b.wait_text("main h1", "My passwords").await?;
        b.click("nav a[href='/factors']").await?;
        b.wait_text("main", "Not set up").await?;
        b.axe("My factors").await?;
        b.click("form[action='/factors/totp/enroll'] button")
            .await?;
        // The enrollment page loads after the form's POST: wait for it.
        b.client
            .wait()
            .for_element(Locator::Css(".qr svg"))
            .await
            .map_err(err("the QR code"))?;
        b.axe("TOTP enrollment").await?;
        let secret = b.text("[data-shown=secret]").await?;
        let key = crypto::base32_decode(&secret).ok_or("the key is not base32")?;
        let code = crypto::totp(&key, now(), 30, 6).ok_or("totp")?;
        b.fill("#confirm-code", &code).await?;
        b.click("form[action='/factors/totp/confirm'] button")
            .await?;
        b.wait_text("#live", "The factor is active").await?;
        b.wait_text("main", "Active since").await?;
        b.sign_out().await?;
        b.sign_in("mfa", "carol", &[("#password-password", CAROL_CENTRAL)])
            .await?;
        b.wait_text("main", "Step 2 of 2").await?;
        b.axe("the TOTP step").await?;
        let code = crypto::totp(&key, now() + 30, 30, 6).ok_or("totp")?;
        b.fill("#totp-code", &code).await?;
        b.click("form button[type=submit]").await?;
        b.wait_text("main", "Signed in as Carol Example (carol)")
            .await?;
        // Full access: the factor can be removed again.
        b.click("nav a[href='/factors']").await?;
        b.click("form[action='/factors/totp/remove'] button")
            .await?;
        b.wait_text("#live", "The factor was removed").await?;
        Ok(())
    }
    .await;
    b.finish(journey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_looks_like_an_unknown_name() {
    let p = portal().await;
    let Some(mut b) = Browser::open("wrong_password", &p.server).await else {
        return;
    };
    let journey = async {
        b.sign_in(
            "password",
            "carol",
            &[("#password-password", "not-her-password")],
        )
        .await?;
        let wrong = b.wait_text("#live", "did not work").await?;
        let wrong_at = b.path().await?;
        b.axe("a failed sign-in").await?;
        // By keyboard alone: Enter in the password field submits the form.
        b.goto("/sign-in?flow=password").await?;
        b.fill("#login_name", "nobody-here").await?;
        b.fill("#password-password", "whatever-it-is\u{E007}")
            .await?;
        let unknown = b.wait_text("#live", "did not work").await?;
        let unknown_at = b.path().await?;
        if (wrong, wrong_at) != (unknown.clone(), unknown_at.clone()) {
            return Err(format!(
                "a wrong password and an unknown name differ: {unknown:?} at {unknown_at}"
            ));
        }
        Ok(())
    }
    .await;
    b.finish(journey).await;
}

/// After repeated failed sign-ins from the browser's address, its next one is answered with
/// the page again, the name filled in, and a proof of work the page's script solves before the
/// form can be sent; then the right password gets in, and the browser keeps a device cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_failures_the_browser_solves_a_proof_of_work_and_signs_in() {
    let p = portal().await;
    for (path, value) in [
        (r"PRP\Lockout\Source\MaxFailures", "2"),
        (r"PRP\Lockout\ProofOfWorkBits", "8"),
    ] {
        p.store
            .set_parameter(path, Some(value))
            .await
            .expect("param");
    }
    let Some(mut b) = Browser::open("proof_of_work", &p.server).await else {
        return;
    };
    let journey = async {
        // Failures for other names from the same address put the source over its limit.
        for name in ["nobody-one", "nobody-two"] {
            b.sign_in(
                "password",
                name,
                &[("#password-password", "not-a-password")],
            )
            .await?;
            b.wait_text("#live", "did not work").await?;
        }
        b.sign_in(
            "password",
            "carol",
            &[("#password-password", CAROL_CENTRAL)],
        )
        .await?;
        b.wait_text("#live", "did not work").await?;
        b.wait_text(".pow-status", "Done").await?;
        b.axe("the proof of work").await?;
        let name = b
            .client
            .find(Locator::Css("#login_name"))
            .await
            .map_err(err("the name field"))?
            .prop("value")
            .await
            .map_err(err("its value"))?
            .unwrap_or_default();
        if name != "carol" {
            return Err(format!("the name is kept: {name:?}"));
        }
        b.fill("#password-password", CAROL_CENTRAL).await?;
        b.click("form button[type=submit]").await?;
        b.wait_text("main h1", "My passwords").await?;
        let cookies = b.client.get_all_cookies().await.map_err(err("cookies"))?;
        if !cookies.iter().any(|c| c.name() == "prp_device") {
            return Err(format!("no device cookie: {cookies:?}"));
        }
        Ok(())
    }
    .await;
    b.finish(journey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_its_csrf_field_is_refused() {
    let p = portal().await;
    let Some(mut b) = Browser::open("csrf_refused", &p.server).await else {
        return;
    };
    let journey = async {
        // Before sign-in: the sign-in form without its field.
        b.goto("/sign-in?flow=password").await?;
        b.client
            .execute(
                "document.querySelector('input[name=csrf]').remove();",
                vec![],
            )
            .await
            .map_err(err("remove the field"))?;
        b.fill("#login_name", "carol").await?;
        b.fill("#password-password", CAROL_CENTRAL).await?;
        b.click("form button[type=submit]").await?;
        b.wait_text("main", "did not come from this portal").await?;
        b.axe("the refusal").await?;
        // Signed in: setting a password without it changes nothing.
        b.sign_in(
            "password",
            "carol",
            &[("#password-password", CAROL_CENTRAL)],
        )
        .await?;
        b.wait_text("main h1", "My passwords").await?;
        b.client
            .execute(
                "document.querySelector('#set-password input[name=csrf]').remove();",
                vec![],
            )
            .await
            .map_err(err("remove the field"))?;
        b.fill("#password", NEW_PASSWORD).await?;
        b.fill("#confirm", NEW_PASSWORD).await?;
        b.click("#set-password button[type=submit]").await?;
        b.wait_text("main", "did not come from this portal").await?;
        Ok(())
    }
    .await;
    b.finish(journey).await;
    let (status, _) = p.server.send(
        "/api/login/password",
        &prp_host::api::PasswordLogin {
            login_name: "carol".into(),
            password: CAROL_CENTRAL.into(),
            pow: None,
        },
    );
    assert_eq!(status, 200, "the password did not change");
}

/// A form post over plain HTTP/1.1; returns (status, head, body).
fn form_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body.as_bytes()).expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    (status, head.to_owned(), body.to_owned())
}

/// Without a browser: the page headers, the German catalogue, and the refusal's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_send_their_headers_and_speak_german() {
    let p = portal().await;
    let (status, headers, body) = request(
        p.server.addr,
        "GET",
        "/",
        &[("Accept-Language", "de-DE,de;q=0.9,en;q=0.5")],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let h = headers.to_ascii_lowercase();
    for want in [
        "content-type: text/html; charset=utf-8",
        "cache-control: no-store",
        "content-security-policy: default-src 'self';",
        "x-frame-options: deny",
    ] {
        assert!(h.contains(want), "{want} missing: {headers}");
    }
    assert!(!h.contains("unsafe-inline"), "{headers}");
    assert!(body.contains("<html lang=\"de\">"), "{body}");
    assert!(body.contains("Anmelden"), "{body}");
    assert!(
        !body.contains("<script>") && !body.contains("style="),
        "nothing inline: {body}"
    );
    let (status, _, body) = request(p.server.addr, "GET", "/", &[], None);
    assert_eq!(status, 200);
    assert!(
        body.contains("<html lang=\"en\">") && body.contains("Sign in"),
        "{body}"
    );
    // A sign-in post without the pre-session token: 403, a page that says why.
    let (status, headers, body) = form_post(
        p.server.addr,
        "/sign-in",
        "flow=password&login_name=carol&method=password&v_password=x",
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        headers.to_ascii_lowercase().contains("text/html"),
        "{headers}"
    );
    assert!(body.contains("did not come from this portal"), "{body}");
    // A session that ended: back to the start, saying so; no cookie at all: just the start.
    let (status, headers, _) = request(
        p.server.addr,
        "GET",
        "/passwords",
        &[("Cookie", "prp_session=ended-long-ago")],
        None,
    );
    assert_eq!(status, 303, "{headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("location: /?m=expired"),
        "{headers}"
    );
    let (status, headers, _) = request(p.server.addr, "GET", "/passwords", &[], None);
    assert_eq!(status, 303, "{headers}");
    assert!(
        headers.to_ascii_lowercase().contains("location: /\r\n"),
        "{headers}"
    );
    let (_, _, body) = request(p.server.addr, "GET", "/?m=expired", &[], None);
    assert!(body.contains("Your session has ended."), "{body}");
    // The API still refuses forms.
    let (status, _, _) = form_post(
        p.server.addr,
        "/api/login/password",
        "login_name=carol&password=x",
    );
    assert_eq!(status, 415);
}
