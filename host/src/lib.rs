//! prp-host: the API server of prp, the Password Reset Portal.
//!
//! The binary (`main.rs`) is a thin CLI over this library: [`config`] reads the settings,
//! [`plugins`] loads and calls plugins, [`db`] reaches the database, [`app`] assembles a running
//! host and its checks, and [`server`] serves it over HTTP.

pub mod app;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod login;
pub mod metrics;
pub mod params_spec;
pub mod plugins;
pub mod policy;
pub mod portal;
pub mod security;
pub mod server;
pub mod store;
