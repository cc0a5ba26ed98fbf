//! prp-host: the API server of prp, the Password Reset Portal.
//!
//! The entry is narrow: build a [`Service`] from [`config::Settings`], bind its [`Listeners`],
//! and [`serve`] it. [`api`] has the HTTP bodies; [`store`] is the portal's database for
//! operators' tools (the CLI's admin verbs); [`demo`] builds the demo and test identity data.
//! The binary (`main.rs`) is a thin CLI over this library.

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub(crate) mod db;
pub mod demo;
pub mod flows;
mod http;
pub(crate) mod login;
pub(crate) mod metrics;
pub mod notify;
pub mod params_spec;
pub mod plugins;
pub(crate) mod policy;
pub(crate) mod portal;
pub mod security;
mod service;
pub mod store;
pub mod throttle;
mod web;

pub use http::{openapi, Tls, TlsError};
/// Single-use secrets a plugin's checks verified are consumed only when the login is granted:
/// these bracket a direct `HostServices` call the way a login does (for tests of the services).
pub use login::{begin_deferring, take_deferred};
pub use service::{rfc3339, serve, HelpDeskPasscode, Listeners, Service, StartError};
