//! The HTTP server: a router over shared state, served on a listener the caller bound, until a
//! shutdown future resolves (SIGTERM or SIGINT in the binary).

use crate::app::Portal;
use crate::login::{LoginInput, LoginResult, LoginService};
use crate::store::SessionKind;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prp_plugin_api::LoginMethod;
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the handlers share.
pub struct AppState {
    pub portal: Portal,
    pub login: LoginService,
}

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "prp_session";

/// The one answer every failed login gets, whatever the reason.
pub const LOGIN_FAILED: &str =
    "The login name or the credentials are not valid, or this way of logging in is not available.";

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .route("/api/login/password", post(login_password))
        .route("/api/login/passcode", post(login_passcode))
        .route("/api/login/questions/challenge", post(questions_challenge))
        .route("/api/login/questions", post(login_questions))
        .route("/api/session", get(current_session))
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

fn bad_request(what: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "bad_request", "message": what})),
    )
        .into_response()
}

/// Parses a JSON body without letting axum's rejection (which varies with the input) through.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|_| Box::new(bad_request(&format!("expected a JSON object {expected}"))))
}

async fn answer(state: &AppState, input: LoginInput) -> Response {
    match state.login.login(input).await {
        LoginResult::Granted { token, expires_at, kind } => {
            let max_age = expires_at - state.login.store.now();
            let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
            let mut response = Json(json!({
                "token": token,
                "token_type": "Bearer",
                "expires_at": expires_at,
                "session_kind": kind.name(),
            }))
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        LoginResult::Denied => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "login_failed", "message": LOGIN_FAILED})),
        )
            .into_response(),
        LoginResult::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"error": "busy", "message": "Too many logins right now; try again in a moment."})),
        )
            .into_response(),
    }
}

async fn login_password(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let req: PasswordLogin = match parse(&body, "{\"login_name\", \"password\"}") {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let input = LoginInput {
        method: LoginMethod::PASSWORD,
        login_name: req.login_name,
        secret: req.password,
        answers: Vec::new(),
        remote_addr: Some(peer.ip().to_string()),
    };
    answer(&state, input).await
}

async fn login_passcode(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let req: PasscodeLogin = match parse(&body, "{\"login_name\", \"passcode\"}") {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let input = LoginInput {
        method: LoginMethod::PASSCODE,
        login_name: req.login_name,
        secret: req.passcode,
        answers: Vec::new(),
        remote_addr: Some(peer.ip().to_string()),
    };
    answer(&state, input).await
}

async fn login_questions(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let req: QuestionsLogin = match parse(
        &body,
        "{\"login_name\", \"answers\": [{\"question_id\", \"answer\"}]}",
    ) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let input = LoginInput {
        method: LoginMethod::QUESTIONS,
        login_name: req.login_name,
        secret: String::new(),
        answers: req
            .answers
            .into_iter()
            .map(|a| (a.question_id, a.answer))
            .collect(),
        remote_addr: Some(peer.ip().to_string()),
    };
    answer(&state, input).await
}

async fn questions_challenge(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Response {
    let req: ChallengeRequest = match parse(&body, "{\"login_name\"}") {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
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

/// The session token from `Authorization: Bearer …` or the session cookie.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_owned());
        }
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

async fn current_session(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unauthorized", "message": "No valid session."})),
        )
            .into_response()
    };
    let Some(token) = session_token(&headers) else {
        return unauthorized();
    };
    match state.login.store.session(&token).await {
        Ok(Some(s)) => Json(json!({
            "person_uid": s.person_uid,
            "method": s.method,
            "session_kind": s.kind.name(),
            "expires_at": s.expires_at,
            "full": s.kind == SessionKind::Full,
        }))
        .into_response(),
        Ok(None) => unauthorized(),
        Err(e) => {
            tracing::error!("session lookup failed: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "unavailable"})),
            )
                .into_response()
        }
    }
}
