//! `prp-host serve`: build the portal, bind, serve until SIGTERM or SIGINT; SIGHUP reloads the
//! TLS certificate and key.

use anyhow::Context;
use prp_host::config::{self, Environment};
use prp_host::{Listeners, Service};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config_path: &Path, env: &Environment) -> anyhow::Result<ExitCode> {
    let loaded = config::load(config_path, env)?;
    super::init_logging(&loaded.settings.logging);
    tracing::info!(sources = ?loaded.sources, "configuration loaded");
    let service = match Service::build(loaded.settings).await {
        Ok(s) => s,
        Err(prp_host::StartError::Refused(reasons)) => {
            for r in &reasons {
                tracing::error!("{r}");
            }
            anyhow::bail!("refusing to serve: {}", reasons.join("; "));
        }
        Err(e) => return Err(e.into()),
    };
    let listeners = Listeners::bind(service.settings()).await?;
    let addr = listeners.public_addr().context("no listening address")?;
    tracing::info!(%addr, "serving");
    if let Some(admin) = listeners.admin_addr() {
        tracing::info!(%admin, "admin listener (/metrics, /health/ready detail)");
        println!("prp-host admin listener on http://{admin}");
    }
    let tls = listeners.tls();
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("prp-host listening on {scheme}://{addr}");
    std::io::stdout().flush()?;
    reload_on_sighup(tls)?;
    prp_host::serve(service, listeners, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// On each SIGHUP, reads the certificate and key again. New connections get the new ones; open
/// connections keep theirs. A reload that fails keeps the old certificate and says why. Without
/// TLS, SIGHUP is logged and ignored (rather than ending the process, its default).
fn reload_on_sighup(tls: Option<std::sync::Arc<prp_host::Tls>>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot install the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let Some(tls) = tls.clone() else {
                    tracing::info!("SIGHUP: nothing to reload (no Host:Certificate)");
                    continue;
                };
                // Reading files blocks: off the async threads.
                match tokio::task::spawn_blocking(move || tls.reload()).await {
                    Ok(Ok(())) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                    Ok(Err(e)) => {
                        tracing::error!("SIGHUP: {e}; still serving the previous certificate")
                    }
                    Err(e) => tracing::error!(
                        "SIGHUP: reload failed: {e}; still serving the previous certificate"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(tls);
    Ok(())
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
