//! The password-reset authenticator plugin: logs people in to the portal with a passcode from
//! their manager, with their password questions, or with user name and password, by their
//! central account or a target-system account (`SearchTable`/`SearchColumn`).
//!
//! It reads its parameters (`QER\Person\PasswordResetAuthenticator\…`) and the portal's API
//! configuration keys through the host services, and never opens a database itself.

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
#![allow(non_local_definitions)]

mod authenticator;
mod params;
mod questions;
mod resolvers;

pub use authenticator::PasswordResetAuthenticator;
pub use params::{parse_column_list, Param};
pub use resolvers::{CentralAccountResolver, SearchTableResolver};

use prp_plugin_api::abi_stable::std_types::RVec;
use prp_plugin_api::{
    authenticator_box, resolver_box, Capabilities, HostServicesBox, PluginError, PluginInstance,
};

/// The plugin's name, as operators list it in `Plugins:Required`.
pub const PLUGIN_NAME: &str = "password-reset-authenticator";

fn init(host: HostServicesBox) -> Result<PluginInstance, PluginError> {
    Ok(PluginInstance {
        authenticators: RVec::from(vec![authenticator_box(PasswordResetAuthenticator::new(
            host.clone(),
        ))]),
        resolvers: RVec::from(vec![
            resolver_box(CentralAccountResolver { host: host.clone() }),
            resolver_box(SearchTableResolver { host }),
        ]),
    })
}

prp_plugin_api::export_plugin! {
    name: PLUGIN_NAME,
    version: env!("CARGO_PKG_VERSION"),
    description: "Logs people in with a passcode, password questions, or user name and password",
    provides: Capabilities::AUTHENTICATOR.union(Capabilities::RESOLVER),
    init: init,
}
