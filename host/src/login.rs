//! Logging in, as the host runs it for every authenticator: admission control, resolution
//! through the resolvers, the authenticator's decision, padding to a constant number of
//! hashes, the audit record and the session. Every denial looks the same to the client.

use crate::metrics::Crossings;
use crate::plugins::{CallError, CallGate, RequestScope};
use crate::security::{take_hash_count, Hasher};
use crate::store::{AuditEvent, AuditWriter, Consumption, NewSession, SessionKind, Store};
use prp_plugin_api::abi_stable::std_types::{RString, RVec};
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

/// The parameter with the number of questions a questions login answers.
pub const QUERY_ANSWER_REQUESTS: &str =
    r"QER\Person\PasswordResetAuthenticator\QueryAnswerRequests";
/// Its default, as the reference authenticator has it.
const DEFAULT_REQUESTS: usize = 2;
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

/// A login attempt as the HTTP layer received it.
pub struct LoginInput {
    pub method: LoginMethod,
    pub login_name: String,
    pub secret: String,
    pub answers: Vec<(String, String)>,
    pub remote_addr: Option<String>,
}

#[derive(Debug)]
pub enum LoginResult {
    Granted {
        session: NewSession,
        kind: SessionKind,
    },
    /// Every failure, whatever the reason.
    Denied,
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
    pub resolvers: Vec<(String, Arc<ResolverBox>)>,
    pub max_pending: usize,
    pub session_seconds: i64,
    pub reset_session_seconds: i64,
    pending: AtomicUsize,
    audit: AuditWriter,
    crossings: Arc<Crossings>,
    sweeper: tokio::task::JoinHandle<()>,
    /// The methods every loaded authenticator offers, asked once (see `crate::flows`).
    pub(crate) catalog: tokio::sync::OnceCell<Arc<crate::flows::Catalog>>,
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
        resolvers: Vec<(String, Arc<ResolverBox>)>,
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
        }
    }

    /// The plugin crossings made for logins and challenges so far.
    pub fn crossings(&self) -> &Crossings {
        &self.crossings
    }

    /// One request's scope: the parameters read once, now, for all its plugin calls.
    async fn scope(&self) -> RequestScope {
        let parameters = match self.store.parameters().await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("cannot read the parameters for a login: {e}");
                None
            }
        };
        RequestScope::new(parameters, Arc::clone(&self.crossings))
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
    /// whole resolution fail: deny rather than decide on part of the picture.
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
        let mut out = Vec::new();
        for (id, resolver) in &self.resolvers {
            let r = Arc::clone(resolver);
            let name = login_name.to_owned();
            let scope = scope.clone();
            let found = self
                .gate
                .call(move || scope.run("resolve", || r.resolve(name.as_str().into())))
                .await
                .map_err(|e| ResolveError {
                    message: format!("resolver {id}: {e}"),
                    unavailable: is_unavailable(&e),
                })?;
            for mut account in found {
                account.resolver = RString::from(id.as_str());
                out.push(account);
            }
        }
        Ok(out)
    }

    pub async fn login(&self, input: LoginInput) -> LoginResult {
        let method = input.method.name();
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
            return LoginResult::Busy;
        };
        // A questions login costs one hash per question asked, a number the server sets: what
        // the client sends (more answers, fewer) changes nothing.
        let hashes = if input.method == LoginMethod::QUESTIONS {
            self.questions_asked().await
        } else {
            1
        };
        let too_long = input.login_name.len() > MAX_LOGIN_NAME
            || input.secret.len() > MAX_SECRET
            || input.answers.len() > hashes
            || input
                .answers
                .iter()
                .any(|(id, a)| id.len() > MAX_ANSWER || a.len() > MAX_ANSWER);
        if too_long || input.login_name.trim().is_empty() {
            self.pad(hashes).await;
            let why = if too_long {
                "input over the length limits"
            } else {
                "empty login name"
            };
            return self.deny(&input, None, why).await;
        }
        let scope = self.scope().await;
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
        let request = LoginRequest {
            method: input.method,
            login_name: input.login_name.as_str().into(),
            secret: input.secret.as_str().into(),
            answers: input
                .answers
                .iter()
                .map(|(id, a)| QuestionAnswer {
                    question_id: id.as_str().into(),
                    answer: a.as_str().into(),
                })
                .collect::<RVec<_>>(),
            candidates: candidates.into_iter().collect(),
        };
        let auth = Arc::clone(&self.authenticator);
        let hasher = Arc::clone(&self.hasher);
        let decided = self
            .gate
            .call(move || {
                take_hash_count();
                begin_deferring();
                let outcome = scope.run("login", || auth.login(&request));
                let consumed = take_deferred();
                // Pad to the same number of hashes on every path (unknown names included).
                for _ in take_hash_count() as usize..hashes {
                    hasher.dummy_verify();
                }
                outcome.map(|o| (o, consumed))
            })
            .await;
        // A call that runs out of time is answered here while its thread goes on: what it
        // deferred is dropped with its result, so nothing is consumed for the denied login.
        let (outcome, consumed) = match decided {
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
        if !outcome.granted {
            return self
                .deny(&input, person.as_deref(), outcome.reason.as_str())
                .await;
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
        let lifetime = match kind {
            SessionKind::Full => self.session_seconds,
            SessionKind::Reset => self.reset_session_seconds,
        };
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
                    Ok(()) => LoginResult::Granted { session, kind },
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

    /// The questions to show for a login name (real or decoy; the client can't tell which).
    pub async fn challenge(&self, login_name: &str) -> Result<Vec<QuestionChallenge>, String> {
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
        self.gate
            .call(move || {
                let c: RVec<ResolvedAccount> = candidates.into_iter().collect();
                scope.run("challenge", || {
                    auth.challenge(name.as_str().into(), c.as_rslice())
                })
            })
            .await
            .map(|v| v.into_iter().collect())
            .map_err(|e| e.to_string())
    }

    /// How many questions a questions login answers (`QueryAnswerRequests`, 1 to
    /// [`MAX_ANSWERS`]).
    async fn questions_asked(&self) -> usize {
        match self.store.parameter_value(QUERY_ANSWER_REQUESTS).await {
            Ok(v) => v
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(DEFAULT_REQUESTS)
                .clamp(1, MAX_ANSWERS),
            Err(e) => {
                tracing::warn!("reading {QUERY_ANSWER_REQUESTS} failed: {e}");
                DEFAULT_REQUESTS
            }
        }
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
            "login answered 503, the database is unavailable: {reason}"
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
}

// Login flows (ABI 1.1, `crate::flows`) run their steps through the same pipeline pieces.
impl LoginService {
    /// Admits a flow step as one login in progress, or `None` when too many are.
    pub(crate) fn admit_step(&self) -> Option<Pending<'_>> {
        self.admit()
    }

    /// The first step of a flow, by a classic method: what [`LoginService::login`] does up to
    /// the decision (limits, resolution, the authenticator's call, padding to at least
    /// `min_hashes` hashes, the audit record of a denial), without opening a session. The
    /// caller admitted it ([`LoginService::admit_step`]).
    pub(crate) async fn identify(&self, input: &LoginInput, min_hashes: usize) -> Identified {
        let own = if input.method == LoginMethod::QUESTIONS {
            self.questions_asked().await
        } else {
            1
        };
        let hashes = own.max(min_hashes);
        let too_long = input.login_name.len() > MAX_LOGIN_NAME
            || input.secret.len() > MAX_SECRET
            || input.answers.len() > own
            || input
                .answers
                .iter()
                .any(|(id, a)| id.len() > MAX_ANSWER || a.len() > MAX_ANSWER);
        if too_long || input.login_name.trim().is_empty() {
            self.pad(hashes).await;
            self.audit(
                input,
                None,
                "failure",
                "input over the length limits, or no name",
            )
            .await;
            return Identified::Denied;
        }
        let scope = self.scope().await;
        let candidates = match self.resolve_in(&scope, &input.login_name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("login name resolution failed: {e}");
                self.pad(hashes).await;
                self.audit(input, None, "failure", &format!("resolution failed: {e}"))
                    .await;
                return Identified::Denied;
            }
        };
        let request = LoginRequest {
            method: input.method,
            login_name: input.login_name.as_str().into(),
            secret: input.secret.as_str().into(),
            answers: input
                .answers
                .iter()
                .map(|(id, a)| QuestionAnswer {
                    question_id: id.as_str().into(),
                    answer: a.as_str().into(),
                })
                .collect::<RVec<_>>(),
            candidates: candidates.into_iter().collect(),
        };
        let auth = Arc::clone(&self.authenticator);
        let hasher = Arc::clone(&self.hasher);
        let decided = self
            .gate
            .call(move || {
                take_hash_count();
                begin_deferring();
                let outcome = scope.run("login", || auth.login(&request));
                let consumed = take_deferred();
                for _ in take_hash_count() as usize..hashes {
                    hasher.dummy_verify();
                }
                outcome.map(|o| (o, consumed))
            })
            .await;
        let (outcome, consumed) = match decided {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("flow step denied because a plugin failed: {e}");
                self.audit(input, None, "failure", &e.to_string()).await;
                return Identified::Denied;
            }
        };
        let person = outcome
            .person_uid
            .as_ref()
            .map(|p| p.to_string())
            .into_option();
        match (outcome.granted, person) {
            (true, Some(person_uid)) => Identified::Person {
                full: outcome.session.is_full() && input.method == LoginMethod::PASSWORD,
                person_uid,
                consumed,
                reason: outcome.reason.to_string(),
            },
            (_, person) => {
                let reason = if outcome.granted {
                    "authenticator granted a login without a person"
                } else {
                    outcome.reason.as_str()
                };
                self.audit(input, person.as_deref(), "failure", reason)
                    .await;
                Identified::Denied
            }
        }
    }

    /// One request's scope, for a flow step's plugin calls.
    pub(crate) async fn step_scope(&self) -> RequestScope {
        self.scope().await
    }

    /// Dummy hashes, for a flow step denied before (or without) its own hashes.
    pub(crate) async fn pad_hashes(&self, hashes: usize) {
        self.pad(hashes).await;
    }

    /// Writes an audit record of a flow (steps, enrollment).
    pub(crate) async fn audit_event(&self, event: &AuditEvent<'_>) {
        if let Err(e) = self.audit.write(event).await {
            tracing::error!("audit log write failed: {e}");
        }
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
