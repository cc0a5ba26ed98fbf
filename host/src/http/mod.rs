//! The HTTP layer: typed handlers over [`Service`], the OpenAPI document generated from them
//! and their routes, the layers every answer passes (security headers, the JSON error shape,
//! request ids, the request log, body limits and timeouts), and the accept loop (header read
//! timeout, a cap on open connections, graceful shutdown, TLS when `Host:Certificate` is set).
//!
//! Two routers: the public one (the API, `/health/live`, a bare `/health/ready`,
//! `/openapi.json`) and the admin one (`/metrics` and `/health/ready` with its detail), served
//! on `Host:AdminListen` when that is set, and nowhere otherwise.

mod error;
pub(crate) mod extract;
mod flows;
pub(crate) mod login;
mod ops;
mod portal;
mod tls;

pub(crate) use extract::WebPolicy;
pub use tls::{Tls, TlsError};

use crate::service::Service;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "prp: the Password Reset Portal",
        description = "Log in by password, passcode or password questions; then reset the passwords of the accounts you own. Every error has the ErrorBody shape. Request bodies are JSON objects sent as application/json.",
    ),
    modifiers(&Security),
    tags(
        (name = "login", description = "Every failed login gets the same 401 and costs the same"),
        (name = "session", description = "The current session"),
        (name = "passwords", description = "The passwords the person may reset"),
        (name = "questions", description = "The person's password questions"),
        (name = "managers", description = "Passcodes for direct reports"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-prp_session",
                "The session cookie (prp_session on plain http on loopback); requests that change state also send X-CSRF-Token",
            ))),
        );
    }
}

/// The public API's routes with their OpenAPI operations.
fn api_routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(login::password))
        .routes(routes!(login::passcode))
        .routes(routes!(login::challenge))
        .routes(routes!(login::questions))
        .routes(routes!(flows::list))
        .routes(routes!(flows::start))
        .routes(routes!(flows::step))
        .routes(routes!(flows::list_factors))
        .routes(routes!(flows::enroll))
        .routes(routes!(flows::confirm))
        .routes(routes!(flows::remove))
        .routes(routes!(portal::session))
        .routes(routes!(portal::logout))
        .routes(routes!(portal::me))
        .routes(routes!(portal::items))
        .routes(routes!(portal::check))
        .routes(routes!(portal::set))
        .routes(routes!(portal::list_questions, portal::add_question))
        .routes(routes!(portal::replace_question, portal::delete_question))
        .routes(routes!(portal::unlock_question))
        .routes(routes!(portal::reports))
        .routes(routes!(portal::report_passcode))
        .routes(routes!(ops::live))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::openapi))
}

/// The OpenAPI document of the public API, generated from the handlers and their routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The public router, with every layer.
pub(crate) fn public_router(svc: Arc<Service>) -> Router {
    let (router, doc) = api_routes().split_for_parts();
    let doc = Arc::new(doc);
    let router = router
        // The web portal's pages (not part of the OpenAPI document).
        .merge(crate::web::routes(Arc::clone(&svc)))
        .fallback(not_found)
        .layer(axum::Extension(doc))
        .with_state(Arc::clone(&svc));
    layered(router, svc)
}

/// The admin router: `/metrics`, `/health/ready` with detail, `/health/live`.
pub(crate) fn admin_router(svc: Arc<Service>) -> Router {
    let router = Router::new()
        .route("/metrics", axum::routing::get(ops::metrics))
        .route("/health/ready", axum::routing::get(ops::ready_detail))
        .route("/health/live", axum::routing::get(ops::live))
        .fallback(not_found)
        .with_state(Arc::clone(&svc));
    layered(router, svc)
}

async fn not_found() -> Response {
    error::for_status(axum::http::StatusCode::NOT_FOUND).into_response()
}

/// The largest body any route reads; each body type has its own, smaller limit.
const MAX_BODY: usize = 64 * 1024;

fn layered(router: Router, svc: Arc<Service>) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(
                HeaderName::from_static(REQUEST_ID),
                RandomRequestId,
            ))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request| {
                        let id = req
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
                    })
                    .on_request(())
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::new(HeaderName::from_static(
                REQUEST_ID,
            )))
            .layer(axum::middleware::map_response_with_state(svc, finish))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)),
    )
}

const REQUEST_ID: &str = "x-request-id";

/// Request ids: 128 random bits, unless the client (or a proxy) sent one.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&crate::security::random_id())
            .ok()
            .map(RequestId::new)
    }
}

/// Every answer: errors in the JSON shape (whatever layer produced them), no caching, and the
/// browser rules (no sniffing, no referrer, no framing, HSTS over https).
async fn finish(State(svc): State<Arc<Service>>, response: Response) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let is_json = content_type.is_some_and(|v| v.starts_with("application/json"));
    // A page's error (web::) is a page for people, with its own headers.
    let is_page = content_type.is_some_and(|v| v.starts_with("text/html"));
    let mut response =
        if (status.is_client_error() || status.is_server_error()) && !is_json && !is_page {
            let keep: Vec<(HeaderName, HeaderValue)> = [header::ALLOW, header::RETRY_AFTER]
                .into_iter()
                .filter_map(|h| response.headers().get(&h).map(|v| (h, v.clone())))
                .collect();
            let mut shaped = error::for_status(status).into_response();
            for (h, v) in keep {
                shaped.headers_mut().insert(h, v);
            }
            shaped
        } else {
            response
        };
    let h = response.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    if svc.web().hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// Serves the public router on `public` (over TLS when `tls` is given) and the admin router on
/// `admin` until `shutdown` resolves; then stops accepting, and waits (up to 30 s) for the
/// requests in flight.
pub(crate) async fn run(
    svc: Arc<Service>,
    public: tokio::net::TcpListener,
    tls: Option<Arc<Tls>>,
    admin: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let limits = ConnLimits {
        max_connections: svc.settings().host.max_connections,
        header_timeout: svc.settings().host.header_timeout,
    };
    let public = accept_loop(
        public,
        public_router(Arc::clone(&svc)),
        tls,
        limits,
        rx.clone(),
    );
    match admin {
        Some(listener) => {
            let admin = accept_loop(listener, admin_router(svc), None, limits, rx);
            tokio::try_join!(public, admin).map(drop)
        }
        None => public.await,
    }
}

#[derive(Clone, Copy)]
struct ConnLimits {
    max_connections: usize,
    header_timeout: Duration,
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<Tls>>,
    limits: ConnLimits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    loop {
        if *shutdown.borrow() {
            break;
        }
        // At the cap, further connections wait in the kernel's backlog.
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: don't spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(service);
        match &tls {
            None => {
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    drop(permit);
                });
            }
            Some(tls) => {
                // The configuration in force now; a reload only affects later connections.
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
                let http = http.clone();
                let watcher = graceful.watcher();
                let mut stop = shutdown.clone();
                tokio::spawn(async move {
                    // The handshake counts against the header timeout, and a shutdown ends it.
                    let handshake = tokio::select! {
                        r = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)) => r,
                        _ = stop.wait_for(|s| *s) => {
                            drop(permit);
                            return;
                        }
                    };
                    let stream = match handshake {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            drop(permit);
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            drop(permit);
                            return;
                        }
                    };
                    let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("requests still in flight after 30 s; stopping anyway");
        }
    }
    Ok(())
}
