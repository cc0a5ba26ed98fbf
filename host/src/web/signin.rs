//! Sign-in: the flows the portal offers, each step rendered from its methods' descriptors
//! (a new authenticator plugin's step appears here without a change), the questions step,
//! and the attempt carried between steps in an HttpOnly cookie.

use super::i18n::Text;
use super::layout::{page, Frame};
use super::{cookie_name, field, page_response, see_other, signed_in, Fields, Lang, Notice};
use crate::flows::{self, FlowError, StepClient, StepResult};
use crate::http::extract::ClientAddr;
use crate::http::login::{device_cookie, granted_cookies};
use crate::service::Service;
use crate::store::SessionKind;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::{html, Markup};
use prp_plugin_api::{FieldKind, MethodDescriptor};
use std::sync::Arc;
use std::time::Instant;

/// The field name the questions method uses for "one answer per question".
const EACH_QUESTION: &str = "*";
/// Form fields that carry a method's values are prefixed, so they can't collide with ours.
const VALUE_PREFIX: &str = "v_";

/// The pre-session CSRF token: the cookie's, or a new one to set.
fn pre_token(svc: &Service, jar: CookieJar) -> (String, CookieJar) {
    let name = cookie_name(svc, "pre");
    match jar.get(name).map(|c| c.value().to_owned()) {
        Some(t) if t.len() == 64 => (t, jar),
        _ => {
            let t = crate::security::random_token();
            let jar = jar.add(svc.web().cookie(name, t.clone(), 3600, true));
            (t, jar)
        }
    }
}

/// Whether a sign-in form repeats the pre-session cookie's token (constant time).
fn pre_ok(svc: &Service, jar: &CookieJar, fields: &Fields) -> bool {
    let sent = field(fields, "csrf");
    jar.get(cookie_name(svc, "pre")).is_some_and(|c| {
        !sent.is_empty()
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                c.value().as_bytes(),
                sent.as_bytes(),
            ))
    })
}

/// A method's label, from the catalogue when it knows the method, else the plugin's.
fn method_label(text: Text, m: &MethodDescriptor) -> String {
    text.dynamic(&format!("method.{}", m.id))
        .map_or_else(|| m.label.to_string(), str::to_owned)
}

fn field_label(text: Text, m: &MethodDescriptor, name: &str, plugin_label: &str) -> String {
    text.dynamic(&format!("field.{}.{name}", m.id))
        .map_or_else(|| plugin_label.to_owned(), str::to_owned)
}

/// `GET /`: the flows, or straight to the passwords when signed in.
pub(crate) async fn home(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    jar: CookieJar,
    q: Query<Notice>,
) -> Response {
    if jar.get(svc.web().session_cookie).is_some() {
        if signed_in(&svc, &jar).await.is_ok() {
            return see_other("/passwords");
        }
        if q.m.is_none() {
            return super::ended(&svc, "expired");
        }
    }
    let notice = super::notice_text(text, &q);
    let set = match flows::flow_set(&svc.portal, &svc.login).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot read the flows: {e}");
            return unavailable(text);
        }
    };
    let content = html! {
        p { (text.t("home.intro")) }
        ul.flows {
            @for f in &set.flows {
                li {
                    a href=(format!("/sign-in?flow={}", urlencode(&f.id))) { (flow_label(text, &set, f)) }
                    " "
                    span.muted { "(" (if f.session == SessionKind::Full { text.t("home.flow_full") } else { text.t("home.flow_reset") }) ")" }
                }
            }
        }
    };
    let body = page(
        Frame {
            text,
            title: text.t("home.title"),
            who: None,
            current: "/",
            flash: None,
            notice,
        },
        content,
    );
    page_response(StatusCode::OK, body)
}

fn flow_label(text: Text, set: &flows::FlowSet, f: &flows::Flow) -> String {
    if f.builtin {
        if let Some(m) = set.catalog.get(&f.id) {
            return method_label(text, &m.descriptor);
        }
    }
    text.dynamic(&format!("flow.{}", f.id))
        .map_or_else(|| f.label.clone(), str::to_owned)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn unavailable(text: Text) -> Response {
    let body = super::layout::bare(
        text,
        text.t("err.title"),
        html! {
            div.notice.error role="alert" { (text.t("msg.unavailable")) }
            p { a href="/" { (text.t("err.back")) } }
        },
    );
    page_response(StatusCode::SERVICE_UNAVAILABLE, body)
}

#[derive(serde::Deserialize)]
pub(crate) struct FlowQuery {
    flow: String,
}

/// Whether a step's only method can be asked on the same form as the login name.
fn inline_method(methods: &[MethodDescriptor]) -> Option<&MethodDescriptor> {
    match methods {
        [m] if !m.fields.iter().any(|f| f.name.as_str() == EACH_QUESTION) => Some(m),
        _ => None,
    }
}

/// The inputs of a method's fields (for the questions method, one per question).
fn method_fields(text: Text, m: &MethodDescriptor, questions: &[(String, String)]) -> Markup {
    html! {
        @for f in m.fields.iter() {
            @if f.name.as_str() == EACH_QUESTION {
                p { (text.t("signin.questions_help")) }
                @for (i, (id, question)) in questions.iter().enumerate() {
                    @let input_id = format!("{}-q{i}", m.id);
                    label for=(input_id) { (question) }
                    input type="password" id=(input_id) name=(format!("{VALUE_PREFIX}{id}")) autocomplete="off" required;
                }
            } @else {
                @let input_id = format!("{}-{}", m.id, f.name);
                @let name = format!("{VALUE_PREFIX}{}", f.name);
                label for=(input_id) { (field_label(text, m, f.name.as_str(), f.label.as_str())) }
                @if f.kind == FieldKind::CHOICE {
                    select id=(input_id) name=(name) required {
                        @for c in f.choices.iter() { option value=(c.as_str()) { (c.as_str()) } }
                    }
                } @else if f.kind == FieldKind::SECRET {
                    @let auto = match (m.id.as_str(), f.name.as_str()) {
                        ("password", _) => "current-password",
                        (_, "code") => "one-time-code",
                        _ => "off",
                    };
                    input type="password" id=(input_id) name=(name) autocomplete=(auto) required;
                } @else {
                    input type="text" id=(input_id) name=(name) autocomplete="off" required;
                }
            }
        }
    }
}

/// `GET /sign-in?flow=…`: the login name, with the first step's fields when it has one method.
pub(crate) async fn form(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    jar: CookieJar,
    Query(q): Query<FlowQuery>,
) -> Response {
    start_response(&svc, text, jar, &q.flow, "", None).await
}

/// The first page of a flow: the login name and, when the first step has one method that
/// fits, its fields. After a failure that asked for a proof of work, again with the name
/// filled in and the check the browser runs before the form can be sent.
fn start_page(
    text: Text,
    csrf: &str,
    set: &flows::FlowSet,
    flow: &flows::Flow,
    login_name: &str,
    pow: Option<&crate::api::PowChallenge>,
) -> Markup {
    let methods = set.step_methods(flow, 0);
    let inline = inline_method(&methods);
    let title = text.f("signin.title", &[&flow_label(text, set, flow)]);
    let content = html! {
        @if flow.steps.len() > 1 { p.muted { (text.f("signin.step", &[&1, &flow.steps.len()])) } }
        form.card method="post" action="/sign-in" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="flow" value=(flow.id);
            label for="login_name" { (text.t("signin.login_name")) }
            @if login_name.is_empty() {
                input type="text" id="login_name" name="login_name" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus;
            } @else {
                input type="text" id="login_name" name="login_name" value=(login_name) autocomplete="username" autocapitalize="none" spellcheck="false" required;
            }
            @if let Some(m) = inline {
                input type="hidden" name="method" value=(m.id.as_str());
                (method_fields(text, m, &[]))
            }
            @if let Some(pow) = pow { (pow_fields(text, pow)) }
            div { button type="submit" { (text.t("signin.continue")) } }
        }
        p { a href="/" { (text.t("signin.start_over")) } }
    };
    page(
        Frame {
            text,
            title: &title,
            who: None,
            current: "",
            flash: None,
            notice: pow.map(|_| text.t("msg.failed")),
        },
        content,
    )
}

/// The proof of work a form carries: the challenge, and the solution `portal.js` finds and
/// fills in before it lets the form be sent (see `throttle`).
fn pow_fields(text: Text, pow: &crate::api::PowChallenge) -> Markup {
    html! {
        div.pow data-bits=(pow.bits) {
            input type="hidden" name="pow_challenge" value=(pow.challenge);
            input type="hidden" name="pow_solution" value="";
            p.pow-status aria-live="polite" data-working=(text.t("signin.pow_working")) data-done=(text.t("signin.pow_done")) data-nojs=(text.t("signin.pow_nojs")) {
                (text.t("signin.pow"))
            }
            noscript { p { (text.t("signin.pow_nojs")) } }
        }
    }
}

/// The solved proof of work a form sent, if it sent one.
fn form_pow(fields: &Fields) -> Option<(String, String)> {
    let challenge = field(fields, "pow_challenge");
    let solution = field(fields, "pow_solution");
    (!challenge.is_empty() && !solution.is_empty())
        .then(|| (challenge.to_owned(), solution.to_owned()))
}

/// A flow's first page; with a proof of work, what a sign-in that asked for one answers: the
/// page again, for the same name, with the check (401).
async fn start_response(
    svc: &Service,
    text: Text,
    jar: CookieJar,
    flow_id: &str,
    login_name: &str,
    pow: Option<&crate::api::PowChallenge>,
) -> Response {
    let set = match flows::flow_set(&svc.portal, &svc.login).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot read the flows: {e}");
            return unavailable(text);
        }
    };
    let Some(flow) = set.get(flow_id) else {
        return see_other("/");
    };
    let (csrf, jar) = pre_token(svc, jar);
    let body = start_page(text, &csrf, &set, flow, login_name, pow);
    let status = if pow.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (jar, page_response(status, body)).into_response()
}

use axum::response::IntoResponse;

/// An attempt between steps: its token, step, flow and login name, in an HttpOnly cookie.
struct Carried {
    token: String,
    index: usize,
    flow: String,
    login_name: String,
    /// The proof of work the first page was sent with: the name needed one, so the questions
    /// challenge gets this one and the first step's forms a fresh one.
    pow: Option<(String, String)>,
}

impl Carried {
    fn encode(&self) -> String {
        let (challenge, solution) = self.pow.clone().unwrap_or_default();
        [
            self.token.clone(),
            self.index.to_string(),
            hex::encode(self.flow.as_bytes()),
            hex::encode(self.login_name.as_bytes()),
            hex::encode(challenge.as_bytes()),
            hex::encode(solution.as_bytes()),
        ]
        .join(".")
    }

    fn decode(v: &str) -> Option<Self> {
        let mut it = v.split('.');
        let token = it.next()?.to_owned();
        let index = it.next()?.parse().ok()?;
        let mut text = || String::from_utf8(hex::decode(it.next()?).ok()?).ok();
        let flow = text()?;
        let login_name = text()?;
        let challenge = text().unwrap_or_default();
        let solution = text().unwrap_or_default();
        Some(Self {
            token,
            index,
            flow,
            login_name,
            pow: (!challenge.is_empty() && !solution.is_empty()).then_some((challenge, solution)),
        })
    }
}

fn carry(svc: &Service, jar: CookieJar, c: &Carried) -> CookieJar {
    jar.add(svc.web().cookie(
        cookie_name(svc, "attempt"),
        c.encode(),
        flows::ATTEMPT_SECONDS,
        true,
    ))
}

fn drop_attempt(svc: &Service, jar: CookieJar) -> CookieJar {
    jar.add(
        svc.web()
            .cookie(cookie_name(svc, "attempt"), String::new(), 0, true),
    )
}

/// A method's values from a form: the prefixed fields, without the prefix.
fn values(fields: &Fields) -> Vec<(String, String)> {
    fields
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(VALUE_PREFIX)
                .map(|k| (k.to_owned(), v.clone()))
        })
        .collect()
}

/// `POST /sign-in`: starts an attempt, and takes its first step when the form had it.
pub(crate) async fn submit(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    ClientAddr(ip): ClientAddr,
    jar: CookieJar,
    Form(fields): Form<Fields>,
) -> Response {
    if !pre_ok(&svc, &jar, &fields) {
        return super::csrf_refused(text);
    }
    let flow = field(&fields, "flow").to_owned();
    let login_name = field(&fields, "login_name").trim().to_owned();
    let next = match flows::start(&svc, &flow, &login_name).await {
        Ok(n) => n,
        Err(FlowError::UnknownFlow(_)) => return see_other("/"),
        // A name over the length limit: the same as any failed sign-in.
        Err(FlowError::Invalid(_)) => return see_other("/?m=failed"),
        Err(e) => {
            tracing::error!("cannot start a sign-in: {e}");
            return see_other("/?m=unavailable");
        }
    };
    let pow = form_pow(&fields);
    let carried = Carried {
        token: next.attempt,
        index: 0,
        flow,
        login_name,
        pow: pow.clone(),
    };
    let method = field(&fields, "method");
    if method.is_empty() {
        return (carry(&svc, jar, &carried), see_other("/sign-in/step")).into_response();
    }
    take_step(&svc, text, ip, jar, carried, method, values(&fields), pow).await
}

/// `GET /sign-in/step`: the current step's methods, each a form of its fields.
pub(crate) async fn step_form(
    State(svc): State<Arc<Service>>,
    ClientAddr(ip): ClientAddr,
    Lang(text): Lang,
    jar: CookieJar,
) -> Response {
    let Some(carried) = jar
        .get(cookie_name(&svc, "attempt"))
        .and_then(|c| Carried::decode(c.value()))
    else {
        return see_other("/?m=attempt");
    };
    let set = match flows::flow_set(&svc.portal, &svc.login).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot read the flows: {e}");
            return unavailable(text);
        }
    };
    let Some(flow) = set.get(&carried.flow) else {
        return (drop_attempt(&svc, jar), see_other("/?m=attempt")).into_response();
    };
    let methods = set.step_methods(flow, carried.index);
    let wants_questions = methods
        .iter()
        .any(|m| m.fields.iter().any(|f| f.name.as_str() == EACH_QUESTION));
    let questions: Vec<(String, String)> = if wants_questions {
        // Throttled like the API's challenge, by the same device cookie and proof of work.
        let input = crate::login::ChallengeInput {
            login_name: carried.login_name.clone(),
            remote_addr: Some(ip.to_string()),
            device: device_of(&svc, &jar),
            pow: carried.pow.clone(),
        };
        match svc.login.challenge_for(input).await {
            Ok(crate::login::ChallengeResult::Questions(qs)) => qs
                .iter()
                .map(|q| (q.id.to_string(), q.question.to_string()))
                .collect(),
            Ok(crate::login::ChallengeResult::Challenged(pow)) => {
                let jar = drop_attempt(&svc, jar);
                return start_response(
                    &svc,
                    text,
                    jar,
                    &carried.flow,
                    &carried.login_name,
                    Some(&pow),
                )
                .await;
            }
            Err(e) => {
                tracing::error!("question challenge failed: {e}");
                return unavailable(text);
            }
        }
    } else {
        Vec::new()
    };
    // The name needed a proof of work to get here: its first step needs one too.
    let pow = if carried.index == 0 && carried.pow.is_some() {
        svc.login.pow_for(&carried.login_name).await
    } else {
        None
    };
    let (csrf, jar) = pre_token(&svc, jar);
    let title = text.f("signin.title", &[&flow_label(text, &set, flow)]);
    let content = html! {
        @if carried.index >= flow.steps.len() {
            p.muted { (text.t("signin.factor")) }
        } @else if flow.steps.len() > 1 {
            p.muted { (text.f("signin.step", &[&(carried.index + 1), &flow.steps.len()])) }
        }
        @if methods.len() > 1 { p { (text.t("signin.choose")) } }
        @for m in &methods {
            form.card method="post" action="/sign-in/step" {
                @if methods.len() > 1 { h2 { (method_label(text, m)) } }
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="method" value=(m.id.as_str());
                (method_fields(text, m, &questions))
                @if let Some(pow) = &pow { (pow_fields(text, pow)) }
                div { button type="submit" { (text.t("signin.continue")) } }
            }
        }
        p { a href="/" { (text.t("signin.start_over")) } }
    };
    let body = page(
        Frame {
            text,
            title: &title,
            who: None,
            current: "",
            flash: None,
            notice: None,
        },
        content,
    );
    (jar, page_response(StatusCode::OK, body)).into_response()
}

/// `POST /sign-in/step`.
pub(crate) async fn step_submit(
    State(svc): State<Arc<Service>>,
    Lang(text): Lang,
    ClientAddr(ip): ClientAddr,
    jar: CookieJar,
    Form(fields): Form<Fields>,
) -> Response {
    if !pre_ok(&svc, &jar, &fields) {
        return super::csrf_refused(text);
    }
    let Some(carried) = jar
        .get(cookie_name(&svc, "attempt"))
        .and_then(|c| Carried::decode(c.value()))
    else {
        return see_other("/?m=attempt");
    };
    let method = field(&fields, "method").to_owned();
    let pow = form_pow(&fields);
    take_step(&svc, text, ip, jar, carried, &method, values(&fields), pow).await
}

/// The device cookie the browser sent, if any.
fn device_of(svc: &Service, jar: &CookieJar) -> Option<String> {
    jar.get(device_cookie(svc)).map(|c| c.value().to_owned())
}

/// Takes a step through the flows pipeline (the one `POST /api/login/step` uses) and answers
/// with a redirect: the next step, the portal, or the start with the one failure message.
#[allow(clippy::too_many_arguments)]
async fn take_step(
    svc: &Service,
    text: Text,
    ip: std::net::IpAddr,
    jar: CookieJar,
    carried: Carried,
    method: &str,
    values: Vec<(String, String)>,
    pow: Option<(String, String)>,
) -> Response {
    let started = Instant::now();
    let client = StepClient {
        remote: Some(ip.to_string()),
        device: device_of(svc, &jar),
        pow,
    };
    let result = flows::step(svc, &carried.token, method, values, client).await;
    let (outcome, answer) = match result {
        StepResult::Next(next) => {
            let carried = Carried {
                token: next.attempt,
                index: next.index,
                ..carried
            };
            (
                "step",
                (carry(svc, jar, &carried), see_other("/sign-in/step")).into_response(),
            )
        }
        StepResult::Granted {
            session, device, ..
        } => {
            let jar = granted_cookies(svc, drop_attempt(svc, jar), &session, device);
            ("success", (jar, see_other("/passwords")).into_response())
        }
        StepResult::Denied => (
            "failure",
            (drop_attempt(svc, jar), see_other("/?m=failed")).into_response(),
        ),
        StepResult::Challenged(pow) => {
            let jar = drop_attempt(svc, jar);
            (
                "failure",
                start_response(
                    svc,
                    text,
                    jar,
                    &carried.flow,
                    &carried.login_name,
                    Some(&pow),
                )
                .await,
            )
        }
        StepResult::Busy => (
            "busy",
            (drop_attempt(svc, jar), see_other("/?m=busy")).into_response(),
        ),
        StepResult::Unavailable => (
            "unavailable",
            (drop_attempt(svc, jar), see_other("/?m=unavailable")).into_response(),
        ),
    };
    svc.metrics
        .login("flow", outcome, started.elapsed().as_secs_f64());
    answer
}
