//! The HTTP front of ampflow: routing on axum/hyper, extractors for auth, wire types, the
//! OpenAPI document, and the pieces the `ampflow` binary is made of.

pub mod access_admin;
pub mod app;
pub mod auth;
pub mod checkpoint_verify;
#[cfg(feature = "failpoints")]
pub mod clock_file;
pub mod config;
pub mod edge;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod net;
pub mod node;
pub mod params;
pub mod partner_auth;
pub mod rate_limit;
pub mod recaptcha;
pub mod routes;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod wire;

pub use app::{RunningApp, StartOptions, start};
pub use config::Settings;
