//! A portal assembled from its settings: database, hasher, plugins loaded and self-checked,
//! resolvers and the authenticator chosen; and the checks `prp-host check`, start-up and
//! `/health/ready` share.

use crate::clock::{Clock, SystemClock};
use crate::config::{self, Environment, LoadedConfig, Settings};
use crate::db;
use crate::plugins::{
    self, CallGate, HostContext, LoadReport, RejectCause, Rejection, ResolverInUse,
};
use crate::security::Hasher;
use crate::store::Store;
use prp_plugin_api::{AuthenticatorBox, CheckFinding, Severity};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The outcome of one component's self-check.
pub(crate) struct SelfCheck {
    pub(crate) plugin: String,
    pub(crate) component: String,
    pub(crate) result: Result<Vec<CheckFinding>, String>,
    /// An optional resolver's (`Plugins:Optional`): its failure is reported, but never stops
    /// the portal, since the portal works without its accounts.
    pub(crate) optional: bool,
    /// It failed only because there is no portal database (`check` without one): that failure
    /// is the database's, reported once, on its own line.
    pub(crate) for_want_of_database: bool,
}

impl SelfCheck {
    /// Fail closed: a call that failed, or any error finding, fails the check.
    pub(crate) fn failed(&self) -> bool {
        match &self.result {
            Ok(findings) => findings.iter().any(|f| f.severity.is_error()),
            Err(_) => true,
        }
    }
}

/// A running portal's parts. Only the library wires them (into a [`crate::Service`]); the
/// binary reads the plugin report ([`Portal::report`]).
pub struct Portal {
    pub(crate) settings: Settings,
    /// `None` when the database could not be reached (then nothing that needs it works).
    pub(crate) store: Option<Store>,
    pub(crate) hasher: Arc<Hasher>,
    pub(crate) gate: CallGate,
    pub(crate) report: LoadReport,
    pub(crate) self_checks: Vec<SelfCheck>,
    /// The authenticator that handles logins (`Host:Authenticator`), when loaded.
    pub(crate) authenticator: Option<Arc<AuthenticatorBox>>,
    /// The resolvers in use, in order.
    pub(crate) resolvers: Vec<ResolverInUse>,
    /// What is wrong with the identity database (`Person`), checked at start.
    pub(crate) identity_problems: Vec<String>,
}

/// Opens the portal's database from the settings.
pub async fn open_store(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Store, db::DbError> {
    let cs = settings
        .connection_string(config::DATABASE)
        .ok_or(db::DbError::NotConfigured)?;
    let url = db::database_url(cs, &settings.base_dir)?;
    db::create_sqlite_parent(&url);
    Store::connect(&url, clock)
        .await
        .map_err(|e| db::DbError::Unreachable {
            shown: cs.redacted(),
            message: db::scrub(&e.to_string(), cs),
        })
}

/// Builds the hasher on a blocking thread (it computes one hash to have a dummy).
pub async fn new_hasher(settings: &Settings) -> Result<Arc<Hasher>, crate::security::HashError> {
    let (workers, m, t) = (
        settings.host.hash_workers,
        settings.host.argon2_memory_kib,
        settings.host.argon2_iterations,
    );
    Ok(Arc::new(
        tokio::task::spawn_blocking(move || Hasher::new(workers, m, t))
            .await
            .map_err(|e| crate::security::HashError::Argon2(e.to_string()))??,
    ))
}

/// Loads the plugins with the given store and hasher, picks the resolvers and the
/// authenticator, and runs every authenticator's self-check.
pub async fn assemble(settings: Settings, store: Option<Store>, hasher: Arc<Hasher>) -> Portal {
    let gate = CallGate::new(
        settings.plugins.max_concurrent_calls,
        settings.plugins.call_timeout,
    );
    let ctx = Arc::new(HostContext {
        connection_strings: settings.connection_strings.clone(),
        store: store.clone(),
        hasher: hasher.clone(),
        server_name: settings.host.server_name.clone(),
        runtime: tokio::runtime::Handle::current(),
        resolvers: OnceLock::new(),
        plugin_settings: settings.plugins.own.clone(),
        config_dir: settings.base_dir.clone(),
    });
    let mut report = match plugins::candidates(&settings.plugins) {
        Ok(candidates) => plugins::load_all(&settings.plugins, candidates, &gate, &ctx).await,
        Err(e) => LoadReport {
            loaded: Vec::new(),
            rejected: vec![Rejection {
                path: settings.plugins.directory.clone().unwrap_or_default(),
                cause: RejectCause::Unreadable(e),
            }],
            missing_required: settings.plugins.required.clone(),
            unused_resolvers: Vec::new(),
        },
    };
    report.loaded.sort_by(|a, b| a.name.cmp(&b.name));

    let (mut in_use, unused) = plugins::select_resolvers(
        &report.loaded,
        &settings.host.authenticator,
        &settings.plugins.resolvers,
    );
    // The resolvers of the authenticator's own plugin (the central account, SearchTable) are
    // the portal's identity lookup: never optional, whatever Plugins:Optional says (`check`
    // warns), so a database failure there stays a 503, never an "unknown name".
    let own_plugin = own_plugin(&report.loaded, &settings.host.authenticator);
    for r in &mut in_use {
        r.optional = Some(r.plugin.as_str()) != own_plugin.as_deref()
            && settings.plugins.is_optional(&r.id, &r.plugin);
    }
    report.unused_resolvers = unused;
    let resolvers = in_use.clone();
    let _ = ctx.resolvers.set(in_use);

    let authenticator = report
        .loaded
        .iter()
        .flat_map(|p| p.authenticators.iter())
        .find(|a| a.id().as_str() == settings.host.authenticator)
        .cloned();

    let no_database = store.is_none();
    let mut self_checks = Vec::new();
    for plugin in &report.loaded {
        for auth in &plugin.authenticators {
            let callee = Arc::clone(auth);
            let result = self_check(&gate, move || callee.self_check()).await;
            self_checks.push(SelfCheck {
                plugin: plugin.name.clone(),
                component: format!("authenticator \"{}\"", auth.id()),
                for_want_of_database: no_database && only_for_want_of_database(&result),
                result,
                optional: false,
            });
        }
    }
    for r in &resolvers {
        let callee = Arc::clone(&r.resolver);
        let result = self_check(&gate, move || callee.self_check()).await;
        self_checks.push(SelfCheck {
            plugin: r.plugin.clone(),
            component: format!(
                "resolver \"{}\"{}",
                r.id,
                if r.optional { " (optional)" } else { "" }
            ),
            for_want_of_database: no_database && only_for_want_of_database(&result),
            result,
            optional: r.optional,
        });
    }
    let identity_problems = match &store {
        None => Vec::new(),
        Some(store) => match store.check_person_table().await {
            Ok(problems) => problems.iter().map(ToString::to_string).collect(),
            Err(e) => vec![format!("identity schema: {e}")],
        },
    };
    Portal {
        identity_problems,
        settings,
        store,
        hasher,
        gate,
        report,
        self_checks,
        authenticator,
        resolvers,
    }
}

impl Portal {
    /// What became of each plugin library (`prp-host plugins`).
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// Why the portal must not serve, if it must not: a required plugin is missing, a required
    /// plugin's component failed its self-check, the configured authenticator or a configured
    /// resolver is not there, or the database is unreachable.
    pub(crate) fn refusals(&self) -> Vec<String> {
        let mut out = self.refusals_besides_the_database();
        if self.store.is_none() {
            out.push(NO_DATABASE.to_owned());
        }
        out
    }

    /// [`Portal::refusals`] but the missing database, and what failed only for want of it.
    fn refusals_besides_the_database(&self) -> Vec<String> {
        let settings = &self.settings;
        let mut out: Vec<String> = self
            .report
            .missing_required
            .iter()
            .map(|name| {
                let rejected: Vec<String> = self
                    .report
                    .rejected
                    .iter()
                    .map(|r| format!("{} ({})", r.path.display(), r.cause.kind()))
                    .collect();
                if rejected.is_empty() {
                    format!("required plugin \"{name}\" is not loaded: no library provides it")
                } else {
                    format!(
                        "required plugin \"{name}\" is not loaded; rejected libraries: {}",
                        rejected.join(", ")
                    )
                }
            })
            .collect();
        for check in &self.self_checks {
            if check.failed()
                && !check.optional
                && !check.for_want_of_database
                && settings.plugins.required.contains(&check.plugin)
            {
                out.push(format!(
                    "required plugin \"{}\": {} failed its self-check: {}",
                    check.plugin,
                    check.component,
                    describe(&check.result)
                ));
            }
        }
        if self.authenticator.is_none() && !self.report.loaded.is_empty() {
            out.push(format!(
                "no loaded plugin provides the authenticator \"{}\" (Host:Authenticator)",
                settings.host.authenticator
            ));
        }
        for id in &settings.plugins.resolvers {
            if !self.resolvers.iter().any(|r| &r.id == id) {
                out.push(format!(
                    "no loaded plugin provides the resolver \"{id}\" (Plugins:Resolvers)"
                ));
            }
        }
        out.extend(self.identity_problems.iter().cloned());
        out
    }
}

/// Why the portal can't serve without its database; also what the host services answer a
/// plugin that needs it then (kind `unavailable`).
pub(crate) const NO_DATABASE: &str = "the portal database is not reachable";

/// Whether a self-check failed only for want of the portal database: the host services'
/// [`NO_DATABASE`] error stopped it, or is what each of its error findings says.
fn only_for_want_of_database(result: &Result<Vec<CheckFinding>, String>) -> bool {
    match result {
        Err(e) => e.contains(NO_DATABASE),
        Ok(findings) => {
            let mut errors = findings.iter().filter(|f| f.severity.is_error()).peekable();
            errors.peek().is_some() && errors.all(|f| f.message.contains(NO_DATABASE))
        }
    }
}

fn describe(result: &Result<Vec<CheckFinding>, String>) -> String {
    match result {
        Err(e) => e.clone(),
        Ok(findings) => findings
            .iter()
            .filter(|f| f.severity.is_error())
            .map(|f| format!("{}: {}", f.subject, f.message))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// The state of one line of `prp-host check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Failed,
    /// Not checked, because of a failure reported on an earlier line (the database).
    Skipped,
}

#[derive(Debug, Clone)]
pub struct CheckLine {
    pub status: Status,
    pub name: String,
    pub detail: String,
}

impl CheckLine {
    fn new(status: Status, name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status,
            name: name.into(),
            detail: detail.into(),
        }
    }
}

/// Every check of `prp-host check`, in order. It changes nothing: pending migrations are
/// reported, not applied. Later checks are skipped when the configuration can't be read.
pub async fn run_checks(config_path: &Path, env: &Environment) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let LoadedConfig { settings, sources } = match config::load(config_path, env) {
        Ok(loaded) => loaded,
        Err(e) => {
            lines.push(CheckLine::new(
                Status::Failed,
                "config parsed",
                e.to_string(),
            ));
            return lines;
        }
    };
    let shown: Vec<String> = sources.iter().map(|p| p.display().to_string()).collect();
    lines.push(CheckLine::new(
        Status::Ok,
        "config parsed",
        shown.join(" + "),
    ));
    if let Some(line) = placeholder_token_line(&settings) {
        lines.push(line);
    }

    // Read-only: check creates no database and writes nothing to one.
    let store = match db::open_read_only(&settings, Arc::new(SystemClock)).await {
        Ok(store) => {
            let shown = settings
                .connection_string(config::DATABASE)
                .map(|c| c.redacted())
                .unwrap_or_default();
            lines.push(CheckLine::new(Status::Ok, "database reachable", shown));
            Some(store)
        }
        Err(e) => {
            lines.push(CheckLine::new(
                Status::Failed,
                "database reachable",
                e.to_string(),
            ));
            None
        }
    };
    if let Some(store) = &store {
        lines.extend(store_lines(store).await);
        lines.extend(disabled_branch_lines(store).await);
    }
    lines.extend(crate::notify::check_lines(&settings, store.as_ref()).await);
    let hasher = match new_hasher(&settings).await {
        Ok(h) => h,
        Err(e) => {
            lines.push(CheckLine::new(
                Status::Failed,
                "password hashing",
                e.to_string(),
            ));
            return lines;
        }
    };
    let portal = assemble(settings, store, hasher).await;
    lines.extend(plugin_lines(&portal));
    lines.extend(crate::flows::check_lines(&portal).await);
    lines
}

/// The ApplicationToken placeholders of the shipped sample configurations.
const SAMPLE_TOKENS: &[&str] = &[
    "demo-token-replace-with-prp-host-token-new",
    "replace with the token prp-host token new prints",
];

/// A warning when the configured ApplicationToken is a sample's placeholder: everyone who has
/// read the sample knows it.
pub(crate) fn placeholder_token_line(settings: &Settings) -> Option<CheckLine> {
    let token = settings.connection_string(config::APPLICATION_TOKEN)?;
    SAMPLE_TOKENS.contains(&token.expose().trim()).then(|| {
        CheckLine::new(
            Status::Warn,
            "ApplicationToken",
            "the configured token is the sample configuration's placeholder, which anyone can read: run `prp-host token new` and paste the token it prints into ConnectionStrings (fine for the demo, never for a real portal)",
        )
    })
}

/// Disabled branches of the configuration store: a disabled parameter disables everything
/// under it, so say so, with what it takes out of force.
async fn disabled_branch_lines(store: &Store) -> Vec<CheckLine> {
    let Ok(params) = store.list_parameters(None).await else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for branch in params.iter().filter(|p| !p.enabled) {
        let under: Vec<&str> = params
            .iter()
            .filter(|p| {
                p.path.len() > branch.path.len()
                    && p.path[..branch.path.len()].eq_ignore_ascii_case(&branch.path)
                    && p.path[branch.path.len()..].starts_with('\\')
                    && p.value.is_some()
            })
            .map(|p| p.path.as_str())
            .collect();
        if under.is_empty() {
            continue;
        }
        let names: Vec<&str> = under
            .iter()
            .map(|p| p.rsplit('\\').next().unwrap_or(p))
            .collect();
        lines.push(CheckLine::new(
            Status::Warn,
            "disabled parameters",
            format!(
                "{} is disabled, which disables everything under it: {} set parameter(s) are not in force ({}); `prp-host params enable {}` puts them back",
                branch.path,
                under.len(),
                names.join(", "),
                branch.path
            ),
        ));
    }
    lines
}

/// Checks of the database contents: migrations, the identity schema, the host's parameters.
async fn store_lines(store: &Store) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    match store.pending_migrations().await {
        Ok(p) if p.is_empty() => {
            lines.push(CheckLine::new(Status::Ok, "portal schema", "up to date"))
        }
        Ok(p) => {
            lines.push(CheckLine::new(
                Status::Failed,
                "portal schema",
                format!(
                    "migrations not applied: {} (run prp-host migrate)",
                    p.join(", ")
                ),
            ));
            return lines;
        }
        Err(e) => lines.push(CheckLine::new(
            Status::Failed,
            "portal schema",
            e.to_string(),
        )),
    }
    // The host's own login-name column; the plugins check theirs in their self-checks (the
    // reference plugin: its search table's columns, through `unindexed_login_columns`).
    match store.missing_login_indexes().await {
        Ok(missing) => {
            for m in missing {
                lines.push(CheckLine::new(
                    Status::Warn,
                    "login index",
                    format!(
                        "{} has no index for login lookups, so each login reads the whole table; add one: {}",
                        m.column, m.create_index
                    ),
                ));
            }
        }
        Err(e) => lines.push(CheckLine::new(Status::Warn, "login index", e.to_string())),
    }
    // The host's parameters (lockout, password policies): a stored value the portal can't use
    // is FAILED, with the path and the allowed range.
    match store.parameter_problems().await {
        Ok(problems) if problems.is_empty() => lines.push(CheckLine::new(
            Status::Ok,
            "host parameters",
            "every PRP\\… value in force is allowed",
        )),
        Ok(problems) => {
            for p in problems {
                lines.push(CheckLine::new(Status::Failed, "host parameter", p));
            }
        }
        Err(e) => lines.push(CheckLine::new(
            Status::Failed,
            "host parameters",
            e.to_string(),
        )),
    }
    lines
}

/// The plugin part of the checks: each library, the required set, each self-check.
pub(crate) fn plugin_lines(portal: &Portal) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    // The identity schema was checked when the portal was assembled; its problems are
    // refusals, listed at the end.
    if portal.store.is_some() {
        for p in &portal.identity_problems {
            lines.push(CheckLine::new(Status::Failed, "identity schema", p.clone()));
        }
        if portal.identity_problems.is_empty() {
            lines.push(CheckLine::new(
                Status::Ok,
                "identity schema",
                "Person has the columns the portal reads",
            ));
        }
    }
    let report = &portal.report;
    let settings = &portal.settings;
    for p in &report.loaded {
        lines.push(CheckLine::new(
            Status::Ok,
            format!("plugin {} loaded", p.name),
            format!(
                "{} (ABI {}) from {}",
                p.version,
                p.abi_version,
                p.path.display()
            ),
        ));
    }
    for r in &report.rejected {
        lines.push(CheckLine::new(
            Status::Failed,
            format!("plugin library {}", r.path.display()),
            r.cause.summary(),
        ));
    }
    for r in &report.unused_resolvers {
        lines.push(CheckLine::new(
            Status::Warn,
            format!("resolver \"{}\" ({}) not in use", r.id, r.plugin),
            r.why.clone(),
        ));
    }
    if report.loaded.is_empty() && report.rejected.is_empty() {
        lines.push(CheckLine::new(
            Status::Warn,
            "plugins loaded",
            "no plugin libraries configured (Plugins:Directory, Plugins:Files)",
        ));
    }
    if settings.plugins.required.is_empty() {
        lines.push(CheckLine::new(
            Status::Warn,
            "required plugins",
            "none configured (Plugins:Required)",
        ));
    } else if report.required_ok() {
        lines.push(CheckLine::new(
            Status::Ok,
            "required plugins present",
            settings.plugins.required.join(", "),
        ));
    }
    for r in portal.resolvers.iter().filter(|r| r.optional) {
        lines.push(CheckLine::new(
            Status::Ok,
            format!("resolver \"{}\" ({}) optional", r.id, r.plugin),
            "when it fails, only its own accounts are left out (Plugins:Optional)",
        ));
    }
    let own = own_plugin(&report.loaded, &settings.host.authenticator);
    for name in &settings.plugins.optional {
        let names = |r: &ResolverInUse| {
            r.id.eq_ignore_ascii_case(name) || r.plugin.eq_ignore_ascii_case(name)
        };
        if portal
            .resolvers
            .iter()
            .any(|r| names(r) && Some(r.plugin.as_str()) == own.as_deref())
        {
            lines.push(CheckLine::new(
                Status::Warn,
                "Plugins:Optional",
                format!("\"{name}\" names a resolver of the authenticator's own plugin; those are never optional, so it is ignored"),
            ));
        } else if !portal.resolvers.iter().any(names) {
            lines.push(CheckLine::new(
                Status::Warn,
                "Plugins:Optional",
                format!("\"{name}\" is neither the id nor the plugin of a resolver in use"),
            ));
        }
    }
    let mut own: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (plugin, key, shown) in settings.plugins.own.shown() {
        own.entry(plugin)
            .or_default()
            .push(format!("{key}={shown}"));
    }
    for (plugin, values) in own {
        let known = report
            .loaded
            .iter()
            .any(|p| p.name.eq_ignore_ascii_case(&plugin));
        lines.push(CheckLine::new(
            if known { Status::Ok } else { Status::Warn },
            format!("plugin settings {plugin}"),
            if known {
                values.join(", ")
            } else {
                format!("no loaded plugin has this name; {}", values.join(", "))
            },
        ));
    }
    // Without a database, what failed only for want of it is skipped: the database line
    // above is that failure.
    let skipped = |message: &str| portal.store.is_none() && message.contains(NO_DATABASE);
    let skip_detail =
        "needs the portal database, which is not reachable (see \"database reachable\")";
    for check in &portal.self_checks {
        let name = format!("{} ({}) self-check", check.component, check.plugin);
        match &check.result {
            Err(e) if skipped(e) => lines.push(CheckLine::new(Status::Skipped, name, skip_detail)),
            Err(e) => lines.push(CheckLine::new(Status::Failed, name, e.clone())),
            Ok(findings) => {
                let info = |f: &&CheckFinding| f.severity == Severity::INFO;
                // A check that passed is one line, with what its notes say.
                if !check.failed() {
                    let notes: Vec<String> = findings
                        .iter()
                        .filter(info)
                        .map(|f| format!("{}: {}", f.subject, f.message))
                        .collect();
                    let detail = match notes.is_empty() {
                        true => "passed".to_owned(),
                        false => format!("passed; {}", notes.join("; ")),
                    };
                    lines.push(CheckLine::new(Status::Ok, name.clone(), detail));
                }
                for f in findings {
                    let status = if f.severity.is_error() && skipped(&f.message) {
                        Status::Skipped
                    } else if f.severity.is_error() {
                        Status::Failed
                    } else if f.severity == Severity::WARNING {
                        Status::Warn
                    } else if check.failed() {
                        Status::Ok
                    } else {
                        continue;
                    };
                    let detail = match status {
                        Status::Skipped => skip_detail.to_owned(),
                        _ => f.message.to_string(),
                    };
                    lines.push(CheckLine::new(
                        status,
                        format!("{name}: {}", f.subject),
                        detail,
                    ));
                }
            }
        }
    }
    // The missing database has its own line ("database reachable").
    for r in portal.refusals_besides_the_database() {
        lines.push(CheckLine::new(Status::Failed, "host will serve", r));
    }
    lines
}

/// The login pipeline over an assembled portal; fails when the database or the configured
/// authenticator is missing.
pub(crate) fn login_service(portal: &Portal) -> Result<crate::login::LoginService, String> {
    let store = portal.store.clone().ok_or(NO_DATABASE)?;
    let authenticator = portal.authenticator.clone().ok_or_else(|| {
        format!(
            "no loaded plugin provides the authenticator \"{}\"; see `prp-host plugins`",
            portal.settings.host.authenticator
        )
    })?;
    let h = &portal.settings.host;
    Ok(crate::login::LoginService::new(
        store,
        portal.gate.clone(),
        portal.hasher.clone(),
        authenticator,
        portal.resolvers.clone(),
        h.max_pending_logins,
        i64::from(h.session_minutes) * 60,
        i64::from(h.reset_session_minutes) * 60,
    ))
}

/// Self-service over an assembled portal; fails when the database or the authenticator is
/// missing.
pub(crate) fn self_service(portal: &Portal) -> Result<crate::portal::SelfService, String> {
    Ok(crate::portal::SelfService {
        store: portal.store.clone().ok_or(NO_DATABASE)?,
        hasher: portal.hasher.clone(),
        gate: portal.gate.clone(),
        authenticator: portal
            .authenticator
            .clone()
            .ok_or("no loaded plugin provides the configured authenticator")?,
        resolvers: portal.resolvers.clone(),
        server_name: portal.settings.host.server_name.clone(),
    })
}

/// The name of the loaded plugin that provides the authenticator `id`, if one does.
fn own_plugin(loaded: &[plugins::LoadedPlugin], id: &str) -> Option<String> {
    loaded
        .iter()
        .find(|p| p.authenticators.iter().any(|a| a.id().as_str() == id))
        .map(|p| p.name.clone())
}

/// A plugin component's self-check through the gate: its findings, or why it couldn't run.
pub(crate) async fn self_check<F>(gate: &CallGate, check: F) -> Result<Vec<CheckFinding>, String>
where
    F: FnOnce() -> prp_plugin_api::PluginResult<
            prp_plugin_api::abi_stable::std_types::RVec<CheckFinding>,
        > + Send
        + 'static,
{
    gate.call(check)
        .await
        .map(|v| v.into_iter().collect())
        .map_err(|e| e.to_string())
}
