//! Dashboard authentication: argon2id passwords, session tokens and their cookie, the client
//! a session runs on, and the extractor every dashboard endpoint uses.
//!
//! A session cookie holds `<session id>.<secret>`: the id finds the row, and the secret's
//! SHA-256 is compared in constant time with the stored hash. The secret is never stored or
//! logged, so a database leak gives no working cookie.

pub mod api_keys;
pub mod client;
pub mod connect;
pub mod extract;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::api_keys::KeyMode;
use crate::config::{AuthConfig, PASSWORD_LENGTH_MAX};
use crate::error::ApiError;

pub use extract::{Caller, DashboardAuth, DashboardCaller, SessionAuth};

/// Bytes of randomness in a session secret.
const SESSION_SECRET_BYTES: usize = 32;

/// What the auth endpoints share: the hashing parameters, a dummy hash to verify against when
/// an email is unknown (so an unknown email takes as long as a wrong password), the bound on
/// hashes computed at once, the GeoIP database and the API keys' mode.
pub struct Auth {
    config: AuthConfig,
    params: Params,
    dummy_hash: OnceLock<String>,
    hashing: Arc<Semaphore>,
    hashing_waiters: AtomicU32,
    key_mode: KeyMode,
    pub geoip: Option<Arc<client::Geoip>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

/// A new session's cookie value and what is stored of it.
pub struct NewSessionToken {
    /// `<session id>.<secret>`: goes into the cookie, never stored.
    pub cookie_value: String,
    pub session_id: String,
    /// SHA-256 hex of the secret.
    pub secret_hash: String,
}

impl Auth {
    pub fn new(config: &AuthConfig, geoip: Option<client::Geoip>) -> Result<Self, String> {
        config.validate()?;
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|e| format!("auth.argon2_*: {e}"))?;
        let key_mode = config
            .api_key_mode
            .as_deref()
            .and_then(KeyMode::parse)
            .unwrap_or(KeyMode::Test);
        Ok(Self {
            config: config.clone(),
            params,
            dummy_hash: OnceLock::new(),
            hashing: Arc::new(Semaphore::new(
                config.password_hashing_concurrency_max as usize,
            )),
            hashing_waiters: AtomicU32::new(0),
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

    /// `auth.session_idle_timeout_mins` in ms; 0 when off.
    pub fn idle_timeout_ms(&self) -> i64 {
        i64::from(self.config.session_idle_timeout_mins) * 60_000
    }

    /// The API keys this server makes and takes.
    pub fn key_mode(&self) -> KeyMode {
        self.key_mode
    }

    /// A turn to compute a password hash. At most `password_hashing_concurrency_max` run at
    /// once; a caller waits up to `password_hashing_wait_ms` behind at most
    /// `password_hashing_waiters_max` others, else gets 503 `server_busy`.
    pub async fn hashing_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = self.hashing.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let waiting = self.hashing_waiters.fetch_add(1, Ordering::AcqRel);
        let result = if waiting >= self.config.password_hashing_waiters_max {
            None
        } else {
            tokio::time::timeout(
                Duration::from_millis(self.config.password_hashing_wait_ms),
                self.hashing.clone().acquire_owned(),
            )
            .await
            .ok()
            .and_then(Result::ok)
        };
        self.hashing_waiters.fetch_sub(1, Ordering::AcqRel);
        result.ok_or_else(|| {
            tracing::warn!("password hashing is saturated; a request was turned away");
            ApiError::server_busy("too many password checks are running; retry in a few seconds")
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The argon2id PHC string of `password`, with a fresh salt. CPU-heavy: call it from a
    /// blocking task.
    pub fn hash_password(&self, password: &str) -> Result<String, String> {
        self.argon2()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| format!("hash a password: {e}"))
    }

    /// The hash an unknown email's password is verified against. Made once (the server warms
    /// it at start, so the first unknown email takes no longer than the others).
    pub fn dummy_hash(&self) -> &str {
        self.dummy_hash.get_or_init(|| {
            self.hash_password("not a password anyone has")
                .unwrap_or_default()
        })
    }

    /// Whether `password` matches `hash`; with no hash (unknown email), verifies against a
    /// dummy hash so the answer takes as long, and answers false. CPU-heavy.
    pub fn verify_password(&self, password: &str, hash: Option<&str>) -> bool {
        let (hash, real) = match hash {
            Some(hash) => (hash, true),
            None => (self.dummy_hash(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        // The parameters come from the PHC string, so hashes made with older settings verify.
        let ok = self
            .argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && real
    }

    /// A new password's problems, if any.
    pub fn check_new_password(&self, password: &str) -> Result<(), String> {
        let length = password.chars().count();
        if length < self.config.password_length_min || password.len() > PASSWORD_LENGTH_MAX {
            return Err(format!(
                "the password must be {} to {PASSWORD_LENGTH_MAX} characters",
                self.config.password_length_min
            ));
        }
        Ok(())
    }

    /// A new session id and secret.
    pub fn new_session_token(&self) -> NewSessionToken {
        let session_id = ampflow_storage::prefixed_id("ses");
        let mut secret = [0u8; SESSION_SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        NewSessionToken {
            cookie_value: format!("{session_id}.{secret}"),
            secret_hash: secret_hash(&secret),
            session_id,
        }
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

pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored_hash`, compared in constant time.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    secret_hash(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// A new security stamp.
pub fn new_security_stamp() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// An email as stored: trimmed and lower case.
pub fn normalise_email(text: &str) -> String {
    text.trim().to_lowercase()
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
    fn passwords_verify_and_unknown_accounts_never_do() {
        let auth = cheap();
        let hash = auth.hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(auth.verify_password("correct horse battery", Some(&hash)));
        assert!(!auth.verify_password("wrong", Some(&hash)));
        assert!(!auth.verify_password("not a password anyone has", None));
        assert!(!auth.verify_password("x", Some("garbage")));
    }

    #[tokio::test]
    async fn hashing_turns_are_bounded_in_number_and_waiting() {
        let config = AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            password_hashing_concurrency_max: 1,
            password_hashing_waiters_max: 1,
            password_hashing_wait_ms: 1_000,
            ..AuthConfig::default()
        };
        let auth = Arc::new(Auth::new(&config, None).unwrap());
        let first = auth.hashing_permit().await.unwrap();
        // One waiter is allowed: it times out while the turn is held.
        let waited = auth.hashing_permit().await.unwrap_err();
        assert_eq!(waited.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(waited.code, "server_busy");
        assert_eq!(waited.retry_after_secs, Some(2));
        // With the waiting room full, a caller is refused at once.
        let waiting = tokio::spawn({
            let auth = auth.clone();
            async move { auth.hashing_permit().await.map(drop) }
        });
        while auth.hashing_waiters.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(auth.hashing_permit().await.unwrap_err().code, "server_busy");
        // A turn handed back lets the waiter in.
        drop(first);
        waiting.await.unwrap().unwrap();
        drop(auth.hashing_permit().await.unwrap());
    }

    #[test]
    fn session_tokens_round_trip_and_forgeries_fail() {
        let auth = cheap();
        let token = auth.new_session_token();
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
