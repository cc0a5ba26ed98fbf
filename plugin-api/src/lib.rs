//! The stable plugin ABI of prp, the Password Reset Portal.
//!
//! A plugin is a `cdylib` that exports one [`PluginMod`] root module with [`export_plugin!`]. The
//! host loads it with abi_stable, which checks the ABI version and the layout of every type
//! reachable from the root module before any plugin code runs.
//!
//! # Calling convention
//! Every call across the boundary is **synchronous**. The host calls plugins on blocking threads,
//! bounded by a concurrency limit and a timeout, and never from one of its async workers. A
//! plugin must not assume any async runtime: each `cdylib` has its own copy of tokio's
//! thread-locals, so the host's runtime is invisible to it.
//!
//! # Panics
//! A panic that unwinds across an `extern "C"` or `sabi_trait` call aborts the whole process.
//! Plugins therefore implement the plain Rust traits [`AuthenticatorImpl`] and [`ResolverImpl`]
//! and hand them to [`authenticator_box`] / [`resolver_box`], which catch panics at every entry
//! point and turn them into [`PluginError`]s of kind [`ErrorKind::PANICKED`]. The functions
//! [`export_plugin!`] generates are guarded the same way.
//!
//! # Versioning
//! The ABI version is this crate's version. A change is *compatible* (minor bump, `1.x`) when it
//! only appends: a field after the last one of a prefix type ([`PluginMod`]), a method after the
//! last one of a `sabi_trait` (with a default body), a constant to an integer-backed kind such as
//! [`ErrorKind`] or [`Capabilities`]. Anything else (removing, reordering, renaming, changing a
//! type) is *breaking* and bumps the major version; the `#[sabi(last_prefix_field)]` markers then
//! move to the last field of the new major version. abi_stable refuses a plugin whose major
//! version differs from the host's, and a plugin whose layouts differ in any other way.

// abi_stable's sabi_trait macro expands to impls inside a const block (abi_stable issue, harmless).
#![allow(non_local_definitions)]
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

mod error;
mod flow;
mod guard;
mod history;
mod host;
mod login;
mod plugin;
mod resolver;
mod root;
pub mod rules;
mod settings;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{ErrorKind, PluginError, PluginResult};
pub use flow::{
    classic_methods, field_value, Enrollment, FieldDescriptor, FieldKind, FieldValue,
    MethodDescriptor, MethodRole, StepOutcome, StepRequest,
};
pub use guard::{guarded, panic_message};
#[cfg(feature = "__abi_next_probe")]
pub use history::v1_1;
pub use history::{init_plugin_module, v1_0};
pub use host::{HostServices, HostServicesBox, HostServices_TO, LogLevel, QuestionInfo};
pub use login::{
    AccountMatch, AccountQuery, LoginMethod, LoginOutcome, LoginRequest, PersonInfo,
    QuestionAnswer, QuestionChallenge, SecretCheck, SessionGrant, UnindexedColumn,
};
pub use plugin::{
    authenticator_box, Authenticator, AuthenticatorBox, AuthenticatorImpl, AuthenticatorPolicy,
    Authenticator_TO, CheckFinding, Severity,
};
pub use resolver::{
    resolver_box, PasswordRoles, ResolvedAccount, Resolver, ResolverBox, ResolverImpl, Resolver_TO,
};
pub use root::{Capabilities, PluginInstance, PluginMod, PluginModRef, ABI_VERSION};
pub use settings::{is_secret_setting, SecretString, Settings};

/// Re-exported so that plugins and hosts use the exact abi_stable this ABI was built with.
pub use abi_stable;
