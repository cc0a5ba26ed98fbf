use crate::error::PluginResult;
use abi_stable::sabi_trait;
use abi_stable::std_types::{RArc, ROption, RStr, RString};
use abi_stable::StableAbi;

/// Severity of a log line a plugin sends through the host's logger.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Debug)]
pub struct LogLevel(u8);

impl LogLevel {
    pub const ERROR: Self = Self(1);
    pub const WARN: Self = Self(2);
    pub const INFO: Self = Self(3);
    pub const DEBUG: Self = Self(4);
    pub const TRACE: Self = Self(5);

    pub const fn code(self) -> u8 {
        self.0
    }
}

/// What the host offers a plugin. Implemented by the host; every method is synchronous and safe
/// to call from the blocking thread the host called the plugin on.
///
/// Data a plugin needs from the identity database reaches it through typed methods appended
/// here, never through a database handle: the host owns every connection, so no second copy of
/// SQLite ever opens the portal's database file, and no tokio or sqlx type crosses the ABI.
#[sabi_trait]
pub trait HostServices: Send + Sync {
    /// The value of a configuration parameter such as
    /// `QER\Person\PasswordResetAuthenticator\SearchTable`, or `None` when it is unset or not in
    /// force (it, or one of its parents, is disabled).
    fn parameter(&self, path: RStr<'_>) -> PluginResult<ROption<RString>>;

    /// The value of an API configuration key such as `EnablePasscodeLogin`, local overriding
    /// global, or `None` when it is unset.
    fn api_key(&self, key: RStr<'_>) -> PluginResult<ROption<RString>>;

    /// A connection string the host was configured with, by name, or `None`.
    fn connection_string(&self, name: RStr<'_>) -> ROption<RString>;

    /// Logs through the host's logger, tagged with the plugin's name. Never pass a secret.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, message: RStr<'_>);
}

/// The host's services as a plugin holds them: shareable and cheap to clone.
pub type HostServicesBox = HostServices_TO<'static, RArc<()>>;
