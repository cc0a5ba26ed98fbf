//! `prp-host keys`: the portal's API configuration keys.

use prp_host::config::Settings;
use prp_host::store::{ApiKeyScope, AuditEvent, Store};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Scope {
    /// Stored in the database for every server (the default).
    #[arg(long, conflicts_with = "local")]
    global: bool,
    /// For this server only (Host:ServerName); overrides the global value.
    #[arg(long)]
    local: bool,
}

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Every key's effective value on this server and where it comes from.
    List,
    /// One key's effective value on this server.
    Get {
        /// The key, e.g. EnablePasscodeLogin.
        name: String,
    },
    /// Set a key, globally (default) or for this server only.
    Set {
        /// The key, e.g. EnablePasscodeLogin.
        name: String,
        /// Its value.
        value: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// Remove a key's value from a scope, so the next one (or the default) applies.
    Unset {
        /// The key.
        name: String,
        #[command(flatten)]
        scope: Scope,
    },
}

pub async fn run(
    command: KeysCommand,
    settings: &Settings,
    store: &Store,
) -> anyhow::Result<ExitCode> {
    let server = settings.host.server_name.clone();
    let scope_of = |s: &Scope| {
        if s.local {
            ApiKeyScope::Local(server.clone())
        } else {
            ApiKeyScope::Global
        }
    };
    match command {
        KeysCommand::List => {
            for v in store.api_keys(&server).await? {
                println!(
                    "{} = {}  ({}; {})",
                    v.name, v.value, v.source, v.description
                );
            }
        }
        KeysCommand::Get { name } => {
            let v = store.api_key(&server, &name).await?;
            println!("{} = {}  ({})", v.name, v.value, v.source);
        }
        KeysCommand::Set { name, value, scope } => {
            let s = scope_of(&scope);
            store.set_api_key(&s, &name, &value).await?;
            audit(store, "apikey.set", &name, &s).await?;
            println!(
                "{name} set ({}); servers apply it at their next request",
                scope_name(&s)
            );
        }
        KeysCommand::Unset { name, scope } => {
            let s = scope_of(&scope);
            let removed = store.unset_api_key(&s, &name).await?;
            if removed {
                audit(store, "apikey.unset", &name, &s).await?;
            }
            println!(
                "{name} {} ({})",
                if removed { "unset" } else { "was not set" },
                scope_name(&s)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The audit record of a key's change, with the operator.
async fn audit(store: &Store, event: &str, name: &str, s: &ApiKeyScope) -> anyhow::Result<()> {
    store
        .audit(&AuditEvent {
            event,
            outcome: "success",
            reason: Some(&format!("{name} ({})", scope_name(s))),
            actor: Some(&super::actor()),
            ..Default::default()
        })
        .await?;
    Ok(())
}

fn scope_name(s: &ApiKeyScope) -> String {
    match s {
        ApiKeyScope::Global => "global".into(),
        ApiKeyScope::Local(server) => format!("local to server {server}"),
    }
}
