//! `ApiError`: every error answer the API gives, in the one JSON shape (`api::ErrorBody`).

use crate::api::{CheckResponse, ErrorBody};
use crate::portal::PortalError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::borrow::Cow;

/// The one answer every failed login gets, whatever the reason.
pub(crate) const LOGIN_FAILED: &str =
    "The login name or the credentials are not valid, or this way of logging in is not available.";

/// An error answer: status, code, message, and what comes with some of them.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    retry_after: Option<u32>,
    checks: Option<CheckResponse>,
    pow: Option<Box<crate::api::PowChallenge>>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            checks: None,
            pow: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn login_failed() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "login_failed", LOGIN_FAILED)
    }

    /// A right password for a person with an active factor, at an endpoint that can't ask
    /// for it.
    pub(crate) fn factor_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "factor_required",
            "This account has a second factor: log in through a flow that asks for it (GET /api/login/flows, then POST /api/login/start).",
        )
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "No valid session; log in again.",
        )
    }

    pub(crate) fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 503 with `Retry-After`: the database or a dependency is not answering.
    pub(crate) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Try again in a moment.",
        )
        .retry_after(5)
    }

    /// 503 with `Retry-After`: too much work in progress.
    pub(crate) fn busy(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message).retry_after(1)
    }

    pub(crate) fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A failed login whose next attempt must carry a proof of work.
    pub(crate) fn with_pow(mut self, pow: crate::api::PowChallenge) -> Self {
        self.pow = Some(Box::new(pow));
        self
    }

    pub(crate) fn with_checks(mut self, checks: CheckResponse) -> Self {
        self.checks = Some(checks);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_owned(),
            message: self.message.into_owned(),
            checks: self.checks,
            pow: self.pow.map(|p| *p),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<PortalError> for ApiError {
    fn from(e: PortalError) -> Self {
        match e {
            PortalError::NotFound(what) => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("No such {what}."),
            ),
            PortalError::Invalid(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
            PortalError::Upstream(m) => {
                tracing::error!("password change failed upstream: {m}");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream",
                    "A connected system refused the change; nothing was changed. Try again or contact the help desk.",
                )
            }
            PortalError::Unknown(m) => {
                tracing::error!("password change in an unknown state: {m}");
                Self::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "unknown",
                    "A connected system did not answer in time: the password there may or may not have changed; nothing else was changed. Check with the help desk before trying again.",
                )
            }
            PortalError::Partial(m) => {
                tracing::error!("password change partly applied: {m}");
                Self::new(StatusCode::BAD_GATEWAY, "partial", m)
            }
            PortalError::Busy => Self::busy("Too busy right now; try again in a moment."),
            PortalError::Unavailable(m) => {
                tracing::error!("portal request failed: {m}");
                Self::unavailable()
            }
            PortalError::Store(e) => {
                tracing::error!("portal request failed: {e}");
                Self::unavailable()
            }
            PortalError::Internal(m) => {
                tracing::error!("portal request failed: {m}");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Something went wrong.",
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        PortalError::from(e).into()
    }
}

/// The JSON error for a status that some layer answered without a body of ours (404, 405,
/// 408, 413, …).
pub(crate) fn for_status(status: StatusCode) -> ApiError {
    let (code, message): (&'static str, &'static str) = match status {
        StatusCode::NOT_FOUND => ("not_found", "There is nothing at this address."),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This address does not accept that method; see the Allow header.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The request body is larger than this endpoint accepts.",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "The request did not arrive in time; send it again.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "Send the body as JSON with Content-Type: application/json.",
        ),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "Try again in a moment."),
        s if s.is_client_error() => ("bad_request", "The request is not valid."),
        _ => ("internal", "Something went wrong."),
    };
    ApiError::new(status, code, message)
}
