//! prp's LDAP resolver, written as a third party's plugin would be (the ABI crate and an LDAP
//! client alone). It resolves login names by a search under `BaseDn` with the `Filter`
//! template (the name escaped per RFC 4515), maps each entry to a person by an attribute and a
//! `Person` column, refuses disabled entries and those the ppolicy overlay locked, verifies
//! passwords by a simple bind as the entry, and sets them with the Password Modify extended
//! operation (RFC 3062) as the service account, so the directory hashes them and applies its
//! own policy. Settings: `Plugins:Settings:ldap-resolver:<Key>` (README, "LDAP resolver").

// A panic in plugin code takes down the host process: none on any path outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod config;
pub mod directory;
pub mod filter;
mod lock;
pub mod resolver;

use prp_plugin_api::{HostServicesBox, PluginError, Settings};

pub use config::{Config, PLUGIN};
pub use directory::Directory;
pub use resolver::{Host, LdapResolver, RESOLVER_ID};

/// Reads and checks the settings and prepares TLS; contacts nothing (so the plugin loads while
/// the directory is away: the self-check and each call say so).
pub fn new_resolver(host: HostServicesBox) -> Result<LdapResolver<HostServicesBox>, PluginError> {
    let config = Config::read(&Settings::new(&host, PLUGIN))?;
    Ok(LdapResolver::new(Directory::new(config)?, host))
}

prp_plugin_api::export_resolver! {
    name: PLUGIN,
    version: env!("CARGO_PKG_VERSION"),
    description: "Login names, accounts and passwords in an LDAP directory (bind, RFC 3062 Password Modify)",
    resolver: new_resolver,
}
