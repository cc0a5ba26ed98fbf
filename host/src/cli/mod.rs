//! The verbs of `prp-host`, one module each, and what they share: the argument grammar,
//! opening the configuration and the store, logging, and the audit actor.

mod audit;
mod check;
mod demo;
mod explain;
mod flows;
mod import;
mod keys;
mod outbox;
mod params;
mod passcode;
mod plugins;
mod serve;
mod token;
mod unlock;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use prp_host::clock::SystemClock;
use prp_host::config::{self, Environment, LogFormat, LoggingSettings, Settings};
use prp_host::store::{AuditEvent, Store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "prp-host",
    version,
    about = "The Password Reset Portal's API server"
)]
pub struct Cli {
    /// appsettings.json, or the XML .config form.
    #[arg(
        long,
        global = true,
        env = "PRP_CONFIG",
        default_value = "appsettings.json"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the HTTP server (applies pending migrations first).
    Serve,
    /// Check the configuration, the database and the plugins; exit non-zero if any check fails.
    /// Changes nothing.
    Check,
    /// Load the plugins and report each library as loaded or rejected; exit non-zero when a
    /// required plugin is missing.
    Plugins {
        /// How to print the report.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Apply the portal's pending database migrations (never touches operator tables).
    Migrate,
    /// Manage configuration parameters (in force only when they and all parents are enabled).
    #[command(subcommand)]
    Params(params::ParamsCommand),
    /// Manage the portal's API configuration keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage the ApplicationToken.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Show how a login name resolves and what each way of logging in would do.
    ExplainLogin {
        /// A login name as a person would type it.
        name: String,
    },
    /// Issue passcodes.
    #[command(subcommand)]
    Passcode(passcode::PasscodeCommand),
    /// Clear the locks of the person a login name resolves to (audited).
    Unlock {
        /// A login name of the person.
        name: String,
        /// Which locks: password, passcode, questions (also unlocks locked questions), or all.
        #[arg(long, value_enum, default_value_t = unlock::Method::All)]
        method: unlock::Method,
    },
    /// Build the demo identity database and settings (only into a database without a Person
    /// table); on a demo database, change nothing unless --reset is given.
    Demo {
        /// On an existing demo database: set the demo people's passwords back, issue Bob a new
        /// passcode, and print how to log in again.
        #[arg(long)]
        reset: bool,
    },
    /// Bring identity data in from CSV: upsert by key in one transaction, writing nothing if
    /// any row is malformed. Never creates, alters or deletes.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Login flows (steps of plugin methods, in the PRP\Flows parameters).
    #[command(subcommand)]
    Flows(flows::FlowsCommand),
    /// List the notification outbox: each message's recipient, kind, subject and delivery
    /// state (pending, failed, sent), newest last. Prints no message text (which can hold a
    /// passcode half) unless --show-bodies is given.
    Outbox(outbox::OutboxArgs),
    /// Show the latest audit events.
    Audit {
        /// How many events, newest last.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// How to print them.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}

/// Text for people, or JSON for programs.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    Text,
    Json,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    match cli.command {
        Command::Serve => serve::run(&cli.config, &env).await,
        Command::Check => {
            quiet_logging();
            check::run(&cli.config, &env).await
        }
        Command::Plugins { format } => plugins::run(&cli.config, &env, format).await,
        command => {
            let settings = config::load(&cli.config, &env)?.settings;
            quiet_logging();
            let store = open_store(&settings).await?;
            match command {
                Command::Migrate => {
                    println!("migrations applied; the portal schema is up to date");
                    Ok(ExitCode::SUCCESS)
                }
                Command::Params(c) => params::run(c, &store).await,
                Command::Keys(c) => keys::run(c, &settings, &store).await,
                Command::Token(c) => token::run(c, &settings, &store).await,
                Command::ExplainLogin { name } => explain::run(&name, settings, store).await,
                Command::Passcode(c) => passcode::run(c, settings, store).await,
                Command::Unlock { name, method } => {
                    unlock::run(&name, method, settings, store).await
                }
                Command::Demo { reset } => demo::run(reset, &settings, &store).await,
                Command::Audit { limit, format } => audit::run(limit, format, &store).await,
                Command::Outbox(args) => outbox::run(args, &settings, &store).await,
                Command::Import(c) => import::run(c, &store).await,
                Command::Flows(c) => flows::run(c, settings, store).await,
                Command::Serve | Command::Check | Command::Plugins { .. } => {
                    unreachable!("dispatched above")
                }
            }
        }
    }
}

/// Opens the portal's database and applies pending migrations.
async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = prp_host::app::open_store(settings, Arc::new(SystemClock)).await?;
    store
        .migrate()
        .await
        .context("cannot apply the portal's migrations")?;
    Ok(store)
}

/// Who runs a command, for the audit log.
fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

async fn audit_admin(store: &Store, event: &str, reason: &str) -> anyhow::Result<()> {
    store
        .audit(&AuditEvent {
            event,
            outcome: "success",
            reason: Some(reason),
            actor: Some(&actor()),
            ..Default::default()
        })
        .await?;
    Ok(())
}

fn quiet_logging() {
    init_logging(&LoggingSettings {
        level: "warn".into(),
        format: LogFormat::Text,
    });
}

/// Logs to stderr, in colour only on a terminal; `RUST_LOG` overrides `Logging:Level`.
fn init_logging(logging: &LoggingSettings) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&logging.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match logging.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
