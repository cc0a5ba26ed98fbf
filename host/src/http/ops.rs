//! Health, metrics and the OpenAPI document.

use crate::api::{Health, PluginInfo};
use crate::service::Service;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use std::sync::Arc;

#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process is up", body = Health)))]
pub(crate) async fn live() -> Json<Health> {
    Json(Health {
        status: "live".into(),
        problems: Vec::new(),
        plugins: Vec::new(),
        resolvers: Vec::new(),
    })
}

/// Readiness without detail: the public listener says whether, not why.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Logins can succeed", body = Health),
        (status = 503, description = "Not ready (the admin listener says why)", body = Health),
    ))]
pub(crate) async fn ready(State(svc): State<Arc<Service>>) -> (StatusCode, Json<Health>) {
    let problems = svc.readiness().await;
    let (status, word) = if problems.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    };
    (
        status,
        Json(Health {
            status: word.into(),
            problems: Vec::new(),
            plugins: Vec::new(),
            resolvers: Vec::new(),
        }),
    )
}

/// Readiness with what is not ready and the loaded plugins (admin listener only).
pub(crate) async fn ready_detail(State(svc): State<Arc<Service>>) -> (StatusCode, Json<Health>) {
    let problems = svc.readiness().await;
    let resolvers = svc.resolver_health().await;
    let plugins = svc
        .portal
        .report
        .loaded
        .iter()
        .map(|p| PluginInfo {
            name: p.name.clone(),
            version: p.version.clone(),
        })
        .collect();
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if problems.is_empty() {
                "ready"
            } else {
                "not ready"
            }
            .into(),
            problems,
            plugins,
            resolvers,
        }),
    )
}

#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "This document")))]
pub(crate) async fn openapi(
    Extension(doc): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> impl IntoResponse {
    Json(doc.as_ref().clone())
}

/// Prometheus metrics (admin listener only).
pub(crate) async fn metrics(State(svc): State<Arc<Service>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        svc.metrics.render(
            svc.portal.hasher.queue_depth(),
            svc.portal.hasher.total(),
            svc.login.pending(),
            svc.login.failures_held(),
            svc.login.crossings(),
        ),
    )
}
