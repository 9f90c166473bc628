//! The secrets behind dashboard sessions (and API keys): a session cookie holds
//! `<session id>.<secret>`; only the secret's SHA-256 is stored, and a presented secret is
//! compared with it in constant time. The secret is never stored or logged, so a database
//! leak gives no working cookie.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of randomness in a session secret.
const SESSION_SECRET_BYTES: usize = 32;

/// A new session's cookie value and what is stored of it.
pub struct NewSessionToken {
    /// `<session id>.<secret>`: goes into the cookie, never stored.
    pub cookie_value: String,
    pub session_id: String,
    /// SHA-256 hex of the secret.
    pub secret_hash: String,
}

/// A new session id and secret.
pub fn new_session_token() -> NewSessionToken {
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

/// A new security stamp: rotating a user's stamp ends every session made under the old one.
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

    #[test]
    fn a_token_s_secret_matches_its_stored_hash_and_nothing_else() {
        let token = new_session_token();
        let (id, secret) = token.cookie_value.split_once('.').unwrap();
        assert_eq!(id, token.session_id);
        assert!(id.starts_with("ses_"));
        assert!(secret_matches(secret, &token.secret_hash));
        assert!(!secret_matches("forged", &token.secret_hash));
        assert_ne!(new_security_stamp(), new_security_stamp());
        assert_eq!(normalise_email("  Ann@Example.ORG "), "ann@example.org");
    }
}
