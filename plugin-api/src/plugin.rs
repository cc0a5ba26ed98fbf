use crate::error::{ErrorKind, PluginError, PluginResult};
use crate::flow::{
    classic_methods, Enrollment, FieldValue, MethodDescriptor, StepOutcome, StepRequest,
};
use crate::guard::guarded;
use crate::login::{LoginOutcome, LoginRequest, QuestionChallenge};
use crate::resolver::ResolvedAccount;
use abi_stable::sabi_trait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::StableAbi;

/// How serious a [`CheckFinding`] is. `ERROR` means the component must not serve.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Severity(u8);

impl Severity {
    pub const INFO: Self = Self(1);
    pub const WARNING: Self = Self(2);
    pub const ERROR: Self = Self(3);

    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "info",
            2 => "warning",
            3 => "error",
            // A kind added by a newer ABI: treated as the most serious one.
            _ => "error",
        }
    }
    /// Unknown severities (from a newer ABI) count as errors: fail closed.
    pub const fn is_error(self) -> bool {
        self.0 != 1 && self.0 != 2
    }
}

/// One result of a component's self-check, e.g. a parameter that is set but invalid.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct CheckFinding {
    pub severity: Severity,
    /// What the finding is about, e.g. a parameter path or connection string name.
    pub subject: RString,
    /// What is wrong or notable, in words an operator understands. Never a secret.
    pub message: RString,
}

impl CheckFinding {
    pub fn new(severity: Severity, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity,
            subject: RString::from(subject.into()),
            message: RString::from(message.into()),
        }
    }
    pub fn info(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::INFO, subject, message)
    }
    pub fn warning(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::WARNING, subject, message)
    }
    pub fn error(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::ERROR, subject, message)
    }
}

/// What an authenticator's rules ask of the host outside the authenticator's own calls
/// (ABI 1.1): the host enforces these numbers when a person edits their questions, pads and
/// bounds question logins with them, and issues passcodes by them. The authenticator computes
/// it from its own configuration, so the host never needs to know the plugin's parameters.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthenticatorPolicy {
    /// How many password questions a person must keep defined: the portal refuses to delete
    /// one below this number.
    pub questions_kept: u32,
    /// How many questions a question login asks. Every question login costs this many hashes
    /// (the host pads to it), and a login that sends more answers is refused unhashed.
    pub questions_asked: u32,
    /// Whether passcodes are issued four-eyes: the issuer sees the first half, and the person's
    /// manager gets the second (so the manager may not issue it, and a person without a manager
    /// can't get one).
    pub passcode_split: bool,
}

/// An authentication module, as the host sees it across the ABI. Plugins don't implement this
/// directly: they implement [`AuthenticatorImpl`] and wrap it with [`authenticator_box`].
#[sabi_trait]
pub trait Authenticator: Send + Sync {
    /// Stable identifier, used in configuration and logs.
    fn id(&self) -> RString;

    /// Checks the component's configuration through the host services and says what is wrong.
    /// The host runs it for `prp-host check` and before serving.
    fn self_check(&self) -> PluginResult<RVec<CheckFinding>>;

    /// Decides a login attempt. Secrets are checked through the host services, which count
    /// failures and enforce locks.
    fn login(&self, request: &LoginRequest) -> PluginResult<LoginOutcome>;

    /// The questions to ask for a login name: the person's own when they may log in with
    /// questions, else plausible decoys that are the same every time for that name.
    fn challenge(
        &self,
        login_name: RStr<'_>,
        candidates: RSlice<'_, ResolvedAccount>,
    ) -> PluginResult<RVec<QuestionChallenge>>;

    /// For operators: how the name resolves and what each way of logging in would do, in
    /// plain lines. Never shows a secret.
    #[sabi(last_prefix_field)]
    fn explain(
        &self,
        login_name: RStr<'_>,
        candidates: RSlice<'_, ResolvedAccount>,
    ) -> PluginResult<RVec<RString>>;

    // ABI 1.1: appended after the last 1.0 method, each with a default body, which the host
    // runs for a plugin built against 1.0 (its vtable has no such entry).

    /// The methods this authenticator offers (ABI 1.1). A 1.0 plugin offers the classic
    /// three, through `login`.
    fn methods(&self) -> PluginResult<RVec<MethodDescriptor>> {
        RResult::ROk(RVec::from(classic_methods()))
    }

    /// Decides a step of a `CONTINUES` method for a known person (ABI 1.1).
    fn step(&self, request: &StepRequest) -> PluginResult<StepOutcome> {
        RResult::RErr(unsupported(request.method.as_str(), "steps"))
    }

    /// Starts enrolling the person in an enrollable method (ABI 1.1).
    fn enroll(&self, method: RStr<'_>, person_uid: RStr<'_>) -> PluginResult<Enrollment> {
        let _ = person_uid;
        RResult::RErr(unsupported(method.as_str(), "enrollment"))
    }

    /// Confirms an enrollment with what the person typed, against the data `enroll` gave
    /// (ABI 1.1). Passing activates the factor.
    fn confirm(
        &self,
        method: RStr<'_>,
        person_uid: RStr<'_>,
        pending: RStr<'_>,
        values: RSlice<'_, FieldValue>,
        now: i64,
    ) -> PluginResult<StepOutcome> {
        let _ = (person_uid, pending, values, now);
        RResult::RErr(unsupported(method.as_str(), "enrollment"))
    }

    /// What the host must apply for this authenticator (ABI 1.1), read from its configuration
    /// now: the host asks once per request that needs it, so a change applies at the next one.
    /// `None` (the default, and what a 1.0 plugin answers): the authenticator doesn't say, and
    /// the host applies the rules it applied to 1.0 plugins.
    fn policy(&self) -> PluginResult<ROption<AuthenticatorPolicy>> {
        RResult::ROk(ROption::RNone)
    }
}

fn unsupported(method: &str, what: &str) -> PluginError {
    PluginError::new(
        ErrorKind::INVALID_INPUT,
        format!("this authenticator offers no {what} for the method \"{method}\""),
    )
}

/// An authenticator as the host holds it.
pub type AuthenticatorBox = Authenticator_TO<'static, RBox<()>>;

/// The Rust-side trait a plugin implements for an authenticator.
pub trait AuthenticatorImpl: Send + Sync + 'static {
    fn id(&self) -> String;
    fn self_check(&self) -> Result<Vec<CheckFinding>, PluginError>;
    fn login(&self, request: &LoginRequest) -> Result<LoginOutcome, PluginError>;
    fn challenge(
        &self,
        login_name: &str,
        candidates: &[ResolvedAccount],
    ) -> Result<Vec<QuestionChallenge>, PluginError>;
    fn explain(
        &self,
        login_name: &str,
        candidates: &[ResolvedAccount],
    ) -> Result<Vec<String>, PluginError>;
    /// The methods offered (ABI 1.1); by default the classic three, decided by `login`.
    fn methods(&self) -> Result<Vec<MethodDescriptor>, PluginError> {
        Ok(classic_methods())
    }
    /// Decides a step of a `CONTINUES` method (ABI 1.1).
    fn step(&self, request: &StepRequest) -> Result<StepOutcome, PluginError> {
        Err(unsupported(request.method.as_str(), "steps"))
    }
    /// Starts an enrollment (ABI 1.1).
    fn enroll(&self, method: &str, _person_uid: &str) -> Result<Enrollment, PluginError> {
        Err(unsupported(method, "enrollment"))
    }
    /// Confirms an enrollment (ABI 1.1).
    fn confirm(
        &self,
        method: &str,
        _person_uid: &str,
        _pending: &str,
        _values: &[FieldValue],
        _now: i64,
    ) -> Result<StepOutcome, PluginError> {
        Err(unsupported(method, "enrollment"))
    }
    /// What the host must apply for this authenticator (ABI 1.1); by default `None`, the
    /// host's rules for authenticators that don't say.
    fn policy(&self) -> Result<Option<AuthenticatorPolicy>, PluginError> {
        Ok(None)
    }
}

struct GuardedAuthenticator<A> {
    id: RString,
    inner: A,
}

impl<A: AuthenticatorImpl> Authenticator for GuardedAuthenticator<A> {
    fn id(&self) -> RString {
        self.id.clone()
    }
    fn self_check(&self) -> PluginResult<RVec<CheckFinding>> {
        guarded(|| self.inner.self_check().map(RVec::from))
    }
    fn login(&self, request: &LoginRequest) -> PluginResult<LoginOutcome> {
        guarded(|| self.inner.login(request))
    }
    fn challenge(
        &self,
        login_name: RStr<'_>,
        candidates: RSlice<'_, ResolvedAccount>,
    ) -> PluginResult<RVec<QuestionChallenge>> {
        guarded(|| {
            self.inner
                .challenge(login_name.as_str(), candidates.as_slice())
                .map(RVec::from)
        })
    }
    fn explain(
        &self,
        login_name: RStr<'_>,
        candidates: RSlice<'_, ResolvedAccount>,
    ) -> PluginResult<RVec<RString>> {
        guarded(|| {
            self.inner
                .explain(login_name.as_str(), candidates.as_slice())
                .map(|lines| lines.into_iter().map(RString::from).collect())
        })
    }
    fn methods(&self) -> PluginResult<RVec<MethodDescriptor>> {
        guarded(|| self.inner.methods().map(RVec::from))
    }
    fn step(&self, request: &StepRequest) -> PluginResult<StepOutcome> {
        guarded(|| self.inner.step(request))
    }
    fn enroll(&self, method: RStr<'_>, person_uid: RStr<'_>) -> PluginResult<Enrollment> {
        guarded(|| self.inner.enroll(method.as_str(), person_uid.as_str()))
    }
    fn confirm(
        &self,
        method: RStr<'_>,
        person_uid: RStr<'_>,
        pending: RStr<'_>,
        values: RSlice<'_, FieldValue>,
        now: i64,
    ) -> PluginResult<StepOutcome> {
        guarded(|| {
            self.inner.confirm(
                method.as_str(),
                person_uid.as_str(),
                pending.as_str(),
                values.as_slice(),
                now,
            )
        })
    }
    fn policy(&self) -> PluginResult<ROption<AuthenticatorPolicy>> {
        guarded(|| self.inner.policy().map(ROption::from))
    }
}

/// Wraps an [`AuthenticatorImpl`] so that every call across the ABI catches panics.
/// Call it from the plugin's init function (which is guarded too, so `id()` may panic safely).
pub fn authenticator_box<A: AuthenticatorImpl>(inner: A) -> AuthenticatorBox {
    let id = RString::from(inner.id());
    Authenticator_TO::from_value(GuardedAuthenticator { id, inner }, TD_Opaque)
}
