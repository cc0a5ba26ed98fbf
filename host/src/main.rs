//! `prp-host`: the command line of the Password Reset Portal's API server.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use prp_host::app::{self, Portal, Status};
use prp_host::clock::SystemClock;
use prp_host::config::{
    self, Environment, LogFormat, LoggingSettings, Settings, APPLICATION_TOKEN,
};
use prp_host::login::LoginService;
use prp_host::portal::SelfService;
use prp_host::store::{ApiKeyScope, AuditEvent, LockScope, Store};
use prp_host::{demo, plugins, security, server};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "prp-host",
    version,
    about = "The Password Reset Portal's API server"
)]
struct Cli {
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
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Apply the portal's pending database migrations (never touches operator tables).
    Migrate,
    /// Manage configuration parameters (in force only when they and all parents are enabled).
    #[command(subcommand)]
    Params(ParamsCommand),
    /// Manage the portal's API configuration keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the ApplicationToken.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show how a login name resolves and what each way of logging in would do.
    ExplainLogin { name: String },
    /// Issue passcodes.
    #[command(subcommand)]
    Passcode(PasscodeCommand),
    /// Build the demo identity database and settings (only into a database without a Person table).
    Demo,
    /// Show the latest audit events.
    Audit {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum ParamsCommand {
    /// List parameters (under PREFIX), with their in-force state.
    List { prefix: Option<String> },
    /// Show one parameter.
    Get { path: String },
    /// Set a parameter's value.
    Set { path: String, value: String },
    /// Clear a parameter's value.
    Unset { path: String },
    /// Enable a parameter or a branch.
    Enable { path: String },
    /// Disable a parameter or a branch: it and everything under it stop being in force.
    Disable { path: String },
}

#[derive(Args)]
struct Scope {
    /// Stored in the database for every server (the default).
    #[arg(long, conflicts_with = "local")]
    global: bool,
    /// For this server only (Host:ServerName); overrides the global value.
    #[arg(long)]
    local: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Every key's effective value on this server and where it comes from.
    List,
    /// One key's effective value on this server.
    Get { name: String },
    /// Set a key, globally (default) or for this server only.
    Set {
        name: String,
        value: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// Remove a key's value from a scope, so the next one (or the default) applies.
    Unset {
        name: String,
        #[command(flatten)]
        scope: Scope,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Generate a new token, store only its hash, and print it once.
    New,
    /// Store the hash of the token already in this server's ConnectionStrings.
    Adopt,
}

#[derive(Subcommand)]
enum PasscodeCommand {
    /// Issue a passcode for the person a login name resolves to, and print it once.
    New {
        name: String,
        /// Who issues it, for the audit log (default: the OS user).
        #[arg(long)]
        issued_by: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prp-host: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("prp-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn quiet_logging() {
    init_logging(&LoggingSettings {
        level: "warn".into(),
        format: LogFormat::Text,
    });
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    match cli.command {
        Command::Check => {
            quiet_logging();
            check(&cli.config, &env).await
        }
        Command::Serve => serve(cli.config, env).await,
        Command::Plugins { format } => {
            let settings = config::load(&cli.config, &env)?.settings;
            quiet_logging();
            let store = app::open_store(&settings, Arc::new(SystemClock)).await.ok();
            let hasher = app::new_hasher(&settings).await?;
            let portal = app::assemble(settings, store, hasher).await;
            let mut out = std::io::stdout().lock();
            match format {
                OutputFormat::Text => plugins::print_text(&portal.report, &mut out)?,
                OutputFormat::Json => plugins::print_json(&portal.report, &mut out)?,
            }
            Ok(if portal.report.required_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        command => {
            let settings = config::load(&cli.config, &env)?.settings;
            quiet_logging();
            let store = app::open_store(&settings, Arc::new(SystemClock)).await?;
            store.migrate().await?;
            admin(command, settings, store).await
        }
    }
}

async fn check(config_path: &std::path::Path, env: &Environment) -> anyhow::Result<ExitCode> {
    let lines = app::run_checks(config_path, env).await;
    let mut out = std::io::stdout().lock();
    for line in &lines {
        let tag = match line.status {
            Status::Ok => "ok    ",
            Status::Warn => "warn  ",
            Status::Failed => "FAILED",
        };
        writeln!(out, "{tag}  {}: {}", line.name, line.detail)?;
    }
    let failed = lines.iter().filter(|l| l.status == Status::Failed).count();
    if failed > 0 {
        writeln!(out, "{failed} check(s) failed")?;
        return Ok(ExitCode::FAILURE);
    }
    writeln!(out, "all checks passed")?;
    Ok(ExitCode::SUCCESS)
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// The commands that work on the database (after migrations).
async fn admin(command: Command, settings: Settings, store: Store) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Migrate => writeln!(out, "migrations applied; the portal schema is up to date")?,
        Command::Params(p) => match p {
            ParamsCommand::List { prefix } => {
                for param in store.list_parameters(prefix.as_deref()).await? {
                    writeln!(out, "{}", show_param(&param))?;
                }
            }
            ParamsCommand::Get { path } => match store.parameter(&path).await? {
                Some(param) => writeln!(out, "{}", show_param(&param))?,
                None => {
                    writeln!(out, "{path}: not set")?;
                    return Ok(ExitCode::FAILURE);
                }
            },
            ParamsCommand::Set { path, value } => {
                if is_token_path(&path) {
                    bail!("the ApplicationToken hash is set with `prp-host token new` or `token adopt`, never by hand");
                }
                store.set_parameter(&path, Some(&value)).await?;
                audit_param(&store, "parameter.set", &path).await?;
                writeln!(out, "{path} set")?;
            }
            ParamsCommand::Unset { path } => {
                store.set_parameter(&path, None).await?;
                audit_param(&store, "parameter.unset", &path).await?;
                writeln!(out, "{path} unset")?;
            }
            ParamsCommand::Enable { path } => {
                store.set_parameter_enabled(&path, true).await?;
                audit_param(&store, "parameter.enabled", &path).await?;
                writeln!(out, "{path} enabled")?;
            }
            ParamsCommand::Disable { path } => {
                store.set_parameter_enabled(&path, false).await?;
                audit_param(&store, "parameter.disabled", &path).await?;
                writeln!(out, "{path} disabled (and everything under it)")?;
            }
        },
        Command::Keys(k) => {
            let server = settings.host.server_name.clone();
            let scope_of = |s: &Scope| {
                if s.local {
                    ApiKeyScope::Local(server.clone())
                } else {
                    ApiKeyScope::Global
                }
            };
            match k {
                KeysCommand::List => {
                    for v in store.api_keys(&server).await? {
                        writeln!(
                            out,
                            "{} = {}  ({}; {})",
                            v.name, v.value, v.source, v.description
                        )?;
                    }
                }
                KeysCommand::Get { name } => {
                    let v = store.api_key(&server, &name).await?;
                    writeln!(out, "{} = {}  ({})", v.name, v.value, v.source)?;
                }
                KeysCommand::Set { name, value, scope } => {
                    let s = scope_of(&scope);
                    store.set_api_key(&s, &name, &value).await?;
                    store
                        .audit(&AuditEvent {
                            event: "apikey.set",
                            outcome: "success",
                            reason: Some(&format!("{name} ({s:?})")),
                            actor: Some(&actor()),
                            ..Default::default()
                        })
                        .await?;
                    writeln!(
                        out,
                        "{name} set ({}); servers apply it at their next request",
                        scope_name(&s)
                    )?;
                }
                KeysCommand::Unset { name, scope } => {
                    let s = scope_of(&scope);
                    let removed = store.unset_api_key(&s, &name).await?;
                    writeln!(
                        out,
                        "{name} {} ({})",
                        if removed { "unset" } else { "was not set" },
                        scope_name(&s)
                    )?;
                }
            }
        }
        Command::Token(t) => {
            let hasher = app::new_hasher(&settings).await?;
            match t {
                TokenCommand::New => {
                    let token = security::random_token();
                    store_token_hash(&store, &hasher, &token).await?;
                    writeln!(out, "New ApplicationToken (shown once; only its hash is stored):\n\n  {token}\n")?;
                    writeln!(
                        out,
                        "Put it into every server's configuration, replacing the old one.\n"
                    )?;
                    writeln!(out, "appsettings.json:\n  \"ConnectionStrings\": {{\n    \"QER\\\\Person\\\\PasswordResetAuthenticator\\\\ApplicationToken\": \"{token}\"\n  }}\n")?;
                    writeln!(out, "XML .config:\n  <add name=\"{APPLICATION_TOKEN}\" connectionString=\"{token}\"/>\n")?;
                    writeln!(
                        out,
                        "Until a server has the new token, its authenticator refuses every login."
                    )?;
                }
                TokenCommand::Adopt => {
                    let token = settings
                        .connection_string(APPLICATION_TOKEN)
                        .map(|c| c.expose().to_owned())
                        .filter(|t| !t.trim().is_empty())
                        .with_context(|| format!("ConnectionStrings:{APPLICATION_TOKEN} is not set in the configuration"))?;
                    store_token_hash(&store, &hasher, &token).await?;
                    writeln!(out, "the hash of the configured ApplicationToken is stored")?;
                }
            }
        }
        Command::ExplainLogin { name } => {
            let portal = start_portal(settings, store.clone()).await?;
            let login = login_service(&portal)?;
            let candidates = login.resolve(&name).await.map_err(anyhow::Error::msg)?;
            writeln!(out, "login name \"{name}\" (names match ignoring the case of A-Z; other characters exactly)")?;
            if candidates.is_empty() {
                writeln!(out, "  no resolver matched it")?;
            }
            for c in &candidates {
                let account = c
                    .account_uid
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "(central account)".into());
                writeln!(
                    out,
                    "  resolver {}: {} {} -> person {} (matched {}){}",
                    c.resolver,
                    c.source,
                    account,
                    if c.person_uid.is_empty() {
                        "(none)"
                    } else {
                        c.person_uid.as_str()
                    },
                    c.matched_by,
                    c.refused_by
                        .as_ref()
                        .map(|r| format!(", REFUSED: {r}"))
                        .unwrap_or_default()
                )?;
            }
            let auth = Arc::clone(&login.authenticator);
            let n = name.clone();
            let cands = candidates.clone();
            let lines = portal
                .gate
                .call(move || {
                    let c: prp_plugin_api::abi_stable::std_types::RVec<_> =
                        cands.into_iter().collect();
                    auth.explain(n.as_str().into(), c.as_rslice())
                })
                .await?;
            for l in lines {
                writeln!(out, "  {l}")?;
            }
            let persons: std::collections::BTreeSet<String> = candidates
                .iter()
                .map(|c| c.person_uid.to_string())
                .filter(|p| !p.is_empty())
                .collect();
            for p in persons {
                for scope in [
                    LockScope::All,
                    LockScope::Password,
                    LockScope::Questions,
                    LockScope::Passcode,
                ] {
                    if let Some(until) = store.locked_until(&p, scope).await? {
                        writeln!(
                            out,
                            "  person {p} is locked for {} until {until} (Unix time)",
                            scope.name()
                        )?;
                    }
                }
                match store.passcode(&p).await? {
                    Some((_, expires)) if expires > store.now() => writeln!(
                        out,
                        "  person {p} has a passcode valid until {expires} (Unix time)"
                    )?,
                    Some(_) => writeln!(out, "  person {p} has an expired passcode")?,
                    None => writeln!(out, "  person {p} has no passcode")?,
                }
                let qs = store.questions(&p).await?;
                let locked = qs.iter().filter(|q| q.locked).count();
                writeln!(
                    out,
                    "  person {p} has {} password questions, {locked} locked",
                    qs.len()
                )?;
            }
        }
        Command::Passcode(PasscodeCommand::New { name, issued_by }) => {
            let portal = start_portal(settings.clone(), store.clone()).await?;
            let login = login_service(&portal)?;
            let candidates = login.resolve(&name).await.map_err(anyhow::Error::msg)?;
            let persons: std::collections::BTreeSet<&str> = candidates
                .iter()
                .map(|c| c.person_uid.as_str())
                .filter(|p| !p.is_empty())
                .collect();
            let person = match persons.len() {
                0 => bail!("\"{name}\" matches no person (see `prp-host explain-login {name}`)"),
                1 => persons.into_iter().next().unwrap_or_default().to_owned(),
                n => bail!("\"{name}\" matches accounts of {n} different persons; use a name that identifies one"),
            };
            if candidates.iter().all(|c| c.refused_by.is_some()) {
                bail!("\"{name}\" may not log in (see `prp-host explain-login {name}`)");
            }
            let target = store
                .person(&person)
                .await?
                .with_context(|| format!("person {person} does not exist"))?;
            let issuer = issued_by.unwrap_or_else(actor);
            let issued = self_service(&portal)?
                .issue_passcode(&target, &issuer)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (hours, expires_at) = (issued.hours, issued.expires_at);
            if issued.split {
                writeln!(out, "First half of the passcode for person {person} (shown once; the second half went to their manager; valid for {hours} hours, until {expires_at} Unix time):\n\n  {}\n", issued.shown)?;
            } else {
                writeln!(out, "Passcode for person {person} (shown once, valid for {hours} hours, until {expires_at} Unix time):\n\n  {}\n", issued.shown)?;
            }
            if !store
                .api_flag(&settings.host.server_name, "EnablePasscodeLogin")
                .await?
            {
                writeln!(
                    out,
                    "Note: EnablePasscodeLogin is off; the passcode can't be used until it is on."
                )?;
            }
        }
        Command::Demo => {
            let hasher = app::new_hasher(&settings).await?;
            if demo::identity_schema_exists(&store).await? {
                if store.person("P-ALICE").await?.is_none() {
                    bail!("this database already has a Person table that is not the demo's; `prp-host demo` only fills a fresh database");
                }
                writeln!(out, "demo data already present")?;
            } else {
                demo::seed_demo(&store, &hasher).await?;
                writeln!(out, "demo identity database built")?;
            }
            let token = settings
                .connection_string(APPLICATION_TOKEN)
                .map(|c| c.expose().to_owned())
                .filter(|t| !t.trim().is_empty())
                .with_context(|| {
                    format!("ConnectionStrings:{APPLICATION_TOKEN} is not set in the configuration")
                })?;
            store_token_hash(&store, &hasher, &token).await?;
            let passcode = security::new_passcode();
            let hash = demo::hash(
                &hasher,
                &security::normalize_passcode(&passcode).unwrap_or_default(),
            )
            .await?;
            store
                .issue_passcode("P-BOB", &hash, 8 * 3600, "demo")
                .await?;
            let url = format!("http://{}", settings.listen);
            writeln!(out, "\nHow to log in ({url}):")?;
            writeln!(out, "  password:  curl -s {url}/api/login/password -H 'content-type: application/json' -d '{{\"login_name\":\"alice\",\"password\":\"{}\"}}'", demo::DemoPeople::ALICE_PASSWORD)?;
            writeln!(out, "  passcode:  curl -s {url}/api/login/passcode -H 'content-type: application/json' -d '{{\"login_name\":\"bob\",\"passcode\":\"{passcode}\"}}'")?;
            writeln!(out, "  questions: curl -s {url}/api/login/questions/challenge -H 'content-type: application/json' -d '{{\"login_name\":\"alice\"}}'")?;
            writeln!(out, "             then POST /api/login/questions with the ids; Alice's answers: first pet Rex, born in Lisbon, favourite book Dune")?;
            writeln!(out, "  target-system account (SearchTable ADSAccount): login_name \"cexample\" or \"Carol Example\", password \"{}\"", demo::DemoPeople::CAROL_ADS_PASSWORD)?;
            writeln!(out, "  disabled account: \"dexample\" (ADSAccount.Disabled) is refused; try `prp-host explain-login dexample`")?;
            writeln!(
                out,
                "\nAfter logging in (send the token as `Authorization: Bearer <token>`):"
            )?;
            writeln!(out, "  GET  {url}/api/password-items             the passwords you may reset, with their policies")?;
            writeln!(out, "  POST {url}/api/password-items/check       {{\"items\": [ids], \"password\": \"...\"}}: what a new password breaks")?;
            writeln!(out, "  POST {url}/api/password-items/set         the same body: set it for all the items, or none")?;
            writeln!(
                out,
                "  GET  {url}/api/questions                  your password questions"
            )?;
            writeln!(out, "  POST {url}/api/reports/P-ALICE/passcode   Marta (marta / {}) issues a passcode for Alice", demo::DemoPeople::MARTA_PASSWORD)?;
        }
        Command::Audit { limit } => {
            for e in store.audit_tail(limit).await? {
                writeln!(
                    out,
                    "{} {} {} {} method={} name={} person={} reason={} actor={}",
                    e.id,
                    e.at,
                    e.event,
                    e.outcome,
                    e.method.unwrap_or_default(),
                    e.login_name.unwrap_or_default(),
                    e.person_uid.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.actor.unwrap_or_default()
                )?;
            }
        }
        Command::Serve | Command::Check | Command::Plugins { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn scope_name(s: &ApiKeyScope) -> String {
    match s {
        ApiKeyScope::Global => "global".into(),
        ApiKeyScope::Local(server) => format!("local to server {server}"),
    }
}

fn is_token_path(path: &str) -> bool {
    path.replace(" | ", "\\")
        .eq_ignore_ascii_case(APPLICATION_TOKEN)
}

fn show_param(p: &prp_host::store::Parameter) -> String {
    let state = match (&p.disabled_by, p.enabled) {
        (None, _) => "in force".to_owned(),
        (Some(by), _) if by.eq_ignore_ascii_case(&p.path) => "disabled".to_owned(),
        (Some(by), _) => format!("not in force: {by} is disabled"),
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

async fn audit_param(store: &Store, event: &str, path: &str) -> anyhow::Result<()> {
    store
        .audit(&AuditEvent {
            event,
            outcome: "success",
            reason: Some(path),
            actor: Some(&actor()),
            ..Default::default()
        })
        .await?;
    Ok(())
}

async fn store_token_hash(
    store: &Store,
    hasher: &Arc<security::Hasher>,
    token: &str,
) -> anyhow::Result<()> {
    let hash = demo::hash(hasher, token).await?;
    store.set_parameter(APPLICATION_TOKEN, Some(&hash)).await?;
    store
        .audit(&AuditEvent {
            event: "token.rotated",
            outcome: "success",
            actor: Some(&actor()),
            ..Default::default()
        })
        .await?;
    Ok(())
}

async fn start_portal(settings: Settings, store: Store) -> anyhow::Result<Portal> {
    let hasher = app::new_hasher(&settings).await?;
    Ok(app::assemble(settings, Some(store), hasher).await)
}

fn self_service(portal: &Portal) -> anyhow::Result<SelfService> {
    Ok(SelfService {
        store: portal
            .store
            .clone()
            .context("the portal database is not reachable")?,
        hasher: portal.hasher.clone(),
        gate: portal.gate.clone(),
        resolvers: portal.resolvers.clone(),
        server_name: portal.settings.host.server_name.clone(),
    })
}

fn login_service(portal: &Portal) -> anyhow::Result<LoginService> {
    let store = portal
        .store
        .clone()
        .context("the portal database is not reachable")?;
    let authenticator = portal.authenticator.clone().with_context(|| {
        format!(
            "no loaded plugin provides the authenticator \"{}\"; see `prp-host plugins`",
            portal.settings.host.authenticator
        )
    })?;
    let h = &portal.settings.host;
    Ok(LoginService::new(
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

async fn serve(config_path: PathBuf, env: Environment) -> anyhow::Result<ExitCode> {
    let loaded = config::load(&config_path, &env)?;
    let settings = loaded.settings;
    init_logging(&settings.logging);
    tracing::info!(sources = ?loaded.sources, "configuration loaded");

    let store = app::open_store(&settings, Arc::new(SystemClock)).await?;
    store.migrate().await?;
    let portal = start_portal(settings, store).await?;
    let refusals = portal.refusals();
    if !refusals.is_empty() {
        for r in &refusals {
            tracing::error!("{r}");
        }
        bail!("refusing to serve: {}", refusals.join("; "));
    }
    let login = login_service(&portal)?;
    let listen = portal.settings.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving");
    println!("prp-host listening on http://{addr}");
    std::io::stdout().flush()?;

    let self_service = self_service(&portal)?;
    let state = Arc::new(server::AppState {
        portal,
        login,
        self_service,
        metrics: Default::default(),
    });
    server::run(listener, state.clone(), shutdown_signal()).await?;
    state.login.store.pool().close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Logs to stderr; `RUST_LOG` overrides `Logging:Level`.
fn init_logging(logging: &LoggingSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&logging.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match logging.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
