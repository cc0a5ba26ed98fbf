//! The directory, through ldap3's synchronous client: one connection per plugin call (each
//! with its own current-thread runtime, as `LdapConn` makes), TLS by rustls, every step under
//! a timeout. Errors name the plugin, the server's URL and the reason, never a password.

use crate::config::{Config, PasswordChange, PLUGIN};
use ldap3::exop::PasswordModify;
use ldap3::{
    LdapConn, LdapConnSettings, LdapError, LdapResult, Mod, Scope, SearchEntry, SearchOptions,
};
use prp_plugin_api::{ErrorKind, PluginError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The time a call may still spend: each step gets the configured timeout or what is left of
/// the host's deadline for the call, whichever is shorter.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    per_step: Duration,
    end: Option<Instant>,
}

impl Budget {
    /// `left`: what the host says is left of the call (`None` outside a call). A margin is
    /// kept so that the plugin answers before the host gives up on it.
    pub fn new(per_step: Duration, left: Option<Duration>) -> Self {
        let end = left.map(|l| Instant::now() + l.saturating_sub((l / 10).min(MARGIN)));
        Self { per_step, end }
    }

    fn next(&self, url: &str, what: &str) -> Result<Duration, PluginError> {
        let Some(end) = self.end else {
            return Ok(self.per_step);
        };
        let left = end.saturating_duration_since(Instant::now());
        if left < MIN_STEP {
            return Err(unavailable(
                url,
                &format!("{what}: no time left within the call's deadline"),
            ));
        }
        Ok(left.min(self.per_step))
    }
}

const MARGIN: Duration = Duration::from_millis(200);
const MIN_STEP: Duration = Duration::from_millis(20);

fn unavailable(url: &str, reason: &str) -> PluginError {
    PluginError::unavailable(format!("{PLUGIN}: {url}: {reason}"))
}

/// The name of an LDAP result code (RFC 4511, appendix A).
pub fn rc_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        19 => "constraintViolation",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        80 => "other",
        _ => "unknown result code",
    }
}

/// `rc=49 invalidCredentials: <the server's text>`.
pub fn describe(result: &LdapResult) -> String {
    let mut s = format!("rc={} {}", result.rc, rc_name(result.rc));
    if !result.text.trim().is_empty() {
        s.push_str(": ");
        s.push_str(result.text.trim());
    }
    s
}

fn describe_error(e: &LdapError) -> String {
    match e {
        LdapError::LdapResult { result } => describe(result),
        LdapError::Timeout { .. } => "timed out".to_owned(),
        other => other.to_string(),
    }
}

/// An entry as the plugin reads it: its DN and the attributes asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    attrs: Vec<(String, Vec<String>)>,
}

impl Entry {
    pub fn new(dn: &str, attrs: &[(&str, &[&str])]) -> Self {
        Self {
            dn: dn.to_owned(),
            attrs: attrs
                .iter()
                .map(|(a, vs)| (a.to_string(), vs.iter().map(|v| v.to_string()).collect()))
                .collect(),
        }
    }

    /// The values of an attribute (names compare ASCII case-insensitively, as LDAP's do).
    pub fn values(&self, attribute: &str) -> &[String] {
        self.attrs
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(attribute))
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    fn from_search(e: SearchEntry) -> Self {
        let mut attrs: Vec<(String, Vec<String>)> = e.attrs.into_iter().collect();
        // Binary values (not UTF-8) are kept as their presence: an attribute that is there.
        for (a, vs) in e.bin_attrs {
            attrs.push((a, vs.iter().map(|_| String::new()).collect()));
        }
        Self { dn: e.dn, attrs }
    }
}

/// The outcome of a bind as an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    Accepted,
    /// `invalidCredentials` (a wrong password, or one the directory's policy refuses, e.g. a
    /// locked entry under ppolicy).
    Rejected,
}

/// The configured directory.
pub struct Directory {
    pub config: Config,
    tls: Arc<rustls::ClientConfig>,
}

impl Directory {
    /// Prepares TLS (the CA file's certificates, or the system's roots); contacts nothing.
    pub fn new(config: Config) -> Result<Self, PluginError> {
        let roots = match &config.ca_file {
            Some(path) => ca_roots(path)?,
            None => system_roots(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PluginError::internal(format!("{PLUGIN}: TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config,
            tls: Arc::new(tls),
        })
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// A new connection (TCP, then TLS for ldaps:// or StartTLS), not bound yet.
    fn connect(&self, budget: &Budget) -> Result<LdapConn, PluginError> {
        let url = self.url();
        let settings = LdapConnSettings::new()
            .set_conn_timeout(budget.next(url, "connecting")?)
            .set_starttls(self.config.start_tls)
            .set_config(Arc::clone(&self.tls));
        LdapConn::with_settings(settings, url).map_err(|e| {
            let step = if self.config.start_tls {
                "connecting (with StartTLS)"
            } else {
                "connecting"
            };
            unavailable(url, &format!("{step} failed: {}", describe_error(&e)))
        })
    }

    /// A connection bound as the service account (`BindDn`).
    pub fn service(&self, budget: &Budget) -> Result<Session<'_>, PluginError> {
        let mut conn = self.connect(budget)?;
        let url = self.url();
        let password = self.config.bind_password.expose();
        if password.is_empty() {
            // An empty password is an unauthenticated bind, which "succeeds" as anonymous.
            return Err(PluginError::config(format!(
                "{PLUGIN}: Plugins:Settings:{PLUGIN}:BindPassword is empty"
            )));
        }
        let result = conn
            .with_timeout(budget.next(url, "binding as the service account")?)
            .simple_bind(&self.config.bind_dn, password)
            .map_err(|e| {
                unavailable(
                    url,
                    &format!(
                        "binding as the service account {} failed: {}",
                        self.config.bind_dn,
                        describe_error(&e)
                    ),
                )
            })?;
        if result.rc != 0 {
            return Err(unavailable(
                url,
                &format!(
                    "the service account {} could not bind: {} (check BindDn and BindPassword)",
                    self.config.bind_dn,
                    describe(&result)
                ),
            ));
        }
        Ok(Session {
            dir: self,
            conn,
            budget: *budget,
        })
    }

    /// Binds as `dn` with `password` on a connection of its own. Never with an empty password
    /// (LDAP treats that as an unauthenticated bind, which succeeds): the caller refuses it
    /// first, and this refuses it again.
    pub fn bind_as(
        &self,
        dn: &str,
        password: &str,
        budget: &Budget,
    ) -> Result<BindOutcome, PluginError> {
        if password.is_empty() || dn.trim().is_empty() {
            return Ok(BindOutcome::Rejected);
        }
        let url = self.url();
        let mut conn = self.connect(budget)?;
        let result = conn
            .with_timeout(budget.next(url, "binding")?)
            .simple_bind(dn, password)
            .map_err(|e| {
                unavailable(
                    url,
                    &format!("binding as {dn} failed: {}", describe_error(&e)),
                )
            })?;
        let _ = conn.unbind();
        match result.rc {
            0 => Ok(BindOutcome::Accepted),
            49 => Ok(BindOutcome::Rejected),
            _ => Err(unavailable(
                url,
                &format!("binding as {dn} was refused: {}", describe(&result)),
            )),
        }
    }
}

/// A connection bound as the service account.
pub struct Session<'a> {
    dir: &'a Directory,
    conn: LdapConn,
    budget: Budget,
}

impl Session<'_> {
    /// Entries under `base` (`scope`) matching `filter`, with these attributes; at most
    /// `limit` of them, and whether there were more.
    pub fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: &[&str],
        limit: u64,
    ) -> Result<(Vec<Entry>, bool), PluginError> {
        let url = self.dir.url();
        let timeout = self.budget.next(url, "searching")?;
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let attributes: Vec<&str> = if attributes.is_empty() {
            vec!["1.1"]
        } else {
            attributes.to_vec()
        };
        let result = self
            .conn
            .with_search_options(SearchOptions::new().sizelimit(limit))
            .with_timeout(timeout)
            .search(base, scope, filter, attributes)
            .map_err(|e| {
                unavailable(
                    url,
                    &format!(
                        "searching {base} for {filter} failed: {}",
                        describe_error(&e)
                    ),
                )
            })?;
        let (raw, status) = (result.0, result.1);
        let truncated = match status.rc {
            0 => false,
            4 => true,
            // The base itself doesn't exist: nothing is under it.
            32 if scope == Scope::Base => return Ok((Vec::new(), false)),
            _ => {
                return Err(unavailable(
                    url,
                    &format!(
                        "searching {base} for {filter} failed: {}",
                        describe(&status)
                    ),
                ))
            }
        };
        let entries = raw
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(|e| Entry::from_search(SearchEntry::construct(e)))
            .collect();
        Ok((entries, truncated))
    }

    /// Sets the password of `dn` as the service account, so the directory hashes it and
    /// applies its own policy: with the Password Modify extended operation (RFC 3062), or for
    /// Active Directory by replacing `unicodePwd` (over TLS, which the settings require).
    pub fn set_password(&mut self, dn: &str, password: &str) -> Result<(), PluginError> {
        let url = self.dir.url();
        let timeout = self.budget.next(url, "setting the password")?;
        let (operation, result) = match self.dir.config.password_change {
            PasswordChange::PasswordModify => (
                "the Password Modify operation",
                self.conn
                    .with_timeout(timeout)
                    .extended(PasswordModify {
                        user_id: Some(dn),
                        old_pass: None,
                        new_pass: Some(password),
                    })
                    .map(|r| r.1),
            ),
            PasswordChange::UnicodePwd => (
                "replacing unicodePwd",
                self.conn.with_timeout(timeout).modify(
                    dn,
                    vec![Mod::Replace(
                        b"unicodePwd".to_vec(),
                        HashSet::from([unicode_pwd(password)]),
                    )],
                ),
            ),
        };
        let status = result.map_err(|e| {
            unavailable(
                url,
                &format!("{operation} for {dn} failed: {}", describe_error(&e)),
            )
        })?;
        if status.rc != 0 {
            // The directory's own rules (ppolicy quality, access) refused it: nothing changed.
            let kind = match status.rc {
                19 | 21 | 53 => ErrorKind::INVALID_INPUT,
                _ => ErrorKind::UNAVAILABLE,
            };
            return Err(PluginError::new(
                kind,
                format!(
                    "{PLUGIN}: {url}: the directory refused the new password for {dn}: {}",
                    describe(&status)
                ),
            ));
        }
        Ok(())
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self.conn.unbind();
    }
}

/// Active Directory's form of a new password: in double quotes, UTF-16LE.
pub fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect()
}

fn ca_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, PluginError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let setting = format!("Plugins:Settings:{PLUGIN}:CaFile");
    let bytes = std::fs::read(path)
        .map_err(|e| PluginError::config(format!("{setting}: {}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| {
            PluginError::config(format!(
                "{setting}: {}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
        roots.add(cert).map_err(|e| {
            PluginError::config(format!(
                "{setting}: {}: a certificate rustls can't use: {e}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(PluginError::config(format!(
            "{setting}: {} holds no CERTIFICATE",
            path.display()
        )));
    }
    Ok(roots)
}

fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_attributes_case_insensitively() {
        let e = Entry::new(
            "uid=a,dc=x",
            &[("employeeNumber", &["7"]), ("pwdAccountLockedTime", &["x"])],
        );
        assert_eq!(e.values("employeenumber"), ["7".to_owned()]);
        assert_eq!(e.values("PWDACCOUNTLOCKEDTIME").len(), 1);
        assert!(e.values("mail").is_empty());
    }

    #[test]
    fn a_budget_is_the_shorter_of_the_step_and_the_call() {
        let url = "ldap://x";
        let b = Budget::new(Duration::from_secs(5), None);
        assert_eq!(b.next(url, "x").unwrap(), Duration::from_secs(5));
        let b = Budget::new(Duration::from_secs(5), Some(Duration::from_secs(1)));
        assert!(b.next(url, "x").unwrap() < Duration::from_secs(1));
        let b = Budget::new(Duration::from_secs(5), Some(Duration::from_millis(10)));
        let e = b.next(url, "binding").unwrap_err();
        assert_eq!(e.kind, ErrorKind::UNAVAILABLE);
        assert!(
            e.message.contains("ldap://x") && e.message.contains("binding"),
            "{e:?}"
        );
    }

    #[test]
    fn active_directory_passwords_are_quoted_utf16le() {
        assert_eq!(unicode_pwd("aé"), vec![0x22, 0, 0x61, 0, 0xe9, 0, 0x22, 0]);
        assert_eq!(unicode_pwd("").len(), 4);
    }

    #[test]
    fn result_codes_are_named() {
        let r = LdapResult {
            rc: 49,
            matched: String::new(),
            text: " bad ".into(),
            refs: vec![],
            ctrls: vec![],
        };
        assert_eq!(describe(&r), "rc=49 invalidCredentials: bad");
    }
}
