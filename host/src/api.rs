//! The HTTP API's request and response bodies: one type per body, shared by the server, the
//! generated OpenAPI document (`/openapi.json`), the tests and the bench.
//!
//! Requests are JSON objects (`Content-Type: application/json`); unknown fields are refused, so
//! a misspelt field is an error that names it rather than a silent default.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error answer: a stable code for programs and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable: `login_failed`, `unauthorized`, `csrf`, `bad_request`,
    /// `unsupported_media_type`, `payload_too_large`, `not_found`, `method_not_allowed`,
    /// `invalid`, `policy`, `forbidden`, `conflict`, `busy`, `unavailable`, `upstream`,
    /// `unknown`, `timeout`, `internal`.
    pub error: String,
    /// What went wrong, in words; never a secret, never whether an account exists.
    pub message: String,
    /// For `policy`: the rules the password breaks, per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<CheckResponse>,
    /// For `login_failed`: a proof of work the next attempt for this login name must carry
    /// (sent once a name, a person or the client's source is over its limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pow: Option<PowChallenge>,
}

/// A proof of work to solve: find a decimal `solution` such that
/// SHA-256(`challenge` ":" `solution`) starts with `bits` zero bits. Valid once, for the login
/// name it was issued for, until `expires_at` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PowChallenge {
    pub challenge: String,
    pub bits: u32,
    pub expires_at: i64,
}

/// A solved [`PowChallenge`], sent with the next login attempt (or question challenge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowSolution {
    pub challenge: String,
    pub solution: String,
}

/// `POST /api/login/password`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordLogin {
    pub login_name: String,
    pub password: String,
    /// The solved proof of work the last failure asked for, if it asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pow: Option<PowSolution>,
}

/// `POST /api/login/passcode`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasscodeLogin {
    pub login_name: String,
    /// As issued (`XXXX-XXXX-XXXX-XXXX`); case and dashes don't matter. Both halves, one after
    /// the other, for a four-eyes passcode.
    pub passcode: String,
    /// The solved proof of work the last failure asked for, if it asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pow: Option<PowSolution>,
}

/// `POST /api/login/questions/challenge`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub login_name: String,
    /// The solved proof of work the last failure asked for, if it asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pow: Option<PowSolution>,
}

/// One question to answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChallengeQuestion {
    pub id: String,
    pub question: String,
}

/// The questions to answer for a login name (decoys for a name that can't log in this way).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChallengeResponse {
    pub questions: Vec<ChallengeQuestion>,
}

/// One answer of a questions login.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub question_id: String,
    pub answer: String,
}

/// `POST /api/login/questions`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionsLogin {
    pub login_name: String,
    pub answers: Vec<Answer>,
    /// The solved proof of work the last failure asked for, if it asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pow: Option<PowSolution>,
}

/// A granted login. The same token is also set as the session cookie, with the CSRF token in
/// a cookie the page can read.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>` (API clients).
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Send as `X-CSRF-Token` with requests that change state and carry the session cookie.
    pub csrf_token: String,
    /// When the session ends at the latest, in Unix seconds (it ends earlier after
    /// `Host:SessionIdleMinutes` without use).
    pub expires_at: i64,
    /// `full` (password) or `reset` (passcode or questions: one's own passwords and questions).
    pub session_kind: String,
}

/// `GET /api/session`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    pub person_uid: String,
    /// How the session was opened: `password`, `passcode` or `questions`.
    pub method: String,
    pub session_kind: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub full: bool,
}

/// `GET /api/me`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub person_uid: String,
    pub central_account: String,
    pub first_name: String,
    pub last_name: String,
    pub session_kind: String,
}

/// A password policy, for people and for programs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyInfo {
    pub name: String,
    /// The rules in a sentence.
    pub description: String,
    pub min_length: usize,
    pub max_length: usize,
    pub history_count: usize,
}

/// A password the person may reset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasswordItem {
    /// `central` or `<Table>:<account uid>`; pass it back to check or set.
    pub id: String,
    pub display_name: String,
    /// The table or system (`Person` for the central account).
    pub system: String,
    /// When the password was last set through the portal (Unix seconds), if known.
    pub last_set: Option<i64>,
    pub policy: PolicyInfo,
}

/// `GET /api/password-items`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasswordItems {
    pub items: Vec<PasswordItem>,
}

/// `POST /api/password-items/check` and `/set`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// Item ids from `GET /api/password-items`.
    pub items: Vec<String>,
    pub password: String,
}

/// One rule a password breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Violation {
    /// `min_length`, `max_length`, `history`, `names`, `common`, …
    pub rule: String,
    pub message: String,
}

/// The rules a password breaks for one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ItemCheck {
    pub id: String,
    pub violations: Vec<Violation>,
}

/// What a password breaks, item by item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckResponse {
    /// True when no item has a violation.
    pub ok: bool,
    pub items: Vec<ItemCheck>,
}

/// `POST /api/password-items/set`: the items changed (all that were asked for).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetResponse {
    pub changed: Vec<String>,
}

/// One of the person's own password questions (the answer is never shown back).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuestionInfo {
    pub id: String,
    pub question: String,
    pub locked: bool,
}

/// `GET /api/questions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuestionList {
    /// How many questions the person must keep (`QueryAnswerDefinitions`).
    pub required: usize,
    pub questions: Vec<QuestionInfo>,
}

/// `POST /api/questions` and `PUT /api/questions/{id}`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionRequest {
    /// 5–200 characters.
    pub question: String,
    /// 3–64 characters after normalisation; not inside the question.
    pub answer: String,
}

/// A question's id after it was added, replaced or unlocked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuestionId {
    pub id: String,
    /// Present after an unlock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
}

/// A direct report of a manager.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Report {
    pub person_uid: String,
    pub first_name: String,
    pub last_name: String,
    pub central_account: String,
}

/// `GET /api/reports`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reports {
    pub reports: Vec<Report>,
}

/// `POST /api/reports/{uid}/passcode`: shown once.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedPasscode {
    pub person_uid: String,
    /// The whole passcode, unless split.
    pub passcode: Option<String>,
    /// The issuer's half of a four-eyes passcode; the person's manager gets the other.
    pub passcode_first_half: Option<String>,
    pub split: bool,
    pub valid_hours: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// `GET /health/live` and `GET /health/ready`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `live`, `ready` or `not ready`.
    pub status: String,
    /// Only on the admin listener: what is not ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Only on the admin listener: the loaded plugins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginInfo>,
    /// Only on the admin listener: each resolver in use and its live self-check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<ResolverHealth>,
}

/// A resolver in use, as the admin listener's readiness shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResolverHealth {
    pub id: String,
    pub plugin: String,
    /// Listed in `Plugins:Optional`: when it fails, only its own accounts are left out (and
    /// its failure doesn't make the portal not ready).
    pub optional: bool,
    /// `ok` or `failed` (the self-check call failed or found an error).
    pub status: String,
    /// The self-check's findings, `severity: subject: message`, or why the call failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

/// A loaded plugin, as the admin listener's readiness shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
}

// Login flows (ABI 1.1): flows of steps, and the factors a person enrolls.

/// A field a method asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldInfo {
    /// The key of the value in a step's `values`.
    pub name: String,
    /// `text`, `secret` or `choice`.
    pub kind: String,
    pub label: String,
    /// The allowed values of a `choice` field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

/// A login method a loaded authenticator offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MethodInfo {
    pub id: String,
    pub label: String,
    pub fields: Vec<FieldInfo>,
    /// `identifies` (a first step, from the login name) or `continues` (a later step).
    pub role: String,
    /// Argon2 hashes one attempt costs at most.
    pub hashes: u32,
    /// Whether a person enrolls in it (`/api/factors/{method}/enroll`).
    pub enrollable: bool,
}

/// A flow: steps of alternative methods, and the session it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlowInfo {
    pub id: String,
    pub label: String,
    /// Each step's alternative method ids, e.g. `[["password"], ["totp"]]`.
    pub steps: Vec<Vec<String>>,
    /// `full` or `reset`.
    pub session_kind: String,
}

/// `GET /api/login/flows`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlowsResponse {
    pub flows: Vec<FlowInfo>,
    /// Every method the flows name, with its fields.
    pub methods: Vec<MethodInfo>,
}

/// `POST /api/login/start`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowStart {
    pub flow: String,
    pub login_name: String,
}

/// A step to take: its position and the methods it accepts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepInfo {
    /// 0 for the first step.
    pub index: usize,
    pub methods: Vec<MethodInfo>,
}

/// An attempt in progress: send its token with the next step (once; it expires in minutes).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepResponse {
    pub attempt: String,
    pub step: StepInfo,
}

/// `POST /api/login/step`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowStep {
    pub attempt: String,
    pub method: String,
    /// The method's fields by name (for questions: each answer by its question's id).
    pub values: std::collections::BTreeMap<String, String>,
    /// The solved proof of work a failed first step asked for, if it asked for one (sent with
    /// the first step of a new attempt: the failed one is over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pow: Option<PowSolution>,
}

/// What a step answers: the next step, or after the last one the session, as a login does.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum FlowStepResponse {
    Next(StepResponse),
    Done(LoginResponse),
}

/// One enrollable method and the person's state in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FactorInfo {
    pub method: String,
    pub label: String,
    pub enrolled: bool,
    /// An enrollment waits for its confirmation.
    pub pending: bool,
    pub enrolled_at: Option<i64>,
}

/// `GET /api/factors`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FactorList {
    pub factors: Vec<FactorInfo>,
}

/// `POST /api/factors/{method}/enroll`: what the person needs, shown once (for TOTP the
/// `secret` in base32 and the `otpauth_uri`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FactorEnrollment {
    pub method: String,
    pub shown: std::collections::BTreeMap<String, String>,
    /// What `/api/factors/{method}/confirm` asks for.
    pub confirm_fields: Vec<FieldInfo>,
}

/// `POST /api/factors/{method}/confirm`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FactorConfirm {
    pub values: std::collections::BTreeMap<String, String>,
}
