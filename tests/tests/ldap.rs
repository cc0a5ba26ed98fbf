//! The LDAP resolver plugin (`plugins/ldap-resolver`) against a real OpenLDAP: each test starts
//! its own `slapd` (a slapd.conf in a scratch directory, mdb seeded with `slapadd`, the ppolicy
//! overlay, TLS with a CA the test generates, loopback ports picked free; no system service)
//! and the real host in process, whose demo persons the directory's entries map to by
//! `employeeNumber` ↔ `UID_Person`.
//!
//! Journeys: a login with the directory password, a new one set through the portal (checked
//! with `ldapwhoami`), disabled and ppolicy-locked entries refused, filter injection finding
//! nothing, ldaps and StartTLS with the generated CA, and, with slapd stopped, an optional
//! resolver leaving central logins working while a required one fails closed.
//!
//! Without slapd, slapadd and ldapwhoami (Debian's `slapd` and `ldap-utils`, which `.ci/run`
//! installs) the tests print SKIPPED, or fail when `CI` is set.

use prp_tests::{artifacts, Backend, Client, Portal, PortalOptions, CAROL_CENTRAL};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const SUFFIX: &str = "dc=example,dc=org";
const PEOPLE: &str = "ou=people,dc=example,dc=org";
const SERVICE_DN: &str = "cn=portal,ou=services,dc=example,dc=org";
const SERVICE_PW: &str = "portal-service-pw";
const CAROL_DN: &str = "uid=cldap,ou=people,dc=example,dc=org";
const CAROL_LDAP: &str = "carol-ldap-pw";
const DORA_LDAP: &str = "dora-ldap-pw";
const LARS_LDAP: &str = "lars-ldap-pw";
const OKKO_LDAP: &str = "okko-ldap-pw";
const ELSA_LDAP: &str = "elsa-ldap-pw";
const NEW_PW: &str = "orchard-velvet-lantern-42";

/// The directory: a service account, a password policy (ppolicy), and entries for demo persons.
fn seed_ldif() -> String {
    format!(
        "dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: ou=policies,{SUFFIX}
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,{SUFFIX}
objectClass: applicationProcess
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 5
pwdLockoutDuration: 0

dn: cn=strict,ou=policies,{SUFFIX}
objectClass: applicationProcess
objectClass: pwdPolicy
cn: strict
pwdAttribute: userPassword
pwdCheckQuality: 2
pwdMinLength: 40

dn: cn=brief,ou=policies,{SUFFIX}
objectClass: applicationProcess
objectClass: pwdPolicy
cn: brief
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 5
pwdLockoutDuration: 60

dn: {SERVICE_DN}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: portal
userPassword: {SERVICE_PW}

dn: {CAROL_DN}
objectClass: inetOrgPerson
uid: cldap
cn: Carol Example
sn: Example
employeeNumber: P-CAROL
userPassword: {CAROL_LDAP}

dn: uid=dldap,{PEOPLE}
objectClass: inetOrgPerson
uid: dldap
cn: Dora
sn: Disabled
employeeNumber: P-DORA
employeeType: disabled
userPassword: {DORA_LDAP}

dn: uid=lldap,{PEOPLE}
objectClass: inetOrgPerson
uid: lldap
cn: Lars
sn: Locked
employeeNumber: P-LARS
pwdAccountLockedTime: 000001010000Z
userPassword: {LARS_LDAP}

dn: uid=oldap,{PEOPLE}
objectClass: inetOrgPerson
uid: oldap
cn: Okko
sn: Ok
employeeNumber: P-OKKO
pwdPolicySubentry: cn=strict,ou=policies,{SUFFIX}
userPassword: {OKKO_LDAP}

dn: uid=eldap,{PEOPLE}
objectClass: inetOrgPerson
uid: eldap
cn: Elsa
sn: Expired
employeeNumber: P-ELSA
pwdPolicySubentry: cn=brief,ou=policies,{SUFFIX}
pwdAccountLockedTime: 20000101000000Z
userPassword: {ELSA_LDAP}

dn: cn=Twin One,{PEOPLE}
objectClass: inetOrgPerson
uid: twin
cn: Twin One
sn: One
employeeNumber: P-OKKO
userPassword: {OKKO_LDAP}

dn: cn=Twin Two,{PEOPLE}
objectClass: inetOrgPerson
uid: twin
cn: Twin Two
sn: Two
employeeNumber: P-CAROL
userPassword: {CAROL_LDAP}
"
    )
}

/// A CA and a server certificate it signed for localhost and 127.0.0.1: (CA PEM, cert PEM,
/// key PEM).
fn tls_material() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "prp test directory CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `slapd` of the test's own; killed when dropped.
struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
}

impl Slapd {
    /// Whether slapd and the LDAP tools are installed; SKIPPED (or, under CI, a failure) when
    /// they aren't.
    fn available(test: &str) -> bool {
        let missing: Vec<&str> = [SLAPD, SLAPADD]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .chain(
                Command::new("ldapwhoami")
                    .arg("-VV")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_err()
                    .then_some("ldapwhoami"),
            )
            .collect();
        if missing.is_empty() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {missing:?} missing (apt-get install slapd ldap-utils); CI must run this test"
        );
        println!("SKIPPED: {test}: {missing:?} not installed (apt-get install slapd ldap-utils)");
        false
    }

    /// Writes the configuration, the certificates and the seed, loads it with slapadd, starts
    /// slapd on two free loopback ports (ldap:// with StartTLS, ldaps://) and waits until the
    /// service account can bind.
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let (ca, cert, key) = tls_material();
        std::fs::write(d.join("ca.pem"), ca).expect("ca");
        std::fs::write(d.join("server.pem"), cert).expect("cert");
        std::fs::write(d.join("server.key"), key).expect("key");
        std::fs::create_dir(d.join("data")).expect("data dir");
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key

database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "cn=admin,{SUFFIX}"
directory {d}/data
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{SUFFIX}"
ppolicy_use_lockout

access to attrs=userPassword
  by dn.exact="{SERVICE_DN}" write
  by anonymous auth
  by * none
access to *
  by dn.exact="{SERVICE_DN}" read
  by * none
"#,
            d = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).expect("slapd.conf");
        std::fs::write(d.join("seed.ldif"), seed_ldif()).expect("seed");
        let out = Command::new(SLAPADD)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("seed.ldif"))
            .output()
            .expect("slapadd runs");
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut slapd = Self {
            child: None,
            dir,
            port: free_port(),
            tls_port: free_port(),
        };
        slapd.run();
        slapd
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("slapd.log")).expect("log");
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
                self.port, self.tls_port
            ))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.whoami(SERVICE_DN, SERVICE_PW) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("slapd exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not answer: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `ldapwhoami` binds as `dn` with `password`: whether the directory accepted it.
    fn whoami(&self, dn: &str, password: &str) -> bool {
        Command::new("ldapwhoami")
            .args(["-x", "-H", &self.url(), "-D", dn, "-w", password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The resolver's settings for this directory, with `extra` merged in.
fn settings(slapd: &Slapd, extra: Value) -> Value {
    let mut s = json!({
        "Url": slapd.url(),
        "BindDn": SERVICE_DN,
        "BindPassword": SERVICE_PW,
        "BaseDn": PEOPLE,
        "PersonAttribute": "employeeNumber",
        "PersonColumn": "UID_Person",
        "DisabledAttribute": "employeeType",
        "DisabledValues": "disabled|inactive",
        "TimeoutMs": 3000,
    });
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    s
}

/// The plugin API's fake host with the resolver's settings for `slapd` (`extra` merged in)
/// and these persons (`UID_Person`, central account), for the resolver in process.
fn fake_host(
    slapd: &Slapd,
    extra: Value,
    persons: &[(&str, &str)],
) -> prp_plugin_api::testing::FakeHost {
    use prp_plugin_api::testing::{person, FakeHost};
    let fake = FakeHost::new(ldap_resolver::PLUGIN);
    for (k, v) in settings(slapd, extra).as_object().expect("object") {
        let v = v
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        fake.set_setting(k, &v);
    }
    for (uid, central) in persons {
        fake.add_person(person(uid, central), &[]);
    }
    fake
}

/// A seeded portal (SQLite) whose resolvers are the built-in ones and `ldap`, with these
/// plugin settings and more `Plugins` entries (`Optional`).
async fn portal(settings: Value, plugins: Value) -> Portal {
    let lib = artifacts().lib("ldap-resolver");
    let mut p = json!({
        "Resolvers": ["central-account", "search-table", "ldap"],
        "Settings": {"ldap-resolver": settings},
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), plugins.as_object()) {
        for (k, v) in extra {
            p.insert(k.clone(), v.clone());
        }
    }
    let options = PortalOptions {
        host: json!({}),
        plugins: p,
        extra_plugins: &[lib],
    };
    Portal::start_with(&Backend::Sqlite, options, |store| async move {
        for (uid, pw) in [("P-DORA", "dora-central-pw"), ("P-LARS", "lars-central-pw")] {
            prp_host::demo::set_central_password(&store, &prp_tests::hasher(), uid, pw)
                .await
                .expect("pw");
        }
    })
    .await
}

fn item_ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_password_login_and_reset_through_the_portal() {
    if !Slapd::available("directory_password_login_and_reset_through_the_portal") {
        return;
    }
    let slapd = Slapd::start();
    let p = portal(settings(&slapd, json!({})), json!({})).await;

    // The directory's password logs in through the LDAP account.
    let carol = Client::password(&p.server, "cldap", CAROL_LDAP);
    assert_eq!(p.login_status("cldap", "not-the-password"), 401);
    assert_eq!(
        p.login_status("cldap", ""),
        401,
        "never an unauthenticated bind"
    );

    // Her directory entry is among her password items.
    let item = format!("LDAP:{CAROL_DN}");
    let (s, items) = carol.call("GET", "/api/password-items", None);
    assert_eq!(s, 200, "{items}");
    assert!(item_ids(&items).contains(&item), "{items}");

    // Her directory login name is kept out of her new passwords, whichever item they are for.
    for items in [json!([item]), json!(["Person:P-CAROL"])] {
        let (s, v) = carol.call(
            "POST",
            "/api/password-items/check",
            Some(json!({"items": items, "password": "orchard-CLDAP-velvet-42"})),
        );
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["ok"], false, "{v}");
        assert!(v.to_string().contains(r#"(\"cldap\")"#), "{v}");
    }

    // A new password, set through the portal with Password Modify.
    let (s, v) = carol.call(
        "POST",
        "/api/password-items/set",
        Some(json!({"items": [item], "password": NEW_PW})),
    );
    assert_eq!(s, 200, "{v}");
    assert!(
        slapd.whoami(CAROL_DN, NEW_PW),
        "the directory took the new one"
    );
    assert!(!slapd.whoami(CAROL_DN, CAROL_LDAP), "the old one is gone");
    assert_eq!(p.login_status("cldap", NEW_PW), 200);
    assert_eq!(p.login_status("cldap", CAROL_LDAP), 401);
    // The item now has a "last set", and the history rule refuses the same password again
    // before the directory is asked.
    let (_, items) = carol.call("GET", "/api/password-items", None);
    let ldap_item = items["items"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["id"] == item.as_str()))
        .cloned()
        .unwrap_or_default();
    assert!(!ldap_item["last_set"].is_null(), "{items}");
    let (s, v) = carol.call(
        "POST",
        "/api/password-items/set",
        Some(json!({"items": [item], "password": NEW_PW})),
    );
    assert_eq!(s, 422, "{v}");
    assert!(slapd.whoami(CAROL_DN, NEW_PW));
    // The central password is untouched.
    assert_eq!(p.login_status("carol", CAROL_CENTRAL), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_and_locked_entries_are_refused() {
    if !Slapd::available("disabled_and_locked_entries_are_refused") {
        return;
    }
    let slapd = Slapd::start();
    let p = portal(settings(&slapd, json!({})), json!({})).await;

    // The right password, but the entry is disabled (employeeType: disabled).
    assert!(slapd.whoami(&format!("uid=dldap,{PEOPLE}"), DORA_LDAP));
    assert_eq!(p.login_status("dldap", DORA_LDAP), 401);
    let reason = p.last_reason().await;
    assert!(reason.contains("disabled in the directory"), "{reason}");
    // The help desk sees why.
    let out = p.cli(&["explain-login", "dldap"]);
    let text = prp_tests::stdout(&out);
    assert!(
        text.contains("employeeType: disabled") && text.contains("ldap"),
        "{text}{}",
        prp_tests::stderr(&out)
    );
    // Nor is it among Dora's items to reset.
    let dora = Client::password(&p.server, "dora", "dora-central-pw");
    let (s, items) = dora.call("GET", "/api/password-items", None);
    assert_eq!(s, 200, "{items}");
    assert!(
        !item_ids(&items).iter().any(|i| i.starts_with("LDAP:")),
        "{items}"
    );

    // Locked by the password policy (pwdAccountLockedTime): refused before any bind.
    assert_eq!(p.login_status("lldap", LARS_LDAP), 401);
    let reason = p.last_reason().await;
    assert!(reason.contains("pwdAccountLockedTime"), "{reason}");

    // Lars resets it through the portal (his central login): the directory's ppolicy clears
    // the lock with the new password, and the entry logs in again.
    let lars = Client::password(&p.server, "lars", "lars-central-pw");
    let item = format!("LDAP:uid=lldap,{PEOPLE}");
    let (s, items) = lars.call("GET", "/api/password-items", None);
    assert_eq!(s, 200, "{items}");
    assert!(item_ids(&items).contains(&item), "{items}");
    let (s, v) = lars.call(
        "POST",
        "/api/password-items/set",
        Some(json!({"items": [item], "password": NEW_PW})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(p.login_status("lldap", NEW_PW), 200);

    // Okko's entry, neither disabled nor locked, logs in; its directory policy refuses a
    // password the portal's allows: 502, and nothing changed anywhere.
    let okko = Client::password(&p.server, "oldap", OKKO_LDAP);
    let item = format!("LDAP:uid=oldap,{PEOPLE}");
    let (s, v) = okko.call(
        "POST",
        "/api/password-items/set",
        Some(json!({"items": [item], "password": NEW_PW})),
    );
    assert_eq!(s, 502, "{v}");
    assert!(slapd.whoami(&format!("uid=oldap,{PEOPLE}"), OKKO_LDAP));
    assert_eq!(p.login_status("oldap", OKKO_LDAP), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_injection_finds_nothing() {
    if !Slapd::available("filter_injection_finds_nothing") {
        return;
    }
    let slapd = Slapd::start();
    let p = portal(settings(&slapd, json!({})), json!({})).await;
    // Unescaped, `cld*` would find Carol's entry alone and her password would log in; `*` and
    // `*)(uid=*` would find every entry.
    for name in ["cld*", "*", "*)(uid=*", "cldap)(uid=*", "\\63ldap"] {
        assert_eq!(p.login_status(name, CAROL_LDAP), 401, "{name}");
        let reason = p.last_reason().await;
        assert!(
            reason.contains("unknown login name"),
            "{name}: no entry was found, so the name is unknown: {reason}"
        );
    }
    // The same password under the real name logs in (the directory answers).
    assert_eq!(p.login_status("cldap", CAROL_LDAP), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn ldaps_and_starttls_with_a_ca_file() {
    if !Slapd::available("ldaps_and_starttls_with_a_ca_file") {
        return;
    }
    let slapd = Slapd::start();
    let ca = slapd.ca_file().display().to_string();
    let ldaps = format!("ldaps://localhost:{}", slapd.tls_port);
    let starttls = format!("ldap://localhost:{}", slapd.port);
    for extra in [
        json!({"Url": ldaps, "CaFile": ca}),
        json!({"Url": starttls, "StartTls": true, "CaFile": ca}),
    ] {
        let p = portal(settings(&slapd, extra.clone()), json!({})).await;
        assert_eq!(p.login_status("cldap", CAROL_LDAP), 200, "{extra}");
        assert_eq!(p.login_status("cldap", "wrong"), 401, "{extra}");
    }
    // Without the CA (the system's roots), the certificate is refused: no login, no guess
    // counted as a wrong password.
    let p = portal(
        settings(&slapd, json!({"Url": ldaps})),
        json!({"Optional": ["ldap-resolver"]}),
    )
    .await;
    assert_ne!(p.login_status("cldap", CAROL_LDAP), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_slapd_stopped_optional_keeps_central_logins_and_required_fails_closed() {
    if !Slapd::available(
        "with_slapd_stopped_optional_keeps_central_logins_and_required_fails_closed",
    ) {
        return;
    }
    let mut slapd = Slapd::start();
    let optional = portal(
        settings(&slapd, json!({})),
        json!({"Optional": ["ldap-resolver"]}),
    )
    .await;
    let required = portal(settings(&slapd, json!({})), json!({})).await;
    for p in [&optional, &required] {
        assert_eq!(p.login_status("cldap", CAROL_LDAP), 200);
        assert_eq!(p.login_status("carol", CAROL_CENTRAL), 200);
    }
    // `check` runs the resolver's self-check: it binds and reads BaseDn.
    let out = required.cli(&["check"]);
    let text = prp_tests::stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(r#"resolver "ldap" (ldap-resolver) self-check: passed"#),
        "{text}"
    );
    slapd.stop();
    let out = required.cli(&["check"]);
    let text = prp_tests::stdout(&out);
    assert!(!out.status.success(), "{text}");
    let failed = text
        .lines()
        .find(|l| l.starts_with("FAILED"))
        .unwrap_or_default();
    assert!(
        failed.contains("ldap-resolver")
            && failed.contains(&slapd.url())
            && failed.contains("connecting failed"),
        "{text}"
    );

    // Optional: the directory's accounts drop out (audited, naming the resolver and why);
    // central logins go on.
    assert_eq!(optional.login_status("carol", CAROL_CENTRAL), 200);
    assert_eq!(optional.login_status("cldap", CAROL_LDAP), 401);
    let events = optional.store.audit_tail(10).await.expect("audit");
    let dropped = events
        .iter()
        .find(|e| e.event == "resolver.dropped")
        .unwrap_or_else(|| panic!("a resolver.dropped event: {events:?}"));
    let why = dropped.reason.clone().unwrap_or_default();
    assert!(
        why.contains("ldap-resolver") && why.contains(&slapd.url()),
        "{why}"
    );

    // Required: every login fails closed with 503 (not a 401 that counts against anyone), and
    // the audit names the plugin, the server and the reason.
    for (name, password) in [("cldap", CAROL_LDAP), ("carol", CAROL_CENTRAL)] {
        let (status, body) = required.password(name, password);
        assert_eq!(status, 503, "{name}: {body}");
        let reason = unavailable_reason(&required, name).await;
        assert!(
            reason.contains("ldap-resolver")
                && reason.contains(&slapd.url())
                && reason.contains("connecting failed"),
            "{name}: {reason}"
        );
        assert!(!reason.contains(SERVICE_PW), "{reason}");
    }
}

/// The reason of the audit record of `name`'s login answered 503 (outcome `unavailable`; the
/// portal may write it after answering, so this waits for it, up to 30 s).
async fn unavailable_reason(p: &Portal, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = p.store.audit_tail(20).await.expect("audit");
        if let Some(e) = events
            .iter()
            .find(|e| e.outcome == "unavailable" && e.login_name.as_deref() == Some(name))
        {
            return e.reason.clone().unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "no audit record of {name}'s unavailable login: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The resolver itself, in process, against the plugin API's fake host and the same slapd:
/// what it finds, lists, verifies, sets and reports, without the portal around it.
#[test]
fn the_resolver_against_slapd_with_a_fake_host() {
    use ldap_resolver::{new_resolver, PLUGIN};
    use prp_plugin_api::{ResolverImpl, SecretCheck, Severity};
    if !Slapd::available("the_resolver_against_slapd_with_a_fake_host") {
        return;
    }
    let mut slapd = Slapd::start();
    let fake = fake_host(
        &slapd,
        json!({}),
        &[
            ("P-CAROL", "carol"),
            ("P-DORA", "dora"),
            ("P-LARS", "lars"),
            ("P-OKKO", "okko"),
        ],
    );
    let r = new_resolver(fake.services()).expect("the settings are good");

    let found = r.resolve("cldap").expect("resolve");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].person_uid.as_str(), "P-CAROL");
    assert_eq!(found[0].source.as_str(), "LDAP");
    assert_eq!(
        found[0]
            .account_uid
            .as_ref()
            .into_option()
            .map(|s| s.as_str()),
        Some(CAROL_DN)
    );
    assert!(found[0].refused_by.is_none(), "{found:?}");
    // Case-insensitive as the directory's uid is.
    assert_eq!(r.resolve("CLDAP").expect("resolve").len(), 1);

    // Injection and wildcards find nothing: no account at all, refused or not.
    for name in [
        "*",
        "*)(uid=*",
        "cld*",
        "cldap)(uid=*",
        "\\63ldap",
        "",
        " ",
        " cldap",
        "cldap ",
    ] {
        assert!(r.resolve(name).expect("resolve").is_empty(), "{name}");
    }

    // Refusals, with the reason.
    let dora = r.resolve("dldap").expect("resolve");
    assert_eq!(dora.len(), 1);
    let why = dora[0].refused_by.as_ref().into_option().expect("refused");
    assert!(why.as_str().contains("employeeType: disabled"), "{why}");
    let lars = r.resolve("lldap").expect("resolve");
    let why = lars[0].refused_by.as_ref().into_option().expect("refused");
    assert!(why.as_str().contains("pwdAccountLockedTime"), "{why}");

    // A name that finds two entries refuses both.
    let twins = r.resolve("twin").expect("resolve");
    assert_eq!(twins.len(), 2, "{twins:?}");
    for t in &twins {
        let why = t.refused_by.as_ref().into_option().expect("refused");
        assert!(
            why.as_str().contains("matches 2 directory entries"),
            "{why}"
        );
    }

    // Passwords: bind as the entry; never an empty password.
    let carol = &found[0];
    assert_eq!(
        r.verify_password(carol, CAROL_LDAP).expect("bind"),
        SecretCheck::OK
    );
    assert_eq!(
        r.verify_password(carol, "nope").expect("bind"),
        SecretCheck::WRONG
    );
    assert_eq!(
        r.verify_password(carol, "").expect("bind"),
        SecretCheck::WRONG
    );
    // An account of another source isn't this resolver's.
    let mut other = carol.clone();
    other.source = "ADSAccount".into();
    assert_eq!(
        r.verify_password(&other, CAROL_LDAP).expect("no call"),
        SecretCheck::UNSUPPORTED
    );
    // Nor is a DN outside BaseDn ever bound.
    let mut outside = carol.clone();
    outside.account_uid = prp_plugin_api::abi_stable::std_types::ROption::RSome(SERVICE_DN.into());
    assert!(r.verify_password(&outside, SERVICE_PW).is_err());

    // A person's accounts; disabled entries aren't listed, locked ones are.
    let mut listed = r.accounts_of("P-CAROL").expect("accounts");
    assert_eq!(listed.len(), 2, "cldap and Twin Two: {listed:?}");
    listed.retain(|a| a.account_key() == Some(CAROL_DN));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(r.accounts_of("P-DORA").expect("accounts").is_empty());
    assert_eq!(r.accounts_of("P-LARS").expect("accounts").len(), 1);
    assert!(r.accounts_of("P-NOBODY").expect("accounts").is_empty());
    // A person's login names (for RejectNames): every entry's uid, a disabled entry's too.
    let mut names = r.login_names_of("P-CAROL").expect("names");
    names.sort();
    assert_eq!(names, vec!["cldap", "twin"]);
    assert_eq!(r.login_names_of("P-DORA").expect("names"), vec!["dldap"]);
    assert!(r.login_names_of("P-NOBODY").expect("names").is_empty());

    // Setting: Password Modify as the service account.
    assert_eq!(
        r.set_password(&listed[0], NEW_PW).expect("set"),
        SecretCheck::OK
    );
    assert!(slapd.whoami(CAROL_DN, NEW_PW));
    assert!(!slapd.whoami(CAROL_DN, CAROL_LDAP));
    assert!(
        r.set_password(&listed[0], "").is_err(),
        "never an empty one"
    );
    let mut dora_account = dora[0].clone();
    dora_account.refused_by = prp_plugin_api::abi_stable::std_types::ROption::RNone;
    let e = r.set_password(&dora_account, NEW_PW).expect_err("disabled");
    assert!(e.message.contains("disabled"), "{e:?}");
    // A reset clears the ppolicy lock (OpenLDAP's ppolicy does that on a password change).
    let lars_account = &r.accounts_of("P-LARS").expect("accounts")[0];
    assert_eq!(
        r.set_password(lars_account, NEW_PW).expect("set"),
        SecretCheck::OK
    );
    let lars = r.resolve("lldap").expect("resolve");
    assert!(lars[0].refused_by.is_none(), "{lars:?}");

    // The directory's own policy (Okko's entry: at least 40 characters) refuses a password,
    // with its reason; nothing changes.
    let okko = &r.accounts_of("P-OKKO").expect("accounts")[0];
    let e = r
        .set_password(okko, NEW_PW)
        .expect_err("too short for the directory");
    assert!(
        e.message.contains("refused the new password") && e.message.contains("constraintViolation"),
        "{e:?}"
    );
    assert!(slapd.whoami(&format!("uid=oldap,{PEOPLE}"), OKKO_LDAP));

    // The self-check: fine while slapd answers; a clear finding when it doesn't.
    let findings = r.self_check().expect("self-check");
    assert!(
        findings.iter().all(|f| !f.severity.is_error()),
        "{findings:?}"
    );
    slapd.stop();
    let findings = r.self_check().expect("self-check");
    let error = findings
        .iter()
        .find(|f| f.severity == Severity::ERROR)
        .unwrap_or_else(|| panic!("an error finding: {findings:?}"));
    assert!(
        error.message.contains(&slapd.url()) && error.message.contains(PLUGIN),
        "{error:?}"
    );
    assert!(!error.message.contains(SERVICE_PW), "{error:?}");
    let e = r.resolve("cldap").expect_err("the directory is away");
    assert!(e.message.contains(&slapd.url()), "{e:?}");
}

/// A ppolicy lock lasts the policy's `pwdLockoutDuration`: Elsa's entry was locked in 2000
/// under a policy of 60 s. Told the duration (`LockoutDuration`), the resolver no longer
/// refuses it, and the directory accepts the bind (clearing the lock); not told, it keeps
/// refusing, as it does a lock for good (`000001010000Z`) whatever the duration.
#[test]
fn a_directory_lock_that_ran_out_no_longer_refuses() {
    use ldap_resolver::new_resolver;
    use prp_plugin_api::{ResolverImpl, SecretCheck};
    if !Slapd::available("a_directory_lock_that_ran_out_no_longer_refuses") {
        return;
    }
    let slapd = Slapd::start();
    let resolver = |extra: Value| {
        let fake = fake_host(&slapd, extra, &[("P-ELSA", "elsa"), ("P-LARS", "lars")]);
        new_resolver(fake.services()).expect("the settings are good")
    };
    let refusal = |r: &dyn ResolverImpl, name: &str| {
        let found = r.resolve(name).expect("resolve");
        assert_eq!(found.len(), 1, "{found:?}");
        found[0]
            .refused_by
            .as_ref()
            .into_option()
            .map(|s| s.as_str().to_owned())
    };

    // Not told how long locks last: a lock is a lock.
    let r = resolver(json!({}));
    let why = refusal(&r, "eldap").expect("refused");
    assert!(why.contains("pwdAccountLockedTime"), "{why}");

    // Told: Elsa's lock ran out long ago; Lars's is for good.
    let r = resolver(json!({"LockoutDuration": 60}));
    assert_eq!(refusal(&r, "eldap"), None);
    let why = refusal(&r, "lldap").expect("refused");
    assert!(why.contains("pwdAccountLockedTime"), "{why}");
    let elsa = r.resolve("eldap").expect("resolve").remove(0);
    assert_eq!(
        r.verify_password(&elsa, ELSA_LDAP).expect("bind"),
        SecretCheck::OK,
        "the directory accepts the bind once the lock has run out"
    );
    // The directory cleared the lock with that bind: refused by neither setting now.
    let r = resolver(json!({}));
    assert_eq!(refusal(&r, "eldap"), None);
}

/// ldaps and StartTLS, trusting the CA file the test generated; without it (the system's
/// roots) the server's certificate is refused, and the error says so.
#[test]
fn tls_with_a_ca_file_in_process() {
    use ldap_resolver::new_resolver;
    use prp_plugin_api::{ResolverImpl, SecretCheck};
    if !Slapd::available("tls_with_a_ca_file_in_process") {
        return;
    }
    let slapd = Slapd::start();
    let ca = slapd.dir.path().join("ca.pem").display().to_string();
    let ldaps = format!("ldaps://localhost:{}", slapd.tls_port);
    let starttls = format!("ldap://localhost:{}", slapd.port);
    let resolver = |extra: Value| {
        let fake = fake_host(&slapd, extra, &[("P-CAROL", "carol")]);
        new_resolver(fake.services()).expect("the settings are good")
    };
    for extra in [
        json!({"Url": ldaps, "CaFile": ca}),
        json!({"Url": starttls, "StartTls": true, "CaFile": ca}),
    ] {
        let r = resolver(extra.clone());
        let found = r.resolve("cldap").expect("resolve");
        assert_eq!(found.len(), 1, "{extra}: {found:?}");
        assert_eq!(
            r.verify_password(&found[0], CAROL_LDAP).expect("bind"),
            SecretCheck::OK,
            "{extra}"
        );
    }
    for extra in [
        json!({"Url": ldaps}),
        json!({"Url": starttls, "StartTls": true}),
    ] {
        let e = resolver(extra.clone())
            .resolve("cldap")
            .expect_err("an unknown issuer");
        assert!(
            e.message.contains("certificate") || e.message.contains("Certificate"),
            "{extra}: {e:?}"
        );
    }
}

/// A server that accepts connections and never answers: every call ends with an error that
/// says it timed out (within `TimeoutMs`, or the call's shorter deadline), naming the server.
#[test]
fn a_directory_that_never_answers_times_out() {
    use ldap_resolver::{new_resolver, PLUGIN};
    use prp_plugin_api::testing::FakeHost;
    use prp_plugin_api::{ErrorKind, ResolverImpl};
    // The kernel completes the connections; nothing ever reads or answers them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let url = format!(
        "ldap://127.0.0.1:{}",
        silent.local_addr().expect("addr").port()
    );
    let fake = FakeHost::new(PLUGIN);
    for (k, v) in [
        ("Url", url.as_str()),
        ("BindDn", SERVICE_DN),
        ("BindPassword", SERVICE_PW),
        ("BaseDn", PEOPLE),
        ("PersonAttribute", "employeeNumber"),
        ("PersonColumn", "UID_Person"),
        ("TimeoutMs", "300"),
    ] {
        fake.set_setting(k, v);
    }
    fake.add_person(prp_plugin_api::testing::person("P-CAROL", "carol"), &[]);
    let r = new_resolver(fake.services()).expect("the settings are good");
    let e = r.resolve("cldap").expect_err("no answer");
    assert_eq!(e.kind, ErrorKind::UNAVAILABLE);
    assert!(
        e.message.contains(&url) && e.message.contains("timed out"),
        "{e:?}"
    );
    // The call's own deadline wins over a longer TimeoutMs.
    fake.set_setting("TimeoutMs", "600000");
    fake.set_time_left_ms(Some(400));
    let r = new_resolver(fake.services()).expect("the settings are good");
    let e = r.accounts_of("P-CAROL").expect_err("no answer");
    assert!(
        e.message.contains("timed out") || e.message.contains("no time left"),
        "{e:?}"
    );
    drop(silent);
}
