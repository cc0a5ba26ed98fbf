//! The host's side of `HostServices`: what a plugin may ask the host for. Every method runs on
//! the blocking thread the host called the plugin on, reaches the database through the host's
//! pool (`Handle::block_on`), hashes through the host's [`Hasher`], and never panics across the
//! boundary.
//!
//! A login's plugin calls run inside a [`RequestScope`]: the parameters as read once at the start
//! of the login serve every parameter read of its callbacks (the lockout policy included), and
//! its crossings are counted. Outside a scope, every read goes to the database.

use super::gate::{self, CallError};
use crate::config::{ConnectionString, PluginOwnSettings};
use crate::metrics::Crossings;
use crate::security::{self, Hasher};
use crate::store::{
    AccountSearch, AuditEvent, LockScope, LockoutPolicy, ParameterSnapshot, PasscodeOutcome,
    SearchTableConfig, Settlement, Store, StoreError, StoredPassword,
};
use prp_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use prp_plugin_api::abi_stable::std_types::{RArc, ROption, RSlice, RStr, RString, RVec};
use prp_plugin_api::{
    guarded, AccountMatch, AccountQuery, ErrorKind, HostServices, HostServicesBox, HostServices_TO,
    LogLevel, PasswordRoles, PersonInfo, PluginError, PluginResult, QuestionAnswer, QuestionInfo,
    ResolvedAccount, ResolverBox, SecretCheck, UnindexedColumn,
};
use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// What the plugin calls made for one request share: the parameters as read once at its start
/// (`None` when they could not be read: every read then goes to the database, and fails there
/// as it would have), and where its crossings are counted. Cheap to clone.
#[derive(Clone)]
pub struct RequestScope {
    parameters: Option<Arc<ParameterSnapshot>>,
    crossings: Arc<Crossings>,
    /// The persons this request has read so far, by `UID_Person`: the authenticator's
    /// `person` is served from what resolution read a moment before in the same request.
    persons: Arc<std::sync::Mutex<Vec<PersonInfo>>>,
}

thread_local! {
    /// The scope of the plugin call running on this thread, if any.
    static SCOPE: RefCell<Option<RequestScope>> = const { RefCell::new(None) };
}

/// Puts back the scope that was in force when a scoped call started, even if it panicked.
struct Restore(Option<RequestScope>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        SCOPE.with(|s| *s.borrow_mut() = previous);
    }
}

impl RequestScope {
    pub fn new(parameters: Option<ParameterSnapshot>, crossings: Arc<Crossings>) -> Self {
        Self {
            parameters: parameters.map(Arc::new),
            crossings,
            persons: Arc::default(),
        }
    }

    /// Runs the plugin call `f` (the host→plugin `method`) on this thread with this scope in
    /// force for its callbacks, and counts it.
    pub fn run<T>(&self, method: &'static str, f: impl FnOnce() -> T) -> T {
        self.crossings.call(method);
        let previous = SCOPE.with(|s| s.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        f()
    }

    /// What `f` makes of the scope in force on this thread, if any.
    fn with<T>(f: impl FnOnce(&RequestScope) -> T) -> Option<T> {
        SCOPE.with(|s| s.borrow().as_ref().map(f))
    }

    /// Counts a callback in the scope in force, if any.
    fn callback(name: &'static str) {
        Self::with(|scope| scope.crossings.callback(name));
    }

    /// Counts a host→plugin call made from within a callback (e.g. a resolver's own password
    /// check), in the scope in force, if any.
    fn nested_call(method: &'static str) {
        Self::with(|scope| scope.crossings.call(method));
    }

    /// The parameters of the scope in force, if any.
    fn parameters() -> Option<Arc<ParameterSnapshot>> {
        Self::with(|scope| scope.parameters.clone()).flatten()
    }

    /// Keeps persons read in the scope in force (none outside a scope).
    fn remember(persons: &[PersonInfo]) {
        Self::with(|scope| {
            if let Ok(mut known) = scope.persons.lock() {
                for p in persons {
                    if !known.iter().any(|k| k.uid == p.uid) {
                        known.push(p.clone());
                    }
                }
            }
        });
    }

    /// A person the scope in force has read, if any.
    fn known_person(uid: &str) -> Option<PersonInfo> {
        Self::with(|scope| {
            scope
                .persons
                .lock()
                .ok()
                .and_then(|known| known.iter().find(|p| p.uid.as_str() == uid).cloned())
        })
        .flatten()
    }
}

/// What every plugin's services share.
pub struct HostContext {
    pub connection_strings: Vec<ConnectionString>,
    /// `None` when the database could not be reached: every data service then fails (closed).
    pub store: Option<Store>,
    pub hasher: Arc<Hasher>,
    /// This server's name, for API configuration keys set `--local`.
    pub server_name: String,
    pub runtime: tokio::runtime::Handle,
    /// The resolvers in use; set once all plugins are loaded.
    pub resolvers: OnceLock<Vec<ResolverInUse>>,
    /// The plugins' own settings (`Plugins:Settings`).
    pub plugin_settings: PluginOwnSettings,
    /// The directory of the configuration file, which relative setting paths start from.
    pub config_dir: PathBuf,
}

/// A resolver the host uses, with the plugin that provides it.
#[derive(Clone)]
pub struct ResolverInUse {
    pub id: String,
    pub plugin: String,
    pub resolver: Arc<ResolverBox>,
    /// Listed in `Plugins:Optional`: when it fails, only its own accounts are dropped.
    pub optional: bool,
    /// Whether it verifies and sets passwords in its own system (asked once, at load).
    pub roles: PasswordRoles,
}

#[derive(Clone)]
struct Services {
    plugin: String,
    ctx: Arc<HostContext>,
}

fn unavailable(e: impl std::fmt::Display) -> PluginError {
    PluginError::new(ErrorKind::UNAVAILABLE, e.to_string())
}

impl From<StoreError> for PluginError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => PluginError::config(m),
            other => unavailable(other),
        }
    }
}

impl Services {
    fn store(&self) -> Result<&Store, PluginError> {
        self.ctx
            .store
            .as_ref()
            .ok_or_else(|| unavailable(crate::app::NO_DATABASE))
    }

    /// Runs a database future to completion on this (blocking) thread.
    fn block<T>(&self, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, PluginError> {
        self.ctx.runtime.block_on(fut).map_err(PluginError::from)
    }

    /// The lockout policy, from the request's parameters when they were read.
    fn policy(&self) -> Result<LockoutPolicy, PluginError> {
        let store = self.store()?;
        Ok(match RequestScope::parameters() {
            Some(params) => LockoutPolicy::from_parameters(&params)?.0,
            None => self.block(store.lockout_policy())?.0,
        })
    }

    /// Counts an attempt against the person before its secret is checked (see README,
    /// "Security model"). A client with the person's device cookie is judged on its device's
    /// counter (kept by the login service) only; any other client is counted against the
    /// person, and while the person is locked it may still try once per solved proof of work
    /// (when the operator allows one). `None`: refused, the person is locked for this client.
    fn reserve(
        &self,
        store: &Store,
        person_uid: &str,
        scope: LockScope,
        policy: &LockoutPolicy,
    ) -> Result<Option<Reserved>, PluginError> {
        Ok(self
            .reserve_reading(store, person_uid, scope, policy, None)?
            .0)
    }

    /// [`Self::reserve`], reading the stored hash of the person's credential `read` (source,
    /// account) with the reservation, in the same round trip: `Some(hash)` when
    /// it was read (the attempt counted against the person, or let through by a paid proof
    /// of work), `None` when it wasn't (the person's device, which reserves nothing here).
    fn reserve_reading(
        &self,
        store: &Store,
        person_uid: &str,
        scope: LockScope,
        policy: &LockoutPolicy,
        read: Option<(&str, &str)>,
    ) -> Result<(Option<Reserved>, Option<Option<StoredPassword>>), PluginError> {
        let (device, paid) = crate::login::with_attempt(|a| {
            a.map(|a| {
                (
                    a.device_person.as_deref() == Some(person_uid),
                    a.pow_paid && a.pow_enabled,
                )
            })
            .unwrap_or_default()
        });
        if device {
            return Ok((Some(Reserved::Device), None));
        }
        let (counted, stored) = match read {
            Some(credential) => {
                let (counted, stored) = self
                    .block(store.reserve_attempt_reading(person_uid, scope, policy, credential))?;
                (counted, Some(stored))
            }
            None => (
                self.block(store.reserve_attempt(person_uid, scope, policy))?,
                None,
            ),
        };
        if counted {
            return Ok((Some(Reserved::Person), stored));
        }
        if paid {
            return Ok((Some(Reserved::Paid), stored));
        }
        want_pow();
        Ok((None, None))
    }

    /// After a wrong secret: a person-level lock is set once the person's tries are spent
    /// (and the person is told); returns whether it was.
    fn settle_failure(
        &self,
        store: &Store,
        person_uid: &str,
        scope: LockScope,
        policy: &LockoutPolicy,
        reserved: Reserved,
    ) -> Result<bool, PluginError> {
        if reserved != Reserved::Person {
            return Ok(false);
        }
        let locked = self.block(store.settle_failure(person_uid, scope, policy))?;
        if locked {
            want_pow();
            let minutes = policy.scope(scope).lock.max(policy.all.lock) / 60;
            let body = format!(
                "Logins to the password reset portal with your {} were paused for up to {minutes} minutes after repeated failed attempts. Your own devices, and a passcode from the help desk, still work. If these attempts weren't yours, tell the help desk.",
                match scope {
                    LockScope::Password => "password",
                    LockScope::Passcode => "passcode",
                    LockScope::Questions => "password questions",
                    LockScope::Factor => "second factor",
                    LockScope::All => "login methods",
                }
            );
            let data = serde_json::json!({ "method": scope.name(), "minutes": minutes });
            if let Err(e) = self.block(store.notify(
                person_uid,
                "lockout",
                "Failed logins to the password reset portal",
                &body,
                None,
                Some(&data),
            )) {
                tracing::warn!("cannot tell the person about a lock: {e}");
            }
        }
        Ok(locked)
    }

    /// After a right secret: the person's counter starts afresh.
    fn settle_success(
        &self,
        store: &Store,
        person_uid: &str,
        scope: LockScope,
        reserved: Reserved,
    ) -> Result<(), PluginError> {
        self.block(store.settle(&settlement(person_uid, scope, reserved)))
    }

    /// The attempt was neither right nor wrong.
    fn refund(
        &self,
        store: &Store,
        person_uid: &str,
        scope: LockScope,
        reserved: Reserved,
    ) -> Result<(), PluginError> {
        if reserved == Reserved::Person {
            self.block(store.refund_attempt(person_uid, scope))?;
        }
        Ok(())
    }

    /// A denial that must cost what a real check costs.
    fn padded(&self, check: SecretCheck, hashes: usize) -> SecretCheck {
        for _ in 0..hashes.max(1) {
            self.ctx.hasher.dummy_verify();
        }
        check
    }

    fn check_password(
        &self,
        person_uid: &str,
        accounts: &[ResolvedAccount],
        password: &str,
    ) -> Result<SecretCheck, PluginError> {
        let store = self.store()?;
        let policy = self.policy()?;
        let resolvers = self.ctx.resolvers.get();
        // One credential per attempt, so every attempt costs one hash whatever the name matched:
        // the central account's when it matched, else the first matched account that has one.
        let mut eligible: Vec<&ResolvedAccount> = accounts
            .iter()
            .filter(|a| prp_plugin_api::rules::is_eligible(a, person_uid))
            .collect();
        eligible.sort_by_key(|a| a.account_uid.is_some());
        // A resolver that verifies passwords in its own system checks its account's.
        let owner_of = |account: &ResolvedAccount| {
            resolvers.and_then(|rs| {
                rs.iter()
                    .filter(|r| r.roles.contains(PasswordRoles::VERIFIES))
                    .find(|r| r.id.as_str() == account.resolver.as_str())
            })
        };
        // The attempt is counted before the password is checked (refused when locked), and
        // the first account's stored hash read with it when the host holds it.
        let first = eligible
            .first()
            .filter(|a| owner_of(a).is_none())
            .map(|a| credential_of(a, person_uid));
        let (reserved, mut prefetched) =
            self.reserve_reading(store, person_uid, LockScope::Password, &policy, first)?;
        let Some(reserved) = reserved else {
            return Ok(self.padded(SecretCheck::LOCKED, 1));
        };
        let mut checked = 0usize;
        // An optional resolver failed and its account was left out.
        let mut dropped = false;
        let mut ok = false;
        for account in eligible {
            // A resolver that verifies passwords in its own system goes first, under a deadline
            // of its own inside the authenticator's call.
            if let Some(owner) = owner_of(account) {
                let resolver = Arc::clone(&owner.resolver);
                let (account, secret) = (account.clone(), password.to_owned());
                RequestScope::nested_call("verify_password");
                match gate::nested(move || {
                    resolver.verify_password(&account, secret.as_str().into())
                }) {
                    Ok(c) if c != SecretCheck::UNSUPPORTED => {
                        checked += 1;
                        ok = c.is_ok();
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if owner.optional => {
                        // An optional resolver that fails only loses its own account: the
                        // next matched account (the central one, say) is checked instead.
                        let message = format!(
                            "optional {}; its account is left out",
                            resolver_failure(owner, &e)
                        );
                        tracing::warn!(plugin = %owner.plugin, resolver = %owner.id, "{message}");
                        let event = AuditEvent {
                            event: "resolver.dropped",
                            outcome: "failure",
                            person_uid: Some(person_uid),
                            reason: Some(&message),
                            actor: Some("server"),
                            ..Default::default()
                        };
                        if let Err(e) = self.ctx.runtime.block_on(store.audit(&event)) {
                            tracing::error!("audit log write failed: {e}");
                        }
                        dropped = true;
                        continue;
                    }
                    Err(e) => {
                        // Not a wrong password: the resolver could not say. The attempt is not
                        // counted, and the login fails naming the resolver and the reason.
                        let message = resolver_failure(owner, &e);
                        tracing::error!(plugin = %owner.plugin, resolver = %owner.id, "login denied: {message}");
                        self.refund(store, person_uid, LockScope::Password, reserved)?;
                        gate::record_failure(message.clone());
                        return Err(unavailable(message));
                    }
                }
            }
            let (source, key) = credential_of(account, person_uid);
            // The first account's hash was read with the reservation.
            let stored = match prefetched.take() {
                Some(stored) if first == Some((source, key)) => stored,
                _ => self.block(store.stored_password(source, key, person_uid))?,
            };
            if let Some(stored) = stored {
                checked += 1;
                // One hash either way: a hash stored before passwords were normalised is of
                // the password as typed; a right one is rehashed (NFKC, current cost) below.
                let normalized = security::normalize_password(password);
                let form = if stored.normalized {
                    &normalized
                } else {
                    password
                };
                ok = self.ctx.hasher.verify(&stored.hash, form);
                if ok && (!stored.normalized || self.ctx.hasher.needs_rehash(&stored.hash)) {
                    match self.ctx.hasher.hash(&normalized) {
                        Ok(new) => {
                            self.block(store.rehash_credential(source, key, &stored.hash, &new))?;
                        }
                        Err(e) => tracing::warn!("rehashing a password failed: {e}"),
                    }
                }
                break;
            }
        }
        if checked == 0 {
            self.ctx.hasher.dummy_verify();
        }
        if ok {
            // In a login, written by the login service (with the grant when it can be).
            let settled = settlement(person_uid, LockScope::Password, reserved);
            if let Err(settled) = crate::login::defer_settlement(settled) {
                self.block(store.settle(&settled))?;
            }
            Ok(SecretCheck::OK)
        } else if checked == 0 && dropped {
            // Nothing was checked because an optional resolver failed: not the person's
            // failure, so it counts against nobody (and sets no lock, sends no lock mail).
            self.refund(store, person_uid, LockScope::Password, reserved)?;
            Ok(SecretCheck::NONE)
        } else {
            let locked =
                self.settle_failure(store, person_uid, LockScope::Password, &policy, reserved)?;
            Ok(match (checked, locked) {
                (0, _) => SecretCheck::NONE,
                (_, true) => SecretCheck::WRONG_AND_INVALIDATED,
                _ => SecretCheck::WRONG,
            })
        }
    }

    fn check_passcode(&self, person_uid: &str, passcode: &str) -> Result<SecretCheck, PluginError> {
        let store = self.store()?;
        let policy = self.policy()?;
        let Some(reserved) = self.reserve(store, person_uid, LockScope::Passcode, &policy)? else {
            return Ok(self.padded(SecretCheck::LOCKED, 1));
        };
        let outcome = match (
            self.block(store.passcode(person_uid))?,
            security::normalize_passcode(passcode),
        ) {
            (None, _) => {
                self.ctx.hasher.dummy_verify();
                PasscodeOutcome::NoneIssued
            }
            (Some((_, expires_at)), _) if expires_at <= store.now() => {
                self.ctx.hasher.dummy_verify();
                self.block(store.delete_passcode(person_uid, None))?;
                PasscodeOutcome::Expired
            }
            (Some((hash, _)), normalized) => {
                // A malformed passcode is checked all the same, so it costs the same.
                let right = self
                    .ctx
                    .hasher
                    .verify(&hash, normalized.as_deref().unwrap_or(passcode))
                    && normalized.is_some();
                if right {
                    // Consumed only if the login is granted, with its session (at once when
                    // called outside a login).
                    let c = crate::store::Consumption::Passcode {
                        person_uid: person_uid.to_owned(),
                        hash,
                    };
                    match crate::login::defer_consumption(c) {
                        Ok(()) => PasscodeOutcome::Consumed,
                        Err(c) if self.block(store.consume_now(&c))? => PasscodeOutcome::Consumed,
                        Err(_) => PasscodeOutcome::AlreadyUsed,
                    }
                } else if reserved == Reserved::Device
                    && self.block(store.passcode_wrong_guess(
                        person_uid,
                        &hash,
                        policy.passcode_max_guesses,
                    ))?
                {
                    // Only the person's own devices wear a passcode out: anyone else's wrong
                    // guesses are counted against their source and name (and ask a proof of
                    // work), so they can't burn the passcode the help desk gave the person.
                    PasscodeOutcome::WrongAndInvalidated
                } else {
                    PasscodeOutcome::Wrong
                }
            }
        };
        Ok(match outcome {
            PasscodeOutcome::Consumed => {
                self.settle_success(store, person_uid, LockScope::Passcode, reserved)?;
                SecretCheck::OK
            }
            PasscodeOutcome::AlreadyUsed => {
                // Right, but too late: neither a success nor a guess.
                self.refund(store, person_uid, LockScope::Passcode, reserved)?;
                SecretCheck::ALREADY_USED
            }
            other => {
                self.settle_failure(store, person_uid, LockScope::Passcode, &policy, reserved)?;
                match other {
                    PasscodeOutcome::NoneIssued => SecretCheck::NONE,
                    PasscodeOutcome::Expired => SecretCheck::EXPIRED,
                    PasscodeOutcome::WrongAndInvalidated => SecretCheck::WRONG_AND_INVALIDATED,
                    _ => SecretCheck::WRONG,
                }
            }
        })
    }

    fn check_answers(
        &self,
        person_uid: &str,
        answers: &[QuestionAnswer],
    ) -> Result<SecretCheck, PluginError> {
        let store = self.store()?;
        let policy = self.policy()?;
        let Some(reserved) = self.reserve(store, person_uid, LockScope::Questions, &policy)? else {
            return Ok(self.padded(SecretCheck::LOCKED, answers.len()));
        };
        let questions = self.block(store.questions(person_uid))?;
        let mut all_right = !answers.is_empty();
        let mut newly_locked = false;
        for a in answers {
            let question = questions
                .iter()
                .find(|q| q.id == a.question_id.as_str() && !q.locked);
            // The attempt is counted before the answer is checked, in one statement, so that
            // guesses sent in parallel can't get more tries than the limit between them.
            let reserved = match question {
                Some(q) => self.block(store.reserve_question_attempt(
                    person_uid,
                    &q.id,
                    policy.question_max_failures,
                ))?,
                None => false,
            };
            match question.filter(|_| reserved) {
                None => {
                    self.ctx.hasher.dummy_verify();
                    all_right = false;
                }
                Some(q) => {
                    if self
                        .ctx
                        .hasher
                        .verify(&q.answer_hash, &security::normalize_answer(&a.answer))
                    {
                        self.block(store.refund_question_attempt(&q.id))?;
                    } else {
                        all_right = false;
                        newly_locked |= self.block(
                            store.lock_spent_question(&q.id, policy.question_max_failures),
                        )?;
                    }
                }
            }
        }
        if all_right {
            self.settle_success(store, person_uid, LockScope::Questions, reserved)?;
            return Ok(SecretCheck::OK);
        }
        let locked =
            self.settle_failure(store, person_uid, LockScope::Questions, &policy, reserved)?;
        Ok(if locked || newly_locked {
            SecretCheck::WRONG_AND_INVALIDATED
        } else {
            SecretCheck::WRONG
        })
    }
}

/// How an attempt was let through by [`Services::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserved {
    /// Counted against the person.
    Person,
    /// The person's own device: judged on the device's counter only.
    Device,
    /// The person is locked, but the client solved a proof of work for this one try.
    Paid,
}

/// The credential that holds an account's password in the host's store: (source, account).
fn credential_of<'a>(account: &'a ResolvedAccount, person_uid: &'a str) -> (&'a str, &'a str) {
    match account.account_uid.as_ref().into_option() {
        None => ("Person", person_uid),
        Some(uid) => (account.source.as_str(), uid.as_str()),
    }
}

/// What a right secret let through as `reserved` does to the person's counters.
fn settlement(person_uid: &str, scope: LockScope, reserved: Reserved) -> Settlement {
    Settlement {
        person_uid: person_uid.to_owned(),
        scope,
        counted: reserved == Reserved::Person,
    }
}

/// Tells the login service the person is locked for this client, which needs a proof of work.
fn want_pow() {
    crate::login::with_attempt(|a| {
        if let Some(a) = a {
            a.pow_wanted = true;
        }
    });
}

/// What went wrong when `owner` was asked to verify a password, naming it and its plugin.
fn resolver_failure(owner: &ResolverInUse, e: &CallError) -> String {
    let why = match e {
        CallError::Plugin(p) => format!("failed to verify the password: {p}"),
        CallError::TimedOut(d) => format!("did not verify the password within {d:?}"),
        CallError::Busy(d) => {
            format!("could not start verifying the password: every slot stayed busy for {d:?}")
        }
        CallError::Host(h) => format!("failed to verify the password: {h}"),
        CallError::Resolver(m) => format!("failed to verify the password: {m}"),
    };
    format!("resolver \"{}\" (plugin {}) {why}", owner.id, owner.plugin)
}

fn person_info(p: crate::store::Person) -> PersonInfo {
    PersonInfo {
        uid: p.uid.into(),
        central_account: p.central_account.into(),
        first_name: p.first_name.into(),
        last_name: p.last_name.into(),
        manager_uid: p.manager_uid.map(RString::from).into(),
        inactive: p.inactive,
    }
}

fn strings(v: &RVec<RString>) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The search-table configuration a plugin's query describes (its login name aside).
fn search_table(query: &AccountQuery) -> SearchTableConfig {
    SearchTableConfig {
        table: query.table.to_string(),
        columns: strings(&query.columns),
        disabled_by: strings(&query.disabled_by),
        enabled_by: strings(&query.enabled_by),
    }
}

impl HostServices for Services {
    fn parameter(&self, path: RStr<'_>) -> PluginResult<ROption<RString>> {
        RequestScope::callback("parameter");
        guarded(|| {
            let value = match RequestScope::parameters() {
                Some(params) => params.value(path.as_str())?,
                None => self.block(self.store()?.parameter_value(path.as_str()))?,
            };
            Ok(value.map(RString::from).into())
        })
    }

    fn api_key(&self, key: RStr<'_>) -> PluginResult<ROption<RString>> {
        RequestScope::callback("api_key");
        guarded(|| {
            let store = self.store()?;
            let v = self.block(store.api_key(&self.ctx.server_name, key.as_str()))?;
            Ok(ROption::RSome(RString::from(v.value)))
        })
    }

    fn connection_string(&self, name: RStr<'_>) -> ROption<RString> {
        RequestScope::callback("connection_string");
        self.ctx
            .connection_strings
            .iter()
            .find(|c| c.name().eq_ignore_ascii_case(name.as_str()))
            .map(|c| RString::from(c.expose()))
            .into()
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        RequestScope::callback("log");
        let plugin = self.plugin.as_str();
        let message = message.as_str();
        match level {
            LogLevel::ERROR => tracing::error!(target: "prp::plugin", plugin, "{message}"),
            LogLevel::WARN => tracing::warn!(target: "prp::plugin", plugin, "{message}"),
            LogLevel::INFO => tracing::info!(target: "prp::plugin", plugin, "{message}"),
            LogLevel::DEBUG => tracing::debug!(target: "prp::plugin", plugin, "{message}"),
            _ => tracing::trace!(target: "prp::plugin", plugin, "{message}"),
        }
    }

    fn now(&self) -> i64 {
        RequestScope::callback("now");
        match &self.ctx.store {
            Some(s) => s.now(),
            None => crate::clock::Clock::now(&crate::clock::SystemClock),
        }
    }

    fn keyed_digest(&self, purpose: RStr<'_>, data: RStr<'_>) -> PluginResult<RString> {
        RequestScope::callback("keyed_digest");
        guarded(|| {
            let store = self.store()?;
            let key = self.block(store.server_key(&format!(
                "plugin:{}:{}",
                self.plugin,
                purpose.as_str()
            )))?;
            Ok(RString::from(security::keyed_digest(&key, data.as_str())))
        })
    }

    fn verify_hash(&self, phc: RStr<'_>, secret: RStr<'_>) -> PluginResult<bool> {
        RequestScope::callback("verify_hash");
        guarded(|| Ok(self.ctx.hasher.verify(phc.as_str(), secret.as_str())))
    }

    fn persons_by_central_account(&self, login_name: RStr<'_>) -> PluginResult<RVec<PersonInfo>> {
        RequestScope::callback("persons_by_central_account");
        guarded(|| {
            let store = self.store()?;
            let persons = self.block(store.persons_by_central_account(login_name.as_str()))?;
            let persons: RVec<PersonInfo> = persons.into_iter().map(person_info).collect();
            RequestScope::remember(&persons);
            Ok(persons)
        })
    }

    fn person(&self, uid: RStr<'_>) -> PluginResult<ROption<PersonInfo>> {
        RequestScope::callback("person");
        guarded(|| {
            if let Some(known) = RequestScope::known_person(uid.as_str()) {
                return Ok(ROption::RSome(known));
            }
            let store = self.store()?;
            let person = self.block(store.person(uid.as_str()))?.map(person_info);
            if let Some(p) = &person {
                RequestScope::remember(std::slice::from_ref(p));
            }
            Ok(person.into())
        })
    }

    fn search_accounts(&self, query: &AccountQuery) -> PluginResult<RVec<AccountMatch>> {
        RequestScope::callback("search_accounts");
        guarded(|| {
            let store = self.store()?;
            let search = AccountSearch {
                config: search_table(query),
                login_name: query.login_name.to_string(),
            };
            let rows = self.block(store.search_accounts(&search))?;
            Ok(rows
                .into_iter()
                .map(|r| AccountMatch {
                    table: r.table.into(),
                    account_uid: r.account_uid.into(),
                    person_uid: r.person_uid.map(RString::from).into(),
                    matched_column: r.matched_column.into(),
                    refused_by: r.refused_by.map(RString::from).into(),
                })
                .collect())
        })
    }

    fn verify_password(
        &self,
        person_uid: RStr<'_>,
        accounts: RSlice<'_, ResolvedAccount>,
        password: RStr<'_>,
    ) -> PluginResult<SecretCheck> {
        RequestScope::callback("verify_password");
        guarded(|| self.check_password(person_uid.as_str(), accounts.as_slice(), password.as_str()))
    }

    fn verify_passcode(
        &self,
        person_uid: RStr<'_>,
        passcode: RStr<'_>,
    ) -> PluginResult<SecretCheck> {
        RequestScope::callback("verify_passcode");
        guarded(|| self.check_passcode(person_uid.as_str(), passcode.as_str()))
    }

    fn questions(&self, person_uid: RStr<'_>) -> PluginResult<RVec<QuestionInfo>> {
        RequestScope::callback("questions");
        guarded(|| {
            let store = self.store()?;
            // While the person's question logins are locked, a challenge shows the questions
            // it showed before any of them was locked: a lock someone else caused can't be
            // seen in it (the login is refused anyway).
            let challenge = crate::login::with_attempt(|a| a.is_some_and(|a| a.challenge));
            let hide_locks = challenge
                && self
                    .block(store.locked_until(person_uid.as_str(), LockScope::Questions))?
                    .is_some();
            Ok(self
                .block(store.questions(person_uid.as_str()))?
                .into_iter()
                .map(|q| QuestionInfo {
                    id: q.id.into(),
                    question: q.question.into(),
                    locked: q.locked && !hide_locks,
                })
                .collect())
        })
    }

    fn verify_answers(
        &self,
        person_uid: RStr<'_>,
        answers: RSlice<'_, QuestionAnswer>,
    ) -> PluginResult<SecretCheck> {
        RequestScope::callback("verify_answers");
        guarded(|| self.check_answers(person_uid.as_str(), answers.as_slice()))
    }

    fn delete_questions(&self, person_uid: RStr<'_>, ids: RSlice<'_, RString>) -> PluginResult<()> {
        RequestScope::callback("delete_questions");
        guarded(|| {
            let store = self.store()?;
            // Deleted only if the login they were answered in is granted, with its session
            // (at once when called outside a login).
            let c = crate::store::Consumption::Questions {
                person_uid: person_uid.to_string(),
                ids: ids.iter().map(|s| s.to_string()).collect(),
            };
            if let Err(c) = crate::login::defer_consumption(c) {
                self.block(store.consume_now(&c))?;
            }
            Ok(())
        })
    }

    fn setting(&self, key: RStr<'_>) -> PluginResult<ROption<RString>> {
        RequestScope::callback("setting");
        let value = self
            .ctx
            .plugin_settings
            .get(&self.plugin, key.as_str())
            .map(RString::from);
        PluginResult::ROk(value.into())
    }

    fn setting_path(&self, key: RStr<'_>) -> PluginResult<ROption<RString>> {
        RequestScope::callback("setting_path");
        let value = self
            .ctx
            .plugin_settings
            .get(&self.plugin, key.as_str())
            .map(|v| {
                // `join` keeps an absolute path as it is.
                let path = self.ctx.config_dir.join(v.trim());
                RString::from(path.to_string_lossy().into_owned())
            });
        PluginResult::ROk(value.into())
    }

    fn hash_secret(&self, secret: RStr<'_>) -> PluginResult<RString> {
        RequestScope::callback("hash_secret");
        guarded(|| {
            self.ctx
                .hasher
                .hash(secret.as_str())
                .map(RString::from)
                .map_err(unavailable)
        })
    }

    fn call_time_left_ms(&self) -> ROption<u64> {
        gate::time_left()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .into()
    }

    fn persons_by_column(
        &self,
        column: RStr<'_>,
        value: RStr<'_>,
    ) -> PluginResult<RVec<PersonInfo>> {
        RequestScope::callback("persons_by_column");
        guarded(|| {
            let store = self.store()?;
            let persons = self.block(store.persons_by_column(column.as_str(), value.as_str()))?;
            Ok(persons.into_iter().map(person_info).collect())
        })
    }

    fn person_column(
        &self,
        person_uid: RStr<'_>,
        column: RStr<'_>,
    ) -> PluginResult<ROption<RString>> {
        RequestScope::callback("person_column");
        guarded(|| {
            let store = self.store()?;
            Ok(self
                .block(store.person_column_value(person_uid.as_str(), column.as_str()))?
                .map(RString::from)
                .into())
        })
    }

    fn account_login_names(
        &self,
        query: &AccountQuery,
        person_uid: RStr<'_>,
    ) -> PluginResult<RVec<RString>> {
        RequestScope::callback("account_login_names");
        guarded(|| {
            let store = self.store()?;
            let names =
                self.block(store.account_login_names(&search_table(query), person_uid.as_str()))?;
            Ok(names.into_iter().map(RString::from).collect())
        })
    }

    fn unindexed_login_columns(&self, query: &AccountQuery) -> PluginResult<RVec<UnindexedColumn>> {
        RequestScope::callback("unindexed_login_columns");
        guarded(|| {
            let store = self.store()?;
            let missing = self.block(store.unindexed_search_columns(&search_table(query)))?;
            Ok(missing
                .into_iter()
                .map(|m| UnindexedColumn {
                    column: m.column.into(),
                    create_index: m.create_index.into(),
                })
                .collect())
        })
    }
}

/// The services handed to one plugin's `init`.
pub fn host_services(plugin: &str, ctx: Arc<HostContext>) -> HostServicesBox {
    HostServices_TO::from_ptr(
        RArc::new(Services {
            plugin: plugin.to_owned(),
            ctx,
        }),
        TD_Opaque,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    #[test]
    fn a_person_read_in_a_request_is_known_to_that_request_only() {
        let alice = PersonInfo {
            uid: "P-A".into(),
            central_account: "alice".into(),
            first_name: "Alice".into(),
            last_name: "A".into(),
            manager_uid: ROption::RNone,
            inactive: false,
        };
        let one = RequestScope::new(None, Arc::default());
        let other = RequestScope::new(None, Arc::default());
        one.run("resolve", || {
            RequestScope::remember(std::slice::from_ref(&alice))
        });
        // The same request's next call knows the person; another request, or none, doesn't.
        assert_eq!(
            one.run("login", || RequestScope::known_person("P-A")),
            Some(alice)
        );
        assert_eq!(one.run("login", || RequestScope::known_person("P-B")), None);
        assert_eq!(
            other.run("login", || RequestScope::known_person("P-A")),
            None
        );
        assert_eq!(RequestScope::known_person("P-A"), None);
        // Outside a scope nothing is kept.
        RequestScope::remember(&[]);
    }

    fn read(services: &HostServicesBox, path: &str) -> Option<String> {
        services
            .parameter(path.into())
            .into_result()
            .ok()
            .and_then(|v| v.into_option())
            .map(RString::into_string)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_request_scope_serves_parameter_reads_from_its_snapshot_and_counts_crossings() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&url, Arc::new(SystemClock)).await.unwrap();
        store.migrate().await.unwrap();
        store.set_parameter(r"A\B", Some("old")).await.unwrap();
        let ctx = Arc::new(HostContext {
            connection_strings: Vec::new(),
            store: Some(store.clone()),
            hasher: Arc::new(Hasher::new(1, Hasher::MIN_MEMORY_KIB, 2).unwrap()),
            server_name: "test".into(),
            runtime: tokio::runtime::Handle::current(),
            resolvers: OnceLock::new(),
            plugin_settings: PluginOwnSettings::default(),
            config_dir: PathBuf::from("."),
        });
        let services = host_services("test", ctx);
        let crossings = Arc::new(Crossings::default());
        let first = RequestScope::new(
            Some(store.parameters().await.unwrap()),
            Arc::clone(&crossings),
        );
        // Changed after the request began: the request keeps what it read.
        store.set_parameter(r"A\B", Some("new")).await.unwrap();
        let second = RequestScope::new(
            Some(store.parameters().await.unwrap()),
            Arc::clone(&crossings),
        );
        let unread = RequestScope::new(None, Arc::clone(&crossings));
        let seen = tokio::task::spawn_blocking(move || {
            let in_first = first.run("login", || {
                // A scope nested in a scope (a resolver asked from within a callback) is put
                // back when the inner call returns.
                let inner = second.run("resolve", || read(&services, r"A\B"));
                (read(&services, r"A\B"), inner)
            });
            let outside = read(&services, r"A\B");
            let without_snapshot = unread.run("challenge", || read(&services, r"A\B"));
            (in_first, outside, without_snapshot)
        })
        .await
        .unwrap();
        assert_eq!(
            seen,
            (
                (Some("old".into()), Some("new".into())),
                Some("new".into()),
                Some("new".into())
            )
        );
        // Three scoped calls; four reads, of which the one outside any scope isn't counted.
        assert_eq!(
            (crossings.calls_total(), crossings.callbacks_total()),
            (3, 3)
        );
    }
}
