use std::sync::Arc;

use ampflow_actors::{ActorSystem, Identity};

use crate::config::Settings;

/// What every handler can reach. Cloning is cheap.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub actors: ActorSystem,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub settings: Settings,
    pub openapi_json: String,
    pub recaptcha: crate::recaptcha::Recaptcha,
    pub rate_limiter: crate::rate_limit::RateLimiter,
    /// `http.trusted_proxies`, parsed at start.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub auth: crate::auth::Auth,
}

impl AppState {
    pub(crate) fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    pub fn identity(&self) -> &Identity {
        self.0.actors.identity()
    }

    pub fn actors(&self) -> &ActorSystem {
        &self.0.actors
    }

    pub fn redis(&self) -> Option<&redis::aio::ConnectionManager> {
        self.0.redis.as_ref()
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn recaptcha(&self) -> &crate::recaptcha::Recaptcha {
        &self.0.recaptcha
    }

    pub fn rate_limiter(&self) -> &crate::rate_limit::RateLimiter {
        &self.0.rate_limiter
    }

    pub fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.0.trusted_proxies
    }

    pub fn auth(&self) -> &crate::auth::Auth {
        &self.0.auth
    }

    /// The clock every actor uses (a manual one in tests).
    pub fn clock(&self) -> &dyn ampflow_types::Clock {
        self.0.actors.clock().as_ref()
    }

    pub fn openapi_json(&self) -> &str {
        &self.0.openapi_json
    }
}
