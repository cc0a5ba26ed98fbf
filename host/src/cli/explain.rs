//! `prp-host explain-login NAME`: how a name resolves, never a secret.

use prp_host::config::Settings;
use prp_host::store::Store;
use prp_host::Service;
use std::io::Write;
use std::process::ExitCode;

pub async fn run(name: &str, settings: Settings, store: Store) -> anyhow::Result<ExitCode> {
    let service = Service::for_admin(settings, store).await?;
    let mut lines = service
        .explain_login(name)
        .await
        .map_err(anyhow::Error::msg)?;
    lines.extend(prp_host::flows::explain_for_name(&service, name).await);
    // A reader that stops early (`| head`) is not an error.
    let mut out = std::io::stdout().lock();
    for line in lines {
        match writeln!(out, "{line}") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            other => other?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
