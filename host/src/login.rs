//! Logging in, as the host runs it for every authenticator: admission control, resolution
//! through the resolvers, the authenticator's decision, padding to a constant number of
//! hashes, the audit record and the session. Every denial looks the same to the client.

use crate::plugins::{CallError, CallGate};
use crate::security::{take_hash_count, Hasher};
use crate::store::{AuditEvent, AuditWriter, NewSession, SessionKind, Store};
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
}

/// Counts a login in progress for as long as it lives.
struct Pending<'a>(&'a AtomicUsize);

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
        Self {
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
        }
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
        self.resolve_accounts(login_name)
            .await
            .map_err(|e| e.message)
    }

    async fn resolve_accounts(
        &self,
        login_name: &str,
    ) -> Result<Vec<ResolvedAccount>, ResolveError> {
        let mut out = Vec::new();
        for (id, resolver) in &self.resolvers {
            let r = Arc::clone(resolver);
            let name = login_name.to_owned();
            let found = self
                .gate
                .call(move || r.resolve(name.as_str().into()))
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
        let hashes = if input.method == LoginMethod::QUESTIONS {
            input.answers.len().max(1)
        } else {
            1
        };
        let too_long = input.login_name.len() > MAX_LOGIN_NAME
            || input.secret.len() > MAX_SECRET
            || input.answers.len() > MAX_ANSWERS
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
        let candidates = match self.resolve_accounts(&input.login_name).await {
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
                let outcome = auth.login(&request);
                // Pad to the same number of hashes on every path (unknown names included).
                for _ in take_hash_count() as usize..hashes {
                    hasher.dummy_verify();
                }
                outcome
            })
            .await;
        let outcome = match decided {
            Ok(o) => o,
            Err(e) if is_unavailable(&e) => {
                return self.unavailable(&input, None, &format!("authenticator: {e}"));
            }
            Err(e) => {
                let why = match &e {
                    CallError::Plugin(p) => format!("authenticator failed: {p}"),
                    other => other.to_string(),
                };
                tracing::error!(
                    method,
                    "login denied because the authenticator failed: {why}"
                );
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
            .create_session(&person_uid, method, kind, lifetime)
            .await
        {
            Ok(session) => {
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
        let candidates = self.resolve(login_name).await?;
        let auth = Arc::clone(&self.authenticator);
        let name = login_name.to_owned();
        self.gate
            .call(move || {
                let c: RVec<ResolvedAccount> = candidates.into_iter().collect();
                auth.challenge(name.as_str().into(), c.as_rslice())
            })
            .await
            .map(|v| v.into_iter().collect())
            .map_err(|e| e.to_string())
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
