//! `prp-host`: the command line of the Password Reset Portal's API server.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use prp_host::app::{self, Status};
use prp_host::config::{self, Environment, LogFormat, LoggingSettings};
use prp_host::plugins::{self, NoParameters};
use prp_host::{db, server};
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
    /// Start the HTTP server (health endpoints at /health/live and /health/ready).
    Serve,
    /// Check the configuration, the database and the plugins; exit non-zero if any check fails.
    Check,
    /// Load the plugins and report each library as loaded or rejected; exit non-zero when a
    /// required plugin is missing.
    Plugins {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
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

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    match cli.command {
        Command::Check => {
            init_logging(&LoggingSettings {
                level: "warn".into(),
                format: LogFormat::Text,
            });
            let lines = app::run_checks(&cli.config, &env).await;
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
        Command::Plugins { format } => {
            let loaded = config::load(&cli.config, &env)?;
            init_logging(&LoggingSettings {
                level: "warn".into(),
                format: LogFormat::Text,
            });
            let plugins = app::load_plugins(&loaded.settings, Arc::new(NoParameters)).await;
            let mut out = std::io::stdout().lock();
            match format {
                OutputFormat::Text => plugins::print_text(&plugins.report, &mut out)?,
                OutputFormat::Json => plugins::print_json(&plugins.report, &mut out)?,
            }
            Ok(if plugins.report.required_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Serve => serve(cli.config, env).await,
    }
}

async fn serve(config_path: PathBuf, env: Environment) -> anyhow::Result<ExitCode> {
    let loaded = config::load(&config_path, &env)?;
    let settings = loaded.settings;
    init_logging(&settings.logging);
    tracing::info!(sources = ?loaded.sources, "configuration loaded");

    let pool = db::connect(&settings).await?;
    let plugins = app::load_plugins(&settings, Arc::new(NoParameters)).await;
    let refusals = plugins.refusals(&settings);
    if !refusals.is_empty() {
        for r in &refusals {
            tracing::error!("{r}");
        }
        bail!("refusing to serve: {}", refusals.join("; "));
    }

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving");
    println!("prp-host listening on http://{addr}");
    std::io::stdout().flush()?;

    let state = Arc::new(server::AppState {
        settings,
        pool,
        plugins,
    });
    server::run(listener, state.clone(), shutdown_signal()).await?;
    state.pool.close().await;
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
