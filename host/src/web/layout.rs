//! The frame of every page, and the static files (compiled into the binary).

use super::i18n::Text;
use super::{Flash, PageSession};
use crate::store::SessionKind;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

pub(crate) const CSS: &str = include_str!("assets/portal.css");
pub(crate) const JS: &str = include_str!("assets/portal.js");

/// The pages' Content-Security-Policy: only this origin, nothing inline.
pub(crate) fn page_csp() -> HeaderValue {
    HeaderValue::from_static(
        "default-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'",
    )
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

pub(crate) async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

pub(crate) async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

/// The notice region: always present, so that a message put there is announced.
fn notices(text: Text, flash: Option<&Flash>, notice: Option<&str>) -> Markup {
    html! {
        @if let Some(f) = flash {
            @let class = if f.ok { "notice ok" } else { "notice error" };
            div.(class) id="live" role=(if f.ok { "status" } else { "alert" }) aria-live=(if f.ok { "polite" } else { "assertive" }) tabindex="-1" {
                @for (i, l) in f.lines.iter().enumerate() {
                    @if i == 0 { p { (l) } } @else { p.detail { (l) } }
                }
            }
        } @else if let Some(n) = notice {
            div.notice id="live" role="alert" aria-live="assertive" tabindex="-1" { (n) }
        } @else {
            div.notice id="live" role="status" aria-live="polite" {}
        }
        @let _ = text;
    }
}

/// What a page needs beyond its content.
pub(crate) struct Frame<'a> {
    pub text: Text,
    pub title: &'a str,
    pub who: Option<&'a PageSession>,
    pub current: &'a str,
    pub flash: Option<&'a Flash>,
    pub notice: Option<&'a str>,
}

pub(crate) fn page(f: Frame<'_>, content: Markup) -> Markup {
    let t = f.text;
    let expires = f.who.map_or(0, |w| w.session.expires_at);
    html! {
        (DOCTYPE)
        html lang=(t.lang()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (f.title) " – " (t.t("app.name")) }
                link rel="stylesheet" href="/static/portal.css";
                script src="/static/portal.js" defer {}
            }
            body data-expires=(expires) data-expired=(t.t("js.expired")) {
                a.skip href="#main" { (t.t("skip")) }
                header {
                    a.brand href="/" { (t.t("app.name")) }
                    @if let Some(w) = f.who {
                        nav aria-label=(t.t("nav.label")) {
                            ul {
                                (link("/passwords", t.t("nav.passwords"), f.current))
                                (link("/questions", t.t("nav.questions"), f.current))
                                @if w.session.kind == SessionKind::Full {
                                    (link("/factors", t.t("nav.factors"), f.current))
                                    (link("/team", t.t("nav.manager"), f.current))
                                }
                                li {
                                    form method="post" action="/sign-out" {
                                        input type="hidden" name="csrf" value=(w.csrf);
                                        button type="submit" { (t.t("nav.signout")) }
                                    }
                                }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (f.title) }
                    @if let Some(w) = f.who {
                        p.muted { (t.f("signed_in_as", &[&format!("{} {} ({})", w.person.first_name, w.person.last_name, w.person.central_account)])) }
                        @if w.session.kind != SessionKind::Full {
                            p.muted { (t.t("reset_session_note")) }
                        }
                    }
                    (notices(t, f.flash, f.notice))
                    (content)
                }
            }
        }
    }
}

fn link(href: &str, label: &str, current: &str) -> Markup {
    html! {
        li {
            @if href == current { a href=(href) aria-current="page" { (label) } }
            @else { a href=(href) { (label) } }
        }
    }
}

/// A page without navigation (errors).
pub(crate) fn bare(text: Text, title: &str, content: Markup) -> Markup {
    page(
        Frame {
            text,
            title,
            who: None,
            current: "",
            flash: None,
            notice: None,
        },
        content,
    )
}
