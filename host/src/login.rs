//! Logging in, as the host runs it for every authenticator: admission control, resolution
//! through the resolvers, the authenticator's decision, padding to a constant number of
//! hashes, the audit record and the session. Every denial looks the same to the client.

use crate::metrics::Crossings;
use crate::plugins::{
    authenticator_policy, CallError, CallGate, RequestScope, ResolverInUse, V1_0_QUESTIONS_ASKED,
};
use crate::security::{take_hash_count, Hasher};
use crate::store::{
    Afresh, AuditEvent, AuditWriter, Consumption, Counter, LockScope, LockoutPolicy, NewSession,
    ParameterSnapshot, SessionKind, Settlement, Store,
};
use crate::throttle::{self, Device, FailureFloor};
use prp_plugin_api::abi_stable::std_types::{RResult, RString, RVec};
use prp_plugin_api::rules;
use prp_plugin_api::{
    AuthenticatorBox, ErrorKind, LoginMethod, LoginRequest, QuestionAnswer, QuestionChallenge,
    ResolvedAccount, ResolverBox,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Input limits: longer input is denied like any other failure.
pub const MAX_LOGIN_NAME: usize = 256;
pub const MAX_SECRET: usize = 1024;
pub const MAX_ANSWERS: usize = 10;
pub const MAX_ANSWER: usize = 256;

/// How often expired passcodes (and their second halves in the outbox) are purged.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

thread_local! {
    /// Single-use secrets the login running on this thread verified: consumed only if the
    /// login is granted, in the transaction that opens its session. `None` outside a login.
    static DEFERRED: std::cell::RefCell<Option<Vec<Consumption>>> = const { std::cell::RefCell::new(None) };
}

/// Called by the host services while an authenticator decides a login: records a passcode or
/// questions to consume if, and only if, the login is granted. Nothing is consumed for a login
/// that is denied, fails or runs out of time. Outside a login on this thread (a plugin calling
/// from a thread of its own) it gives the consumption back: the caller must consume at once,
/// so that a single-use secret is never left usable (fail closed).
pub fn defer_consumption(c: Consumption) -> Result<(), Consumption> {
    DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(list) => {
            list.push(c);
            Ok(())
        }
        None => Err(c),
    })
}

/// Starts recording consumptions on this thread (the login service does, before each
/// authenticator call), dropping anything recorded before.
pub fn begin_deferring() {
    DEFERRED.with(|d| *d.borrow_mut() = Some(Vec::new()));
}

/// Takes what [`defer_consumption`] recorded on this thread and stops recording.
pub fn take_deferred() -> Vec<Consumption> {
    DEFERRED.with(|d| d.borrow_mut().take().unwrap_or_default())
}

thread_local! {
    /// What the host knows of the client of the login (or challenge) running on this thread,
    /// for the lockout checks of the host services. `None` outside a login.
    static ATTEMPT: std::cell::RefCell<Option<AttemptContext>> = const { std::cell::RefCell::new(None) };
}

/// The client of a login, as the lockout checks of the host services see it.
#[derive(Debug, Clone, Default)]
pub struct AttemptContext {
    /// The person whose device cookie the client presented (a valid one).
    pub device_person: Option<String>,
    /// The client solved the proof of work it was asked for: it may try once while the
    /// person-level lock holds.
    pub pow_paid: bool,
    /// Whether the operator allows a proof of work (`PRP\Lockout\ProofOfWorkBits` > 0).
    pub pow_enabled: bool,
    /// Set by the checks: the person is locked for this client, which needs a proof of work.
    pub pow_wanted: bool,
    /// A question challenge rather than a login.
    pub challenge: bool,
    /// What the right secrets of this login do to the person's counters, deferred to the
    /// login's end ([`defer_settlement`]).
    pub settled: Vec<Settlement>,
}

/// Called by the host services after a right password in a login: records what it does to the
/// person's counters, for the login service to write after the decision: with the grant's
/// counters when the login is granted and consumed nothing (on SQLite in the same call), at
/// once otherwise (a denial, a grant that consumes a passcode or answers, a flow's step,
/// more than one settlement). Outside a login on this thread it gives the settlement back:
/// the caller must write it at once. A login whose call fails or runs past its deadline
/// writes it on the call's thread when the call ends; one whose grant can't be written drops
/// it, so the attempt stays counted (fail closed).
pub fn defer_settlement(s: Settlement) -> Result<(), Settlement> {
    with_attempt(|a| match a {
        Some(a) if !a.challenge => {
            a.settled.push(s);
            Ok(())
        }
        _ => Err(s),
    })
}

/// Runs `f` with the attempt context of the login running on this thread (`None` outside one).
pub fn with_attempt<T>(f: impl FnOnce(Option<&mut AttemptContext>) -> T) -> T {
    ATTEMPT.with(|a| f(a.borrow_mut().as_mut()))
}

fn begin_attempt(ctx: AttemptContext) {
    ATTEMPT.with(|a| *a.borrow_mut() = Some(ctx));
}

fn take_attempt() -> AttemptContext {
    ATTEMPT.with(|a| a.borrow_mut().take().unwrap_or_default())
}

/// A login attempt as the HTTP layer received it.
pub struct LoginInput {
    pub method: LoginMethod,
    pub login_name: String,
    pub secret: String,
    pub answers: Vec<(String, String)>,
    pub remote_addr: Option<String>,
    /// The device cookie the client sent, if any.
    pub device: Option<String>,
    /// A solved proof of work: (challenge, solution).
    pub pow: Option<(String, String)>,
}

impl LoginInput {
    /// Whether the input is over the length limits, for a login that asks `asked` answers at
    /// most (such input is denied, at the cost of any other failure).
    fn over_limits(&self, asked: usize) -> bool {
        self.login_name.len() > MAX_LOGIN_NAME
            || self.secret.len() > MAX_SECRET
            || self.answers.len() > asked
            || self
                .answers
                .iter()
                .any(|(id, a)| id.len() > MAX_ANSWER || a.len() > MAX_ANSWER)
    }

    /// The request the authenticator decides, with the accounts the name resolved to.
    fn request(&self, candidates: Vec<ResolvedAccount>) -> LoginRequest {
        LoginRequest {
            method: self.method,
            login_name: self.login_name.as_str().into(),
            secret: self.secret.as_str().into(),
            answers: self
                .answers
                .iter()
                .map(|(id, a)| QuestionAnswer {
                    question_id: id.as_str().into(),
                    answer: a.as_str().into(),
                })
                .collect::<RVec<_>>(),
            candidates: candidates.into_iter().collect(),
        }
    }
}

#[derive(Debug)]
pub enum LoginResult {
    Granted {
        session: NewSession,
        kind: SessionKind,
        /// A new device cookie for the client.
        device: Option<String>,
    },
    /// Every failure, whatever the reason.
    Denied,
    /// A failure, like `Denied`, after which the next attempt for this name must carry a
    /// solution of this proof of work.
    Challenged(crate::api::PowChallenge),
    /// The password was right, but the person has an active factor, which a login flow must
    /// ask for before a full session is opened.
    FactorRequired,
    /// Too many logins in progress: try again shortly.
    Busy,
    /// The database is away (or the decision could not be audited): nothing was decided that
    /// the client is told; try again shortly.
    Unavailable,
}

/// Why resolution failed, and whether because a backing service is away.
struct ResolveError {
    message: String,
    unavailable: bool,
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A plugin call that failed because its backing service (the database) is away.
fn is_unavailable(e: &CallError) -> bool {
    matches!(e, CallError::Plugin(p) if p.kind == ErrorKind::UNAVAILABLE)
}

pub struct LoginService {
    pub store: Store,
    pub gate: CallGate,
    pub hasher: Arc<Hasher>,
    pub authenticator: Arc<AuthenticatorBox>,
    pub resolvers: Vec<ResolverInUse>,
    pub max_pending: usize,
    pub session_seconds: i64,
    pub reset_session_seconds: i64,
    pending: AtomicUsize,
    audit: AuditWriter,
    crossings: Arc<Crossings>,
    sweeper: tokio::task::JoinHandle<()>,
    /// The methods every loaded authenticator offers, asked once (see `crate::flows`).
    pub(crate) catalog: tokio::sync::OnceCell<Arc<crate::flows::Catalog>>,
    floor: FailureFloor,
}

impl Drop for LoginService {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

/// Counts a login in progress for as long as it lives.
pub(crate) struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LoginService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        gate: CallGate,
        hasher: Arc<Hasher>,
        authenticator: Arc<AuthenticatorBox>,
        resolvers: Vec<ResolverInUse>,
        max_pending: usize,
        session_seconds: i64,
        reset_session_seconds: i64,
    ) -> Self {
        let audit = AuditWriter::start(store.clone());
        // Each admitted login has at most one hash waiting at a time.
        hasher.set_queue_limit(max_pending);
        let sweeping = store.clone();
        let sweeper = tokio::spawn(async move {
            let mut every = tokio::time::interval(PURGE_EVERY);
            loop {
                every.tick().await;
                if let Err(e) = sweeping.purge_expired_passcodes().await {
                    tracing::warn!("purging expired passcodes failed: {e}");
                }
                if let Err(e) = sweeping.purge_expired_attempts().await {
                    tracing::warn!("purging expired login attempts failed: {e}");
                }
                if let Err(e) = sweeping.purge_spent_pow().await {
                    tracing::warn!("purging spent proofs of work failed: {e}");
                }
                if let Err(e) = sweeping.purge_stale_counters().await {
                    tracing::warn!("purging stale failure counters failed: {e}");
                }
                // Quiet hours hold no warm connections (the pool's idle timeout then applies).
                sweeping.db().prune_idle();
            }
        });
        Self {
            sweeper,
            store,
            gate,
            hasher,
            authenticator,
            resolvers,
            max_pending,
            session_seconds,
            reset_session_seconds,
            pending: AtomicUsize::new(0),
            audit,
            crossings: Arc::default(),
            catalog: tokio::sync::OnceCell::new(),
            floor: FailureFloor::default(),
        }
    }

    /// The plugin crossings made for logins and challenges so far.
    pub fn crossings(&self) -> &Crossings {
        &self.crossings
    }

    /// One request's scope: the parameters read once, now, for all its plugin calls.
    async fn scope(&self) -> RequestScope {
        self.scope_and_policy().await.0
    }

    /// [`Self::scope`], and the lockout policy from the same parameters.
    async fn scope_and_policy(&self) -> (RequestScope, Option<LockoutPolicy>) {
        let parameters = match self.store.parameters().await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("cannot read the parameters for a login: {e}");
                None
            }
        };
        let policy = parameters.as_ref().and_then(|p: &ParameterSnapshot| {
            LockoutPolicy::from_parameters(p)
                .map_err(|e| tracing::warn!("cannot read the lockout policy: {e}"))
                .ok()
                .map(|(policy, _)| policy)
        });
        (
            RequestScope::new(parameters, Arc::clone(&self.crossings)),
            policy,
        )
    }

    /// Logins in progress now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    fn admit(&self) -> Option<Pending<'_>> {
        let before = self.pending.fetch_add(1, Ordering::SeqCst);
        let guard = Pending(&self.pending);
        (before < self.max_pending).then_some(guard)
    }

    /// Every account any resolver in use finds for the name. A resolver that fails makes the
    /// whole resolution fail: deny rather than decide on part of the picture; except an
    /// optional one (`Plugins:Optional`), whose accounts are then left out (logged and
    /// audited as `resolver.dropped`, naming it and the reason).
    pub async fn resolve(&self, login_name: &str) -> Result<Vec<ResolvedAccount>, String> {
        let scope = self.scope().await;
        self.resolve_in(&scope, login_name)
            .await
            .map_err(|e| e.message)
    }

    async fn resolve_in(
        &self,
        scope: &RequestScope,
        login_name: &str,
    ) -> Result<Vec<ResolvedAccount>, ResolveError> {
        let mut found: Vec<Option<RVec<ResolvedAccount>>> = vec![None; self.resolvers.len()];
        // The required resolvers, in one plugin call: any failure of one fails the whole
        // resolution anyway, so one call (one hop to a blocking thread) does for all of them.
        let required: Vec<usize> = (0..self.resolvers.len())
            .filter(|&i| !self.resolvers[i].optional)
            .collect();
        if !required.is_empty() {
            let rs: Vec<Arc<ResolverBox>> = required
                .iter()
                .map(|&i| Arc::clone(&self.resolvers[i].resolver))
                .collect();
            let failed = Arc::new(AtomicUsize::new(usize::MAX));
            let (name, scope, failed_in) =
                (login_name.to_owned(), scope.clone(), Arc::clone(&failed));
            let answer = self
                .gate
                .call(move || {
                    let mut all = Vec::with_capacity(rs.len());
                    for (k, r) in rs.iter().enumerate() {
                        match scope.run("resolve", || r.resolve(name.as_str().into())) {
                            RResult::ROk(accounts) => all.push(accounts),
                            RResult::RErr(e) => {
                                failed_in.store(k, Ordering::SeqCst);
                                return RResult::RErr(e);
                            }
                        }
                    }
                    RResult::ROk(all)
                })
                .await;
            match answer {
                Ok(all) => {
                    for (&i, accounts) in required.iter().zip(all) {
                        found[i] = Some(accounts);
                    }
                }
                Err(e) => {
                    // The one that failed; all of them when the call as a whole timed out.
                    let culprits: Vec<&ResolverInUse> =
                        match required.get(failed.load(Ordering::SeqCst)) {
                            Some(&i) => vec![&self.resolvers[i]],
                            None => required.iter().map(|&i| &self.resolvers[i]).collect(),
                        };
                    let named: Vec<String> = culprits
                        .iter()
                        .map(|o| format!("resolver \"{}\" (plugin {})", o.id, o.plugin))
                        .collect();
                    return Err(ResolveError {
                        message: format!("{}: {e}", named.join(", ")),
                        unavailable: is_unavailable(&e),
                    });
                }
            }
        }
        // Each optional resolver in a call of its own: when it fails or hangs, only its own
        // accounts are left out.
        for (i, owner) in self.resolvers.iter().enumerate() {
            if !owner.optional {
                continue;
            }
            let r = Arc::clone(&owner.resolver);
            let name = login_name.to_owned();
            let scope = scope.clone();
            match self
                .gate
                .call(move || scope.run("resolve", || r.resolve(name.as_str().into())))
                .await
            {
                Ok(accounts) => found[i] = Some(accounts),
                Err(e) => {
                    let why = format!(
                        "optional resolver \"{}\" (plugin {}) failed to resolve a name, its accounts are left out: {e}",
                        owner.id, owner.plugin
                    );
                    tracing::warn!(plugin = %owner.plugin, resolver = %owner.id, "{why}");
                    self.audit_event(&AuditEvent {
                        event: "resolver.dropped",
                        outcome: "failure",
                        reason: Some(&why),
                        actor: Some("server"),
                        ..Default::default()
                    })
                    .await;
                }
            }
        }
        // In the configured order.
        let mut out = Vec::new();
        for (owner, accounts) in self.resolvers.iter().zip(found) {
            for mut account in accounts.into_iter().flatten() {
                account.resolver = RString::from(owner.id.as_str());
                out.push(account);
            }
        }
        Ok(out)
    }

    /// A login attempt. Every failure is held to the same time floor (see
    /// [`throttle::FailureFloor`]), whatever path it took.
    pub async fn login(&self, input: LoginInput) -> LoginResult {
        let started = std::time::Instant::now();
        let (result, hashes) = self.decide_login(input).await;
        if matches!(result, LoginResult::Denied | LoginResult::Challenged(_)) {
            self.hold_failure(hashes, started).await;
        }
        result
    }

    /// Holds a failure that started at `started` and costs `hashes` hashes to the time floor
    /// of every failure of that cost ([`throttle::FailureFloor`]): classic logins, flow steps
    /// (`crate::flows::step`) and question challenges (0) alike.
    pub(crate) async fn hold_failure(&self, hashes: usize, started: std::time::Instant) {
        let kind = u32::try_from(hashes).unwrap_or(u32::MAX);
        let wait = self.floor.hold(kind, started.elapsed());
        tokio::time::sleep(wait).await;
    }

    /// Failures held to the time floor so far (`/metrics`).
    pub fn failures_held(&self) -> u64 {
        self.floor.held()
    }

    /// Decides a login; with the number of hashes every failure of it costs.
    async fn decide_login(&self, input: LoginInput) -> (LoginResult, usize) {
        let Some(_pending) = self.admit() else {
            // Answered 503 whether or not the record is written.
            let _ = self
                .audit(
                    &input,
                    None,
                    "failure",
                    "overloaded: too many logins in progress",
                )
                .await;
            return (LoginResult::Busy, 1);
        };
        // The parameters, read once for all of this login's plugin calls.
        let (scope, policy) = self.scope_and_policy().await;
        // A questions login costs one hash per question asked, a number the authenticator sets
        // (its policy): what the client sends (more answers, fewer) changes nothing.
        let hashes = if input.method == LoginMethod::QUESTIONS {
            self.questions_asked(&scope).await
        } else {
            1
        };
        let result = self.decide_admitted(input, scope, policy, hashes).await;
        (result, hashes)
    }

    async fn decide_admitted(
        &self,
        input: LoginInput,
        scope: RequestScope,
        policy: Option<LockoutPolicy>,
        hashes: usize,
    ) -> LoginResult {
        let method = input.method.name();
        let too_long = input.over_limits(hashes);
        if too_long || input.login_name.trim().is_empty() {
            self.pad(hashes).await;
            let why = if too_long {
                "input over the length limits"
            } else {
                "empty login name"
            };
            return self.deny(&input, None, why).await;
        }
        let Some(policy) = policy else {
            // The parameters can't be read: the database is away.
            return self.unavailable(&input, None, "the lockout policy can't be read");
        };
        let gate = match self.gate(&input, &policy, false).await {
            Ok(Ok(gate)) => gate,
            Ok(Err(refused)) => {
                self.pad(hashes).await;
                if let Err(unavailable) = self
                    .record_decision(&input, None, "failure", &refused.why)
                    .await
                {
                    return unavailable;
                }
                return refused.result;
            }
            Err(e) => {
                tracing::error!("login throttle unavailable: {e}");
                return self.unavailable(&input, None, &format!("throttle unavailable: {e}"));
            }
        };
        let candidates = match self.resolve_in(&scope, &input.login_name).await {
            Ok(c) => c,
            Err(e) if e.unavailable => {
                return self.unavailable(&input, None, &format!("resolution failed: {}", e.message))
            }
            Err(e) => {
                let e = e.message;
                tracing::error!("login name resolution failed: {e}");
                self.pad(hashes).await;
                return self
                    .deny(&input, None, &format!("resolution failed: {e}"))
                    .await;
            }
        };
        let decided = self
            .decide_padded(scope, input.request(candidates), &gate, hashes)
            .await;
        // A call that runs out of time is answered here while its thread goes on: what it
        // deferred is dropped with its result, so nothing is consumed for the denied login.
        let (outcome, consumed, mut attempt) = match decided {
            Ok(o) => o,
            Err(e) if is_unavailable(&e) => {
                return self.unavailable(&input, None, &format!("authenticator: {e}"));
            }
            Err(e) => {
                let why = match &e {
                    CallError::Plugin(p) => format!("authenticator failed: {p}"),
                    other => other.to_string(),
                };
                let culprit = match &e {
                    CallError::Resolver(_) => "a resolver",
                    _ => "the authenticator",
                };
                tracing::error!(method, "login denied because {culprit} failed: {why}");
                return self.deny(&input, None, &why).await;
            }
        };
        let person = outcome
            .person_uid
            .as_ref()
            .map(|p| p.to_string())
            .into_option();
        // A right password's settlement goes with the grant's counters when the grant writes
        // no transaction (on SQLite one call for the name's counters and the person's); any
        // other is written now.
        let mut settled = std::mem::take(&mut attempt.settled);
        let with_grant =
            (outcome.granted && person.is_some() && consumed.is_empty() && settled.len() == 1)
                .then(|| settled.remove(0));
        settle_all(&self.store, settled).await;
        if !outcome.granted {
            if let Err(unavailable) = self
                .record_decision(
                    &input,
                    person.as_deref(),
                    "failure",
                    outcome.reason.as_str(),
                )
                .await
            {
                return unavailable;
            }
            return self.after_failure(&gate, &policy, attempt.pow_wanted).await;
        }
        let Some(person_uid) = person else {
            return self
                .deny(
                    &input,
                    None,
                    "authenticator granted a login without a person",
                )
                .await;
        };
        let kind = if outcome.session.is_full() && input.method == LoginMethod::PASSWORD {
            SessionKind::Full
        } else {
            SessionKind::Reset
        };
        if kind == SessionKind::Full {
            // A person with an active factor gets a full session only from a flow that asks
            // for it (`crate::flows`): this endpoint can't, so it says so, and only to a
            // client that knew the password.
            match self.store.has_active_factor(&person_uid).await {
                Ok(false) => {}
                Ok(true) => {
                    // The password was right: the person's counter and the name's (and the
                    // device's) start afresh, as after a flow's first step, so that these
                    // answers never lock the person out of the flow that asks for the factor.
                    settle_all(&self.store, with_grant.into_iter().collect()).await;
                    self.after_success(&gate).await;
                    let reason = "the password is right, but a second factor is enrolled: a full session needs a login flow that asks for it";
                    return match self
                        .record_decision(&input, Some(&person_uid), "failure", reason)
                        .await
                    {
                        Ok(()) => LoginResult::FactorRequired,
                        Err(unavailable) => unavailable,
                    };
                }
                Err(e) => {
                    return self.unavailable(
                        &input,
                        Some(&person_uid),
                        &format!("cannot read whether the person has a factor: {e}"),
                    )
                }
            }
        }
        let lifetime = match kind {
            SessionKind::Full => self.session_seconds,
            SessionKind::Reset => self.reset_session_seconds,
        };
        if consumed.is_empty() {
            // Nothing to consume (a password): the session and its audit record are written
            // together, and the name's counters start afresh once the record is committed.
            let event = self.event(
                &input,
                Some(&person_uid),
                "success",
                outcome.reason.as_str(),
            );
            return match self
                .store
                .open_session_audited(
                    &person_uid,
                    method,
                    kind,
                    lifetime,
                    &event,
                    Afresh {
                        name: &gate.name,
                        person: with_grant.as_ref(),
                    },
                )
                .await
            {
                Ok(session) => {
                    self.settle_device(&gate).await;
                    self.granted(&person_uid, &gate, session, kind).await
                }
                Err(e) => self.unavailable(
                    &input,
                    Some(&person_uid),
                    &format!(
                        "granted, but the session and its audit record could not be written: {e}"
                    ),
                ),
            };
        }
        match self
            .store
            .create_session_consuming(&person_uid, method, kind, lifetime, &consumed)
            .await
        {
            Ok(None) => {
                self.deny(
                    &input,
                    Some(&person_uid),
                    "passcode: already used (another login consumed it, or it was replaced, first)",
                )
                .await
            }
            Ok(Some(session)) => {
                match self
                    .record_decision(
                        &input,
                        Some(&person_uid),
                        "success",
                        outcome.reason.as_str(),
                    )
                    .await
                {
                    Ok(()) => {
                        self.after_success(&gate).await;
                        self.granted(&person_uid, &gate, session, kind).await
                    }
                    // The session was stored, but its token is never handed out.
                    Err(unavailable) => unavailable,
                }
            }
            Err(e) => self.unavailable(
                &input,
                Some(&person_uid),
                &format!("granted, but the session could not be created: {e}"),
            ),
        }
    }

    /// The questions to show for a login name (real or decoy; the client can't tell which),
    /// for a client judged by the throttle ([`Self::challenge_for`]).
    async fn challenge_in(
        &self,
        login_name: &str,
        mut context: AttemptContext,
    ) -> Result<Vec<QuestionChallenge>, String> {
        if login_name.len() > MAX_LOGIN_NAME {
            return Err("login name too long".into());
        }
        let scope = self.scope().await;
        let candidates = self
            .resolve_in(&scope, login_name)
            .await
            .map_err(|e| e.message)?;
        let auth = Arc::clone(&self.authenticator);
        let name = login_name.to_owned();
        context.challenge = true;
        self.gate
            .call(move || {
                let c: RVec<ResolvedAccount> = candidates.into_iter().collect();
                begin_attempt(context);
                let shown = scope.run("challenge", || {
                    auth.challenge(name.as_str().into(), c.as_rslice())
                });
                take_attempt();
                shown
            })
            .await
            .map(|v| v.into_iter().collect())
            .map_err(|e| e.to_string())
    }

    /// How many questions a questions login answers: the authenticator's policy, asked in the
    /// request's scope, bounded to 1 to [`MAX_ANSWERS`]. When it can't be had, 1.0's default:
    /// the login itself then fails on the same cause, at this cost.
    async fn questions_asked(&self, scope: &RequestScope) -> usize {
        match authenticator_policy(&self.gate, &self.authenticator, Some(scope), &self.store).await
        {
            Ok(p) => usize::try_from(p.questions_asked)
                .unwrap_or(MAX_ANSWERS)
                .clamp(1, MAX_ANSWERS),
            Err(e) => {
                tracing::warn!("{e}");
                V1_0_QUESTIONS_ASKED as usize
            }
        }
    }

    /// The authenticator's decision, in the request's scope, with what it deferred (single-use
    /// secrets to consume if granted) and what it learnt of the attempt; padded to `hashes`
    /// hashes on every path (unknown names included).
    async fn decide_padded(
        &self,
        scope: RequestScope,
        request: LoginRequest,
        gate: &Gate,
        hashes: usize,
    ) -> Result<
        (
            prp_plugin_api::LoginOutcome,
            Vec<Consumption>,
            AttemptContext,
        ),
        CallError,
    > {
        let auth = Arc::clone(&self.authenticator);
        let hasher = Arc::clone(&self.hasher);
        let context = gate.context.clone();
        let (store, runtime) = (self.store.clone(), tokio::runtime::Handle::current());
        self.gate
            .call(move || {
                take_hash_count();
                begin_deferring();
                begin_attempt(context);
                let outcome = scope.run("login", || auth.login(&request));
                let consumed = take_deferred();
                let mut attempt = take_attempt();
                for _ in take_hash_count() as usize..hashes {
                    hasher.dummy_verify();
                }
                // A call that failed, or ran past its deadline (its caller has answered and
                // drops what it returns), writes what its right secrets settled here rather
                // than lose it: a right password is not counted against the person because
                // the call around it failed.
                let late = crate::plugins::call_time_left().is_some_and(|t| t.is_zero());
                if late || matches!(outcome, RResult::RErr(_)) {
                    runtime.block_on(settle_all(&store, std::mem::take(&mut attempt.settled)));
                }
                outcome.map(|o| (o, consumed, attempt))
            })
            .await
    }

    /// Dummy hashes on a blocking thread, for denials decided before the authenticator ran.
    async fn pad(&self, hashes: usize) {
        let hasher = Arc::clone(&self.hasher);
        let _ = tokio::task::spawn_blocking(move || {
            for _ in 0..hashes {
                hasher.dummy_verify();
            }
        })
        .await;
    }

    /// A decided login (granted or denied) is answered only once its audit record is
    /// committed; when it can't be, the answer is `503` and the event is kept to be written,
    /// as `unavailable`, when the database is back.
    async fn record_decision(
        &self,
        input: &LoginInput,
        person_uid: Option<&str>,
        outcome: &str,
        reason: &str,
    ) -> Result<(), LoginResult> {
        self.audit(input, person_uid, outcome, reason)
            .await
            .map_err(|e| {
                self.unavailable(
                    input,
                    person_uid,
                    &format!(
                        "{outcome}: {reason}; answered 503: the audit log could not be written: {e}"
                    ),
                )
            })
    }

    /// A denial, once audited.
    async fn deny(
        &self,
        input: &LoginInput,
        person_uid: Option<&str>,
        reason: &str,
    ) -> LoginResult {
        match self
            .record_decision(input, person_uid, "failure", reason)
            .await
        {
            Ok(()) => LoginResult::Denied,
            Err(unavailable) => unavailable,
        }
    }

    /// A login answered `503` because the database is away: its event is kept and written
    /// when the database is back (outcome `unavailable`), without making the client wait.
    fn unavailable(
        &self,
        input: &LoginInput,
        person_uid: Option<&str>,
        reason: &str,
    ) -> LoginResult {
        tracing::error!(
            method = input.method.name(),
            "login answered 503, a backing service (the database, a resolver's system) is unavailable: {reason}"
        );
        self.audit
            .keep(&self.event(input, person_uid, "unavailable", reason));
        LoginResult::Unavailable
    }

    fn event<'a>(
        &self,
        input: &'a LoginInput,
        person_uid: Option<&'a str>,
        outcome: &'a str,
        reason: &'a str,
    ) -> AuditEvent<'a> {
        AuditEvent {
            event: "login",
            outcome,
            method: Some(input.method.name()),
            login_name: Some(truncate(&input.login_name, MAX_LOGIN_NAME)),
            person_uid,
            reason: Some(reason),
            actor: None,
            remote_addr: input.remote_addr.as_deref(),
        }
    }

    async fn audit(
        &self,
        input: &LoginInput,
        person_uid: Option<&str>,
        outcome: &str,
        reason: &str,
    ) -> Result<(), String> {
        let event = self.event(input, person_uid, outcome, reason);
        self.audit.write(&event).await.inspect_err(|e| {
            tracing::error!("audit log write failed: {e}");
        })
    }
}

/// The lock scope of a login method.
/// Why a help-desk tool can't act on a name whose accounts belong to `persons` persons.
pub(crate) fn ambiguous(login_name: &str, persons: usize) -> String {
    format!(
        "\"{login_name}\" matches accounts of {persons} different persons; use a name that identifies one"
    )
}

fn lock_scope(method: LoginMethod) -> LockScope {
    match method {
        LoginMethod::PASSWORD => LockScope::Password,
        LoginMethod::PASSCODE => LockScope::Passcode,
        LoginMethod::QUESTIONS => LockScope::Questions,
        _ => LockScope::All,
    }
}

/// What the throttle decided for an attempt it let through: the counters it is judged on.
struct Gate {
    scope: LockScope,
    /// `n:<keyed digest of the name>`: the name's failures, real name or not.
    name: String,
    /// `s:<source>`: the client source's failures, over every name.
    source: String,
    /// The counter that locks this client hard: `d:<device id>` for a device cookie, else
    /// `<name>@<source>`.
    own: String,
    device: Option<Device>,
    context: AttemptContext,
}

/// An attempt the throttle refused before any secret was looked at.
struct Refused {
    result: LoginResult,
    why: String,
}

/// A question challenge as the HTTP layer received it.
pub struct ChallengeInput {
    pub login_name: String,
    pub remote_addr: Option<String>,
    pub device: Option<String>,
    pub pow: Option<(String, String)>,
}

/// What a question challenge request gets.
pub enum ChallengeResult {
    Questions(Vec<QuestionChallenge>),
    /// Too many challenges from this source (or failures for this name): the request must
    /// carry a solution of this proof of work.
    Challenged(crate::api::PowChallenge),
}

/// Throttling (see [`crate::throttle`] and README, "Security model"): per client source, per
/// device, per name (real or not), with a proof of work in place of a lock for clients that
/// aren't the person's devices.
impl LoginService {
    async fn gate(
        &self,
        input: &LoginInput,
        policy: &LockoutPolicy,
        challenge: bool,
    ) -> Result<Result<Gate, Refused>, crate::store::StoreError> {
        let scope = lock_scope(input.method);
        let now = self.store.now();
        let name_key = self.store.server_key(throttle::NAME_KEY).await?;
        let name = format!("n:{}", throttle::name_key(&name_key, &input.login_name));
        let src = input
            .remote_addr
            .as_deref()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .map_or_else(|| "unknown".to_owned(), throttle::source_of);
        let source = format!("s:{src}");
        // A device cookie counts only for the name it was issued for.
        let device = match input.device.as_deref() {
            Some(token) => {
                let key = self.store.server_key(throttle::DEVICE_KEY).await?;
                throttle::device_from(&key, token, now)
                    .filter(|d| name.strip_prefix("n:") == Some(d.name.as_str()))
            }
            None => None,
        };
        let own = match &device {
            Some(d) => format!("d:{}", d.id),
            None => format!("{name}@{src}"),
        };
        let bits = u32::try_from(policy.pow_bits).unwrap_or(0);
        let pow_enabled = bits > 0;
        let mut pow_paid = false;
        if let (true, Some((challenge_text, solution))) = (pow_enabled, input.pow.as_ref()) {
            let key = self.store.server_key(throttle::POW_KEY).await?;
            match throttle::check_pow(&key, &name, challenge_text, solution, bits, now) {
                Ok((nonce, expires_at)) => {
                    pow_paid = self.store.spend_pow(&nonce, expires_at).await?;
                }
                Err(why) => tracing::debug!("a proof of work was refused: {why:?}"),
            }
        }
        let p = policy.scope(scope);
        // Without a device cookie, the name's and the client source's failures, each with its
        // limit: over either, a client needs a proof of work.
        let guarded = device.is_none() && pow_enabled;
        let guards = [
            (
                Counter {
                    subject: &name,
                    scope,
                    window: p.window,
                },
                p.max_failures,
            ),
            (
                Counter {
                    subject: &source,
                    scope: LockScope::All,
                    window: policy.all.window,
                },
                policy.source_max_failures,
            ),
        ];
        let guards = if guarded { &guards[..] } else { &[] };
        // A login's attempt is counted against the name from the client's source (or the
        // device) with the guards read, in one round trip where the database allows, and
        // only while neither guard is over its limit (unless the client paid).
        let (failures, counted) = if challenge {
            let counters: Vec<Counter<'_>> = guards.iter().map(|(c, _)| *c).collect();
            (self.store.failures_of(&counters).await?, false)
        } else {
            self.store
                .reserve_unless_over(&own, scope, policy, guards, !pow_paid)
                .await?
        };
        let over = crate::store::any_over(guards, &failures)
            || (guarded
                && challenge
                && self
                    .store
                    .count_failure(&format!("c:{src}"), LockScope::All, policy.all.window)
                    .await?
                    > policy.source_max_failures);
        let gate = Gate {
            scope,
            name,
            source,
            own,
            context: AttemptContext {
                device_person: device.as_ref().map(|d| d.person_uid.clone()),
                pow_paid,
                pow_enabled,
                pow_wanted: false,
                challenge,
                settled: Vec::new(),
            },
            device,
        };
        if over && !pow_paid {
            if counted {
                // A guard went under its limit between its read and the reservation: the
                // attempt is refused as read, and takes nothing.
                self.store.refund_attempt(&gate.own, scope).await?;
            }
            return Ok(Err(Refused {
                result: LoginResult::Challenged(self.new_pow(&gate.name, bits).await?),
                why: format!(
                    "{}: locked for clients without a proof of work (the name or the client's source is over its limit)",
                    input.method.name()
                ),
            }));
        }
        if !challenge && !counted {
            let result = if over {
                LoginResult::Challenged(self.new_pow(&gate.name, bits).await?)
            } else {
                LoginResult::Denied
            };
            let whose = if gate.device.is_some() {
                "this device"
            } else {
                "this name from the client's source"
            };
            return Ok(Err(Refused {
                result,
                why: format!("{}: locked for {whose}", input.method.name()),
            }));
        }
        Ok(Ok(gate))
    }

    /// The person a login name stands for, for the help desk: refused accounts included;
    /// none or several is an error that says so.
    pub(crate) async fn person_of_name(&self, login_name: &str) -> Result<String, String> {
        let candidates = self.resolve(login_name).await?;
        match rules::resolve(&candidates) {
            rules::Resolution::Nobody => Err(format!("\"{login_name}\" matches no person")),
            rules::Resolution::Ambiguous(n) => Err(ambiguous(login_name, n)),
            rules::Resolution::Person { uid, .. } => Ok(uid.to_owned()),
        }
    }

    /// Clears the locks of the person `login_name` resolves to, in `scope` (`All`: every
    /// method): the person's counters, the name's from every source, and for questions the
    /// locked questions. For the help desk (`prp-host unlock`).
    pub async fn unlock(
        &self,
        login_name: &str,
        scope: LockScope,
    ) -> Result<throttle::Unlocked, String> {
        // Refused accounts are unlocked too: the help desk may clear a lock before the account
        // is enabled again.
        let person_uid = self.person_of_name(login_name).await?;
        let store = &self.store;
        let fail = |e: crate::store::StoreError| e.to_string();
        let name_key = store.server_key(throttle::NAME_KEY).await.map_err(fail)?;
        let name = format!("n:{}", throttle::name_key(&name_key, login_name));
        let mut counters = store
            .clear_subject(&person_uid, scope)
            .await
            .map_err(fail)?;
        counters += store.clear_subject(&name, scope).await.map_err(fail)?;
        let mut questions = 0;
        if matches!(scope, LockScope::All | LockScope::Questions) {
            for q in store.questions(&person_uid).await.map_err(fail)? {
                if q.locked
                    && store
                        .unlock_question(&person_uid, &q.id)
                        .await
                        .map_err(fail)?
                {
                    questions += 1;
                }
            }
        }
        Ok(throttle::Unlocked {
            person_uid,
            counters,
            questions,
        })
    }

    async fn new_pow(
        &self,
        name: &str,
        bits: u32,
    ) -> Result<crate::api::PowChallenge, crate::store::StoreError> {
        let key = self.store.server_key(throttle::POW_KEY).await?;
        Ok(throttle::issue_pow(&key, name, bits, self.store.now()))
    }

    /// After a denied attempt the throttle let through: counted against the client, the name
    /// and the source; a proof of work is asked for the next attempt when any is over its
    /// limit, or when the person is locked for this client (`wanted`).
    async fn after_failure(
        &self,
        gate: &Gate,
        policy: &LockoutPolicy,
        wanted: bool,
    ) -> LoginResult {
        let decided: Result<LoginResult, crate::store::StoreError> = async {
            self.store
                .settle_failure(&gate.own, gate.scope, policy)
                .await?;
            let bits = u32::try_from(policy.pow_bits).unwrap_or(0);
            if bits == 0 {
                return Ok(LoginResult::Denied);
            }
            let mut over = wanted;
            if gate.device.is_none() {
                let p = policy.scope(gate.scope);
                let counted = self
                    .store
                    .count_failures(&[
                        Counter {
                            subject: &gate.name,
                            scope: gate.scope,
                            window: p.window,
                        },
                        Counter {
                            subject: &gate.source,
                            scope: LockScope::All,
                            window: policy.all.window,
                        },
                    ])
                    .await?;
                over |= counted.first().is_some_and(|&n| n >= p.max_failures)
                    || counted
                        .get(1)
                        .is_some_and(|&n| n >= policy.source_max_failures);
            }
            Ok(if over {
                LoginResult::Challenged(self.new_pow(&gate.name, bits).await?)
            } else {
                LoginResult::Denied
            })
        }
        .await;
        decided.unwrap_or_else(|e| {
            tracing::warn!("counting a failed login failed: {e}");
            LoginResult::Denied
        })
    }

    /// After a granted login: the name's counters (from every source) start afresh, and so
    /// does the device's.
    async fn after_success(&self, gate: &Gate) {
        self.settle_device(gate).await;
        if let Err(e) = self.store.clear_subject(&gate.name, LockScope::All).await {
            tracing::warn!("clearing the failure counters of a granted login failed: {e}");
        }
    }

    /// After a granted login from a device: the device's counter starts afresh.
    async fn settle_device(&self, gate: &Gate) {
        if gate.device.is_some() {
            if let Err(e) = self.store.settle_success(&gate.own, gate.scope).await {
                tracing::warn!("clearing the device counter of a granted login failed: {e}");
            }
        }
    }

    /// A granted login's answer: its session, and a new device cookie for the person's client.
    async fn granted(
        &self,
        person_uid: &str,
        gate: &Gate,
        session: NewSession,
        kind: SessionKind,
    ) -> LoginResult {
        let name = gate.name.strip_prefix("n:").unwrap_or(&gate.name);
        let device = self.new_device(person_uid, name).await;
        LoginResult::Granted {
            session,
            kind,
            device,
        }
    }

    /// A new device cookie for the person's client, for the name (its keyed digest) they
    /// logged in with.
    async fn new_device(&self, person_uid: &str, name: &str) -> Option<String> {
        match self.store.server_key(throttle::DEVICE_KEY).await {
            Ok(key) => Some(throttle::device_token(
                &key,
                person_uid,
                name,
                self.store.now(),
            )),
            Err(e) => {
                tracing::warn!("cannot issue a device cookie: {e}");
                None
            }
        }
    }

    /// A question challenge, throttled like a login: every request is counted against its
    /// source; over the limit (or while the name's question logins are over theirs) it must
    /// carry a proof of work. Held to the same time floor whatever it shows.
    pub async fn challenge_for(&self, input: ChallengeInput) -> Result<ChallengeResult, String> {
        let started = std::time::Instant::now();
        let result = self.challenge_throttled(input).await;
        self.hold_failure(0, started).await;
        result
    }

    async fn challenge_throttled(&self, input: ChallengeInput) -> Result<ChallengeResult, String> {
        let (_, policy) = self.scope_and_policy().await;
        let policy = policy.ok_or("the lockout policy can't be read")?;
        let login = LoginInput {
            method: LoginMethod::QUESTIONS,
            login_name: input.login_name,
            secret: String::new(),
            answers: Vec::new(),
            remote_addr: input.remote_addr,
            device: input.device,
            pow: input.pow,
        };
        let gate = match self.gate(&login, &policy, true).await {
            Ok(Ok(gate)) => gate,
            Ok(Err(Refused {
                result: LoginResult::Challenged(pow),
                ..
            })) => return Ok(ChallengeResult::Challenged(pow)),
            Ok(Err(refused)) => return Err(refused.why),
            Err(e) => return Err(format!("throttle unavailable: {e}")),
        };
        self.challenge_in(&login.login_name, gate.context)
            .await
            .map(ChallengeResult::Questions)
    }
}

/// Writes what right secrets deferred ([`defer_settlement`]) now, not with a grant (or, on a
/// call's own thread, for a call that failed or ran past its deadline). A failure is logged:
/// the attempt then stays counted (fail closed).
async fn settle_all(store: &Store, settled: Vec<Settlement>) {
    for s in &settled {
        if let Err(e) = store.settle(s).await {
            tracing::warn!("settling the person's counters after a right secret failed: {e}");
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What the identifying (first) step of a login flow decided.
pub(crate) enum Identified {
    Person {
        person_uid: String,
        /// The authenticator granted a full session for a password login.
        full: bool,
        /// The single-use secrets the step verified, to consume with the flow's session.
        consumed: Vec<Consumption>,
        reason: String,
    },
    Denied,
    /// Denied, and the next first step for this name must carry this proof of work solved.
    Challenged(crate::api::PowChallenge),
    /// The decision could not be audited (the database is away): answered 503, never 401.
    Unavailable,
}

// Login flows (ABI 1.1, `crate::flows`) run their steps through the same pipeline pieces.
impl LoginService {
    /// Admits a flow step as one login in progress, or `None` when too many are.
    pub(crate) fn admit_step(&self) -> Option<Pending<'_>> {
        self.admit()
    }

    /// The first step of a flow, by a classic method: what [`LoginService::login`] does up to
    /// the decision (limits, resolution, the authenticator's call, padding to at least
    /// `cost` hashes, the audit record of a denial), without opening a session. The
    /// caller admitted it ([`LoginService::admit_step`]).
    ///
    /// `cost` holds the fewest hashes a failure costs on entry, and on return the hashes a
    /// failure of this step costs (a questions step pads to the questions it asks), which is
    /// the time floor its failure is held to.
    pub(crate) async fn identify(&self, input: &LoginInput, cost: &AtomicUsize) -> Identified {
        let (scope, policy) = self.scope_and_policy().await;
        let own = if input.method == LoginMethod::QUESTIONS {
            self.questions_asked(&scope).await
        } else {
            1
        };
        let hashes = own.max(cost.load(Ordering::Relaxed));
        cost.store(hashes, Ordering::Relaxed);
        let too_long = input.over_limits(own);
        if too_long || input.login_name.trim().is_empty() {
            self.pad(hashes).await;
            let why = "input over the length limits, or no name";
            return self.deny_step(input, None, why, Identified::Denied).await;
        }
        // The same throttle as the classic logins: the name's, the source's and the device's
        // counters, their locks, and the proof of work asked of clients without a device
        // cookie once the name or the source is over its limit.
        let Some(policy) = policy else {
            self.pad(hashes).await;
            let why = "the lockout policy can't be read";
            return self.deny_step(input, None, why, Identified::Denied).await;
        };
        let gate = match self.gate(input, &policy, false).await {
            Ok(Ok(gate)) => gate,
            Ok(Err(refused)) => {
                self.pad(hashes).await;
                let then = match refused.result {
                    LoginResult::Challenged(pow) => Identified::Challenged(pow),
                    _ => Identified::Denied,
                };
                return self.deny_step(input, None, &refused.why, then).await;
            }
            Err(e) => {
                tracing::error!("login throttle unavailable: {e}");
                self.pad(hashes).await;
                let why = format!("throttle unavailable: {e}");
                return self.deny_step(input, None, &why, Identified::Denied).await;
            }
        };
        let decided = match self.resolve_in(&scope, &input.login_name).await {
            Ok(candidates) => {
                self.decide_padded(scope, input.request(candidates), &gate, hashes)
                    .await
            }
            // Denied like a plugin failure: padded here, since no call ran.
            Err(e) => {
                self.pad(hashes).await;
                Err(CallError::Resolver(format!("resolution failed: {e}")))
            }
        };
        let (outcome, consumed, mut attempt) = match decided {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("flow step denied: {e}");
                let denied = self
                    .deny_step(input, None, &e.to_string(), Identified::Denied)
                    .await;
                if matches!(denied, Identified::Denied) {
                    let _ = self.after_failure(&gate, &policy, false).await;
                }
                return denied;
            }
        };
        // A flow's session is opened after its last step: the settlement is written now.
        settle_all(&self.store, std::mem::take(&mut attempt.settled)).await;
        let person = outcome
            .person_uid
            .as_ref()
            .map(|p| p.to_string())
            .into_option();
        match (outcome.granted, person) {
            (true, Some(person_uid)) => {
                self.after_success(&gate).await;
                Identified::Person {
                    full: outcome.session.is_full() && input.method == LoginMethod::PASSWORD,
                    person_uid,
                    consumed,
                    reason: outcome.reason.to_string(),
                }
            }
            (_, person) => {
                let reason = if outcome.granted {
                    "authenticator granted a login without a person"
                } else {
                    outcome.reason.as_str()
                };
                let denied = self
                    .deny_step(input, person.as_deref(), reason, Identified::Denied)
                    .await;
                if !matches!(denied, Identified::Denied) {
                    return denied;
                }
                match self.after_failure(&gate, &policy, attempt.pow_wanted).await {
                    LoginResult::Challenged(pow) => Identified::Challenged(pow),
                    _ => Identified::Denied,
                }
            }
        }
    }

    /// A first step's denial, once audited ([`LoginService::deny`]): `then`, or `Unavailable`
    /// when its record can't be committed.
    async fn deny_step(
        &self,
        input: &LoginInput,
        person_uid: Option<&str>,
        reason: &str,
        then: Identified,
    ) -> Identified {
        match self.deny(input, person_uid, reason).await {
            LoginResult::Denied => then,
            _ => Identified::Unavailable,
        }
    }

    /// A fresh proof of work for attempts on `login_name` (for a page that knows the name
    /// needs one), or `None` when proofs of work are off or the keys can't be read.
    pub(crate) async fn pow_for(&self, login_name: &str) -> Option<crate::api::PowChallenge> {
        let (_, policy) = self.scope_and_policy().await;
        let bits = u32::try_from(policy?.pow_bits).ok().filter(|b| *b > 0)?;
        let key = self.store.server_key(throttle::NAME_KEY).await.ok()?;
        let name = format!("n:{}", throttle::name_key(&key, login_name));
        self.new_pow(&name, bits).await.ok()
    }

    /// A device cookie for the client that completed a flow for the person, who started it
    /// with `login_name`.
    pub(crate) async fn device_for(&self, person_uid: &str, login_name: &str) -> Option<String> {
        let key = match self.store.server_key(throttle::NAME_KEY).await {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!("cannot issue a device cookie: {e}");
                return None;
            }
        };
        let name = throttle::name_key(&key, login_name);
        self.new_device(person_uid, &name).await
    }

    /// One request's scope, for a flow step's plugin calls.
    pub(crate) async fn step_scope(&self) -> RequestScope {
        self.scope().await
    }

    /// Dummy hashes, for a flow step denied before (or without) its own hashes.
    pub(crate) async fn pad_hashes(&self, hashes: usize) {
        self.pad(hashes).await;
    }

    /// Writes an audit record of a flow (steps, enrollment). `false` when it could not be
    /// committed: the event is kept to be written when the database is back, and a step
    /// answers 503 rather than what it decided.
    pub(crate) async fn audit_event(&self, event: &AuditEvent<'_>) -> bool {
        match self.audit.write(event).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("audit log write failed: {e}");
                self.audit.keep(event);
                false
            }
        }
    }

    /// Keeps the audit record of a request answered 503, to be written when the database is
    /// back.
    pub(crate) fn keep_audit_event(&self, event: &AuditEvent<'_>) {
        self.audit.keep(event);
    }

    /// Opens the session a completed flow grants, consuming what its first step verified.
    /// `None` when a single-use secret was used by another login meanwhile.
    pub(crate) async fn open_session(
        &self,
        person_uid: &str,
        method: &str,
        kind: SessionKind,
        consumed: &[Consumption],
    ) -> Result<Option<NewSession>, crate::store::StoreError> {
        let lifetime = match kind {
            SessionKind::Full => self.session_seconds,
            SessionKind::Reset => self.reset_session_seconds,
        };
        self.store
            .create_session_consuming(person_uid, method, kind, lifetime, consumed)
            .await
    }
}
