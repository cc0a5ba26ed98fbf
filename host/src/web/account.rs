//! The pages after sign-in: My passwords, My password questions, My factors, My team, and
//! signing out. Each form posts here with the session's CSRF token and is answered with a
//! redirect and a one-time notice; a secret shown once (a passcode, a factor's key) is the
//! page that answers the post.

use super::i18n::Text;
use super::layout::{page, Frame};
use super::{
    csrf_ok, csrf_refused, field, page_response, see_other, set_flash, signed_in, take_flash, when,
    Fields, Flash, Lang, PageSession,
};
use crate::http::extract::ClientAddr;
use crate::portal::{
    PortalError, ANSWER_MAX, ANSWER_MIN, MAX_QUESTIONS, QUESTION_MAX, QUESTION_MIN,
};
use crate::service::Service;
use crate::store::SessionKind;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::{html, PreEscaped};
use prp_plugin_api::FieldKind;
use std::sync::Arc;

fn frame<'a>(
    text: Text,
    title: &'a str,
    who: &'a PageSession,
    current: &'a str,
    flash: Option<&'a Flash>,
) -> Frame<'a> {
    Frame {
        text,
        title,
        who: Some(who),
        current,
        flash,
        notice: None,
    }
}

/// A signed-in person's page: their session, or the redirect that replaces the page.
macro_rules! session_or {
    ($svc:expr, $jar:expr) => {
        match signed_in(&$svc, &$jar).await {
            Ok(ps) => ps,
            Err(r) => return r,
        }
    };
}

/// A form post: the session and a CSRF check, or the answer that replaces it.
macro_rules! posted {
    ($svc:expr, $jar:expr, $text:expr, $fields:expr) => {{
        let ps = session_or!($svc, $jar);
        if !csrf_ok(&ps, &$fields) {
            return csrf_refused($text);
        }
        ps
    }};
}

/// What a failed self-service request tells the person.
fn portal_error(text: Text, e: &PortalError) -> String {
    match e {
        PortalError::Invalid(m) => m.clone(),
        PortalError::Upstream(_) => text.t("pw.upstream").to_owned(),
        PortalError::Unknown(_) => text.t("pw.unknown").to_owned(),
        PortalError::Partial(m) => text.f("pw.partial", &[m]),
        PortalError::Busy => text.t("msg.busy").to_owned(),
        // A stale page (an item or question that changed since it was shown), or an id that
        // isn't the person's: nothing changed, and nothing is wrong with the portal.
        PortalError::NotFound(_) => text.t("msg.not_found").to_owned(),
        PortalError::Store(_) | PortalError::Internal(_) | PortalError::Unavailable(_) => {
            tracing::error!("self-service request failed: {e}");
            text.t("msg.unavailable").to_owned()
        }
    }
}

fn redirect_with(svc: &Service, jar: CookieJar, ok: bool, lines: &[String], to: &str) -> Response {
    (set_flash(svc, jar, ok, lines), see_other(to)).into_response()
}

/// `POST /sign-out`.
pub(crate) async fn sign_out(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    jar: CookieJar,
    Form(fields): Form<Fields>,
) -> Response {
    let ps = posted!(svc, jar, text, fields);
    if let Err(e) = svc.store().revoke_session(&ps.session.token_hash).await {
        tracing::error!("sign-out failed: {e}");
        return see_other("/?m=unavailable");
    }
    super::ended(&svc, "signed-out")
}

/// `GET /passwords`.
pub(crate) async fn passwords(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    jar: CookieJar,
) -> Response {
    let ps = session_or!(svc, jar);
    let (flash, jar) = take_flash(&svc, jar);
    let items = match svc.self_service.items(&ps.person).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("password items failed: {e}");
            return see_other("/?m=unavailable");
        }
    };
    let content = html! {
        @if items.is_empty() {
            p { (text.t("pw.no_items")) }
        } @else {
            p { (text.t("pw.intro")) }
            form.card id="set-password" method="post" action="/passwords" {
                input type="hidden" name="csrf" value=(ps.csrf);
                fieldset {
                    legend { (text.t("pw.items")) }
                    ul.items {
                        @for (i, item) in items.iter().enumerate() {
                            @let id = format!("item-{i}");
                            li {
                                input type="checkbox" id=(id) name="items" value=(item.id) checked;
                                label.inline for=(id) { strong { (item.display_name) } }
                                dl.meta {
                                    dt { (text.t("pw.system")) } dd { (item.source) }
                                    dt { (text.t("pw.last_set")) }
                                    dd { (item.last_set.map_or_else(|| text.t("pw.never").to_owned(), when)) }
                                    dt { (text.t("pw.policy")) } dd { (item.policy.description()) }
                                }
                            }
                        }
                    }
                }
                label for="password" { (text.t("pw.new")) }
                input type="password" id="password" name="password" autocomplete="new-password" required aria-describedby="check-result";
                label for="confirm" { (text.t("pw.confirm")) }
                input type="password" id="confirm" name="confirm" autocomplete="new-password" required;
                div.notice id="check-result" role="status" aria-live="polite" data-ok=(text.t("pw.check_ok")) data-checking=(text.t("pw.checking")) {}
                div { button type="submit" { (text.t("pw.submit")) } }
            }
        }
    };
    let body = page(
        frame(text, text.t("pw.title"), &ps, "/passwords", flash.as_ref()),
        content,
    );
    (jar, page_response(StatusCode::OK, body)).into_response()
}

/// `POST /passwords`: one new password for the chosen items, all or nothing.
pub(crate) async fn set_passwords(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    ClientAddr(ip): ClientAddr,
    jar: CookieJar,
    Form(fields): Form<Fields>,
) -> Response {
    let ps = posted!(svc, jar, text, fields);
    let chosen: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "items")
        .map(|(_, v)| v.clone())
        .collect();
    let password = field(&fields, "password");
    let back = |ok, lines: &[String]| redirect_with(&svc, jar.clone(), ok, lines, "/passwords");
    if chosen.is_empty() {
        return back(false, &[text.t("pw.none_chosen").to_owned()]);
    }
    if password != field(&fields, "confirm") {
        return back(false, &[text.t("pw.mismatch").to_owned()]);
    }
    let result = svc
        .self_service
        .set(
            &ps.person,
            &chosen,
            password,
            Some(ps.session.token_hash.clone()),
            Some(ip.to_string()),
        )
        .await;
    match result {
        Ok(Ok(changed)) => {
            svc.metrics.password_change("success");
            back(true, &[text.f("pw.done", &[&changed.len()])])
        }
        Ok(Err(checks)) => {
            svc.metrics.password_change("rejected");
            let mut lines = vec![text.t("pw.rejected").to_owned()];
            for v in checks.iter().flat_map(|c| c.violations.iter()) {
                if !lines.contains(&v.message) {
                    lines.push(v.message.clone());
                }
            }
            back(false, &lines)
        }
        Err(e) => {
            svc.metrics.password_change("failure");
            back(false, &[portal_error(text, &e)])
        }
    }
}

/// `GET /questions`.
pub(crate) async fn questions(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    jar: CookieJar,
) -> Response {
    let ps = session_or!(svc, jar);
    let (flash, jar) = take_flash(&svc, jar);
    let (list, required) = match (
        svc.store().questions(&ps.person.uid).await,
        svc.self_service.required_questions().await,
    ) {
        (Ok(l), Ok(r)) => (l, r),
        _ => return see_other("/?m=unavailable"),
    };
    let rules = text.f(
        "q.rules",
        &[
            &QUESTION_MIN,
            &QUESTION_MAX,
            &ANSWER_MIN,
            &ANSWER_MAX,
            &required,
            &MAX_QUESTIONS,
        ],
    );
    let content = html! {
        p.card id="question-rules" { (rules) }
        @if list.is_empty() { p { (text.t("q.none")) } }
        @for (i, q) in list.iter().enumerate() {
            section.card aria-labelledby=(format!("q{i}-title")) {
                h2 id=(format!("q{i}-title")) {
                    (q.question)
                    @if q.locked { " " span.muted { "(" (text.t("q.locked")) ")" } }
                }
                form method="post" action=(format!("/questions/{}/replace", q.id)) {
                    input type="hidden" name="csrf" value=(ps.csrf);
                    fieldset {
                        legend { (text.f("q.replace_legend", &[&q.question])) }
                        label for=(format!("q{i}-question")) { (text.t("q.question")) }
                        input type="text" id=(format!("q{i}-question")) name="question" required minlength=(QUESTION_MIN) maxlength=(QUESTION_MAX) aria-describedby="question-rules";
                        label for=(format!("q{i}-answer")) { (text.t("q.answer")) }
                        input type="password" id=(format!("q{i}-answer")) name="answer" autocomplete="off" required minlength=(ANSWER_MIN) maxlength=(ANSWER_MAX) aria-describedby="question-rules";
                        div { button.secondary type="submit" { (text.t("q.replace")) } }
                    }
                }
                @if q.locked {
                    form method="post" action=(format!("/questions/{}/unlock", q.id)) {
                        input type="hidden" name="csrf" value=(ps.csrf);
                        button.secondary type="submit" { (text.t("q.unlock")) }
                    }
                }
                form method="post" action=(format!("/questions/{}/delete", q.id)) {
                    input type="hidden" name="csrf" value=(ps.csrf);
                    button.danger type="submit" { (text.t("q.delete")) }
                }
            }
        }
        @if list.len() < MAX_QUESTIONS {
            form.card method="post" action="/questions/add" {
                input type="hidden" name="csrf" value=(ps.csrf);
                h2 { (text.t("q.add")) }
                label for="new-question" { (text.t("q.new_question")) }
                input type="text" id="new-question" name="question" required minlength=(QUESTION_MIN) maxlength=(QUESTION_MAX) aria-describedby="question-rules";
                label for="new-answer" { (text.t("q.new_answer")) }
                input type="password" id="new-answer" name="answer" autocomplete="off" required minlength=(ANSWER_MIN) maxlength=(ANSWER_MAX) aria-describedby="question-rules";
                div { button type="submit" { (text.t("q.add")) } }
            }
        }
    };
    let body = page(
        frame(text, text.t("q.title"), &ps, "/questions", flash.as_ref()),
        content,
    );
    (jar, page_response(StatusCode::OK, body)).into_response()
}

/// `POST /questions/add`.
pub(crate) async fn add_question(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    jar: CookieJar,
    Form(fields): Form<Fields>,
) -> Response {
    let ps = posted!(svc, jar, text, fields);
    let r = svc
        .self_service
        .add_question(
            &ps.person,
            field(&fields, "question"),
            field(&fields, "answer"),
        )
        .await
        .map(drop);
    question_done(&svc, jar, text, r, "q.added")
}

fn question_done(
    svc: &Service,
    jar: CookieJar,
    text: Text,
    r: Result<(), PortalError>,
    ok_key: &'static str,
) -> Response {
    match r {
        Ok(()) => redirect_with(svc, jar, true, &[text.t(ok_key).to_owned()], "/questions"),
        Err(e) => redirect_with(svc, jar, false, &[portal_error(text, &e)], "/questions"),
    }
}

/// `POST /questions/{id}/{replace|delete|unlock}`.
pub(crate) async fn change_question(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    Path((id, action)): Path<(String, String)>,
    jar: CookieJar,
    Form(fields): Form<Fields>,
) -> Response {
    let ps = posted!(svc, jar, text, fields);
    let s = &svc.self_service;
    let (r, key) = match action.as_str() {
        "replace" => (
            s.replace_question(
                &ps.person,
                &id,
                field(&fields, "question"),
                field(&fields, "answer"),
            )
            .await,
            "q.replaced",
        ),
        "delete" => (s.delete_question(&ps.person, &id).await, "q.deleted"),
        "unlock" => (s.unlock_question(&ps.person, &id).await, "q.unlocked"),
        _ => return see_other("/questions"),
    };
    question_done(&svc, jar, text, r, key)
}

/// `GET /factors`.
pub(crate) async fn factors(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    jar: CookieJar,
) -> Response {
    let ps = session_or!(svc, jar);
    let (flash, jar) = take_flash(&svc, jar);
    let list = match crate::flows::factors(&svc, &ps.person.uid).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("factors failed: {e}");
            return see_other("/?m=unavailable");
        }
    };
    let full = ps.session.kind == SessionKind::Full;
    let content = html! {
        p { (text.t("f.intro")) }
        @if !full { p.notice { (text.t("msg.full_only")) } }
        @if list.is_empty() { p { (text.t("f.none")) } }
        @for f in &list {
            @let label = text.dynamic(&format!("method.{}", f.method)).map_or_else(|| f.label.clone(), str::to_owned);
            section.card {
                h2 { (label) }
                @if f.enrolled {
                    p { (text.f("f.enrolled", &[&f.enrolled_at.map(when).unwrap_or_default()])) }
                    @if full {
                        form method="post" action=(format!("/factors/{}/remove", f.method)) {
                            input type="hidden" name="csrf" value=(ps.csrf);
                            button.danger type="submit" { (text.t("f.remove")) " – " (label) }
                        }
                    }
                } @else {
                    p { (text.t("f.not_enrolled")) }
                    @if full {
                        form method="post" action=(format!("/factors/{}/enroll", f.method)) {
                            input type="hidden" name="csrf" value=(ps.csrf);
                            button type="submit" { (text.t("f.enroll")) " – " (label) }
                        }
                    }
                }
            }
        }
    };
    let body = page(
        frame(text, text.t("f.title"), &ps, "/factors", flash.as_ref()),
        content,
    );
    (jar, page_response(StatusCode::OK, body)).into_response()
}

/// A QR code of `data` as SVG, made on the server.
fn qr_svg(data: &str) -> Option<String> {
    let code = qrcode::QrCode::new(data.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

/// `POST /factors/{method}/{enroll|confirm|remove}`. Enrolling answers with the page that
/// shows the key once (and its QR code), and the form that confirms it.
pub(crate) async fn change_factor(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    Path((method, action)): Path<(String, String)>,
    jar: CookieJar,
    Form(fields): Form<Fields>,
) -> Response {
    let ps = posted!(svc, jar, text, fields);
    if ps.session.kind != SessionKind::Full {
        return redirect_with(
            &svc,
            jar,
            false,
            &[text.t("msg.full_only").to_owned()],
            "/factors",
        );
    }
    let uid = ps.person.uid.clone();
    let fail = |jar: CookieJar, e: crate::flows::FlowError| {
        let msg = match e {
            crate::flows::FlowError::NotConfirmed => text.t("f.not_confirmed").to_owned(),
            crate::flows::FlowError::Invalid(m) => m,
            other => {
                tracing::error!("factor request failed: {other}");
                text.t("msg.unavailable").to_owned()
            }
        };
        redirect_with(&svc, jar, false, &[msg], "/factors")
    };
    match action.as_str() {
        "remove" => match crate::flows::remove(&svc, &uid, &method).await {
            Ok(()) => redirect_with(
                &svc,
                jar,
                true,
                &[text.t("f.removed").to_owned()],
                "/factors",
            ),
            Err(e) => fail(jar, e),
        },
        "confirm" => {
            let values = fields
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("v_").map(|k| (k.to_owned(), v.clone())))
                .collect();
            match crate::flows::confirm(&svc, &uid, &method, values).await {
                Ok(()) => redirect_with(
                    &svc,
                    jar,
                    true,
                    &[text.t("f.confirmed").to_owned()],
                    "/factors",
                ),
                Err(e) => fail(jar, e),
            }
        }
        "enroll" => match crate::flows::enroll(&svc, &uid, &method).await {
            Ok(enrolled) => {
                let label = text
                    .dynamic(&format!("method.{method}"))
                    .unwrap_or(method.as_str())
                    .to_owned();
                let shown = |k: &str| {
                    enrolled
                        .shown
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.clone())
                };
                let qr = shown("otpauth_uri").and_then(|u| qr_svg(&u));
                let content = html! {
                    section.card {
                        p { (text.t("f.scan")) }
                        @if let Some(svg) = qr {
                            div.qr role="img" aria-label=(text.t("f.qr")) { (PreEscaped(svg)) }
                        }
                        @for (name, value) in &enrolled.shown {
                            @if name != "otpauth_uri" {
                                p { (if name == "secret" { text.t("f.key") } else { name.as_str() }) ": " span.secret data-shown=(name) { (value) } }
                            }
                        }
                    }
                    form.card method="post" action=(format!("/factors/{method}/confirm")) {
                        input type="hidden" name="csrf" value=(ps.csrf);
                        @for f in &enrolled.confirm_fields {
                            @let id = format!("confirm-{}", f.name);
                            label for=(id) { (text.dynamic(&format!("field.{method}.{}", f.name)).unwrap_or(f.label.as_str())) }
                            @let kind = if f.kind == FieldKind::SECRET { "password" } else { "text" };
                            input type=(kind) id=(id) name=(format!("v_{}", f.name)) autocomplete="one-time-code" inputmode="numeric" required;
                        }
                        div { button type="submit" { (text.t("f.confirm")) } }
                    }
                };
                let body = page(frame(text, &label, &ps, "/factors", None), content);
                page_response(StatusCode::OK, body)
            }
            Err(e) => fail(jar, e),
        },
        _ => see_other("/factors"),
    }
}

/// `GET /team`: a manager's direct reports.
pub(crate) async fn team(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    jar: CookieJar,
) -> Response {
    let ps = session_or!(svc, jar);
    let (flash, jar) = take_flash(&svc, jar);
    let reports = match svc.store().direct_reports(&ps.person.uid).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("direct reports failed: {e}");
            return see_other("/?m=unavailable");
        }
    };
    let full = ps.session.kind == SessionKind::Full;
    let content = html! {
        p { (text.t("m.intro")) }
        @if !full { p.notice { (text.t("msg.full_only")) } }
        @if reports.is_empty() {
            p { (text.t("m.none")) }
        } @else {
            table {
                thead { tr { th scope="col" { (text.t("m.name")) } th scope="col" { (text.t("m.account")) } th scope="col" { span.skip-label { "" } } } }
                tbody {
                    @for r in &reports {
                        @let name = format!("{} {}", r.first_name, r.last_name);
                        tr {
                            td { (name) }
                            td { (r.central_account) }
                            td {
                                @if full {
                                    form method="post" action=(format!("/team/{}/passcode", r.uid)) {
                                        input type="hidden" name="csrf" value=(ps.csrf);
                                        button type="submit" { (text.f("m.issue", &[&name])) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = page(
        frame(text, text.t("m.title"), &ps, "/team", flash.as_ref()),
        content,
    );
    (jar, page_response(StatusCode::OK, body)).into_response()
}

/// `POST /team/{uid}/passcode`: the passcode, shown once on the page that answers.
pub(crate) async fn issue_passcode(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    Path(uid): Path<String>,
    jar: CookieJar,
    Form(fields): Form<Fields>,
) -> Response {
    let ps = posted!(svc, jar, text, fields);
    if ps.session.kind != SessionKind::Full {
        return redirect_with(
            &svc,
            jar,
            false,
            &[text.t("msg.full_only").to_owned()],
            "/team",
        );
    }
    let store = svc.store();
    let target = match store.person(&uid).await {
        Ok(Some(p)) if p.manager_uid.as_deref() == Some(ps.person.uid.as_str()) && !p.inactive => p,
        Ok(_) => {
            let _ = store
                .audit(&crate::store::AuditEvent {
                    event: "passcode.issued",
                    outcome: "failure",
                    person_uid: Some(&uid),
                    actor: Some(&ps.person.uid),
                    reason: Some("the issuer is not the person's manager"),
                    ..Default::default()
                })
                .await;
            return redirect_with(
                &svc,
                jar,
                false,
                &[text.t("m.forbidden").to_owned()],
                "/team",
            );
        }
        Err(e) => {
            tracing::error!("person lookup failed: {e}");
            return see_other("/?m=unavailable");
        }
    };
    let issued = match svc
        .self_service
        .issue_passcode(&target, &ps.person.uid)
        .await
    {
        Ok(p) => p,
        Err(e) => return redirect_with(&svc, jar, false, &[portal_error(text, &e)], "/team"),
    };
    let name = format!("{} {}", target.first_name, target.last_name);
    let title = text.f("m.issued", &[&name]);
    let content = html! {
        section.card {
            p.secret id="passcode" { (issued.shown) }
            p { (text.f("m.shown_once", &[&name])) }
            p { (text.f("m.valid", &[&issued.hours, &when(issued.expires_at)])) }
            @if issued.split { p.notice { (text.f("m.split", &[&name])) } }
        }
        p { a href="/team" { (text.t("m.back")) } }
    };
    let body = page(frame(text, &title, &ps, "/team", None), content);
    page_response(StatusCode::OK, body)
}
