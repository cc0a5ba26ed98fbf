//! `prp-host explain-login NAME`: how a name resolves, never a secret.

use prp_host::config::Settings;
use prp_host::store::Store;
use prp_host::Service;
use std::process::ExitCode;

pub async fn run(name: &str, settings: Settings, store: Store) -> anyhow::Result<ExitCode> {
    let service = Service::for_admin(settings, store).await?;
    for line in service
        .explain_login(name)
        .await
        .map_err(anyhow::Error::msg)?
    {
        println!("{line}");
    }
    for line in prp_host::flows::explain_for_name(&service, name).await {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
