//! Dashboard authentication at the edge: session tokens and their cookie, the client a
//! session runs on, and the extractor every dashboard endpoint uses. (Passwords and the login
//! throttle are the accounts façade's: `ampflow_actors::accounts`.)
//!
//! A session cookie holds `<session id>.<secret>`: the id finds the row, and the secret's
//! SHA-256 is compared in constant time with the stored hash. The secret is never stored or
//! logged, so a database leak gives no working cookie.

pub mod api_keys;
pub mod client;
pub mod connect;
pub mod extract;

use std::sync::Arc;

use crate::auth::api_keys::KeyMode;
use crate::config::AuthConfig;

pub use ampflow_actors::accounts::{
    new_security_stamp, normalise_email, secret_hash, secret_matches,
};
pub use extract::{Caller, DashboardAuth, DashboardCaller, SessionAuth};

/// What the auth endpoints share: their configuration, the GeoIP database and the API keys'
/// mode.
pub struct Auth {
    config: AuthConfig,
    key_mode: KeyMode,
    pub geoip: Option<Arc<client::Geoip>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(config: &AuthConfig, geoip: Option<client::Geoip>) -> Result<Self, String> {
        config.validate()?;
        let key_mode = config
            .api_key_mode
            .as_deref()
            .and_then(KeyMode::parse)
            .unwrap_or(KeyMode::Test);
        Ok(Self {
            config: config.clone(),
            key_mode,
            geoip: geoip.map(Arc::new),
        })
    }

    /// With API keys of `mode` when `auth.api_key_mode` leaves it open.
    pub fn with_default_key_mode(mut self, mode: KeyMode) -> Self {
        if self.config.api_key_mode.is_none() {
            self.key_mode = mode;
        }
        self
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The API keys this server makes and takes.
    pub fn key_mode(&self) -> KeyMode {
        self.key_mode
    }

    /// `Set-Cookie` for a new session, living `max_age_secs`.
    pub fn session_cookie(&self, value: &str, max_age_secs: i64) -> String {
        cookie::Cookie::build((self.config.cookie_name.clone(), value.to_string()))
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .path("/")
            .secure(self.config.cookie_secure)
            .max_age(cookie::time::Duration::seconds(max_age_secs.max(0)))
            .build()
            .to_string()
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn cleared_cookie(&self) -> String {
        self.session_cookie("", 0)
    }

    /// The session cookie's value in a `Cookie` header, if there is one.
    pub fn cookie_value<'a>(&self, header: &'a str) -> Option<&'a str> {
        header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.config.cookie_name)
            .map(|(_, value)| value.trim_matches('"'))
    }
}

/// A cookie value split into the session id and its secret; `None` when malformed.
pub fn split_cookie(value: &str) -> Option<(&str, &str)> {
    let (id, secret) = value.split_once('.')?;
    let well_formed = id.starts_with("ses_")
        && id.len() <= 40
        && !secret.is_empty()
        && secret.len() <= 64
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Auth {
        let config = AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..AuthConfig::default()
        };
        Auth::new(&config, None).unwrap()
    }

    #[test]
    fn session_tokens_round_trip_and_forgeries_fail() {
        let auth = cheap();
        let token = ampflow_actors::accounts::new_session_token();
        let (id, secret) = split_cookie(&token.cookie_value).unwrap();
        assert_eq!(id, token.session_id);
        assert!(secret_matches(secret, &token.secret_hash));
        assert!(!secret_matches("forged", &token.secret_hash));
        for bad in ["", "ses_x", "abc.def", "ses_x.", "ses_x.a b", "ses_x.a;b"] {
            assert!(split_cookie(bad).is_none(), "{bad}");
        }
        let cookie = auth.session_cookie(&token.cookie_value, 60);
        for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure", "Max-Age=60"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert_eq!(
            auth.cookie_value("a=1; session=ses_1.x; b=2"),
            Some("ses_1.x")
        );
        assert_eq!(auth.cookie_value("sessionx=1"), None);
    }
}
