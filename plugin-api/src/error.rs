use abi_stable::std_types::{RResult, RString};
use abi_stable::StableAbi;
use std::fmt;

/// What went wrong in a plugin call. An integer with named constants rather than a Rust enum, so
/// that later ABI versions can add kinds without breaking plugins already built: a host that
/// meets a kind it doesn't know treats it like [`ErrorKind::INTERNAL`] (deny).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorKind(u32);

impl ErrorKind {
    /// A bug or unexpected state inside the plugin.
    pub const INTERNAL: Self = Self(0);
    /// The plugin's configuration is missing or wrong.
    pub const CONFIG: Self = Self(1);
    /// A plugin entry point panicked; the panic was caught inside the plugin.
    pub const PANICKED: Self = Self(2);
    /// A backing service (database, directory) is unavailable.
    pub const UNAVAILABLE: Self = Self(3);
    /// The host passed input the plugin rejects.
    pub const INVALID_INPUT: Self = Self(4);

    /// The raw code, for kinds this version doesn't name.
    pub const fn code(self) -> u32 {
        self.0
    }

    /// A short stable name, `"unknown"` for codes added by a newer ABI.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0 => "internal",
            1 => "config",
            2 => "panicked",
            3 => "unavailable",
            4 => "invalid-input",
            _ => "unknown",
        }
    }
}

impl fmt::Debug for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// The error every plugin entry point returns. The message is for operators: it is logged by the
/// host and must never contain a secret.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub kind: ErrorKind,
    pub message: RString,
}

impl PluginError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: RString::from(message.into()),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INTERNAL, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::CONFIG, message)
    }
    /// A backing service (a directory, a file, a server) is unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UNAVAILABLE, message)
    }
}

impl fmt::Debug for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginError")
            .field("kind", &self.kind)
            .field("message", &self.message.as_str())
            .finish()
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for PluginError {}

/// The FFI-safe result of a plugin call.
pub type PluginResult<T> = RResult<T, PluginError>;
