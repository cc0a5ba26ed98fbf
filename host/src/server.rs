//! The HTTP server: a router over shared state, served on a listener the caller bound, until a
//! shutdown future resolves (SIGTERM or SIGINT in the binary).
//!
//! Authentication: a session token as `Authorization: Bearer …` (API clients) or the
//! `prp_session` cookie (the web page). Requests that change state and come with the cookie
//! must also send the session's CSRF token in `X-CSRF-Token` (the page reads it from the
//! `prp_csrf` cookie); bearer requests can't be forged by another site and don't need it.

use crate::app::Portal;
use crate::login::{LoginInput, LoginResult, LoginService};
use crate::metrics::Metrics;
use crate::portal::{ItemCheck, PortalError, SelfService};
use crate::store::{Person, Session, SessionKind};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prp_plugin_api::LoginMethod;
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the handlers share.
pub struct AppState {
    pub portal: Portal,
    pub login: LoginService,
    pub self_service: SelfService,
    pub metrics: Metrics,
}

impl AppState {
    fn idle_seconds(&self) -> i64 {
        i64::from(self.portal.settings.host.session_idle_minutes) * 60
    }
    fn secure_cookies(&self) -> bool {
        self.portal
            .settings
            .host
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

/// The name of the session cookie (HttpOnly).
pub const SESSION_COOKIE: &str = "prp_session";
/// The name of the CSRF cookie (readable by the page, echoed in `X-CSRF-Token`).
pub const CSRF_COOKIE: &str = "prp_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The one answer every failed login gets, whatever the reason.
pub const LOGIN_FAILED: &str =
    "The login name or the credentials are not valid, or this way of logging in is not available.";

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/api/login/password", post(login::<PasswordLogin>))
        .route("/api/login/passcode", post(login::<PasscodeLogin>))
        .route("/api/login/questions/challenge", post(questions_challenge))
        .route("/api/login/questions", post(login::<QuestionsLogin>))
        .route("/api/session", get(current_session))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/password-items", get(password_items))
        .route("/api/password-items/check", post(check_password))
        .route("/api/password-items/set", post(set_password))
        .route("/api/questions", get(list_questions).post(add_question))
        .route(
            "/api/questions/{id}",
            axum::routing::put(replace_question).delete(delete_question),
        )
        .route("/api/questions/{id}/unlock", post(unlock_question))
        .route("/api/reports", get(reports))
        .route("/api/reports/{uid}/passcode", post(report_passcode))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

async fn live() -> impl IntoResponse {
    Json(json!({"status": "live"}))
}

/// Ready when the database answers and the plugins the portal needs are loaded and passed
/// their self-checks. A `503` lists what is not ready, without secrets.
async fn ready(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    match tokio::time::timeout(
        Duration::from_secs(2),
        crate::db::ping(state.login.store.pool()),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(_)) => problems.push("database: not answering".to_owned()),
        Err(_) => problems.push("database: no answer within 2s".to_owned()),
    }
    problems.extend(state.portal.refusals());
    let plugins: Vec<_> = state
        .portal
        .report
        .loaded
        .iter()
        .map(|p| json!({"name": p.name, "version": p.version}))
        .collect();
    if problems.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "plugins": plugins})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "problems": problems, "plugins": plugins})),
        )
    }
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(
            state.portal.hasher.queue_depth(),
            state.portal.hasher.total(),
            state.login.pending(),
        ),
    )
}

#[derive(Deserialize)]
struct PasswordLogin {
    login_name: String,
    password: String,
}

#[derive(Deserialize)]
struct PasscodeLogin {
    login_name: String,
    passcode: String,
}

#[derive(Deserialize)]
struct ChallengeRequest {
    login_name: String,
}

#[derive(Deserialize)]
struct Answer {
    question_id: String,
    answer: String,
}

#[derive(Deserialize)]
struct QuestionsLogin {
    login_name: String,
    answers: Vec<Answer>,
}

/// Parses a JSON body without letting axum's rejection (which varies with the input) through.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|_| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("expected a JSON object {expected}"),
        ))
    })
}

/// The JSON body as `T`, or the 400 answer.
macro_rules! parsed {
    ($body:expr, $expected:expr) => {
        match parse(&$body, $expected) {
            Ok(r) => r,
            Err(resp) => return *resp,
        }
    };
}

fn cookie(
    name: &str,
    value: &str,
    max_age: i64,
    http_only: bool,
    secure: bool,
) -> Option<HeaderValue> {
    let mut c = format!("{name}={value}; Path=/; SameSite=Strict; Max-Age={max_age}");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).ok()
}

async fn answer(state: &AppState, input: LoginInput) -> Response {
    let started = Instant::now();
    let method = input.method.name();
    let (outcome, response) = match state.login.login(input).await {
        LoginResult::Granted { session, kind } => {
            let max_age = session.expires_at - state.login.store.now();
            let secure = state.secure_cookies();
            let mut response = Json(json!({
                "token": session.token,
                "token_type": "Bearer",
                "csrf_token": session.csrf_token,
                "expires_at": session.expires_at,
                "session_kind": kind.name(),
            }))
            .into_response();
            let headers = response.headers_mut();
            for c in [
                cookie(SESSION_COOKIE, &session.token, max_age, true, secure),
                cookie(CSRF_COOKIE, &session.csrf_token, max_age, false, secure),
            ]
            .into_iter()
            .flatten()
            {
                headers.append(header::SET_COOKIE, c);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            ("success", response)
        }
        LoginResult::Denied => (
            "failure",
            error(StatusCode::UNAUTHORIZED, "login_failed", LOGIN_FAILED),
        ),
        LoginResult::Busy => (
            "busy",
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                Json(json!({"error": "busy", "message": "Too many logins right now; try again in a moment."})),
            )
                .into_response(),
        ),
    };
    state
        .metrics
        .login(method, outcome, started.elapsed().as_secs_f64());
    response
}

/// A login request body: how it parses and what it carries.
trait LoginBody: serde::de::DeserializeOwned {
    const METHOD: LoginMethod;
    const EXPECTED: &'static str;
    /// (login name, secret, answers)
    fn into_parts(self) -> (String, String, Vec<(String, String)>);
}

impl LoginBody for PasswordLogin {
    const METHOD: LoginMethod = LoginMethod::PASSWORD;
    const EXPECTED: &'static str = "{\"login_name\", \"password\"}";
    fn into_parts(self) -> (String, String, Vec<(String, String)>) {
        (self.login_name, self.password, Vec::new())
    }
}

impl LoginBody for PasscodeLogin {
    const METHOD: LoginMethod = LoginMethod::PASSCODE;
    const EXPECTED: &'static str = "{\"login_name\", \"passcode\"}";
    fn into_parts(self) -> (String, String, Vec<(String, String)>) {
        (self.login_name, self.passcode, Vec::new())
    }
}

impl LoginBody for QuestionsLogin {
    const METHOD: LoginMethod = LoginMethod::QUESTIONS;
    const EXPECTED: &'static str = "{\"login_name\", \"answers\": [{\"question_id\", \"answer\"}]}";
    fn into_parts(self) -> (String, String, Vec<(String, String)>) {
        let answers = self
            .answers
            .into_iter()
            .map(|a| (a.question_id, a.answer))
            .collect();
        (self.login_name, String::new(), answers)
    }
}

/// `POST /api/login/{password,passcode,questions}`.
async fn login<B: LoginBody>(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let req: B = parsed!(body, B::EXPECTED);
    let (login_name, secret, answers) = req.into_parts();
    let input = LoginInput {
        method: B::METHOD,
        login_name,
        secret,
        answers,
        remote_addr: Some(peer.ip().to_string()),
    };
    answer(&state, input).await
}

async fn questions_challenge(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Response {
    let req: ChallengeRequest = parsed!(body, "{\"login_name\"}");
    match state.login.challenge(&req.login_name).await {
        Ok(questions) => Json(json!({
            "questions": questions
                .iter()
                .map(|q| json!({"id": q.id.as_str(), "question": q.question.as_str()}))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => {
            tracing::error!("question challenge failed: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                Json(json!({"error": "unavailable", "message": "Password questions can't be shown right now."})),
            )
                .into_response()
        }
    }
}

/// Where a request's session token came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Bearer,
    Cookie,
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The session token from `Authorization: Bearer …` or the session cookie.
fn session_token(headers: &HeaderMap) -> Option<(String, Via)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some((t.trim().to_owned(), Via::Bearer));
        }
    }
    cookie_value(headers, SESSION_COOKIE).map(|t| (t, Via::Cookie))
}

/// A request's live session and person.
struct Authed {
    session: Session,
    person: Person,
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "No valid session; log in again.",
    )
}

/// Finds the session, checks CSRF for cookie requests that change state, and loads the
/// person (who must still exist and be active).
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Authed, Response> {
    let Some((token, via)) = session_token(headers) else {
        return Err(unauthorized());
    };
    let session = match state
        .login
        .store
        .session(&token, state.idle_seconds())
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return Err(unauthorized()),
        Err(e) => {
            tracing::error!("session lookup failed: {e}");
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Try again in a moment.",
            ));
        }
    };
    let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if via == Via::Cookie && changes_state {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !session.csrf_matches(sent) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "csrf",
                "This request lacks the session's CSRF token (X-CSRF-Token).",
            ));
        }
    }
    match state.login.store.person(&session.person_uid).await {
        Ok(Some(person)) if !person.inactive => Ok(Authed { session, person }),
        Ok(_) => Err(unauthorized()),
        Err(e) => {
            tracing::error!("person lookup failed: {e}");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Try again in a moment.",
            ))
        }
    }
}

fn portal_error(e: PortalError) -> Response {
    match e {
        PortalError::NotFound(what) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("No such {what}."),
        ),
        PortalError::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", &m),
        PortalError::Forbidden(m) => error(StatusCode::FORBIDDEN, "forbidden", &m),
        PortalError::Upstream(m) => {
            tracing::error!("password change failed upstream: {m}");
            error(
                StatusCode::BAD_GATEWAY,
                "upstream",
                "A connected system refused the change; nothing was changed. Try again or contact the help desk.",
            )
        }
        PortalError::Unknown(m) => {
            tracing::error!("password change in an unknown state: {m}");
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "unknown",
                "A connected system did not answer in time: the password there may or may not have changed; nothing else was changed. Check with the help desk before trying again.",
            )
        }
        PortalError::Partial(m) => {
            tracing::error!("password change partly applied: {m}");
            error(StatusCode::BAD_GATEWAY, "partial", &m)
        }
        PortalError::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"error": "busy", "message": "Too busy right now; try again in a moment."})),
        )
            .into_response(),
        PortalError::Store(e) => {
            tracing::error!("portal request failed: {e}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Try again in a moment.",
            )
        }
        PortalError::Internal(m) => {
            tracing::error!("portal request failed: {m}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong.",
            )
        }
    }
}

macro_rules! authed {
    ($state:expr, $headers:expr, $method:expr) => {
        match authenticate(&$state, &$headers, &$method).await {
            Ok(a) => a,
            Err(r) => return r,
        }
    };
}

async fn current_session(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let a = authed!(state, headers, method);
    Json(json!({
        "person_uid": a.session.person_uid,
        "method": a.session.method,
        "session_kind": a.session.kind.name(),
        "expires_at": a.session.expires_at,
        "full": a.session.kind == SessionKind::Full,
    }))
    .into_response()
}

async fn logout(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let a = authed!(state, headers, method);
    if let Err(e) = state
        .login
        .store
        .revoke_session(&a.session.token_hash)
        .await
    {
        tracing::error!("logout failed: {e}");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Try again in a moment.",
        );
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let secure = state.secure_cookies();
    for c in [
        cookie(SESSION_COOKIE, "", 0, true, secure),
        cookie(CSRF_COOKIE, "", 0, false, secure),
    ]
    .into_iter()
    .flatten()
    {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

async fn me(State(state): State<Arc<AppState>>, method: Method, headers: HeaderMap) -> Response {
    let a = authed!(state, headers, method);
    Json(json!({
        "person_uid": a.person.uid,
        "central_account": a.person.central_account,
        "first_name": a.person.first_name,
        "last_name": a.person.last_name,
        "session_kind": a.session.kind.name(),
    }))
    .into_response()
}

async fn password_items(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let a = authed!(state, headers, method);
    match state.self_service.items(&a.person).await {
        Ok(items) => Json(json!({
            "items": items.iter().map(|i| json!({
                "id": i.id,
                "display_name": i.display_name,
                "system": i.source,
                "last_set": i.last_set,
                "policy": {
                    "name": i.policy.name,
                    "description": i.policy.description(),
                    "min_length": i.policy.min_length,
                    "max_length": i.policy.max_length,
                    "history_count": i.policy.history_count,
                },
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => portal_error(e),
    }
}

#[derive(Deserialize)]
struct PasswordRequest {
    items: Vec<String>,
    password: String,
}

fn checks_json(checks: &[ItemCheck]) -> serde_json::Value {
    json!({
        "ok": checks.iter().all(|c| c.violations.is_empty()),
        "items": checks,
    })
}

async fn check_password(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let a = authed!(state, headers, method);
    let req: PasswordRequest = parsed!(body, "{\"items\": [id], \"password\"}");
    match state
        .self_service
        .check(&a.person, &req.items, &req.password)
        .await
    {
        Ok(checks) => Json(checks_json(&checks)).into_response(),
        Err(e) => portal_error(e),
    }
}

async fn set_password(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let a = authed!(state, headers, method);
    let req: PasswordRequest = parsed!(body, "{\"items\": [id], \"password\"}");
    let result = state
        .self_service
        .set(
            &a.person,
            &req.items,
            &req.password,
            Some(a.session.token_hash.clone()),
            Some(peer.ip().to_string()),
        )
        .await;
    match result {
        Ok(Ok(changed)) => {
            state.metrics.password_change("success");
            Json(json!({"changed": changed})).into_response()
        }
        Ok(Err(checks)) => {
            state.metrics.password_change("rejected");
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "policy", "message": "The password breaks a rule; nothing was changed.", "checks": checks_json(&checks)})))
                .into_response()
        }
        Err(e) => {
            state.metrics.password_change("failure");
            portal_error(e)
        }
    }
}

#[derive(Deserialize)]
struct QuestionRequest {
    question: String,
    answer: String,
}

async fn list_questions(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let a = authed!(state, headers, method);
    let questions = match state.login.store.questions(&a.person.uid).await {
        Ok(q) => q,
        Err(e) => return portal_error(e.into()),
    };
    let required = match state.self_service.required_questions().await {
        Ok(n) => n,
        Err(e) => return portal_error(e),
    };
    Json(json!({
        "required": required,
        "questions": questions
            .iter()
            .map(|q| json!({"id": q.id, "question": q.question, "locked": q.locked}))
            .collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn add_question(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let a = authed!(state, headers, method);
    let req: QuestionRequest = parsed!(body, "{\"question\", \"answer\"}");
    match state
        .self_service
        .add_question(&a.person, &req.question, &req.answer)
        .await
    {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => portal_error(e),
    }
}

async fn replace_question(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let a = authed!(state, headers, method);
    let req: QuestionRequest = parsed!(body, "{\"question\", \"answer\"}");
    match state
        .self_service
        .replace_question(&a.person, &id, &req.question, &req.answer)
        .await
    {
        Ok(()) => Json(json!({"id": id})).into_response(),
        Err(e) => portal_error(e),
    }
}

async fn delete_question(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let a = authed!(state, headers, method);
    match state.self_service.delete_question(&a.person, &id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => portal_error(e),
    }
}

async fn unlock_question(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let a = authed!(state, headers, method);
    match state.self_service.unlock_question(&a.person, &id).await {
        Ok(()) => Json(json!({"id": id, "locked": false})).into_response(),
        Err(e) => portal_error(e),
    }
}

async fn reports(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let a = authed!(state, headers, method);
    match state.login.store.direct_reports(&a.person.uid).await {
        Ok(people) => Json(json!({
            "reports": people
                .iter()
                .map(|p| json!({"person_uid": p.uid, "first_name": p.first_name, "last_name": p.last_name, "central_account": p.central_account}))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => portal_error(e.into()),
    }
}

/// A manager issues a passcode for a direct report. Only from a full session, and only for a
/// person whose `UID_PersonHead` is the caller.
async fn report_passcode(
    State(state): State<Arc<AppState>>,
    Path(uid): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let a = authed!(state, headers, method);
    if a.session.kind != SessionKind::Full {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "A session opened with a passcode or questions can't issue passcodes; log in with your password.",
        );
    }
    let target = match state.login.store.person(&uid).await {
        Ok(Some(p)) if p.manager_uid.as_deref() == Some(a.person.uid.as_str()) && !p.inactive => p,
        Ok(_) => {
            let _ = state
                .login
                .store
                .audit(&crate::store::AuditEvent {
                    event: "passcode.issued",
                    outcome: "failure",
                    person_uid: Some(&uid),
                    actor: Some(&a.person.uid),
                    reason: Some("the issuer is not the person's manager"),
                    ..Default::default()
                })
                .await;
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "You can issue passcodes only for your direct reports.",
            );
        }
        Err(e) => return portal_error(e.into()),
    };
    match state.self_service.issue_passcode(&target, &a.person.uid).await {
        Ok(p) => Json(json!({
            "person_uid": target.uid,
            "passcode": if p.split { serde_json::Value::Null } else { p.shown.clone().into() },
            "passcode_first_half": if p.split { p.shown.clone().into() } else { serde_json::Value::Null },
            "split": p.split,
            "valid_hours": p.hours,
            "expires_at": p.expires_at,
        }))
        .into_response(),
        Err(PortalError::Invalid(m)) => error(StatusCode::CONFLICT, "conflict", &m),
        Err(e) => portal_error(e),
    }
}
