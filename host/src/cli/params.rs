//! `prp-host params`: the configuration store.

use prp_host::config::APPLICATION_TOKEN;
use prp_host::store::{Parameter, ParameterView, Store};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum ParamsCommand {
    /// List parameters (under PREFIX), with their in-force state.
    List {
        /// Only paths under this one, e.g. `PRP\Lockout`.
        prefix: Option<String>,
    },
    /// Show one parameter.
    Get {
        /// A path such as `QER\Person\PasswordResetAuthenticator\SearchTable` (or with ` | `).
        path: String,
    },
    /// Set a parameter's value.
    Set {
        /// The parameter's path.
        path: String,
        /// Its new value.
        value: String,
    },
    /// Clear a parameter's value.
    Unset {
        /// The parameter's path.
        path: String,
    },
    /// Enable a parameter or a branch.
    Enable {
        /// The parameter's or branch's path.
        path: String,
    },
    /// Disable a parameter or a branch: it and everything under it stop being in force.
    Disable {
        /// The parameter's or branch's path.
        path: String,
    },
}

pub async fn run(command: ParamsCommand, store: &Store) -> anyhow::Result<ExitCode> {
    match command {
        ParamsCommand::List { prefix } => {
            for view in store.list_parameter_views(prefix.as_deref()).await? {
                println!("{}", show_view(&view, false));
            }
        }
        ParamsCommand::Get { path } => match store.parameter_view(&path).await? {
            Some(view) => println!("{}", show_view(&view, true)),
            None => {
                // Parameters are paths; a bare name is more likely an API configuration key
                // (EnablePasscodeLogin), which the README mentions beside them.
                let hint = if path.contains('\\') {
                    ""
                } else {
                    "; a name without a path may be an API configuration key: see `prp-host keys list`"
                };
                println!("{path}: not set, and not a parameter the host documents{hint}");
                return Ok(ExitCode::FAILURE);
            }
        },
        ParamsCommand::Set { path, value } => {
            if is_token_path(&path) {
                anyhow::bail!("the ApplicationToken hash is set with `prp-host token new` or `token adopt`, never by hand");
            }
            store.set_parameter(&path, Some(&value)).await?;
            super::audit_admin(store, "parameter.set", &path).await?;
            println!("{path} set");
        }
        ParamsCommand::Unset { path } => {
            store.set_parameter(&path, None).await?;
            super::audit_admin(store, "parameter.unset", &path).await?;
            println!("{path} unset");
        }
        ParamsCommand::Enable { path } => {
            store.set_parameter_enabled(&path, true).await?;
            super::audit_admin(store, "parameter.enabled", &path).await?;
            println!("{path} enabled");
            // `enable` switches whether a parameter is in force, not a flag's value: say so
            // when there is no value (the new-user trial took `enable PasscodeSplit` for "on").
            let unset = store
                .parameter_view(&path)
                .await?
                .is_none_or(|v| v.stored.is_none_or(|p| p.value.is_none()));
            if unset {
                println!("  (it has no value: enable and disable say whether it is in force, not what it is; to turn a flag on: prp-host params set '{path}' true)");
            }
        }
        ParamsCommand::Disable { path } => {
            store.set_parameter_enabled(&path, false).await?;
            super::audit_admin(store, "parameter.disabled", &path).await?;
            println!("{path} disabled (and everything under it)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn is_token_path(path: &str) -> bool {
    path.replace(" | ", "\\")
        .eq_ignore_ascii_case(APPLICATION_TOKEN)
}

/// A parameter as stored, or its documented default (marked as such); with the reason when
/// its stored value is not used, and (`detail`) what it means and allows.
fn show_view(v: &ParameterView, detail: bool) -> String {
    let mut line = match (&v.stored, v.is_default()) {
        (Some(p), false) => show(p),
        _ => format!(
            "{} = {}  [default]",
            v.path,
            v.value().unwrap_or("(no value)")
        ),
    };
    if let Some(problem) = &v.problem {
        line.push_str(&format!("\n  INVALID, the default applies: {problem}"));
    }
    if detail {
        if let Some(k) = &v.known {
            line.push_str(&format!("\n  {} (allowed: {})", k.description, k.allowed));
        }
    }
    line
}

fn show(p: &Parameter) -> String {
    let state = match &p.disabled_by {
        None => "in force".to_owned(),
        Some(by) if by.eq_ignore_ascii_case(&p.path) => "disabled".to_owned(),
        Some(by) => format!("not in force: {by} is disabled"),
    };
    let value = if is_token_path(&p.path) {
        p.value.as_ref().map(|_| "(hash stored)".to_owned())
    } else {
        p.value.clone()
    };
    format!(
        "{} = {}  [{state}]",
        p.path,
        value.unwrap_or_else(|| "(no value)".into())
    )
}
