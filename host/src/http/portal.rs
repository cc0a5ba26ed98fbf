//! After login: the session, the person, password items, questions, and managers' passcodes.

use super::error::ApiError;
use super::extract::{Authed, ClientAddr, JsonBody, RequestBody};
use crate::api::{
    CheckResponse, ErrorBody, IssuedPasscode, ItemCheck, Me, PasswordItem, PasswordItems,
    PasswordRequest, PolicyInfo, QuestionId, QuestionInfo, QuestionList, QuestionRequest, Report,
    Reports, SessionInfo, SetResponse, Violation,
};
use crate::portal::PortalError;
use crate::service::Service;
use crate::store::{AuditEvent, SessionKind};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use axum_extra::extract::cookie::CookieJar;
use std::sync::Arc;

impl RequestBody for PasswordRequest {
    /// Up to a few hundred item ids and a password of 1024 bytes, JSON-escaped.
    const MAX_BYTES: usize = 64 * 1024;
    const SHAPE: &'static str = r#"{"items": [id], "password"}"#;
}

impl RequestBody for QuestionRequest {
    const MAX_BYTES: usize = 8 * 1024;
    const SHAPE: &'static str = r#"{"question", "answer"}"#;
}

#[utoipa::path(get, path = "/api/session", tag = "session",
    responses(
        (status = 200, body = SessionInfo),
        (status = 401, description = "No valid session", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn session(a: Authed) -> Json<SessionInfo> {
    Json(SessionInfo {
        person_uid: a.session.person_uid,
        method: a.session.method,
        session_kind: a.session.kind.name().into(),
        expires_at: a.session.expires_at,
        full: a.session.kind == SessionKind::Full,
    })
}

#[utoipa::path(post, path = "/api/logout", tag = "session",
    responses(
        (status = 204, description = "The session ended; its cookies are cleared"),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "A cookie request without the CSRF token", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn logout(
    State(svc): State<Arc<Service>>,
    a: Authed,
) -> Result<(StatusCode, CookieJar), ApiError> {
    svc.store()
        .revoke_session(&a.session.token_hash)
        .await
        .map_err(|e| {
            tracing::error!("logout failed: {e}");
            ApiError::unavailable()
        })?;
    let web = svc.web();
    let jar = CookieJar::new()
        .add(web.cookie(web.session_cookie, String::new(), 0, true))
        .add(web.cookie(web.csrf_cookie, String::new(), 0, false));
    Ok((StatusCode::NO_CONTENT, jar))
}

#[utoipa::path(get, path = "/api/me", tag = "session",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn me(a: Authed) -> Json<Me> {
    Json(Me {
        person_uid: a.person.uid,
        central_account: a.person.central_account,
        first_name: a.person.first_name,
        last_name: a.person.last_name,
        session_kind: a.session.kind.name().into(),
    })
}

#[utoipa::path(get, path = "/api/password-items", tag = "passwords",
    responses((status = 200, body = PasswordItems), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn items(
    State(svc): State<Arc<Service>>,
    a: Authed,
) -> Result<Json<PasswordItems>, ApiError> {
    let items = svc.self_service.items(&a.person).await?;
    Ok(Json(PasswordItems {
        items: items
            .iter()
            .map(|i| PasswordItem {
                id: i.id.clone(),
                display_name: i.display_name.clone(),
                system: i.source.clone(),
                last_set: i.last_set,
                policy: PolicyInfo {
                    name: i.policy.name.clone(),
                    description: i.policy.description(),
                    min_length: i.policy.min_length,
                    max_length: i.policy.max_length,
                    history_count: i.policy.history_count,
                },
            })
            .collect(),
    }))
}

fn check_response(checks: &[crate::portal::ItemCheck]) -> CheckResponse {
    CheckResponse {
        ok: checks.iter().all(|c| c.violations.is_empty()),
        items: checks
            .iter()
            .map(|c| ItemCheck {
                id: c.id.clone(),
                violations: c
                    .violations
                    .iter()
                    .map(|v| Violation {
                        rule: v.rule.to_owned(),
                        message: v.message.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[utoipa::path(post, path = "/api/password-items/check", tag = "passwords",
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "Every rule the password breaks, per item; nothing is saved", body = CheckResponse),
        (status = 404, description = "An item that isn't the person's", body = ErrorBody),
        (status = 503, description = "The portal can't check now (busy, the database away, or a required resolver can't say the person's login names)", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn check(
    State(svc): State<Arc<Service>>,
    a: Authed,
    JsonBody(req): JsonBody<PasswordRequest>,
) -> Result<Json<CheckResponse>, ApiError> {
    let checks = svc
        .self_service
        .check(&a.person, &req.items, &req.password)
        .await?;
    Ok(Json(check_response(&checks)))
}

#[utoipa::path(post, path = "/api/password-items/set", tag = "passwords",
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "The password was set for every chosen item", body = SetResponse),
        (status = 404, description = "An item that isn't the person's; nothing changed", body = ErrorBody),
        (status = 422, description = "The password breaks a rule; nothing changed (with the checks)", body = ErrorBody),
        (status = 502, description = "A connected system refused; nothing changed", body = ErrorBody),
        (status = 503, description = "The portal can't check or set now (busy, the database away, or a required resolver can't say the person's login names); nothing changed", body = ErrorBody),
        (status = 504, description = "A connected system did not answer: its state is unknown", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn set(
    State(svc): State<Arc<Service>>,
    ClientAddr(ip): ClientAddr,
    a: Authed,
    JsonBody(req): JsonBody<PasswordRequest>,
) -> Result<Json<SetResponse>, ApiError> {
    let result = svc
        .self_service
        .set(
            &a.person,
            &req.items,
            &req.password,
            Some(a.session.token_hash.clone()),
            Some(ip.to_string()),
        )
        .await;
    match result {
        Ok(Ok(changed)) => {
            svc.metrics.password_change("success");
            Ok(Json(SetResponse { changed }))
        }
        Ok(Err(checks)) => {
            svc.metrics.password_change("rejected");
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "policy",
                "The password breaks a rule; nothing was changed.",
            )
            .with_checks(check_response(&checks)))
        }
        Err(e) => {
            svc.metrics.password_change("failure");
            Err(e.into())
        }
    }
}

#[utoipa::path(get, path = "/api/questions", tag = "questions",
    responses((status = 200, body = QuestionList), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn list_questions(
    State(svc): State<Arc<Service>>,
    a: Authed,
) -> Result<Json<QuestionList>, ApiError> {
    let questions = svc.store().questions(&a.person.uid).await?;
    let required = svc.self_service.required_questions().await?;
    Ok(Json(QuestionList {
        required,
        questions: questions
            .into_iter()
            .map(|q| QuestionInfo {
                id: q.id,
                question: q.question,
                locked: q.locked,
            })
            .collect(),
    }))
}

#[utoipa::path(post, path = "/api/questions", tag = "questions",
    request_body = QuestionRequest,
    responses(
        (status = 201, description = "Added", body = QuestionId),
        (status = 422, description = "Breaks a rule (the message says which)", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn add_question(
    State(svc): State<Arc<Service>>,
    a: Authed,
    JsonBody(req): JsonBody<QuestionRequest>,
) -> Result<(StatusCode, Json<QuestionId>), ApiError> {
    let id = svc
        .self_service
        .add_question(&a.person, &req.question, &req.answer)
        .await?;
    Ok((StatusCode::CREATED, Json(QuestionId { id, locked: None })))
}

#[utoipa::path(put, path = "/api/questions/{id}", tag = "questions",
    params(("id" = String, Path, description = "The question's id")),
    request_body = QuestionRequest,
    responses(
        (status = 200, description = "Replaced (and unlocked)", body = QuestionId),
        (status = 404, description = "Not one of the person's questions", body = ErrorBody),
        (status = 422, description = "Breaks a rule", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn replace_question(
    State(svc): State<Arc<Service>>,
    Path(id): Path<String>,
    a: Authed,
    JsonBody(req): JsonBody<QuestionRequest>,
) -> Result<Json<QuestionId>, ApiError> {
    svc.self_service
        .replace_question(&a.person, &id, &req.question, &req.answer)
        .await?;
    Ok(Json(QuestionId { id, locked: None }))
}

#[utoipa::path(delete, path = "/api/questions/{id}", tag = "questions",
    params(("id" = String, Path, description = "The question's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Not one of the person's questions", body = ErrorBody),
        (status = 422, description = "Fewer questions than the authenticator's policy keeps would remain", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn delete_question(
    State(svc): State<Arc<Service>>,
    Path(id): Path<String>,
    a: Authed,
) -> Result<StatusCode, ApiError> {
    svc.self_service.delete_question(&a.person, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/questions/{id}/unlock", tag = "questions",
    params(("id" = String, Path, description = "The question's id")),
    responses(
        (status = 200, description = "Unlocked", body = QuestionId),
        (status = 404, description = "Not one of the person's questions", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn unlock_question(
    State(svc): State<Arc<Service>>,
    Path(id): Path<String>,
    a: Authed,
) -> Result<Json<QuestionId>, ApiError> {
    svc.self_service.unlock_question(&a.person, &id).await?;
    Ok(Json(QuestionId {
        id,
        locked: Some(false),
    }))
}

#[utoipa::path(get, path = "/api/reports", tag = "managers",
    responses((status = 200, body = Reports), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn reports(
    State(svc): State<Arc<Service>>,
    a: Authed,
) -> Result<Json<Reports>, ApiError> {
    let people = svc.store().direct_reports(&a.person.uid).await?;
    Ok(Json(Reports {
        reports: people
            .into_iter()
            .map(|p| Report {
                person_uid: p.uid,
                first_name: p.first_name,
                last_name: p.last_name,
                central_account: p.central_account,
            })
            .collect(),
    }))
}

/// A manager issues a passcode for a direct report. Only from a full session, and only for a
/// person whose `UID_PersonHead` is the caller.
#[utoipa::path(post, path = "/api/reports/{uid}/passcode", tag = "managers",
    params(("uid" = String, Path, description = "The report's person uid")),
    responses(
        (status = 200, description = "Shown once", body = IssuedPasscode),
        (status = 403, description = "Not a direct report, or a reset session", body = ErrorBody),
        (status = 409, description = "Four-eyes can't be satisfied (the message says why)", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub(crate) async fn report_passcode(
    State(svc): State<Arc<Service>>,
    Path(uid): Path<String>,
    a: Authed,
) -> Result<Json<IssuedPasscode>, ApiError> {
    if a.session.kind != SessionKind::Full {
        return Err(ApiError::forbidden(
            "A session opened with a passcode or questions can't issue passcodes; log in with your password.",
        ));
    }
    let store = svc.store();
    let target = match store.person(&uid).await? {
        Some(p) if p.manager_uid.as_deref() == Some(a.person.uid.as_str()) && !p.inactive => p,
        _ => {
            let _ = store
                .audit(&AuditEvent {
                    event: "passcode.issued",
                    outcome: "failure",
                    person_uid: Some(&uid),
                    actor: Some(&a.person.uid),
                    reason: Some("the issuer is not the person's manager"),
                    ..Default::default()
                })
                .await;
            return Err(ApiError::forbidden(
                "You can issue passcodes only for your direct reports.",
            ));
        }
    };
    match svc
        .self_service
        .issue_passcode(&target, &a.person.uid)
        .await
    {
        Ok(p) => Ok(Json(IssuedPasscode {
            person_uid: target.uid,
            passcode: (!p.split).then(|| p.shown.clone()),
            passcode_first_half: p.split.then(|| p.shown.clone()),
            split: p.split,
            valid_hours: p.hours,
            expires_at: p.expires_at,
        })),
        Err(PortalError::Invalid(m)) => Err(ApiError::new(StatusCode::CONFLICT, "conflict", m)),
        Err(e) => Err(e.into()),
    }
}
