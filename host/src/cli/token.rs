//! `prp-host token`: rotate or adopt the ApplicationToken (only its hash is stored).

use anyhow::Context;
use prp_host::config::{Settings, APPLICATION_TOKEN};
use prp_host::store::Store;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Generate a new token, store only its hash, and print it once.
    New,
    /// Store the hash of the token already in this server's ConnectionStrings.
    Adopt,
}

pub async fn run(
    command: TokenCommand,
    settings: &Settings,
    store: &Store,
) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::New => {
            let token = prp_host::security::random_token();
            store_hash(settings, store, &token).await?;
            println!("New ApplicationToken (shown once; only its hash is stored):\n\n  {token}\n");
            println!("Put it into every server's configuration, replacing the old one.\n");
            println!("appsettings.json:\n  \"ConnectionStrings\": {{\n    \"QER\\\\Person\\\\PasswordResetAuthenticator\\\\ApplicationToken\": \"{token}\"\n  }}\n");
            println!("XML .config:\n  <add name=\"{APPLICATION_TOKEN}\" connectionString=\"{token}\"/>\n");
            println!("Until a server has the new token, its authenticator refuses every login.");
        }
        TokenCommand::Adopt => {
            let token = configured_token(settings)?;
            store_hash(settings, store, &token).await?;
            println!("the hash of the configured ApplicationToken is stored");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The ApplicationToken in this server's ConnectionStrings.
pub(super) fn configured_token(settings: &Settings) -> anyhow::Result<String> {
    settings
        .connection_string(APPLICATION_TOKEN)
        .map(|c| c.expose().to_owned())
        .filter(|t| !t.trim().is_empty())
        .with_context(|| {
            format!("ConnectionStrings:{APPLICATION_TOKEN} is not set in the configuration")
        })
}

/// Stores the token's argon2id hash and audits the rotation.
pub(super) async fn store_hash(
    settings: &Settings,
    store: &Store,
    token: &str,
) -> anyhow::Result<()> {
    let hasher = prp_host::app::new_hasher(settings).await?;
    let hash = hasher.hash_async(token).await?;
    store.set_parameter(APPLICATION_TOKEN, Some(&hash)).await?;
    super::audit_admin(store, "token.rotated", "ApplicationToken").await
}
