//! The template's own tests, against the fake host `prp-plugin-api` ships behind its `testing`
//! feature: no prp host, no database, nothing from this repository but the ABI crate.

use prp_plugin_api::testing::FakeHost;
use prp_plugin_api::{ErrorKind, ResolverImpl, SecretCheck, Severity};
use template_resolver::FileResolver;

/// A host whose configuration folder holds `accounts.txt` with these lines (the `{alice}`
/// placeholder is replaced by a real hash of `alice-pw`).
fn scene(lines: &str) -> (tempfile::TempDir, FakeHost, FileResolver) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeHost::new(template_resolver::NAME);
    fake.set_config_dir(dir.path())
        .set_setting("AccountsFile", "accounts.txt");
    let phc = fake
        .services()
        .hash_secret("alice-pw".into())
        .into_result()
        .expect("hash");
    std::fs::write(
        dir.path().join("accounts.txt"),
        lines.replace("{alice}", phc.as_str()),
    )
    .expect("write");
    let resolver = FileResolver::new(fake.services()).expect("settings");
    (dir, fake, resolver)
}

const FILE: &str =
    "# login_name:person_uid:phc\nalice:P-ALICE:{alice}\n!mallory:P-MAL:\nbob:P-BOB:\n\n";

#[test]
fn names_resolve_case_insensitively_and_disabled_accounts_are_refused() {
    let (_dir, _fake, r) = scene(FILE);
    let found = r.resolve("ALICE").expect("resolve");
    assert_eq!(found.len(), 1);
    let a = &found[0];
    assert_eq!(a.person_uid, "P-ALICE");
    assert_eq!(a.source, "TemplateAccounts");
    assert_eq!(a.account_key(), Some("alice"));
    assert!(a.is_usable());
    let m = r.resolve("mallory").expect("resolve");
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].refused_by.as_ref().map(|s| s.as_str()).into_option(),
        Some("disabled in the accounts file")
    );
    assert!(r.resolve("nobody").expect("resolve").is_empty());
    assert!(r.resolve("P-ALICE").expect("resolve").is_empty());
    let bobs = r.accounts_of("P-BOB").expect("accounts");
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].account_key(), Some("bob"));
}

#[test]
fn passwords_in_the_file_are_verified_and_others_left_to_the_portal() {
    let (_dir, _fake, r) = scene(FILE);
    let alice = r.resolve("alice").expect("resolve").remove(0);
    assert_eq!(r.verify_password(&alice, "alice-pw"), Ok(SecretCheck::OK));
    assert_eq!(
        r.verify_password(&alice, "Alice-pw"),
        Ok(SecretCheck::WRONG)
    );
    let bob = r.resolve("bob").expect("resolve").remove(0);
    assert_eq!(
        r.verify_password(&bob, "anything"),
        Ok(SecretCheck::UNSUPPORTED)
    );
    assert_eq!(r.set_password(&bob, "new"), Ok(SecretCheck::UNSUPPORTED));
}

#[test]
fn a_new_password_replaces_only_its_own_line() {
    let (dir, _fake, r) = scene("# keep me\nalice:P-ALICE:{alice}\nalice2:P-ALICE:{alice}\n");
    let alice = r.resolve("alice").expect("resolve").remove(0);
    assert_eq!(r.set_password(&alice, "fresh-pw"), Ok(SecretCheck::OK));
    assert_eq!(r.verify_password(&alice, "fresh-pw"), Ok(SecretCheck::OK));
    assert_eq!(
        r.verify_password(&alice, "alice-pw"),
        Ok(SecretCheck::WRONG)
    );
    // The other line had the very same hash: it keeps it.
    let other = r.resolve("alice2").expect("resolve").remove(0);
    assert_eq!(r.verify_password(&other, "alice-pw"), Ok(SecretCheck::OK));
    let text = std::fs::read_to_string(dir.path().join("accounts.txt")).expect("read");
    assert!(text.starts_with("# keep me\n"), "{text}");
    assert!(!dir.path().join("accounts.new").exists());
}

#[test]
fn the_self_check_reports_a_malformed_line_with_its_number() {
    let (dir, _fake, r) = scene(FILE);
    let ok = r.self_check().expect("self-check");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].severity, Severity::INFO);
    let file = dir.path().join("accounts.txt");
    assert_eq!(ok[0].message, format!("3 accounts in {}", file.display()));
    std::fs::write(
        dir.path().join("accounts.txt"),
        "alice:P-ALICE:\nbroken line\n",
    )
    .expect("w");
    let bad = r.self_check().expect("self-check");
    assert_eq!(bad[0].severity, Severity::ERROR);
    assert_eq!(
        bad[0].subject,
        "Plugins:Settings:template-resolver:AccountsFile"
    );
    assert!(bad[0]
        .message
        .ends_with("accounts.txt:2: not login_name:person_uid:phc"));
    let e = r
        .resolve("alice")
        .expect_err("a broken file resolves nothing");
    assert_eq!(e.kind, ErrorKind::CONFIG);
    std::fs::remove_file(dir.path().join("accounts.txt")).expect("rm");
    assert_eq!(
        r.self_check().expect("self-check")[0].severity,
        Severity::ERROR
    );
    assert_eq!(
        r.resolve("alice").expect_err("no file").kind,
        ErrorKind::UNAVAILABLE
    );
}

#[test]
fn a_missing_setting_is_named_in_full() {
    let fake = FakeHost::new(template_resolver::NAME);
    let e = FileResolver::new(fake.services())
        .err()
        .expect("no AccountsFile");
    assert_eq!(e.kind, ErrorKind::CONFIG);
    assert!(
        e.message
            .contains("Plugins:Settings:template-resolver:AccountsFile"),
        "{e}"
    );
}
