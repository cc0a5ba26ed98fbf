//! The plugin's settings, `Plugins:Settings:ldap-resolver:<Key>`, read once at `init` and
//! checked there: a bad value stops the plugin with an error naming the setting.

#[cfg(test)]
use crate::directory::Directory;
use crate::filter;
use prp_plugin_api::{PluginError, SecretString, Settings};
use std::path::PathBuf;
use std::time::Duration;

/// The plugin's name, as `export_plugin!` declares it and the settings are keyed.
pub const PLUGIN: &str = "ldap-resolver";

/// `Filter` when unset.
pub const DEFAULT_FILTER: &str = "(&(objectClass=inetOrgPerson)(uid={login}))";
/// `AccountFilter` when unset.
pub const DEFAULT_ACCOUNT_FILTER: &str = "(objectClass=inetOrgPerson)";
/// `TimeoutMs` when unset.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// `LockAttribute` when unset.
pub const DEFAULT_LOCK_ATTRIBUTE: &str = "pwdAccountLockedTime";
/// The longest `LockoutDuration` taken (ten years, in seconds).
const MAX_LOCKOUT_SECONDS: u64 = 10 * 366 * 86_400;
/// `MaxEntries` when unset.
pub const DEFAULT_MAX_ENTRIES: u64 = 20;

/// How a new password reaches the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    /// The Password Modify extended operation (RFC 3062): OpenLDAP, 389 DS and most others.
    PasswordModify,
    /// Active Directory: a modify replacing `unicodePwd` with the quoted password in UTF-16LE.
    UnicodePwd,
}

/// How the plugin reaches the directory and reads it.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything else is sent.
    pub start_tls: bool,
    /// PEM file of the certificates to trust for the server (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Bound on connecting (TCP, TLS, StartTLS) and on each operation.
    pub timeout: Duration,
    /// The service account that searches and sets passwords.
    pub bind_dn: String,
    pub bind_password: SecretString,
    /// Where entries are searched (subtree).
    pub base_dn: String,
    /// The filter that finds a login name's entries; `{login}` is replaced by the escaped name.
    pub filter: String,
    /// The filter every account of a person must also match.
    pub account_filter: String,
    /// The attribute whose value names the account (the `matched_by` of a login).
    pub login_attribute: String,
    /// The entry attribute ↔ the `Person` column that map an entry to its person.
    pub person_attribute: String,
    pub person_column: String,
    /// An entry whose `disabled_attribute` has one of `disabled_values` is refused.
    pub disabled_attribute: Option<String>,
    /// Compared ASCII case-insensitively.
    pub disabled_values: Vec<String>,
    /// An entry that carries this attribute with a value other than `0` is locked and refused
    /// (`pwdAccountLockedTime`, the ppolicy overlay's lock; AD's `lockoutTime`), until
    /// `lockout_duration` has passed since the time it holds (`lock.rs`).
    pub lock_attribute: Option<String>,
    /// How long the directory's lock lasts (`LockoutDuration`, seconds: ppolicy's
    /// `pwdLockoutDuration`, AD's `lockoutDuration`); `None` (unset or 0): until cleared.
    pub lockout_duration: Option<Duration>,
    /// How a new password is set.
    pub password_change: PasswordChange,
    /// The source name of the accounts (the system column people see).
    pub source: String,
    /// A login name that finds more entries than this is refused, as is any that finds several.
    pub max_entries: u64,
}

/// Whether an `ldap://` URL (lowercase) names this machine: `localhost`, `127.x.x.x` or `[::1]`.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Config {
    /// Reads and checks every setting.
    pub fn read(settings: &Settings<'_>) -> Result<Self, PluginError> {
        let bad = |key: &str, what: String| {
            PluginError::config(format!("{}: {what}", settings.full_path(key)))
        };
        let url = settings.required("Url")?.trim().to_owned();
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("ldap://") || lower.starts_with("ldaps://")) {
            return Err(bad(
                "Url",
                format!("`{url}` is not an ldap:// or ldaps:// URL"),
            ));
        }
        let start_tls = settings.bool("StartTls")?.unwrap_or(false);
        if start_tls && lower.starts_with("ldaps://") {
            return Err(bad(
                "StartTls",
                "is true, but Url is ldaps:// (already TLS); use ldap:// with StartTLS".into(),
            ));
        }
        // Passwords cross this connection (the service account's, each login's, each new one):
        // in clear only to the same machine, or when the operator says so in words.
        let plaintext_ok = settings.bool("AllowPlaintext")?.unwrap_or(false);
        if lower.starts_with("ldap://") && !start_tls && !plaintext_ok && !is_loopback_url(&lower) {
            return Err(bad(
                "Url",
                format!(
                    "`{url}` is plain LDAP to another machine: passwords would cross the network in clear; use ldaps://, or StartTls = true, or (only on a network you trust) AllowPlaintext = true"
                ),
            ));
        }
        let ca_file = settings.path("CaFile")?;
        if let Some(path) = &ca_file {
            if !path.is_file() {
                return Err(bad(
                    "CaFile",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        let timeout_ms = settings.u64("TimeoutMs")?.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(100..=600_000).contains(&timeout_ms) {
            return Err(bad(
                "TimeoutMs",
                format!("{timeout_ms} is outside 100–600000"),
            ));
        }
        let bind_dn = settings.required("BindDn")?.trim().to_owned();
        let bind_password = settings.required_secret("BindPassword")?;
        let base_dn = settings.required("BaseDn")?.trim().to_owned();
        let filter = settings
            .string("Filter")?
            .unwrap_or_else(|| DEFAULT_FILTER.to_owned());
        filter::check_template(&filter).map_err(|e| bad("Filter", e))?;
        let account_filter = settings
            .string("AccountFilter")?
            .unwrap_or_else(|| DEFAULT_ACCOUNT_FILTER.to_owned());
        filter::check_filter(&account_filter).map_err(|e| bad("AccountFilter", e))?;
        let attribute = |key: &str, default: Option<&str>| -> Result<String, PluginError> {
            let value = match (settings.string(key)?, default) {
                (Some(v), _) => v.trim().to_owned(),
                (None, Some(d)) => d.to_owned(),
                (None, None) => settings.required(key)?,
            };
            if !filter::is_attribute(&value) {
                return Err(bad(key, format!("`{value}` is not an attribute name")));
            }
            Ok(value)
        };
        let login_attribute = attribute("LoginAttribute", Some("uid"))?;
        let person_attribute = attribute("PersonAttribute", None)?;
        let person_column = settings.required("PersonColumn")?.trim().to_owned();
        let disabled_attribute = match settings.string("DisabledAttribute")? {
            Some(v) if !v.trim().is_empty() => Some(attribute("DisabledAttribute", None)?),
            _ => None,
        };
        let disabled_values: Vec<String> = settings
            .string("DisabledValues")?
            .unwrap_or_else(|| "TRUE".to_owned())
            .split('|')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if disabled_attribute.is_some() && disabled_values.is_empty() {
            return Err(bad("DisabledValues", "lists no value".into()));
        }
        let lock_attribute = match settings.string("LockAttribute")? {
            None => Some(DEFAULT_LOCK_ATTRIBUTE.to_owned()),
            Some(v) if v.trim().is_empty() => None,
            Some(_) => Some(attribute("LockAttribute", None)?),
        };
        let lockout_duration = match settings.u64("LockoutDuration")? {
            None | Some(0) => None,
            Some(s) if s > MAX_LOCKOUT_SECONDS => {
                return Err(bad(
                    "LockoutDuration",
                    format!("{s} seconds is more than ten years; 0 or unset means until cleared"),
                ))
            }
            Some(s) => Some(Duration::from_secs(s)),
        };
        let password_change = match settings.string("PasswordChange")? {
            None => PasswordChange::PasswordModify,
            Some(v) if v.trim().eq_ignore_ascii_case("PasswordModify") => {
                PasswordChange::PasswordModify
            }
            Some(v) if v.trim().eq_ignore_ascii_case("UnicodePwd") => PasswordChange::UnicodePwd,
            Some(v) => {
                return Err(bad(
                    "PasswordChange",
                    format!("`{v}` is neither `PasswordModify` nor `UnicodePwd`"),
                ))
            }
        };
        if password_change == PasswordChange::UnicodePwd
            && !(start_tls || lower.starts_with("ldaps://"))
        {
            return Err(bad(
                "PasswordChange",
                "is UnicodePwd, which Active Directory accepts only over TLS: use ldaps:// or StartTls".into(),
            ));
        }
        let source = settings
            .string("Source")?
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| "LDAP".to_owned());
        if source.is_empty() || source.contains(':') || source.eq_ignore_ascii_case("Person") {
            return Err(bad(
                "Source",
                format!("`{source}` can't name a system (empty, `Person`, or with a `:`)"),
            ));
        }
        let max_entries = settings.u64("MaxEntries")?.unwrap_or(DEFAULT_MAX_ENTRIES);
        if !(1..=1000).contains(&max_entries) {
            return Err(bad(
                "MaxEntries",
                format!("{max_entries} is outside 1–1000"),
            ));
        }
        Ok(Self {
            url,
            start_tls,
            ca_file,
            timeout: Duration::from_millis(timeout_ms),
            bind_dn,
            bind_password,
            base_dn,
            filter,
            account_filter,
            login_attribute,
            person_attribute,
            person_column,
            disabled_attribute,
            disabled_values,
            lock_attribute,
            lockout_duration,
            password_change,
            source,
            max_entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prp_plugin_api::testing::FakeHost;
    use prp_plugin_api::ErrorKind;

    fn fake() -> FakeHost {
        let fake = FakeHost::new(PLUGIN);
        fake.set_setting("Url", "ldap://127.0.0.1:389")
            .set_setting("BindDn", "cn=prp,dc=example,dc=org")
            .set_setting("BindPassword", "service-pw")
            .set_setting("BaseDn", "ou=people,dc=example,dc=org")
            .set_setting("PersonAttribute", "employeeNumber")
            .set_setting("PersonColumn", "UID_Person");
        fake
    }

    fn read(fake: &FakeHost) -> Result<Config, PluginError> {
        let host = fake.services();
        Config::read(&Settings::new(&host, PLUGIN))
    }

    #[test]
    fn defaults() {
        let c = read(&fake()).unwrap();
        assert_eq!(c.filter, DEFAULT_FILTER);
        assert_eq!(c.account_filter, DEFAULT_ACCOUNT_FILTER);
        assert_eq!(c.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(c.login_attribute, "uid");
        assert_eq!(c.source, "LDAP");
        assert_eq!(c.lock_attribute.as_deref(), Some("pwdAccountLockedTime"));
        assert_eq!(c.password_change, PasswordChange::PasswordModify);
        assert!(!c.start_tls && c.ca_file.is_none());
        assert_eq!(c.disabled_attribute, None);
        assert_eq!(c.disabled_values, vec!["TRUE".to_owned()]);
        assert!(!format!("{c:?}").contains("service-pw"), "{c:?}");
    }

    #[test]
    fn plain_ldap_only_to_this_machine_or_when_allowed() {
        for url in [
            "ldap://localhost",
            "ldap://127.0.0.1:389",
            "ldap://[::1]:389/",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "ldap://dc1.example.org",
            "ldap://10.0.0.5:389",
            "ldap://localhost.evil.org",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
        for (extra, ok) in [
            (None, false),
            (Some(("StartTls", "true")), true),
            (Some(("AllowPlaintext", "true")), true),
        ] {
            let fake = fake();
            fake.set_setting("Url", "ldap://dc1.example.org");
            if let Some((k, v)) = extra {
                fake.set_setting(k, v);
            }
            assert_eq!(read(&fake).is_ok(), ok, "{extra:?}");
        }
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (key, value, expect) in [
            ("Url", "http://x", "not an ldap://"),
            ("Filter", "(uid=fixed)", "{login}"),
            ("Filter", "(uid={login}", "not a valid LDAP filter"),
            ("AccountFilter", "objectClass=*", "not a valid LDAP filter"),
            (
                "PersonAttribute",
                "employee number",
                "not an attribute name",
            ),
            ("TimeoutMs", "5", "outside"),
            ("TimeoutMs", "soon", "not a non-negative integer"),
            ("StartTls", "yes", "`yes`"),
            ("Source", "Person", "can't name a system"),
            ("CaFile", "/nonexistent/ca.pem", "not a readable file"),
            ("MaxEntries", "0", "outside"),
            ("LockAttribute", "lockout time", "not an attribute name"),
            ("LockoutDuration", "999999999999", "more than ten years"),
            ("LockoutDuration", "an hour", "not a non-negative integer"),
            ("PasswordChange", "ssh", "neither"),
            ("PasswordChange", "UnicodePwd", "only over TLS"),
            ("Url", "ldap://dc1.example.org:389", "in clear"),
            ("Url", "LDAP://10.0.0.5", "AllowPlaintext"),
        ] {
            let fake = fake();
            fake.set_setting(key, value);
            let e = read(&fake).unwrap_err();
            assert_eq!(e.kind, ErrorKind::CONFIG, "{key}");
            let path = format!("Plugins:Settings:{PLUGIN}:{key}");
            assert!(e.message.contains(&path), "{key}: {e:?}");
            assert!(e.message.contains(expect), "{key}: {e:?}");
        }
        for key in [
            "Url",
            "BindDn",
            "BindPassword",
            "BaseDn",
            "PersonAttribute",
            "PersonColumn",
        ] {
            let fake = fake();
            fake.unset_setting(key);
            let e = read(&fake).unwrap_err();
            assert!(e.message.contains(key), "{key}: {e:?}");
        }
        let fake = fake();
        fake.set_setting("Url", "ldaps://x")
            .set_setting("StartTls", "true");
        let e = read(&fake).unwrap_err();
        assert!(e.message.contains("StartTls"), "{e:?}");
    }

    #[test]
    fn active_directory_settings() {
        let fake = fake();
        fake.set_setting("Url", "ldaps://dc.example.org")
            .set_setting("PasswordChange", "unicodepwd")
            .set_setting("LockAttribute", "lockoutTime");
        let c = read(&fake).unwrap();
        assert_eq!(c.password_change, PasswordChange::UnicodePwd);
        assert_eq!(c.lock_attribute.as_deref(), Some("lockoutTime"));
        fake.set_setting("LockAttribute", "");
        assert_eq!(read(&fake).unwrap().lock_attribute, None);
        // Locks last until cleared unless told otherwise; 0 says the same.
        assert_eq!(c.lockout_duration, None);
        fake.set_setting("LockoutDuration", "1800");
        assert_eq!(
            read(&fake).unwrap().lockout_duration,
            Some(Duration::from_secs(1800))
        );
        fake.set_setting("LockoutDuration", "0");
        assert_eq!(read(&fake).unwrap().lockout_duration, None);
    }

    #[test]
    fn the_ca_file_is_relative_to_the_configuration() {
        let dir = std::env::temp_dir().join(format!("ldap-resolver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), "x").unwrap();
        let fake = fake();
        fake.set_setting("CaFile", "ca.pem").set_config_dir(&dir);
        assert_eq!(read(&fake).unwrap().ca_file, Some(dir.join("ca.pem")));
        // Not a certificate: refused when TLS is prepared, naming the setting.
        let e = Directory::new(read(&fake).unwrap()).err().unwrap();
        assert!(e.message.contains("CaFile"), "{e:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
