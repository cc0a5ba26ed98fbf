//! A host assembled from its settings: plugins loaded and self-checked, and the checks that
//! `prp-host check`, start-up and `/health/ready` share.

use crate::config::{self, Environment, LoadedConfig, Settings};
use crate::db;
use crate::plugins::{
    self, CallGate, InitContext, LoadReport, NoParameters, ParameterSource, RejectCause, Rejection,
};
use prp_plugin_api::{CheckFinding, Severity};
use std::path::Path;
use std::sync::Arc;

/// The outcome of one component's self-check.
pub struct SelfCheck {
    pub plugin: String,
    pub component: String,
    pub result: Result<Vec<CheckFinding>, String>,
}

impl SelfCheck {
    /// Fail closed: a call that failed, or any error finding, fails the check.
    pub fn failed(&self) -> bool {
        match &self.result {
            Ok(findings) => findings.iter().any(|f| f.severity.is_error()),
            Err(_) => true,
        }
    }
}

/// Plugins loaded for a settings file, with their self-checks.
pub struct Plugins {
    pub report: LoadReport,
    pub self_checks: Vec<SelfCheck>,
    pub gate: CallGate,
}

impl Plugins {
    /// Why the host must not serve, if it must not: a required plugin is missing, or the
    /// self-check of a required plugin's component failed.
    pub fn refusals(&self, settings: &Settings) -> Vec<String> {
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
            if check.failed() && settings.plugins.required.contains(&check.plugin) {
                out.push(format!(
                    "required plugin \"{}\": {} failed its self-check: {}",
                    check.plugin,
                    check.component,
                    describe(&check.result)
                ));
            }
        }
        out
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

/// Loads the configured plugins and runs every authenticator's self-check through the gate.
pub async fn load_plugins(settings: &Settings, parameters: Arc<dyn ParameterSource>) -> Plugins {
    let gate = CallGate::new(
        settings.plugins.max_concurrent_calls,
        settings.plugins.call_timeout,
    );
    let ctx = InitContext {
        connection_strings: settings.connection_strings.clone(),
        parameters,
    };
    let mut report = match plugins::candidates(&settings.plugins) {
        Ok(candidates) => plugins::load_all(&settings.plugins, candidates, &gate, &ctx).await,
        Err(e) => LoadReport {
            loaded: Vec::new(),
            rejected: vec![Rejection {
                path: settings.plugins.directory.clone().unwrap_or_default(),
                cause: RejectCause::Unreadable(e),
            }],
            missing_required: settings.plugins.required.clone(),
        },
    };
    let mut self_checks = Vec::new();
    for plugin in &report.loaded {
        for auth in &plugin.authenticators {
            let component = format!("authenticator \"{}\"", auth.id());
            let callee = Arc::clone(auth);
            let result = gate
                .call(move || callee.self_check())
                .await
                .map(|v| v.into_iter().collect())
                .map_err(|e| e.to_string());
            self_checks.push(SelfCheck {
                plugin: plugin.name.clone(),
                component,
                result,
            });
        }
    }
    report.loaded.sort_by(|a, b| a.name.cmp(&b.name));
    Plugins {
        report,
        self_checks,
        gate,
    }
}

/// The state of one line of `prp-host check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Failed,
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

/// Every check of `prp-host check`, in order. Later checks are skipped when the configuration
/// can't be read, since they depend on it.
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

    match db::connect(&settings).await {
        Ok(pool) => {
            let shown = settings
                .connection_string(config::DATABASE)
                .map(|c| c.redacted())
                .unwrap_or_default();
            lines.push(CheckLine::new(Status::Ok, "database reachable", shown));
            pool.close().await;
        }
        Err(e) => lines.push(CheckLine::new(
            Status::Failed,
            "database reachable",
            e.to_string(),
        )),
    }

    let plugins = load_plugins(&settings, Arc::new(NoParameters)).await;
    lines.extend(plugin_lines(&settings, &plugins));
    lines
}

/// The plugin part of the checks: each library, the required set, each self-check.
pub fn plugin_lines(settings: &Settings, plugins: &Plugins) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let report = &plugins.report;
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
    if report.loaded.is_empty() && report.rejected.is_empty() {
        lines.push(CheckLine::new(
            Status::Warn,
            "plugins loaded",
            "no plugin libraries configured (Plugins:Directory, Plugins:Files)",
        ));
    }
    let refusals = plugins.refusals(settings);
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
    for check in &plugins.self_checks {
        let name = format!("{} ({}) self-check", check.component, check.plugin);
        match &check.result {
            Err(e) => lines.push(CheckLine::new(Status::Failed, name, e.clone())),
            Ok(findings) => {
                if !check.failed() {
                    lines.push(CheckLine::new(Status::Ok, name.clone(), "passed"));
                }
                for f in findings {
                    let status = if f.severity.is_error() {
                        Status::Failed
                    } else if f.severity == Severity::WARNING {
                        Status::Warn
                    } else {
                        Status::Ok
                    };
                    lines.push(CheckLine::new(
                        status,
                        format!("{name}: {}", f.subject),
                        f.message.to_string(),
                    ));
                }
            }
        }
    }
    for r in refusals {
        lines.push(CheckLine::new(Status::Failed, "host will serve", r));
    }
    lines
}
