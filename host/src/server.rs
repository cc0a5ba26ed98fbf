//! The HTTP server: a router over shared state, served on a listener the caller bound, until a
//! shutdown future resolves (SIGTERM or SIGINT in the binary).

use crate::app::Plugins;
use crate::config::Settings;
use crate::db;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::AnyPool;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What the handlers share.
pub struct AppState {
    pub settings: Settings,
    pub pool: AnyPool,
    pub plugins: Plugins,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn live() -> impl IntoResponse {
    Json(json!({"status": "live"}))
}

/// Ready when the database answers and the plugins the host needs are loaded and passed their
/// self-checks. A `503` lists what is not ready, without secrets.
async fn ready(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    match tokio::time::timeout(Duration::from_secs(2), db::ping(&state.pool)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => problems.push("database: not answering".to_owned()),
        Err(_) => problems.push("database: no answer within 2s".to_owned()),
    }
    problems.extend(state.plugins.refusals(&state.settings));
    let plugins: Vec<_> = state
        .plugins
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
