//! Login flows (ABI 1.1) and factor enrollment: `GET /api/login/flows`, `POST /api/login/start`,
//! `POST /api/login/step`, and `/api/factors`.

use super::error::ApiError;
use super::extract::{Authed, ClientAddr, JsonBody, RequestBody};
use super::login::{granted_cookies, login_response, Client};
use crate::api::{
    ErrorBody, FactorConfirm, FactorEnrollment, FactorInfo, FactorList, FieldInfo, FlowInfo,
    FlowStart, FlowStep, FlowStepResponse, FlowsResponse, MethodInfo, StepInfo, StepResponse,
};
use crate::flows::{self, FactorCryptoError, FlowError, NextStep, StepClient, StepResult};
use crate::service::Service;
use crate::store::SessionKind;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use axum_extra::extract::cookie::CookieJar;
use prp_plugin_api::{FieldDescriptor, MethodDescriptor};
use std::sync::Arc;
use std::time::Instant;

impl RequestBody for FlowStart {
    const MAX_BYTES: usize = 4 * 1024;
    const SHAPE: &'static str = r#"{"flow", "login_name"}"#;
}

impl RequestBody for FlowStep {
    /// Up to 16 values of 1024 bytes, JSON-escaped, with their names.
    const MAX_BYTES: usize = 64 * 1024;
    const SHAPE: &'static str = r#"{"attempt", "method", "values": {"name": "value"}}"#;
}

impl RequestBody for FactorConfirm {
    const MAX_BYTES: usize = 8 * 1024;
    const SHAPE: &'static str = r#"{"values": {"name": "value"}}"#;
}

fn field_info(f: &FieldDescriptor) -> FieldInfo {
    FieldInfo {
        name: f.name.to_string(),
        kind: f.kind.name().into(),
        label: f.label.to_string(),
        choices: f.choices.iter().map(|c| c.to_string()).collect(),
    }
}

fn method_info(m: &MethodDescriptor) -> MethodInfo {
    MethodInfo {
        id: m.id.to_string(),
        label: m.label.to_string(),
        fields: m.fields.iter().map(field_info).collect(),
        role: m.role.name().into(),
        hashes: m.hashes,
        enrollable: m.enrollable,
    }
}

fn step_response(next: NextStep) -> StepResponse {
    StepResponse {
        attempt: next.attempt,
        step: StepInfo {
            index: next.index,
            methods: next.methods.iter().map(method_info).collect(),
        },
    }
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::UnknownFlow(_) | FlowError::UnknownMethod(_) | FlowError::NotEnrolled => {
                Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            FlowError::Invalid(m) => Self::bad_request(m),
            FlowError::NothingPending => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            FlowError::NotConfirmed => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            }
            FlowError::Crypto(FactorCryptoError::NoKey) => {
                tracing::error!("{e}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Login factors can't be enrolled on this portal right now.",
                )
            }
            FlowError::Crypto(_) | FlowError::Plugin(_) | FlowError::Store(_) => {
                tracing::error!("flow request failed: {e}");
                Self::unavailable()
            }
        }
    }
}

#[utoipa::path(get, path = "/api/login/flows", tag = "login",
    responses(
        (status = 200, description = "The login flows and their methods' fields", body = FlowsResponse),
        (status = 503, description = "The flows can't be read right now", body = ErrorBody),
    ))]
pub(crate) async fn list(State(svc): State<Arc<Service>>) -> Result<Json<FlowsResponse>, ApiError> {
    let set = flows::flow_set(&svc.portal, &svc.login)
        .await
        .map_err(FlowError::from)?;
    let used: Vec<&str> = set
        .flows
        .iter()
        .flat_map(|f| f.steps.iter().flatten())
        .map(String::as_str)
        .collect();
    Ok(Json(FlowsResponse {
        flows: set
            .flows
            .iter()
            .map(|f| FlowInfo {
                id: f.id.clone(),
                label: f.label.clone(),
                steps: f.steps.clone(),
                session_kind: f.session.name().into(),
            })
            .collect(),
        methods: set
            .catalog
            .methods
            .iter()
            .filter(|m| used.contains(&m.id()))
            .map(|m| method_info(&m.descriptor))
            .collect(),
    }))
}

#[utoipa::path(post, path = "/api/login/start", tag = "login",
    request_body = FlowStart,
    responses(
        (status = 200, description = "The attempt's token and its first step", body = StepResponse),
        (status = 400, description = "A login name over the length limit", body = ErrorBody),
        (status = 404, description = "No such flow", body = ErrorBody),
    ))]
pub(crate) async fn start(
    State(svc): State<Arc<Service>>,
    JsonBody(req): JsonBody<FlowStart>,
) -> Result<Json<StepResponse>, ApiError> {
    let next = flows::start(&svc, &req.flow, &req.login_name).await?;
    Ok(Json(step_response(next)))
}

#[utoipa::path(post, path = "/api/login/step", tag = "login",
    request_body = FlowStep,
    responses(
        (status = 200, description = "The next step, or after the last one the session (also set as cookies)", body = FlowStepResponse),
        (status = 401, description = "Any failure, at any step, whatever the reason: the attempt is over. With a `pow`, the first step of the next attempt for this name must carry it solved", body = ErrorBody),
        (status = 503, description = "Too many logins in progress, or the database is unavailable (Retry-After)", body = ErrorBody),
    ))]
pub(crate) async fn step(
    State(svc): State<Arc<Service>>,
    ClientAddr(ip): ClientAddr,
    jar: CookieJar,
    JsonBody(req): JsonBody<FlowStep>,
) -> Result<(CookieJar, Json<FlowStepResponse>), ApiError> {
    let started = Instant::now();
    let client = Client::new(&svc, ip, &jar, req.pow);
    let client = StepClient {
        remote: Some(client.ip.to_string()),
        device: client.device,
        pow: client.pow,
    };
    let values = req.values.into_iter().collect();
    let result = flows::step(&svc, &req.attempt, &req.method, values, client).await;
    let (outcome, answer) = match result {
        StepResult::Next(next) => (
            "step",
            Ok((
                CookieJar::new(),
                Json(FlowStepResponse::Next(step_response(next))),
            )),
        ),
        StepResult::Granted {
            session,
            kind,
            device,
        } => {
            let jar = granted_cookies(&svc, CookieJar::new(), &session, device);
            let body = login_response(&session, kind);
            ("success", Ok((jar, Json(FlowStepResponse::Done(body)))))
        }
        StepResult::Denied => ("failure", Err(ApiError::login_failed())),
        StepResult::Challenged(pow) => ("failure", Err(ApiError::login_failed().with_pow(pow))),
        StepResult::Unavailable => ("unavailable", Err(ApiError::unavailable())),
        StepResult::Busy => (
            "busy",
            Err(ApiError::busy(
                "Too many logins right now; try again in a moment.",
            )),
        ),
    };
    svc.metrics
        .login("flow", outcome, started.elapsed().as_secs_f64());
    answer
}

#[utoipa::path(get, path = "/api/factors", tag = "factors",
    responses(
        (status = 200, description = "The person's enrolled factors and those they may enroll", body = FactorList),
        (status = 401, description = "No valid session", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn list_factors(
    State(svc): State<Arc<Service>>,
    a: Authed,
) -> Result<Json<FactorList>, ApiError> {
    let factors = flows::factors(&svc, &a.session.person_uid).await?;
    Ok(Json(FactorList {
        factors: factors
            .into_iter()
            .map(|f| FactorInfo {
                method: f.method,
                label: f.label,
                enrolled: f.enrolled,
                pending: f.pending,
                enrolled_at: f.enrolled_at,
            })
            .collect(),
    }))
}

/// Changing one's factors takes a full session: a passcode or questions login must not be
/// enough to add or remove a second factor.
fn full_only(a: &Authed) -> Result<(), ApiError> {
    if a.session.kind != SessionKind::Full {
        return Err(ApiError::forbidden(
            "Log in with your password to change your login factors.",
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/factors/{method}/enroll", tag = "factors",
    params(("method" = String, Path, description = "An enrollable method, e.g. totp")),
    responses(
        (status = 200, description = "What the person needs, shown once", body = FactorEnrollment),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a full session, or a cookie request without the CSRF token", body = ErrorBody),
        (status = 404, description = "No such enrollable method", body = ErrorBody),
        (status = 503, description = "No FactorKey is configured, or the plugin failed", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn enroll(
    State(svc): State<Arc<Service>>,
    a: Authed,
    Path(method): Path<String>,
) -> Result<Json<FactorEnrollment>, ApiError> {
    full_only(&a)?;
    let enrolled = flows::enroll(&svc, &a.session.person_uid, &method).await?;
    Ok(Json(FactorEnrollment {
        method,
        shown: enrolled.shown.into_iter().collect(),
        confirm_fields: enrolled.confirm_fields.iter().map(field_info).collect(),
    }))
}

#[utoipa::path(post, path = "/api/factors/{method}/confirm", tag = "factors",
    params(("method" = String, Path, description = "The method being enrolled")),
    request_body = FactorConfirm,
    responses(
        (status = 204, description = "The factor is active"),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a full session, or a cookie request without the CSRF token", body = ErrorBody),
        (status = 409, description = "Nothing to confirm", body = ErrorBody),
        (status = 422, description = "The values are not right", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn confirm(
    State(svc): State<Arc<Service>>,
    a: Authed,
    Path(method): Path<String>,
    JsonBody(req): JsonBody<FactorConfirm>,
) -> Result<StatusCode, ApiError> {
    full_only(&a)?;
    let values = req.values.into_iter().collect();
    flows::confirm(&svc, &a.session.person_uid, &method, values).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/factors/{method}", tag = "factors",
    params(("method" = String, Path, description = "An enrolled method")),
    responses(
        (status = 204, description = "Removed; the person is notified"),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a full session, or a cookie request without the CSRF token", body = ErrorBody),
        (status = 404, description = "Not enrolled", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn remove(
    State(svc): State<Arc<Service>>,
    a: Authed,
    Path(method): Path<String>,
) -> Result<StatusCode, ApiError> {
    full_only(&a)?;
    flows::remove(&svc, &a.session.person_uid, &method).await?;
    Ok(StatusCode::NO_CONTENT)
}
