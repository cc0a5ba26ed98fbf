//! The login endpoints: password, passcode, questions (with its challenge).

use super::error::ApiError;
use super::extract::{ClientAddr, JsonBody, RequestBody};
use crate::api::{
    ChallengeQuestion, ChallengeRequest, ChallengeResponse, ErrorBody, LoginResponse,
    PasscodeLogin, PasswordLogin, QuestionsLogin,
};
use crate::login::{
    ChallengeInput, ChallengeResult, LoginInput, LoginResult, MAX_ANSWERS, MAX_LOGIN_NAME,
};
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

/// The device cookie's name: `__Host-` and `Secure` as the session cookie is.
pub(crate) fn device_cookie(svc: &Service) -> &'static str {
    if svc.web().secure {
        "__Host-prp_device"
    } else {
        "prp_device"
    }
}

/// What the client sent that the throttle judges it by: its device cookie and its solved
/// proof of work.
pub(super) struct Client {
    pub(super) ip: std::net::IpAddr,
    pub(super) device: Option<String>,
    pub(super) pow: Option<(String, String)>,
}

impl Client {
    pub(super) fn new(
        svc: &Service,
        ip: std::net::IpAddr,
        jar: &CookieJar,
        pow: Option<crate::api::PowSolution>,
    ) -> Self {
        Self {
            ip,
            device: jar.get(device_cookie(svc)).map(|c| c.value().to_owned()),
            pow: pow.map(|p| (p.challenge, p.solution)),
        }
    }
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
        (status = 403, description = "The password is right, but the person has a second factor: log in through a flow that asks for it (`factor_required`)", body = ErrorBody),
        (status = 503, description = "Too many logins in progress, or the database is unavailable (Retry-After)", body = ErrorBody),
    ))]
pub(crate) async fn password(
    State(svc): State<Arc<Service>>,
    ClientAddr(ip): ClientAddr,
    jar: CookieJar,
    JsonBody(req): JsonBody<PasswordLogin>,
) -> Result<(CookieJar, Json<LoginResponse>), ApiError> {
    check_login_name(&req.login_name)?;
    let client = Client::new(&svc, ip, &jar, req.pow);
    login(
        &svc,
        LoginMethod::PASSWORD,
        req.login_name,
        req.password,
        Vec::new(),
        client,
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
    jar: CookieJar,
    JsonBody(req): JsonBody<PasscodeLogin>,
) -> Result<(CookieJar, Json<LoginResponse>), ApiError> {
    check_login_name(&req.login_name)?;
    let client = Client::new(&svc, ip, &jar, req.pow);
    login(
        &svc,
        LoginMethod::PASSCODE,
        req.login_name,
        req.passcode,
        Vec::new(),
        client,
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
    jar: CookieJar,
    JsonBody(req): JsonBody<QuestionsLogin>,
) -> Result<(CookieJar, Json<LoginResponse>), ApiError> {
    check_login_name(&req.login_name)?;
    if req.answers.len() > MAX_ANSWERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ANSWERS} answers are taken"
        )));
    }
    let client = Client::new(&svc, ip, &jar, req.pow);
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
        client,
    )
    .await
}

async fn login(
    svc: &Service,
    method: LoginMethod,
    login_name: String,
    secret: String,
    answers: Vec<(String, String)>,
    client: Client,
) -> Result<(CookieJar, Json<LoginResponse>), ApiError> {
    let started = Instant::now();
    let input = LoginInput {
        method,
        login_name,
        secret,
        answers,
        remote_addr: Some(client.ip.to_string()),
        device: client.device,
        pow: client.pow,
    };
    let (outcome, result) = match svc.login.login(input).await {
        LoginResult::Granted {
            session,
            kind,
            device,
        } => {
            let jar = granted_cookies(svc, CookieJar::new(), &session, device);
            ("success", Ok((jar, Json(login_response(&session, kind)))))
        }
        LoginResult::Denied => ("failure", Err(ApiError::login_failed())),
        LoginResult::Unavailable => ("unavailable", Err(ApiError::unavailable())),
        LoginResult::Challenged(pow) => ("failure", Err(ApiError::login_failed().with_pow(pow))),
        LoginResult::FactorRequired => ("factor_required", Err(ApiError::factor_required())),
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

/// The cookies of a granted login (or completed flow) added to `jar`: the session, its CSRF
/// token, and the new device cookie when there is one.
pub(crate) fn granted_cookies(
    svc: &Service,
    jar: CookieJar,
    session: &crate::store::NewSession,
    device: Option<String>,
) -> CookieJar {
    let max_age = session.expires_at - svc.store().now();
    let web = svc.web();
    let mut jar = jar
        .add(web.cookie(web.session_cookie, session.token.clone(), max_age, true))
        .add(web.cookie(web.csrf_cookie, session.csrf_token.clone(), max_age, false));
    if let Some(device) = device {
        jar = jar.add(web.cookie(
            device_cookie(svc),
            device,
            crate::throttle::DEVICE_LIFETIME,
            true,
        ));
    }
    jar
}

/// The body of a granted login.
pub(super) fn login_response(
    session: &crate::store::NewSession,
    kind: crate::store::SessionKind,
) -> LoginResponse {
    LoginResponse {
        token: session.token.clone(),
        token_type: "Bearer".into(),
        csrf_token: session.csrf_token.clone(),
        expires_at: session.expires_at,
        session_kind: kind.name().into(),
    }
}

#[utoipa::path(post, path = "/api/login/questions/challenge", tag = "login",
    request_body = ChallengeRequest,
    responses(
        (status = 200, description = "The questions to answer (decoys for a name that can't log in this way)", body = ChallengeResponse),
        (status = 401, description = "Too many challenges from this source, or failures for this name: send the `pow` of the body solved", body = ErrorBody),
        (status = 503, description = "The questions can't be shown right now", body = ErrorBody),
    ))]
pub(crate) async fn challenge(
    State(svc): State<Arc<Service>>,
    ClientAddr(ip): ClientAddr,
    jar: CookieJar,
    JsonBody(req): JsonBody<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    check_login_name(&req.login_name)?;
    let client = Client::new(&svc, ip, &jar, req.pow);
    let input = ChallengeInput {
        login_name: req.login_name,
        remote_addr: Some(client.ip.to_string()),
        device: client.device,
        pow: client.pow,
    };
    match svc.login.challenge_for(input).await {
        Ok(ChallengeResult::Challenged(pow)) => Err(ApiError::login_failed().with_pow(pow)),
        Ok(ChallengeResult::Questions(questions)) => Ok(Json(ChallengeResponse {
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
