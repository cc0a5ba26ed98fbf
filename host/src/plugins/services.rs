//! The host's side of `HostServices`: what a plugin may ask the host for.

use crate::config::ConnectionString;
use prp_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use prp_plugin_api::abi_stable::std_types::{RArc, ROption, RResult, RStr, RString};
use prp_plugin_api::{
    HostServices, HostServicesBox, HostServices_TO, LogLevel, PluginError, PluginResult,
};
use std::sync::Arc;

/// Where configuration parameters and API configuration keys come from. The database-backed
/// configuration store implements it; an empty source answers "unset" to everything.
pub trait ParameterSource: Send + Sync + 'static {
    /// The value of a parameter that is in force, or `None`.
    fn parameter(&self, path: &str) -> Result<Option<String>, String>;
    /// The effective value of an API configuration key, or `None`.
    fn api_key(&self, key: &str) -> Result<Option<String>, String>;
}

/// A source with nothing set: what a host without a configuration store offers.
pub struct NoParameters;

impl ParameterSource for NoParameters {
    fn parameter(&self, _: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
    fn api_key(&self, _: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
}

struct Services {
    plugin: String,
    connection_strings: Vec<ConnectionString>,
    parameters: Arc<dyn ParameterSource>,
}

fn to_plugin(r: Result<Option<String>, String>) -> PluginResult<ROption<RString>> {
    match r {
        Ok(v) => RResult::ROk(v.map(RString::from).into()),
        Err(e) => RResult::RErr(PluginError::new(prp_plugin_api::ErrorKind::UNAVAILABLE, e)),
    }
}

impl HostServices for Services {
    fn parameter(&self, path: RStr<'_>) -> PluginResult<ROption<RString>> {
        to_plugin(self.parameters.parameter(path.as_str()))
    }

    fn api_key(&self, key: RStr<'_>) -> PluginResult<ROption<RString>> {
        to_plugin(self.parameters.api_key(key.as_str()))
    }

    fn connection_string(&self, name: RStr<'_>) -> ROption<RString> {
        self.connection_strings
            .iter()
            .find(|c| c.name().eq_ignore_ascii_case(name.as_str()))
            .map(|c| RString::from(c.expose()))
            .into()
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let plugin = self.plugin.as_str();
        let message = message.as_str();
        match level {
            LogLevel::ERROR => tracing::error!(target: "prp::plugin", plugin, "{message}"),
            LogLevel::WARN => tracing::warn!(target: "prp::plugin", plugin, "{message}"),
            LogLevel::INFO => tracing::info!(target: "prp::plugin", plugin, "{message}"),
            LogLevel::DEBUG => tracing::debug!(target: "prp::plugin", plugin, "{message}"),
            _ => tracing::trace!(target: "prp::plugin", plugin, "{message}"),
        }
    }
}

/// The services handed to one plugin's `init`.
pub fn host_services(
    plugin: &str,
    connection_strings: Vec<ConnectionString>,
    parameters: Arc<dyn ParameterSource>,
) -> HostServicesBox {
    HostServices_TO::from_ptr(
        RArc::new(Services {
            plugin: plugin.to_owned(),
            connection_strings,
            parameters,
        }),
        TD_Opaque,
    )
}
