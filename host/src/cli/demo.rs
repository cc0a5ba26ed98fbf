//! `prp-host demo`: the demo identity database and how to log in to it.

use prp_host::config::Settings;
use prp_host::demo::{self, DemoPeople};
use prp_host::security;
use prp_host::store::Store;
use std::process::ExitCode;

pub async fn run(reset: bool, settings: &Settings, store: &Store) -> anyhow::Result<ExitCode> {
    let hasher = prp_host::app::new_hasher(settings).await?;
    if demo::identity_schema_exists(store).await? {
        if store.person("P-ALICE").await?.is_none() {
            anyhow::bail!("this database already has a Person table that is not the demo's; `prp-host demo` only fills a fresh database");
        }
        if !reset {
            println!("The demo database is already there; nothing was changed.");
            println!("Passwords people changed stay changed, and Bob's passcode was printed when it was issued.");
            println!("Run `prp-host demo --reset` to set the demo passwords back, issue Bob a new passcode and print how to log in.");
            return Ok(ExitCode::SUCCESS);
        }
        demo::reset_demo_passwords(store, &hasher).await?;
        println!("demo passwords set back");
    } else {
        demo::seed_demo(store, &hasher).await?;
        println!("demo identity database built");
    }
    let token = super::token::configured_token(settings)?;
    super::token::store_hash(settings, store, &token).await?;
    let passcode = security::new_passcode();
    let hash = hasher
        .hash_async(&security::normalize_passcode(&passcode).unwrap_or_default())
        .await?;
    store
        .issue_passcode("P-BOB", &hash, 8 * 3600, "demo")
        .await?;
    let url = format!("http://{}", settings.listen);
    println!("\nIn a browser: {url}/ (the web portal; sign in as marta / {} to issue passcodes for her team, alice / {} (with the TOTP plugin loaded, her code follows), or bob with the passcode below)", DemoPeople::MARTA_PASSWORD, DemoPeople::ALICE_PASSWORD);
    println!("\nHow to log in ({url}):");
    println!("  password:  curl -s {url}/api/login/password -H 'content-type: application/json' -d '{{\"login_name\":\"marta\",\"password\":\"{}\"}}'", DemoPeople::MARTA_PASSWORD);
    println!("             (Alice's password is {}; once she has a second factor, below, a full session for her needs it too)", DemoPeople::ALICE_PASSWORD);
    println!("  passcode:  curl -s {url}/api/login/passcode -H 'content-type: application/json' -d '{{\"login_name\":\"bob\",\"passcode\":\"{passcode}\"}}'");
    println!("  questions: curl -s {url}/api/login/questions/challenge -H 'content-type: application/json' -d '{{\"login_name\":\"alice\"}}'");
    println!("             then POST /api/login/questions with the ids; Alice's answers: first pet Rex, born in Lisbon, favourite book Dune");
    println!("  target-system account (SearchTable ADSAccount): login_name \"cexample\" or \"Carol Example\", password \"{}\"", DemoPeople::CAROL_ADS_PASSWORD);
    println!("  disabled account: \"dexample\" (ADSAccount.Disabled) is refused; try `prp-host explain-login dexample`");
    totp_demo(settings, store, &url).await;
    println!("\nAfter logging in (send the token as `Authorization: Bearer <token>`):");
    println!("  GET  {url}/api/password-items             the passwords you may reset, with their policies");
    println!("  POST {url}/api/password-items/check       {{\"items\": [ids], \"password\": \"...\"}}: what a new password breaks");
    println!("  POST {url}/api/password-items/set         the same body: set it for all the items, or none");
    println!("  GET  {url}/api/questions                  your password questions");
    println!("  POST {url}/api/reports/P-ALICE/passcode   Marta (marta / {}) issues a passcode for Alice", DemoPeople::MARTA_PASSWORD);
    Ok(ExitCode::SUCCESS)
}

/// The flow id the demo configures: password, then a TOTP code.
const DEMO_FLOW: &str = "password-totp";

/// Enrolls Alice in TOTP and configures the flow `password` then `totp`, when the TOTP plugin
/// is loaded and a FactorKey is configured; says why not otherwise.
async fn totp_demo(settings: &Settings, store: &Store, url: &str) {
    let service = match prp_host::Service::for_admin(settings.clone(), store.clone()).await {
        Ok(s) => s,
        Err(e) => {
            println!("  two steps (password, then a TOTP code): skipped: {e}");
            return;
        }
    };
    let enrolled = match prp_host::flows::enroll_active(&service, "P-ALICE", "totp").await {
        Ok(e) => e,
        Err(e) => {
            println!("  two steps (password, then a TOTP code): skipped: totp: {e} (load libtotp_authenticator.so and set ConnectionStrings:FactorKey)");
            return;
        }
    };
    for (path, value) in [
        (
            format!(r"{}\{DEMO_FLOW}\Steps", prp_host::flows::FLOWS_BRANCH),
            "password,totp",
        ),
        (
            format!(r"{}\{DEMO_FLOW}\Label", prp_host::flows::FLOWS_BRANCH),
            "Password, then a code from your authenticator app",
        ),
        (
            format!(r"{}\{DEMO_FLOW}\Session", prp_host::flows::FLOWS_BRANCH),
            "full",
        ),
    ] {
        if let Err(e) = store.set_parameter(&path, Some(value)).await {
            println!("  two steps: skipped: cannot set {path}: {e}");
            return;
        }
    }
    let secret = enrolled
        .shown
        .iter()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    println!("  two steps, flow id {DEMO_FLOW}: password, then a TOTP code");
    println!("    Alice's totp secret (base32, add it to an authenticator app): {secret}");
    println!("    Alice has this factor, so every full session of hers asks for it: the built-in flow `password` asks for her code after her password, and /api/login/password answers 403 factor_required");
    println!(
        "    POST {url}/api/login/start {{\"flow\":\"{DEMO_FLOW}\",\"login_name\":\"alice\"}}"
    );
    println!("    POST {url}/api/login/step  {{\"attempt\":\"...\",\"method\":\"password\",\"values\":{{\"password\":\"{}\"}}}}", DemoPeople::ALICE_PASSWORD);
    println!("    POST {url}/api/login/step  {{\"attempt\":\"...\",\"method\":\"totp\",\"values\":{{\"code\":\"123456\"}}}}");
}
