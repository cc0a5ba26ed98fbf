//! The web portal: HTML pages rendered on the server (maud, compiled into the binary) over the
//! same services the API handlers use. Progressive enhancement: every journey works without
//! JavaScript (forms that POST with a hidden CSRF field, then redirect); `portal.js` only adds
//! live password checks and the expiry notice. No inline script or style: the pages' CSP is
//! `default-src 'self'`.
//!
//! CSRF: before sign-in, a random token in an HttpOnly `SameSite=Strict` cookie that each form
//! repeats in a hidden field; after, the session's own CSRF token (checked against the
//! session's digest, as the API checks `X-CSRF-Token`).

mod account;
mod i18n;
mod layout;
mod signin;

use crate::service::Service;
use crate::store::{Person, Session};
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::CookieJar;
use i18n::Text;
use std::sync::Arc;

pub(crate) use layout::page_csp;

/// The page routes, merged into the public router (not part of the OpenAPI document).
pub(crate) fn routes(svc: Arc<Service>) -> Router<Arc<Service>> {
    Router::new()
        .route("/", get(signin::home))
        .route("/sign-in", get(signin::form).post(signin::submit))
        .route(
            "/sign-in/step",
            get(signin::step_form).post(signin::step_submit),
        )
        .route("/sign-out", post(account::sign_out))
        .route(
            "/passwords",
            get(account::passwords).post(account::set_passwords),
        )
        .route("/questions", get(account::questions))
        .route("/questions/add", post(account::add_question))
        .route("/questions/{id}/{action}", post(account::change_question))
        .route("/factors", get(account::factors))
        .route("/factors/{method}/{action}", post(account::change_factor))
        .route("/team", get(account::team))
        .route("/team/{uid}/passcode", post(account::issue_passcode))
        .route("/static/portal.css", get(layout::css))
        .route("/static/portal.js", get(layout::js))
        .route_layer(axum::middleware::from_fn_with_state(svc, form_in_time))
}

/// The largest form a page posts (the proof of work and every question's answer included).
const MAX_FORM: usize = 64 * 1024;

/// A page's form arrives whole within `Host:BodyTimeoutMs`, as an API body does: a client that
/// trickles one is answered 408 and closed, not left holding a connection.
async fn form_in_time(
    axum::extract::State(svc): axum::extract::State<Arc<Service>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, MAX_FORM);
    match tokio::time::timeout(svc.settings().host.body_timeout, read).await {
        Ok(Ok(bytes)) => {
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(req).await
        }
        Ok(Err(e)) => {
            let too_large = e
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            if too_large {
                axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response()
            } else {
                axum::http::StatusCode::BAD_REQUEST.into_response()
            }
        }
        Err(_) => axum::http::StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

/// The language of a request, from `Accept-Language`.
pub(crate) struct Lang(pub Text);

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Text::negotiate(
            parts
                .headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        )))
    }
}

/// The `?m=` notice on the start page.
#[derive(serde::Deserialize, Default)]
pub(crate) struct Notice {
    #[serde(default)]
    m: Option<String>,
}

/// A signed-in person on a page: their session, and the session's CSRF token for forms.
pub(crate) struct PageSession {
    pub session: Session,
    pub person: Person,
    pub csrf: String,
}

/// The cookie names: `__Host-` prefixed whenever the session cookie is.
fn cookie_name(svc: &Service, base: &'static str) -> &'static str {
    let secure = svc.web().secure;
    match base {
        "pre" if secure => "__Host-prp_pre",
        "pre" => "prp_pre",
        "attempt" if secure => "__Host-prp_attempt",
        "attempt" => "prp_attempt",
        "flash" if secure => "__Host-prp_flash",
        _ => "prp_flash",
    }
}

/// The signed-in person, or the answer to give instead: back to the start, saying the
/// session ended when a session cookie was sent that no longer works.
pub(crate) async fn signed_in(svc: &Service, jar: &CookieJar) -> Result<PageSession, Response> {
    let web = svc.web();
    let Some(token) = jar.get(web.session_cookie).map(|c| c.value().to_owned()) else {
        return Err(Redirect::to("/").into_response());
    };
    let store = svc.store();
    let session = match store.session(&token, svc.idle_seconds()).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(ended(svc, "expired")),
        Err(e) => {
            tracing::error!("session lookup failed: {e}");
            return Err(Redirect::to("/?m=unavailable").into_response());
        }
    };
    let person = match store.person(&session.person_uid).await {
        Ok(Some(p)) if !p.inactive => p,
        Ok(_) => return Err(ended(svc, "expired")),
        Err(e) => {
            tracing::error!("person lookup failed: {e}");
            return Err(Redirect::to("/?m=unavailable").into_response());
        }
    };
    // The page's forms carry the CSRF token the browser holds, if it is the session's.
    let csrf = jar
        .get(web.csrf_cookie)
        .map(|c| c.value().to_owned())
        .filter(|t| session.csrf_matches(t))
        .unwrap_or_default();
    Ok(PageSession {
        session,
        person,
        csrf,
    })
}

/// Clears the session cookies and goes back to the start with a notice.
pub(crate) fn ended(svc: &Service, notice: &str) -> Response {
    let web = svc.web();
    let jar = CookieJar::new()
        .add(web.cookie(web.session_cookie, String::new(), 0, true))
        .add(web.cookie(web.csrf_cookie, String::new(), 0, false));
    (jar, Redirect::to(&format!("/?m={notice}"))).into_response()
}

/// A form's fields, in order (names may repeat, as checkboxes do).
pub(crate) type Fields = Vec<(String, String)>;

pub(crate) fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Whether a signed-in form carries the session's CSRF token.
pub(crate) fn csrf_ok(ps: &PageSession, fields: &Fields) -> bool {
    ps.session.csrf_matches(field(fields, "csrf"))
}

/// The answer to a form without the right CSRF field: 403, a page that says so.
pub(crate) fn csrf_refused(text: Text) -> Response {
    let body = layout::bare(
        text,
        text.t("err.title"),
        maud::html! {
            div.notice.error role="alert" { (text.t("msg.csrf")) }
            p { a href="/" { (text.t("err.back")) } }
        },
    );
    page_response(StatusCode::FORBIDDEN, body)
}

/// An HTML page with the page headers: no caching, the page CSP, no framing.
pub(crate) fn page_response(status: StatusCode, body: maud::Markup) -> Response {
    let mut r = (status, body.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, page_csp());
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// A one-time notice carried across a redirect (Post/Redirect/Get) in a short-lived cookie.
pub(crate) struct Flash {
    pub ok: bool,
    pub lines: Vec<String>,
}

pub(crate) fn set_flash(svc: &Service, jar: CookieJar, ok: bool, lines: &[String]) -> CookieJar {
    let mut text = String::from(if ok { "ok" } else { "error" });
    for l in lines {
        text.push('\n');
        text.push_str(l);
    }
    // Cookies hold about 4 KB: a long list of violations is cut.
    let mut value = hex::encode(text.as_bytes());
    value.truncate(3000);
    if value.len() % 2 == 1 {
        value.pop();
    }
    jar.add(svc.web().cookie(cookie_name(svc, "flash"), value, 60, true))
}

/// The notice waiting for this page, if any, and the jar that clears it.
pub(crate) fn take_flash(svc: &Service, jar: CookieJar) -> (Option<Flash>, CookieJar) {
    let name = cookie_name(svc, "flash");
    let Some(c) = jar.get(name) else {
        return (None, jar);
    };
    let flash = hex::decode(c.value())
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map(|t| {
            let mut lines = t.lines().map(str::to_owned);
            let ok = lines.next().as_deref() == Some("ok");
            Flash {
                ok,
                lines: lines.collect(),
            }
        });
    let jar = jar.add(svc.web().cookie(name, String::new(), 0, true));
    (flash, jar)
}

/// See other: the answer to every successful form post.
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

pub(crate) fn notice_text(text: Text, q: &Query<Notice>) -> Option<&'static str> {
    Some(match q.m.as_deref()? {
        "failed" => text.t("msg.failed"),
        "busy" => text.t("msg.busy"),
        "expired" => text.t("msg.expired"),
        "signed-out" => text.t("msg.signed_out"),
        "unavailable" => text.t("msg.unavailable"),
        "attempt" => text.t("msg.attempt_gone"),
        _ => return None,
    })
}

/// A date for people: `2026-11-30 07:05 UTC`.
pub(crate) fn when(unix: i64) -> String {
    let s = crate::service::rfc3339(unix);
    match (s.get(0..10), s.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => s,
    }
}
