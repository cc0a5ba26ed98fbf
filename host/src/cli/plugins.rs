//! `prp-host plugins`: load the plugins and report each library.

use super::OutputFormat;
use prp_host::app;
use prp_host::clock::SystemClock;
use prp_host::config::{self, Environment};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

pub async fn run(
    config_path: &Path,
    env: &Environment,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let settings = config::load(config_path, env)?.settings;
    super::quiet_logging();
    let store = app::open_store(&settings, Arc::new(SystemClock)).await.ok();
    let hasher = app::new_hasher(&settings).await?;
    let portal = app::assemble(settings, store, hasher).await;
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Text => prp_host::plugins::print_text(portal.report(), &mut out)?,
        OutputFormat::Json => prp_host::plugins::print_json(portal.report(), &mut out)?,
    }
    Ok(if portal.report().required_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
