//! The `ldap` resolver: login names and a person's accounts from the directory, passwords
//! verified by a bind as the entry and set with Password Modify as the service account.

use crate::config::PLUGIN;
use crate::directory::{BindOutcome, Budget, Directory, Entry};
use crate::filter;
use ldap3::Scope;
use prp_plugin_api::abi_stable::std_types::RStr;
use prp_plugin_api::{
    CheckFinding, ErrorKind, HostServicesBox, LogLevel, PluginError, ResolvedAccount, ResolverImpl,
    SecretCheck,
};
use std::time::Duration;

/// The resolver's id (`Plugins:Resolvers` lists it).
pub const RESOLVER_ID: &str = "ldap";

/// Login names longer than this find nothing (no directory is asked).
const MAX_LOGIN_LEN: usize = 256;

/// What the resolver needs from the host: the identity database's persons, the deadline of the
/// call, the log. [`HostServicesBox`] is the real one; tests may bring their own.
pub trait Host: Send + Sync + 'static {
    /// `UID_Person` of the persons whose `column` equals `value`.
    fn find_persons(&self, column: &str, value: &str) -> Result<Vec<String>, PluginError>;
    /// The person's value of `column`, `None` when unset or no such person.
    fn column_of(&self, person_uid: &str, column: &str) -> Result<Option<String>, PluginError>;
    /// What is left of the current call, `None` outside a call.
    fn time_left(&self) -> Option<Duration>;
    fn write_log(&self, level: LogLevel, message: &str);
}

impl Host for HostServicesBox {
    fn find_persons(&self, column: &str, value: &str) -> Result<Vec<String>, PluginError> {
        let persons = self
            .persons_by_column(RStr::from_str(column), RStr::from_str(value))
            .into_result()?;
        Ok(persons.into_iter().map(|p| p.uid.into_string()).collect())
    }

    fn column_of(&self, person_uid: &str, column: &str) -> Result<Option<String>, PluginError> {
        let value = self
            .person_column(RStr::from_str(person_uid), RStr::from_str(column))
            .into_result()?;
        Ok(value.into_option().map(|v| v.into_string()))
    }

    fn time_left(&self) -> Option<Duration> {
        self.call_time_left_ms()
            .into_option()
            .map(Duration::from_millis)
    }

    fn write_log(&self, level: LogLevel, message: &str) {
        self.log(level, RStr::from_str(message));
    }
}

pub struct LdapResolver<H: Host> {
    dir: Directory,
    host: H,
}

impl<H: Host> LdapResolver<H> {
    pub fn new(dir: Directory, host: H) -> Self {
        Self { dir, host }
    }

    fn budget(&self) -> Budget {
        Budget::new(self.dir.config.timeout, self.host.time_left())
    }

    /// The attributes every read asks for.
    fn attributes(&self) -> Vec<&str> {
        let c = &self.dir.config;
        let mut a = vec![c.login_attribute.as_str(), c.person_attribute.as_str()];
        if let Some(d) = &c.disabled_attribute {
            a.push(d.as_str());
        }
        if let Some(l) = &c.lock_attribute {
            a.push(l.as_str());
        }
        a
    }

    /// Why the entry may not be used, in words; `None` when it may.
    fn disabled(&self, entry: &Entry) -> Option<String> {
        let c = &self.dir.config;
        let attribute = c.disabled_attribute.as_deref()?;
        entry
            .values(attribute)
            .iter()
            .find(|v| {
                c.disabled_values
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(v.trim()))
            })
            .map(|v| format!("disabled in the directory ({attribute}: {v})"))
    }

    fn locked(&self, entry: &Entry) -> Option<String> {
        let attribute = self.dir.config.lock_attribute.as_deref()?;
        // Present means locked until `LockoutDuration` has passed since the lock began (none
        // set: until cleared), except `0`, which AD's `lockoutTime` holds once unlocked.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let duration = self.dir.config.lockout_duration;
        entry
            .values(attribute)
            .iter()
            .any(|v| crate::lock::in_force(v, duration, now))
            .then(|| format!("locked by the directory's password policy ({attribute})"))
    }

    /// The persons an entry maps to (by `PersonAttribute` ↔ `PersonColumn`), with a reason
    /// when that is not exactly one value.
    fn persons_of(&self, entry: &Entry) -> Result<(Vec<String>, Option<String>), PluginError> {
        let c = &self.dir.config;
        let values = entry.values(&c.person_attribute);
        match values {
            [] => Ok((Vec::new(), None)),
            [value] if value.trim().is_empty() => Ok((Vec::new(), None)),
            [value] => {
                let persons = self.host.find_persons(&c.person_column, value)?;
                let why = (persons.len() > 1).then(|| {
                    format!(
                        "the entry's {} maps to {} persons by {}",
                        c.person_attribute,
                        persons.len(),
                        c.person_column
                    )
                });
                Ok((persons, why))
            }
            many => {
                self.host.write_log(
                    LogLevel::WARN,
                    &format!(
                        "{} has {} values of {}: it maps to no person",
                        entry.dn,
                        many.len(),
                        c.person_attribute
                    ),
                );
                Ok((Vec::new(), None))
            }
        }
    }

    /// The entries (`AccountFilter`) whose `PersonAttribute` is the person's `PersonColumn`, at
    /// most `MaxEntries` of them (more are logged).
    fn entries_of(&self, person_uid: &str) -> Result<Vec<Entry>, PluginError> {
        let c = &self.dir.config;
        let Some(value) = self.host.column_of(person_uid, &c.person_column)? else {
            return Ok(Vec::new());
        };
        if value.trim().is_empty() {
            return Ok(Vec::new());
        }
        let search = filter::and_equals(&c.account_filter, &c.person_attribute, &value);
        let mut session = self.dir.service(&self.budget())?;
        let (entries, truncated) = session.search(
            &c.base_dn,
            Scope::Subtree,
            &search,
            &self.attributes(),
            c.max_entries,
        )?;
        drop(session);
        if truncated {
            self.host.write_log(
                LogLevel::WARN,
                &format!(
                    "more than {} entries have {}={value}; only those are listed",
                    entries.len(),
                    c.person_attribute
                ),
            );
        }
        Ok(entries)
    }

    /// The account of `entry` with `person_uid`, found by `matched_by`.
    fn account(&self, person_uid: &str, entry: &Entry, matched_by: &str) -> ResolvedAccount {
        ResolvedAccount::new(
            person_uid,
            self.dir.config.source.as_str(),
            Some(entry.dn.as_str()),
            matched_by,
        )
    }

    /// The DN of an account this resolver found, checked to lie under `BaseDn`; `None` for
    /// accounts of other sources.
    fn dn_of<'a>(&self, account: &'a ResolvedAccount) -> Result<Option<&'a str>, PluginError> {
        if account.source.as_str() != self.dir.config.source {
            return Ok(None);
        }
        let Some(dn) = account.account_key() else {
            return Ok(None);
        };
        if !filter::dn_within(dn, &self.dir.config.base_dn) {
            return Err(PluginError::new(
                ErrorKind::INVALID_INPUT,
                format!(
                    "{PLUGIN}: {dn} is not under BaseDn {}",
                    self.dir.config.base_dn
                ),
            ));
        }
        Ok(Some(dn))
    }
}

impl<H: Host> ResolverImpl for LdapResolver<H> {
    fn id(&self) -> String {
        RESOLVER_ID.into()
    }

    fn resolve(&self, login_name: &str) -> Result<Vec<ResolvedAccount>, PluginError> {
        // Surrounding spaces would be ignored by most directories' matching rules: such a
        // name is not the account's name.
        if login_name.trim().is_empty()
            || login_name.trim() != login_name
            || login_name.len() > MAX_LOGIN_LEN
        {
            return Ok(Vec::new());
        }
        let c = &self.dir.config;
        let search = filter::render(&c.filter, login_name);
        let mut session = self.dir.service(&self.budget())?;
        let (entries, truncated) = session.search(
            &c.base_dn,
            Scope::Subtree,
            &search,
            &self.attributes(),
            c.max_entries,
        )?;
        drop(session);
        // A login name names one entry: several (or more than MaxEntries) refuse them all.
        let ambiguous = (entries.len() > 1 || truncated).then(|| {
            let n = if truncated {
                format!("more than {}", entries.len())
            } else {
                entries.len().to_string()
            };
            format!("the login name matches {n} directory entries")
        });
        let mut out = Vec::new();
        for entry in &entries {
            let (persons, mapping) = self.persons_of(entry)?;
            let refusal = ambiguous
                .clone()
                .or(mapping)
                .or_else(|| self.disabled(entry))
                .or_else(|| self.locked(entry));
            for person in persons {
                let account = self.account(&person, entry, &c.login_attribute);
                out.push(match &refusal {
                    Some(why) => account.refused_by(why.clone()),
                    None => account,
                });
            }
        }
        Ok(out)
    }

    fn verify_password(
        &self,
        account: &ResolvedAccount,
        password: &str,
    ) -> Result<SecretCheck, PluginError> {
        let Some(dn) = self.dn_of(account)? else {
            return Ok(SecretCheck::UNSUPPORTED);
        };
        // Never bind with an empty password: LDAP takes it as an unauthenticated bind, which
        // succeeds (RFC 4513, 5.1.2).
        if password.is_empty() {
            return Ok(SecretCheck::WRONG);
        }
        Ok(match self.dir.bind_as(dn, password, &self.budget())? {
            BindOutcome::Accepted => SecretCheck::OK,
            BindOutcome::Rejected => SecretCheck::WRONG,
        })
    }

    fn accounts_of(&self, person_uid: &str) -> Result<Vec<ResolvedAccount>, PluginError> {
        let c = &self.dir.config;
        // Disabled entries are not the person's to reset; locked ones are (that is what a
        // reset is for; whether it unlocks them is the directory's policy).
        Ok(self
            .entries_of(person_uid)?
            .iter()
            .filter(|e| self.disabled(e).is_none())
            .map(|e| self.account(person_uid, e, &c.person_attribute))
            .collect())
    }

    /// The `LoginAttribute` values of every entry of the person's, disabled ones included:
    /// a name stays the person's, and the host keeps it out of their new passwords.
    fn login_names_of(&self, person_uid: &str) -> Result<Vec<String>, PluginError> {
        let attribute = &self.dir.config.login_attribute;
        let mut names: Vec<String> = Vec::new();
        for entry in self.entries_of(person_uid)? {
            for value in entry.values(attribute) {
                if !names.contains(value) {
                    names.push(value.clone());
                }
            }
        }
        Ok(names)
    }

    fn set_password(
        &self,
        account: &ResolvedAccount,
        password: &str,
    ) -> Result<SecretCheck, PluginError> {
        let Some(dn) = self.dn_of(account)? else {
            return Ok(SecretCheck::UNSUPPORTED);
        };
        if password.is_empty() {
            return Err(PluginError::new(
                ErrorKind::INVALID_INPUT,
                format!("{PLUGIN}: an empty password is never set"),
            ));
        }
        let mut session = self.dir.service(&self.budget())?;
        // The entry as it is now: still there, still an account (`AccountFilter`), still the
        // person's, not disabled.
        let (entries, _) = session.search(
            dn,
            Scope::Base,
            &self.dir.config.account_filter,
            &self.attributes(),
            1,
        )?;
        let Some(entry) = entries.first() else {
            return Err(PluginError::new(
                ErrorKind::INVALID_INPUT,
                format!("{PLUGIN}: {dn} no longer exists in the directory, or no longer matches AccountFilter"),
            ));
        };
        let (persons, _) = self.persons_of(entry)?;
        if persons.len() != 1 || persons[0] != account.person_uid.as_str() {
            return Err(PluginError::new(
                ErrorKind::INVALID_INPUT,
                format!(
                    "{PLUGIN}: {dn} no longer maps to person {} alone",
                    account.person_uid.as_str()
                ),
            ));
        }
        if let Some(why) = self.disabled(entry) {
            return Err(PluginError::new(
                ErrorKind::INVALID_INPUT,
                format!("{PLUGIN}: {dn} is {why}; its password is not set"),
            ));
        }
        session.set_password(dn, password)?;
        Ok(SecretCheck::OK)
    }

    fn self_check(&self) -> Result<Vec<CheckFinding>, PluginError> {
        let c = &self.dir.config;
        let subject = |key: &str| format!("Plugins:Settings:{PLUGIN}:{key}");
        let mut findings = Vec::new();
        match self.dir.service(&self.budget()) {
            Err(e) => findings.push(CheckFinding::error(subject("Url"), e.message.as_str())),
            Ok(mut session) => {
                match session.search(&c.base_dn, Scope::Base, "(objectClass=*)", &[], 1) {
                    Err(e) => {
                        findings.push(CheckFinding::error(subject("BaseDn"), e.message.as_str()))
                    }
                    Ok((entries, _)) if entries.is_empty() => findings.push(CheckFinding::error(
                        subject("BaseDn"),
                        format!(
                            "{PLUGIN}: {}: BaseDn {} does not exist or the service account {} can't read it",
                            c.url, c.base_dn, c.bind_dn
                        ),
                    )),
                    Ok(_) => findings.push(CheckFinding::info(
                        subject("Url"),
                        format!(
                            "{PLUGIN}: {} answers; bound as {} and read {}",
                            c.url, c.bind_dn, c.base_dn
                        ),
                    )),
                }
            }
        }
        // The Person column must exist (the host checks it against the live schema).
        if let Err(e) = self.host.find_persons(&c.person_column, "") {
            findings.push(CheckFinding::error(
                subject("PersonColumn"),
                e.message.as_str(),
            ));
        }
        Ok(findings)
    }
}
