//! Login flows (ABI 1.1): operators compose the methods every loaded authenticator offers into
//! flows of steps, each step a set of alternative methods, e.g. `password|passcode` then
//! `totp`. An attempt lives in the database between steps (any server can take the next one),
//! expires after [`ATTEMPT_SECONDS`], and each of its tokens is taken once: a passed step hands
//! out a new token, a failed one ends the attempt.
//!
//! The first step identifies the person with a classic method (password, passcode, questions)
//! through the login pipeline ([`LoginService::identify`]); later steps are `CONTINUES` methods
//! ([`prp_plugin_api::Authenticator::step`]) for the known person, whose failures the host
//! counts towards the person's lock (the passcode scope: codes the person didn't choose) and
//! whose one-time counters it accepts once. A step costs the highest hash cost among its
//! methods, and every failure costs the flow's cost (the highest of its steps), so a failure
//! costs the same whichever step failed; every failure is the same 401.
//!
//! Flows are parameters: `PRP\Flows\<Id>\Steps` (steps separated by `,`, alternatives by `|`),
//! `PRP\Flows\<Id>\Label`, `PRP\Flows\<Id>\Session` (`full` or `reset`, the default). The
//! classic methods are also the built-in single-step flows `password`, `passcode`, `questions`.

pub mod crypto;
pub mod store;

pub use crypto::{FactorCryptoError, FactorKey, FACTOR_KEY};
pub use store::{Attempt, FactorRow};

use crate::login::{Identified, LoginInput, LoginService, MAX_LOGIN_NAME};
use crate::plugins::CallError;
use crate::security::{random_token, take_hash_count, token_digest};
use crate::service::Service;
use crate::store::{AuditEvent, LockScope, NewSession, SessionKind, StoreError};
use prp_plugin_api::abi_stable::std_types::{ROption, RSlice, RVec};
use prp_plugin_api::{
    AuthenticatorBox, FieldDescriptor, FieldValue, LoginMethod, MethodDescriptor, MethodRole,
    StepRequest,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The branch of the configuration store that holds the flows.
pub const FLOWS_BRANCH: &str = r"PRP\Flows";
/// How long an attempt waits for its next step.
pub const ATTEMPT_SECONDS: i64 = 300;
/// The classic methods, decided by `Host:Authenticator` through `login`.
pub const CLASSIC: [&str; 3] = ["password", "passcode", "questions"];
/// At most this many values in a step.
pub const MAX_VALUES: usize = 16;
/// At most this long, a value.
pub const MAX_VALUE: usize = 1024;

/// A method a loaded authenticator offers.
#[derive(Clone)]
pub struct OfferedMethod {
    pub descriptor: MethodDescriptor,
    pub plugin: String,
    pub authenticator: Arc<AuthenticatorBox>,
}

impl OfferedMethod {
    pub fn id(&self) -> &str {
        self.descriptor.id.as_str()
    }
}

/// Every method the loaded authenticators offer, each id once: the classic ones from
/// `Host:Authenticator`, any other from the first authenticator (in load order) that offers it.
#[derive(Default)]
pub struct Catalog {
    pub methods: Vec<OfferedMethod>,
    /// Methods offered twice, and authenticators whose `methods` failed, for `check`.
    pub problems: Vec<String>,
}

impl Catalog {
    /// Asks every loaded authenticator for its methods (a 1.0 plugin answers through the
    /// default: the classic three).
    pub async fn of(portal: &crate::app::Portal) -> Self {
        let mut out = Self::default();
        let configured = portal.authenticator.as_ref();
        for plugin in &portal.report.loaded {
            for auth in &plugin.authenticators {
                let a = Arc::clone(auth);
                let offered = match portal.gate.call(move || a.methods()).await {
                    Ok(m) => m,
                    Err(e) => {
                        out.problems.push(format!(
                            "authenticator \"{}\" (plugin {}) can't list its methods: {e}",
                            auth.id(),
                            plugin.name
                        ));
                        continue;
                    }
                };
                let is_configured = configured.is_some_and(|c| Arc::ptr_eq(c, auth));
                for descriptor in offered {
                    let id = descriptor.id.to_string();
                    if CLASSIC.contains(&id.as_str()) {
                        // The classic methods are decided by Host:Authenticator, which every
                        // 1.0 authenticator claims to offer: others' claims are ignored.
                        if !is_configured {
                            continue;
                        }
                    } else if descriptor.role != MethodRole::CONTINUES {
                        out.problems.push(format!(
                            "method \"{id}\" of plugin {} identifies persons, which this host does only by password, passcode or questions; it is not offered",
                            plugin.name
                        ));
                        continue;
                    }
                    if let Some(first) = out.methods.iter().find(|m| m.id() == id) {
                        out.problems.push(format!(
                            "method \"{id}\" is offered by plugin {} and plugin {}; the first is used",
                            first.plugin, plugin.name
                        ));
                        continue;
                    }
                    out.methods.push(OfferedMethod {
                        descriptor,
                        plugin: plugin.name.clone(),
                        authenticator: Arc::clone(auth),
                    });
                }
            }
        }
        out
    }

    pub fn get(&self, id: &str) -> Option<&OfferedMethod> {
        self.methods.iter().find(|m| m.id() == id)
    }
}

/// A flow: its steps, each a set of alternative methods, and the session it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub id: String,
    pub label: String,
    pub steps: Vec<Vec<String>>,
    pub session: SessionKind,
    pub builtin: bool,
}

/// Parses `password|passcode,totp` into steps of alternatives.
pub fn parse_steps(text: &str) -> Result<Vec<Vec<String>>, String> {
    let steps: Vec<Vec<String>> = text
        .split(',')
        .map(|step| {
            step.split('|')
                .map(|m| m.trim().to_ascii_lowercase())
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    if steps.iter().any(Vec::is_empty) {
        return Err(format!(
            "\"{text}\" has an empty step; write steps as a|b,c"
        ));
    }
    Ok(steps)
}

/// The flows of the configuration store, and what is wrong with their parameters.
pub fn configured_flows(params: &[crate::store::Parameter]) -> (Vec<Flow>, Vec<String>) {
    let mut by_id: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
    for p in params.iter().filter(|p| p.in_force()) {
        let segments: Vec<&str> = p.path.split('\\').collect();
        if let [_, _, id, key] = segments.as_slice() {
            by_id
                .entry((*id).to_owned())
                .or_default()
                .insert(key.to_ascii_lowercase(), p.value.clone());
        }
    }
    let mut flows = Vec::new();
    let mut problems = Vec::new();
    for (id, keys) in by_id {
        let at = |k: &str| format!(r"{FLOWS_BRANCH}\{id}\{k}");
        for k in keys.keys() {
            if !["steps", "label", "session"].contains(&k.as_str()) {
                problems.push(format!(
                    "{}: not a flow setting (Steps, Label, Session)",
                    at(k)
                ));
            }
        }
        let Some(Some(steps)) = keys.get("steps") else {
            problems.push(format!("{}: not set, so flow \"{id}\" is off", at("Steps")));
            continue;
        };
        let steps = match parse_steps(steps) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{}: {e}", at("Steps")));
                continue;
            }
        };
        let session = match keys.get("session").cloned().flatten().as_deref() {
            None | Some("reset") => SessionKind::Reset,
            Some("full") => SessionKind::Full,
            Some(other) => {
                problems.push(format!(
                    "{}: \"{other}\" is neither full nor reset",
                    at("Session")
                ));
                continue;
            }
        };
        if CLASSIC.contains(&id.to_ascii_lowercase().as_str()) {
            problems.push(format!(
                "{}: \"{id}\" is a built-in flow's id; pick another",
                at("Steps")
            ));
            continue;
        }
        flows.push(Flow {
            label: keys
                .get("label")
                .cloned()
                .flatten()
                .unwrap_or_else(|| id.clone()),
            id,
            steps,
            session,
            builtin: false,
        });
    }
    (flows, problems)
}

/// The built-in single-step flows of the classic methods the catalog has.
pub fn builtin_flows(catalog: &Catalog) -> Vec<Flow> {
    CLASSIC
        .iter()
        .filter_map(|id| catalog.get(id))
        .map(|m| Flow {
            id: m.id().to_owned(),
            label: m.descriptor.label.to_string(),
            steps: vec![vec![m.id().to_owned()]],
            session: if m.id() == "password" {
                SessionKind::Full
            } else {
                SessionKind::Reset
            },
            builtin: true,
        })
        .collect()
}

/// What is wrong with a flow against the catalog: a method no loaded plugin offers, a first
/// step that doesn't identify the person, a later one that does.
pub fn flow_problems(flow: &Flow, catalog: &Catalog) -> Vec<String> {
    let mut out = Vec::new();
    for (i, step) in flow.steps.iter().enumerate() {
        for id in step {
            match catalog.get(id) {
                None => out.push(format!(
                    "flow \"{}\": step {} names the method \"{id}\", which no loaded plugin offers",
                    flow.id,
                    i + 1
                )),
                Some(m) if i == 0 && m.descriptor.role != MethodRole::IDENTIFIES => {
                    out.push(format!(
                        "flow \"{}\": the first step's method \"{id}\" doesn't identify a person (use password, passcode or questions)",
                        flow.id
                    ))
                }
                Some(m) if i > 0 && m.descriptor.role != MethodRole::CONTINUES => {
                    out.push(format!(
                        "flow \"{}\": step {}'s method \"{id}\" identifies a person; only the first step may",
                        flow.id,
                        i + 1
                    ))
                }
                Some(_) => {}
            }
        }
    }
    out
}

/// The flows in force: the built-in ones and every configured flow without problems (a flow
/// with a problem is off: fail closed), with everything wrong, for `check`.
pub struct FlowSet {
    pub catalog: Arc<Catalog>,
    pub flows: Vec<Flow>,
    pub problems: Vec<String>,
}

impl FlowSet {
    pub fn get(&self, id: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.id == id)
    }

    /// The descriptors of a step's methods. The step after a flow's last one is the factor
    /// step ([`FlowSet::factor_methods`]), which a person's active factor adds to a flow that
    /// would otherwise grant a full session on its first step alone.
    pub fn step_methods(&self, flow: &Flow, index: usize) -> Vec<MethodDescriptor> {
        if index == flow.steps.len() {
            return self.factor_methods();
        }
        flow.steps
            .get(index)
            .into_iter()
            .flatten()
            .filter_map(|id| self.catalog.get(id))
            .map(|m| m.descriptor.clone())
            .collect()
    }

    /// The methods of the factor step: every offered method a person enrolls in (TOTP).
    /// Each is offered, not only the person's own, so that the step shows nobody which
    /// factors a person has; one the person hasn't enrolled in fails like a wrong code.
    pub fn factor_methods(&self) -> Vec<MethodDescriptor> {
        self.catalog
            .methods
            .iter()
            .filter(|m| m.descriptor.enrollable && m.descriptor.role == MethodRole::CONTINUES)
            .map(|m| m.descriptor.clone())
            .collect()
    }

    /// Whether step `index` of the flow offers `method` (the factor step included).
    pub fn offers(&self, flow: &Flow, index: usize, method: &str) -> bool {
        self.step_methods(flow, index)
            .iter()
            .any(|m| m.id.as_str() == method)
    }

    /// What a failure anywhere in the flow costs: the highest cost of its steps.
    pub fn flow_cost(&self, flow: &Flow) -> usize {
        (0..flow.steps.len())
            .map(|i| self.step_cost(flow, i))
            .max()
            .unwrap_or(1)
    }

    /// What one attempt at a step costs: the highest cost among its methods.
    pub fn step_cost(&self, flow: &Flow, index: usize) -> usize {
        self.step_methods(flow, index)
            .iter()
            .map(|m| m.hashes as usize)
            .max()
            .unwrap_or(1)
    }
}

/// Reads the flows now (they apply at the next request on every server).
pub async fn flow_set(
    portal: &crate::app::Portal,
    login: &LoginService,
) -> Result<FlowSet, StoreError> {
    let catalog = Arc::clone(
        login
            .catalog
            .get_or_init(|| async { Arc::new(Catalog::of(portal).await) })
            .await,
    );
    flow_set_with(&login.store, catalog).await
}

/// [`flow_set`] over a given catalog (the CLI builds its own).
pub async fn flow_set_with(
    store: &crate::store::Store,
    catalog: Arc<Catalog>,
) -> Result<FlowSet, StoreError> {
    let params = store.list_parameters(Some(FLOWS_BRANCH)).await?;
    let (configured, mut problems) = configured_flows(&params);
    problems.extend(catalog.problems.iter().cloned());
    let mut flows = builtin_flows(&catalog);
    for flow in configured {
        let wrong = flow_problems(&flow, &catalog);
        if wrong.is_empty() {
            flows.push(flow);
        } else {
            problems.extend(wrong);
        }
    }
    Ok(FlowSet {
        catalog,
        flows,
        problems,
    })
}

/// Why a flow request can't go on (not a login failure: those are [`StepResult::Denied`]).
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("no flow \"{0}\"")]
    UnknownFlow(String),
    #[error("no enrollable method \"{0}\"")]
    UnknownMethod(String),
    #[error("{0}")]
    Invalid(String),
    #[error("nothing to confirm: enroll first")]
    NothingPending,
    #[error("not enrolled")]
    NotEnrolled,
    #[error("the code is not right")]
    NotConfirmed,
    #[error(transparent)]
    Crypto(#[from] FactorCryptoError),
    #[error("the authenticator failed: {0}")]
    Plugin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The next step of an attempt: its token (shown once) and what it asks for.
#[derive(Debug, Clone)]
pub struct NextStep {
    pub attempt: String,
    pub index: usize,
    pub methods: Vec<MethodDescriptor>,
}

#[derive(Debug)]
pub enum StepResult {
    Next(NextStep),
    Granted {
        session: NewSession,
        kind: SessionKind,
        /// A new device cookie for the client (see `throttle`).
        device: Option<String>,
    },
    Denied,
    /// Denied, like `Denied`; the first step of the next attempt for this name must carry
    /// this proof of work solved.
    Challenged(crate::api::PowChallenge),
    Busy,
    /// The database is away, or the step's audit record could not be committed: 503.
    Unavailable,
}

/// The client taking a step, as the throttle judges it: its address, its device cookie, and
/// the proof of work it solved (both count at the first step, which names the person).
#[derive(Debug, Clone, Default)]
pub struct StepClient {
    pub remote: Option<String>,
    pub device: Option<String>,
    pub pow: Option<(String, String)>,
}

/// Starts an attempt. Nothing here depends on the login name beyond its length: it is not
/// resolved until the first step.
pub async fn start(svc: &Service, flow_id: &str, login_name: &str) -> Result<NextStep, FlowError> {
    let set = flow_set(&svc.portal, &svc.login).await?;
    let flow = set
        .get(flow_id)
        .ok_or_else(|| FlowError::UnknownFlow(flow_id.to_owned()))?;
    if login_name.chars().count() > MAX_LOGIN_NAME {
        return Err(FlowError::Invalid(format!(
            "login_name is longer than {MAX_LOGIN_NAME} characters"
        )));
    }
    let attempt = Attempt {
        flow: flow.id.clone(),
        step: 0,
        person_uid: None,
        login_name: login_name.to_owned(),
        full_grant: false,
    };
    let token = random_token();
    svc.store()
        .insert_attempt(&token_digest(&token), &attempt, ATTEMPT_SECONDS)
        .await?;
    Ok(NextStep {
        attempt: token,
        index: 0,
        methods: set.step_methods(flow, 0),
    })
}

/// What a step's audit record says.
struct StepAudit<'a> {
    flow: &'a str,
    method: &'a str,
    login_name: &'a str,
    remote: Option<&'a str>,
    /// Set when a record could not be committed: the step then answers 503.
    failed: &'a AtomicBool,
}

impl StepAudit<'_> {
    async fn write(&self, login: &LoginService, person: Option<&str>, outcome: &str, why: &str) {
        let reason = format!("flow {}: {why}", self.flow);
        let written = login
            .audit_event(&AuditEvent {
                event: "login.step",
                outcome,
                method: Some(self.method),
                login_name: Some(self.login_name),
                person_uid: person,
                reason: Some(&reason),
                actor: None,
                remote_addr: self.remote,
            })
            .await;
        if !written {
            self.failed.store(true, Ordering::Relaxed);
        }
    }
}

/// Takes a step of an attempt. Every failure ends the attempt and looks the same. A step whose
/// audit record can't be committed answers 503, whatever it decided (a session it opened is
/// never handed out).
pub async fn step(
    svc: &Service,
    token: &str,
    method: &str,
    values: Vec<(String, String)>,
    client: StepClient,
) -> StepResult {
    let started = std::time::Instant::now();
    let failed = AtomicBool::new(false);
    // What a failure of this attempt costs, once decide_step knows its flow: one hash until
    // then (an unknown token pads one).
    let cost = AtomicUsize::new(1);
    let remote = client.remote.clone();
    let result = decide_step(svc, token, method, values, client, &failed, &cost).await;
    if matches!(result, StepResult::Denied | StepResult::Challenged(_)) {
        // Held to the same time floor as a classic login's failure of the same cost, so that
        // what a failed step did (or didn't do) for a real name doesn't show in its timing.
        svc.login
            .hold_failure(cost.load(Ordering::Relaxed), started)
            .await;
    }
    if failed.load(Ordering::Relaxed) && !matches!(result, StepResult::Busy) {
        // The record it could not commit is kept, and written when the database is back.
        tracing::error!("a login step answered 503: its audit record could not be written");
        return StepResult::Unavailable;
    }
    if matches!(result, StepResult::Unavailable) {
        svc.login.keep_audit_event(&AuditEvent {
            event: "login.step",
            outcome: "unavailable",
            method: Some(method),
            login_name: None,
            person_uid: None,
            reason: Some("answered 503: the database is unavailable"),
            actor: None,
            remote_addr: remote.as_deref(),
        });
    }
    result
}

async fn decide_step(
    svc: &Service,
    token: &str,
    method: &str,
    values: Vec<(String, String)>,
    client: StepClient,
    failed: &AtomicBool,
    cost_of_failure: &AtomicUsize,
) -> StepResult {
    let remote = client.remote.as_deref();
    let login = &svc.login;
    let Some(_pending) = login.admit_step() else {
        return StepResult::Busy;
    };
    let mut audit = StepAudit {
        flow: "?",
        method,
        login_name: "",
        remote,
        failed,
    };
    let attempt = match svc.store().take_attempt(&token_digest(token)).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            // Unknown, expired or already taken: one hash, like the commonest step.
            login.pad_hashes(1).await;
            audit
                .write(login, None, "failure", "unknown, expired or used attempt")
                .await;
            return StepResult::Denied;
        }
        Err(e) => {
            tracing::error!("cannot take a login attempt: {e}");
            login.pad_hashes(1).await;
            return StepResult::Unavailable;
        }
    };
    audit.login_name = &attempt.login_name;
    let set = match flow_set(&svc.portal, login).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot read the flows: {e}");
            login.pad_hashes(1).await;
            return StepResult::Unavailable;
        }
    };
    let Some(flow) = set.get(&attempt.flow) else {
        login.pad_hashes(1).await;
        audit
            .write(
                login,
                attempt.person_uid.as_deref(),
                "failure",
                "the flow is gone",
            )
            .await;
        return StepResult::Denied;
    };
    audit.flow = &flow.id;
    // A step costs its own hashes when it passes; a failure, the flow's (the first step, which
    // identifies the person, costs the flow's either way).
    let cost = set.step_cost(flow, attempt.step);
    let fail_cost = set.flow_cost(flow);
    cost_of_failure.store(fail_cost, Ordering::Relaxed);
    let allowed = set.offers(flow, attempt.step, method);
    let too_much = values.len() > MAX_VALUES
        || values
            .iter()
            .any(|(k, v)| k.len() > MAX_VALUE || v.len() > MAX_VALUE);
    let offered = set.catalog.get(method).filter(|_| allowed && !too_much);
    let Some(offered) = offered else {
        login.pad_hashes(fail_cost).await;
        audit
            .write(
                login,
                attempt.person_uid.as_deref(),
                "failure",
                "a method this step doesn't offer, or input over the limits",
            )
            .await;
        return StepResult::Denied;
    };
    // The step itself: identify the person, or continue for the known one.
    let (person_uid, full_grant, consumed) = if attempt.step == 0 {
        let Some(input) = classic_input(method, &attempt.login_name, values, &client) else {
            login.pad_hashes(fail_cost).await;
            return StepResult::Denied;
        };
        match login.identify(&input, cost_of_failure).await {
            Identified::Denied => return StepResult::Denied,
            Identified::Challenged(pow) => return StepResult::Challenged(pow),
            Identified::Unavailable => return StepResult::Unavailable,
            Identified::Person {
                person_uid,
                full,
                consumed,
                reason,
            } => {
                audit
                    .write(
                        login,
                        Some(&person_uid),
                        "success",
                        &format!("step 1: {reason}"),
                    )
                    .await;
                (person_uid, full, consumed)
            }
        }
    } else {
        let Some(person_uid) = attempt.person_uid.clone() else {
            login.pad_hashes(fail_cost).await;
            return StepResult::Denied;
        };
        match continue_step(svc, offered, &person_uid, values, cost).await {
            Ok(reason) => {
                audit
                    .write(
                        login,
                        Some(&person_uid),
                        "success",
                        &format!("step {}: {reason}", attempt.step + 1),
                    )
                    .await;
                (person_uid, attempt.full_grant, Vec::new())
            }
            Err(why) => {
                // continue_step spent the step's cost: the rest of the flow's on top.
                login.pad_hashes(fail_cost.saturating_sub(cost)).await;
                audit.write(login, Some(&person_uid), "failure", &why).await;
                return StepResult::Denied;
            }
        }
    };
    let next = attempt.step + 1;
    // A full session for a person with an active factor needs a factor passed in the same
    // attempt: a flow that would grant one on its first step alone (the built-in `password`)
    // goes on to the factor step. Passcodes and questions grant reset sessions and don't.
    let factor_step = next == flow.steps.len()
        && attempt.step == 0
        && flow.session == SessionKind::Full
        && full_grant
        && match svc.store().has_active_factor(&person_uid).await {
            Ok(has) => has,
            Err(e) => {
                tracing::error!("cannot read whether the person has a factor: {e}");
                return StepResult::Unavailable;
            }
        };
    if factor_step && set.factor_methods().is_empty() {
        // Fail closed: the factor can't be asked, so no full session.
        audit
            .write(
                login,
                Some(&person_uid),
                "failure",
                "a second factor is enrolled, but no loaded plugin offers it",
            )
            .await;
        return StepResult::Denied;
    }
    if next < flow.steps.len() || factor_step {
        // More steps: what the first step verified is consumed now (fail closed: a passcode
        // is used up even if a later step fails), and a new token carries the attempt on.
        for c in &consumed {
            match svc.store().consume_now(c).await {
                Ok(true) => {}
                Err(e) => {
                    tracing::error!("cannot consume what the first step verified: {e}");
                    return StepResult::Unavailable;
                }
                Ok(false) => {
                    audit
                        .write(
                            login,
                            Some(&person_uid),
                            "failure",
                            "passcode: already used",
                        )
                        .await;
                    return StepResult::Denied;
                }
            }
        }
        let token = random_token();
        let carried = Attempt {
            flow: flow.id.clone(),
            step: next,
            person_uid: Some(person_uid.clone()),
            login_name: attempt.login_name.clone(),
            full_grant,
        };
        if let Err(e) = svc
            .store()
            .insert_attempt(&token_digest(&token), &carried, ATTEMPT_SECONDS)
            .await
        {
            tracing::error!("cannot store a login attempt: {e}");
            return StepResult::Unavailable;
        }
        return StepResult::Next(NextStep {
            attempt: token,
            index: next,
            methods: set.step_methods(flow, next),
        });
    }
    // The last step: the flow's session, full only when the flow grants it and either the
    // password step granted a full session or a later step passed.
    let kind = if flow.session == SessionKind::Full && (full_grant || attempt.step > 0) {
        SessionKind::Full
    } else {
        SessionKind::Reset
    };
    let session_method = if !flow.builtin {
        format!("flow:{}", flow.id)
    } else if attempt.step >= flow.steps.len() {
        // A built-in flow's factor step: both methods (`password+totp`).
        format!("{}+{method}", flow.id)
    } else {
        method.to_owned()
    };
    match login
        .open_session(&person_uid, &session_method, kind, &consumed)
        .await
    {
        Ok(Some(session)) => {
            audit
                .write(
                    login,
                    Some(&person_uid),
                    "success",
                    "flow completed: session opened",
                )
                .await;
            let device = login.device_for(&person_uid, &attempt.login_name).await;
            StepResult::Granted {
                session,
                kind,
                device,
            }
        }
        Ok(None) => {
            audit
                .write(
                    login,
                    Some(&person_uid),
                    "failure",
                    "passcode: already used",
                )
                .await;
            StepResult::Denied
        }
        Err(e) => {
            tracing::error!("cannot create a session: {e}");
            StepResult::Unavailable
        }
    }
}

/// The classic login input a first step's values make: `password`, `passcode`, or for
/// questions every value as an answer named by its question's id.
fn classic_input(
    method: &str,
    login_name: &str,
    values: Vec<(String, String)>,
    client: &StepClient,
) -> Option<LoginInput> {
    let method = LoginMethod::parse(method)?;
    let take = |name: &str| {
        values
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (secret, answers) = match method {
        LoginMethod::PASSWORD => (take("password"), Vec::new()),
        LoginMethod::PASSCODE => (take("passcode"), Vec::new()),
        _ => (String::new(), values),
    };
    Some(LoginInput {
        method,
        login_name: login_name.to_owned(),
        secret,
        answers,
        remote_addr: client.remote.clone(),
        device: client.device.clone(),
        pow: client.pow.clone(),
    })
}

/// The factor data the host keeps for a person's method, decrypted; `None` when they have none
/// (or it can't be read: logged, and the step fails closed).
async fn factor_data(svc: &Service, person_uid: &str, method: &str) -> Option<String> {
    let row = match svc.store().factor(person_uid, method).await {
        Ok(r) => r?,
        Err(e) => {
            tracing::error!("cannot read factor data: {e}");
            return None;
        }
    };
    let sealed = row.data?;
    let Some(key) = FactorKey::from_settings(&svc.portal.settings) else {
        tracing::error!("{}", FactorCryptoError::NoKey);
        return None;
    };
    match key.open(person_uid, method, &sealed) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(method, "{e}");
            None
        }
    }
}

/// A later step: the plugin decides for the known person, the host counts the attempt
/// towards the person's lock, pads to the step's cost and accepts a one-time counter once.
/// `Ok(reason)` when passed, `Err(reason)` (for the audit log) when not.
async fn continue_step(
    svc: &Service,
    offered: &OfferedMethod,
    person_uid: &str,
    values: Vec<(String, String)>,
    cost: usize,
) -> Result<String, String> {
    let login = &svc.login;
    let store = svc.store();
    let method = offered.id().to_owned();
    let policy = match store.lockout_policy().await {
        Ok((p, _)) => p,
        Err(e) => {
            login.pad_hashes(cost).await;
            return Err(format!("cannot read the lockout policy: {e}"));
        }
    };
    match store
        .reserve_attempt(person_uid, LockScope::Factor, &policy)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            login.pad_hashes(cost).await;
            return Err(format!("{method}: locked"));
        }
        Err(e) => {
            login.pad_hashes(cost).await;
            return Err(format!("cannot count the attempt: {e}"));
        }
    }
    let data = if offered.descriptor.enrollable {
        factor_data(svc, person_uid, &method).await
    } else {
        None
    };
    let request = StepRequest {
        method: method.as_str().into(),
        person_uid: person_uid.into(),
        values: values
            .iter()
            .map(|(k, v)| FieldValue::new(k, v))
            .collect::<RVec<_>>(),
        factor_data: data.map(Into::into).into(),
        now: store.now(),
    };
    let auth = Arc::clone(&offered.authenticator);
    let hasher = Arc::clone(&svc.portal.hasher);
    let scope = login.step_scope().await;
    let decided = svc
        .portal
        .gate
        .call(move || {
            take_hash_count();
            let outcome = scope.run("step", || auth.step(&request));
            for _ in take_hash_count() as usize..cost {
                hasher.dummy_verify();
            }
            outcome
        })
        .await;
    let settle_failure = || async {
        if let Err(e) = store
            .settle_failure(person_uid, LockScope::Passcode, &policy)
            .await
        {
            tracing::error!("cannot count a failure: {e}");
        }
    };
    let outcome = match decided {
        Ok(o) => o,
        Err(e) => {
            // Not a wrong code: the plugin could not say.
            let _ = store.refund_attempt(person_uid, LockScope::Passcode).await;
            let why = match e {
                CallError::Plugin(p) => format!("{method}: the authenticator failed: {p}"),
                other => format!("{method}: {other}"),
            };
            tracing::error!("flow step denied: {why}");
            return Err(why);
        }
    };
    if !outcome.passed {
        settle_failure().await;
        return Err(outcome.reason.to_string());
    }
    if let ROption::RSome(counter) = outcome.use_once {
        match store.accept_counter(person_uid, &method, counter).await {
            Ok(true) => {}
            Ok(false) => {
                settle_failure().await;
                return Err(format!("{method}: code already used"));
            }
            Err(e) => {
                let _ = store.refund_attempt(person_uid, LockScope::Passcode).await;
                return Err(format!("cannot record the code's use: {e}"));
            }
        }
    }
    if let Err(e) = store.settle_success(person_uid, LockScope::Passcode).await {
        tracing::error!("cannot settle an attempt: {e}");
    }
    Ok(outcome.reason.to_string())
}

/// A person's factor, as `GET /api/factors` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorState {
    pub method: String,
    pub label: String,
    pub enrolled: bool,
    pub pending: bool,
    pub enrolled_at: Option<i64>,
}

/// Every enrollable method, with the person's state in it.
pub async fn factors(svc: &Service, person_uid: &str) -> Result<Vec<FactorState>, FlowError> {
    let set = flow_set(&svc.portal, &svc.login).await?;
    let rows = svc.store().factors(person_uid).await?;
    Ok(set
        .catalog
        .methods
        .iter()
        .filter(|m| m.descriptor.enrollable)
        .map(|m| {
            let row = rows.iter().find(|r| r.method == m.id());
            FactorState {
                method: m.id().to_owned(),
                label: m.descriptor.label.to_string(),
                enrolled: row.is_some_and(|r| r.data.is_some()),
                pending: row.is_some_and(|r| r.pending.is_some()),
                enrolled_at: row.and_then(|r| r.enrolled_at),
            }
        })
        .collect())
}

async fn enrollable(svc: &Service, method: &str) -> Result<OfferedMethod, FlowError> {
    let set = flow_set(&svc.portal, &svc.login).await?;
    set.catalog
        .get(method)
        .filter(|m| m.descriptor.enrollable)
        .cloned()
        .ok_or_else(|| FlowError::UnknownMethod(method.to_owned()))
}

/// What an enrollment shows the person once, and what confirming it asks for.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub shown: Vec<(String, String)>,
    pub confirm_fields: Vec<FieldDescriptor>,
}

/// Starts (or restarts) an enrollment: the plugin makes the factor data, the host keeps it
/// encrypted until it is confirmed.
pub async fn enroll(svc: &Service, person_uid: &str, method: &str) -> Result<Enrolled, FlowError> {
    let offered = enrollable(svc, method).await?;
    let key = FactorKey::from_settings(&svc.portal.settings).ok_or(FactorCryptoError::NoKey)?;
    let auth = Arc::clone(&offered.authenticator);
    let (m, p) = (method.to_owned(), person_uid.to_owned());
    let enrollment = svc
        .portal
        .gate
        .call(move || auth.enroll(m.as_str().into(), p.as_str().into()))
        .await
        .map_err(|e| FlowError::Plugin(e.to_string()))?;
    let sealed = key.seal(person_uid, method, enrollment.factor_data.as_str())?;
    svc.store()
        .set_pending_factor(person_uid, method, &sealed)
        .await?;
    svc.login
        .audit_event(&person_event(
            "factor.enroll",
            "success",
            method,
            person_uid,
            "enrollment started",
        ))
        .await;
    Ok(Enrolled {
        shown: enrollment
            .shown
            .iter()
            .map(|v| (v.name.to_string(), v.value.to_string()))
            .collect(),
        confirm_fields: enrollment.confirm_fields.into_iter().collect(),
    })
}

fn person_event<'a>(
    event: &'a str,
    outcome: &'a str,
    method: &'a str,
    person_uid: &'a str,
    reason: &'a str,
) -> AuditEvent<'a> {
    AuditEvent {
        event,
        outcome,
        method: Some(method),
        login_name: None,
        person_uid: Some(person_uid),
        reason: Some(reason),
        actor: Some(person_uid),
        remote_addr: None,
    }
}

/// Confirms the pending enrollment with what the person typed; it becomes the active factor.
pub async fn confirm(
    svc: &Service,
    person_uid: &str,
    method: &str,
    values: Vec<(String, String)>,
) -> Result<(), FlowError> {
    let offered = enrollable(svc, method).await?;
    let key = FactorKey::from_settings(&svc.portal.settings).ok_or(FactorCryptoError::NoKey)?;
    let row = svc
        .store()
        .factor(person_uid, method)
        .await?
        .ok_or(FlowError::NothingPending)?;
    let sealed = row.pending.ok_or(FlowError::NothingPending)?;
    let pending = key.open(person_uid, method, &sealed)?;
    let auth = Arc::clone(&offered.authenticator);
    let (m, p, now) = (method.to_owned(), person_uid.to_owned(), svc.store().now());
    let values: RVec<FieldValue> = values.iter().map(|(k, v)| FieldValue::new(k, v)).collect();
    let outcome = svc
        .portal
        .gate
        .call(move || {
            auth.confirm(
                m.as_str().into(),
                p.as_str().into(),
                pending.as_str().into(),
                RSlice::from_slice(values.as_slice()),
                now,
            )
        })
        .await
        .map_err(|e| FlowError::Plugin(e.to_string()))?;
    if !outcome.passed {
        svc.login
            .audit_event(&person_event(
                "factor.confirm",
                "failure",
                method,
                person_uid,
                outcome.reason.as_str(),
            ))
            .await;
        return Err(FlowError::NotConfirmed);
    }
    let used = outcome.use_once.into_option();
    if !svc
        .store()
        .confirm_factor(person_uid, method, &sealed, used)
        .await?
    {
        return Err(FlowError::NothingPending);
    }
    svc.login
        .audit_event(&person_event(
            "factor.confirm",
            "success",
            method,
            person_uid,
            "factor enrolled",
        ))
        .await;
    notify_factor(svc, person_uid, method, true).await;
    Ok(())
}

/// Removes the person's factor (the handler allows it to full sessions only) and tells them.
pub async fn remove(svc: &Service, person_uid: &str, method: &str) -> Result<(), FlowError> {
    remove_by(svc, person_uid, method, person_uid, "factor removed").await
}

/// Removes the person's factor for the help desk (`prp-host flows remove-factor`), for a
/// person who lost it: their next full session asks for none until they enroll again.
pub async fn remove_for(
    svc: &Service,
    person_uid: &str,
    method: &str,
    actor: &str,
) -> Result<(), FlowError> {
    remove_by(
        svc,
        person_uid,
        method,
        actor,
        "factor removed by the help desk",
    )
    .await
}

async fn remove_by(
    svc: &Service,
    person_uid: &str,
    method: &str,
    actor: &str,
    reason: &str,
) -> Result<(), FlowError> {
    if !svc.store().delete_factor(person_uid, method).await? {
        return Err(FlowError::NotEnrolled);
    }
    svc.login
        .audit_event(&AuditEvent {
            actor: Some(actor),
            ..person_event("factor.remove", "success", method, person_uid, reason)
        })
        .await;
    notify_factor(svc, person_uid, method, false).await;
    Ok(())
}

/// Tells the person a factor was added or removed (rendered in their language at delivery).
async fn notify_factor(svc: &Service, person_uid: &str, method: &str, added: bool) {
    let (kind, subject) = if added {
        (
            "factor.enrolled",
            format!("A login factor ({method}) was added to your account"),
        )
    } else {
        (
            "factor.removed",
            format!("A login factor ({method}) was removed from your account"),
        )
    };
    let data = serde_json::json!({ "method": method });
    if let Err(e) = svc
        .store()
        .notify(
            person_uid,
            kind,
            &subject,
            "If this wasn't you, tell the help desk at once.",
            None,
            Some(&data),
        )
        .await
    {
        tracing::error!("cannot queue a notification: {e}");
    }
}

/// For `explain-login`: which flows the person of a name can complete (each step has a method
/// they can use: the first by the authenticator's own explanation, a factor only if enrolled).
pub async fn explain_lines(svc: &Service, person_uids: &[String]) -> Vec<String> {
    let set = match flow_set(&svc.portal, &svc.login).await {
        Ok(s) => s,
        Err(e) => return vec![format!("flows: cannot read them: {e}")],
    };
    let mut out = Vec::new();
    for person in person_uids {
        let enrolled: Vec<String> = match svc.store().factors(person).await {
            Ok(rows) => rows
                .into_iter()
                .filter(|r| r.data.is_some())
                .map(|r| r.method)
                .collect(),
            Err(e) => {
                out.push(format!("flows for {person}: cannot read factors: {e}"));
                continue;
            }
        };
        for flow in &set.flows {
            let missing: Vec<String> = flow
                .steps
                .iter()
                .skip(1)
                .filter(|step| {
                    !step.iter().any(|m| {
                        set.catalog.get(m).is_some_and(|o| {
                            !o.descriptor.enrollable || enrolled.iter().any(|e| e == m)
                        })
                    })
                })
                .map(|step| step.join("|"))
                .collect();
            let steps = flow
                .steps
                .iter()
                .map(|s| s.join("|"))
                .collect::<Vec<_>>()
                .join(" then ");
            out.push(if missing.is_empty() {
                format!("flow {} ({steps}): {person} can complete it if the first step's method is allowed (see above)", flow.id)
            } else {
                format!(
                    "flow {} ({steps}): {person} can't complete it: not enrolled in {}",
                    flow.id,
                    missing.join(", ")
                )
            });
        }
    }
    out
}

/// Enrolls a person in a method and activates it at once, without a confirming code: for the
/// demo (and operators), never reachable over HTTP. Returns what the person must be shown.
pub async fn enroll_active(
    svc: &Service,
    person_uid: &str,
    method: &str,
) -> Result<Enrolled, FlowError> {
    let offered = enrollable(svc, method).await?;
    let key = FactorKey::from_settings(&svc.portal.settings).ok_or(FactorCryptoError::NoKey)?;
    let auth = Arc::clone(&offered.authenticator);
    let (m, p) = (method.to_owned(), person_uid.to_owned());
    let enrollment = svc
        .portal
        .gate
        .call(move || auth.enroll(m.as_str().into(), p.as_str().into()))
        .await
        .map_err(|e| FlowError::Plugin(e.to_string()))?;
    let sealed = key.seal(person_uid, method, enrollment.factor_data.as_str())?;
    let store = svc.store();
    store
        .set_pending_factor(person_uid, method, &sealed)
        .await?;
    if !store
        .confirm_factor(person_uid, method, &sealed, None)
        .await?
    {
        return Err(FlowError::NothingPending);
    }
    Ok(Enrolled {
        shown: enrollment
            .shown
            .iter()
            .map(|v| (v.name.to_string(), v.value.to_string()))
            .collect(),
        confirm_fields: Vec::new(),
    })
}

/// The flows in force for a service (for the CLI).
pub async fn flow_set_of(svc: &Service) -> Result<FlowSet, StoreError> {
    flow_set(&svc.portal, &svc.login).await
}

/// For `explain-login NAME`: which flows the persons the name resolves to can complete.
pub async fn explain_for_name(svc: &Service, name: &str) -> Vec<String> {
    let candidates = match svc.login.resolve(name).await {
        Ok(c) => c,
        Err(e) => return vec![format!("flows: the name can't be resolved: {e}")],
    };
    if candidates.is_empty() {
        return vec!["flows: the name matches no person, so no flow can be completed".into()];
    }
    // Only accounts that may log in: a refused one completes no flow.
    let mut persons: Vec<String> = candidates
        .iter()
        .filter(|a| a.refused_by.is_none())
        .map(|a| a.person_uid.to_string())
        .collect();
    persons.sort();
    persons.dedup();
    if persons.is_empty() {
        return vec![
            "flows: every account the name matches is refused, so no flow can be completed".into(),
        ];
    }
    explain_lines(svc, &persons).await
}

/// `prp-host check`'s lines about flows: a flow naming a method no loaded plugin offers (or in
/// the wrong place) fails, as does an enrollable method in use without a FactorKey.
pub async fn check_lines(portal: &crate::app::Portal) -> Vec<crate::app::CheckLine> {
    use crate::app::{CheckLine, Status};
    let line = |status, detail: String| CheckLine {
        status,
        name: "login flows".into(),
        detail,
    };
    let Some(store) = portal.store.as_ref() else {
        return Vec::new();
    };
    let catalog = Arc::new(Catalog::of(portal).await);
    let params = match store.list_parameters(Some(FLOWS_BRANCH)).await {
        Ok(p) => p,
        Err(e) => {
            return vec![line(
                Status::Failed,
                format!("cannot read {FLOWS_BRANCH}: {e}"),
            )]
        }
    };
    let (configured, problems) = configured_flows(&params);
    let mut out: Vec<CheckLine> = problems
        .into_iter()
        .map(|p| line(Status::Failed, p))
        .collect();
    out.extend(
        catalog
            .problems
            .iter()
            .map(|p| line(Status::Warn, p.clone())),
    );
    let has_key = FactorKey::from_settings(&portal.settings).is_some();
    for flow in &configured {
        let wrong = flow_problems(flow, &catalog);
        if !wrong.is_empty() {
            out.extend(wrong.into_iter().map(|p| line(Status::Failed, p)));
            continue;
        }
        let enrollable: Vec<&str> = flow
            .steps
            .iter()
            .flatten()
            .filter(|m| catalog.get(m).is_some_and(|o| o.descriptor.enrollable))
            .map(String::as_str)
            .collect();
        if !enrollable.is_empty() && !has_key {
            out.push(line(
                Status::Failed,
                format!(
                    "flow \"{}\" uses {}, whose data is kept encrypted, but no ConnectionStrings:{FACTOR_KEY} is configured",
                    flow.id,
                    enrollable.join(", ")
                ),
            ));
            continue;
        }
        out.push(line(
            Status::Ok,
            format!(
                "flow \"{}\": {}",
                flow.id,
                flow.steps
                    .iter()
                    .map(|s| s.join("|"))
                    .collect::<Vec<_>>()
                    .join(" then ")
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_into_alternatives() {
        assert_eq!(
            parse_steps("password|Passcode , totp").unwrap(),
            vec![
                vec!["password".to_owned(), "passcode".to_owned()],
                vec!["totp".to_owned()]
            ]
        );
        assert!(parse_steps("password,,totp").is_err());
        assert!(parse_steps("").is_err());
    }

    fn param(path: &str, value: &str) -> crate::store::Parameter {
        crate::store::Parameter {
            path: path.into(),
            value: Some(value.into()),
            enabled: true,
            disabled_by: None,
        }
    }

    #[test]
    fn configured_flows_are_read_with_their_problems() {
        let (flows, problems) = configured_flows(&[
            param(r"PRP\Flows\Mfa\Steps", "password,totp"),
            param(r"PRP\Flows\Mfa\Session", "full"),
            param(r"PRP\Flows\Mfa\Label", "Password and code"),
            param(r"PRP\Flows\Bad\Steps", "password"),
            param(r"PRP\Flows\Bad\Session", "sometimes"),
            param(r"PRP\Flows\password\Steps", "password"),
            param(r"PRP\Flows\NoSteps\Label", "x"),
        ]);
        assert_eq!(
            flows,
            vec![Flow {
                id: "Mfa".into(),
                label: "Password and code".into(),
                steps: vec![vec!["password".into()], vec!["totp".into()]],
                session: SessionKind::Full,
                builtin: false,
            }]
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
