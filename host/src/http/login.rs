//! The login endpoints: password, passcode, questions (with its challenge).

use super::error::ApiError;
use super::extract::{ClientAddr, JsonBody, RequestBody};
use crate::api::{
    ChallengeQuestion, ChallengeRequest, ChallengeResponse, ErrorBody, LoginResponse,
    PasscodeLogin, PasswordLogin, QuestionsLogin,
};
use crate::login::{LoginInput, LoginResult, MAX_ANSWERS, MAX_LOGIN_NAME};
use crate::service::Service;
use axum::extract::State;
use axum::Json;
use axum_extra::extract::cookie::CookieJar;
use prp_plugin_api::LoginMethod;
use std::sync::Arc;
use std::time::Instant;

impl RequestBody for PasswordLogin {
    const MAX_BYTES: usize = 8 * 1024;
    const SHAPE: &'static str = r#"{"login_name", "password"}"#;
}

impl RequestBody for PasscodeLogin {
    const MAX_BYTES: usize = 4 * 1024;
    const SHAPE: &'static str = r#"{"login_name", "passcode"}"#;
}

impl RequestBody for ChallengeRequest {
    const MAX_BYTES: usize = 4 * 1024;
    const SHAPE: &'static str = r#"{"login_name"}"#;
}

impl RequestBody for QuestionsLogin {
    /// Ten answers of at most 256 characters, JSON-escaped, with their ids.
    const MAX_BYTES: usize = 32 * 1024;
    const SHAPE: &'static str = r#"{"login_name", "answers": [{"question_id", "answer"}]}"#;
}

/// A login name the portal will never resolve is the client's error, whoever it names.
fn check_login_name(name: &str) -> Result<(), ApiError> {
    if name.chars().count() > MAX_LOGIN_NAME {
        return Err(ApiError::bad_request(format!(
            "login_name is longer than {MAX_LOGIN_NAME} characters"
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/login/password", tag = "login",
    request_body = PasswordLogin,
    responses(
        (status = 200, description = "Logged in: a full session (also set as cookies)", body = LoginResponse),
        (status = 401, description = "Any failure, whatever the reason", body = ErrorBody),
        (status = 503, description = "Too many logins in progress, or the database is unavailable (Retry-After)", body = ErrorBody),
    ))]
pub(crate) async fn password(
    State(svc): State<Arc<Service>>,
    ClientAddr(ip): ClientAddr,
    JsonBody(req): JsonBody<PasswordLogin>,
) -> Result<(CookieJar, Json<LoginResponse>), ApiError> {
    check_login_name(&req.login_name)?;
    login(
        &svc,
        LoginMethod::PASSWORD,
        req.login_name,
        req.password,
        Vec::new(),
        ip,
    )
    .await
}

#[utoipa::path(post, path = "/api/login/passcode", tag = "login",
    request_body = PasscodeLogin,
    responses(
        (status = 200, description = "Logged in: a reset session", body = LoginResponse),
        (status = 401, description = "Any failure, whatever the reason", body = ErrorBody),
        (status = 503, description = "Too many logins in progress, or the database is unavailable (Retry-After)", body = ErrorBody),
    ))]
pub(crate) async fn passcode(
    State(svc): State<Arc<Service>>,
    ClientAddr(ip): ClientAddr,
    JsonBody(req): JsonBody<PasscodeLogin>,
) -> Result<(CookieJar, Json<LoginResponse>), ApiError> {
    check_login_name(&req.login_name)?;
    login(
        &svc,
        LoginMethod::PASSCODE,
        req.login_name,
        req.passcode,
        Vec::new(),
        ip,
    )
    .await
}

#[utoipa::path(post, path = "/api/login/questions", tag = "login",
    request_body = QuestionsLogin,
    responses(
        (status = 200, description = "Logged in: a reset session", body = LoginResponse),
        (status = 400, description = "More answers than a login takes", body = ErrorBody),
        (status = 401, description = "Any failure, whatever the reason", body = ErrorBody),
        (status = 503, description = "Too many logins in progress, or the database is unavailable (Retry-After)", body = ErrorBody),
    ))]
pub(crate) async fn questions(
    State(svc): State<Arc<Service>>,
    ClientAddr(ip): ClientAddr,
    JsonBody(req): JsonBody<QuestionsLogin>,
) -> Result<(CookieJar, Json<LoginResponse>), ApiError> {
    check_login_name(&req.login_name)?;
    if req.answers.len() > MAX_ANSWERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ANSWERS} answers are taken"
        )));
    }
    let answers = req
        .answers
        .into_iter()
        .map(|a| (a.question_id, a.answer))
        .collect();
    login(
        &svc,
        LoginMethod::QUESTIONS,
        req.login_name,
        String::new(),
        answers,
        ip,
    )
    .await
}

async fn login(
    svc: &Service,
    method: LoginMethod,
    login_name: String,
    secret: String,
    answers: Vec<(String, String)>,
    ip: std::net::IpAddr,
) -> Result<(CookieJar, Json<LoginResponse>), ApiError> {
    let started = Instant::now();
    let input = LoginInput {
        method,
        login_name,
        secret,
        answers,
        remote_addr: Some(ip.to_string()),
    };
    let (outcome, result) = match svc.login.login(input).await {
        LoginResult::Granted { session, kind } => {
            let max_age = session.expires_at - svc.store().now();
            let web = svc.web();
            let jar = CookieJar::new()
                .add(web.cookie(web.session_cookie, session.token.clone(), max_age, true))
                .add(web.cookie(web.csrf_cookie, session.csrf_token.clone(), max_age, false));
            let body = LoginResponse {
                token: session.token.clone(),
                token_type: "Bearer".into(),
                csrf_token: session.csrf_token.clone(),
                expires_at: session.expires_at,
                session_kind: kind.name().into(),
            };
            ("success", Ok((jar, Json(body))))
        }
        LoginResult::Denied => ("failure", Err(ApiError::login_failed())),
        LoginResult::Unavailable => ("unavailable", Err(ApiError::unavailable())),
        LoginResult::Busy => (
            "busy",
            Err(ApiError::busy(
                "Too many logins right now; try again in a moment.",
            )),
        ),
    };
    svc.metrics
        .login(method.name(), outcome, started.elapsed().as_secs_f64());
    result
}

#[utoipa::path(post, path = "/api/login/questions/challenge", tag = "login",
    request_body = ChallengeRequest,
    responses(
        (status = 200, description = "The questions to answer (decoys for a name that can't log in this way)", body = ChallengeResponse),
        (status = 503, description = "The questions can't be shown right now", body = ErrorBody),
    ))]
pub(crate) async fn challenge(
    State(svc): State<Arc<Service>>,
    JsonBody(req): JsonBody<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    check_login_name(&req.login_name)?;
    match svc.login.challenge(&req.login_name).await {
        Ok(questions) => Ok(Json(ChallengeResponse {
            questions: questions
                .iter()
                .map(|q| ChallengeQuestion {
                    id: q.id.to_string(),
                    question: q.question.to_string(),
                })
                .collect(),
        })),
        Err(e) => {
            tracing::error!("question challenge failed: {e}");
            Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Password questions can't be shown right now.",
            )
            .retry_after(5))
        }
    }
}
