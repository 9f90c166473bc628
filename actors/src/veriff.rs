//! Veriff's wire format: creating a verification session over its REST API, and checking the
//! signatures of its webhooks. This module only speaks to Veriff; what a session or a decision
//! means for a wallet is decided by the wallet actor.
//!
//! Signatures, both compared in constant time over the raw body bytes:
//! - Veriff's current scheme: `X-HMAC-SIGNATURE` = hex(HMAC-SHA256(shared secret, body)); our
//!   requests to Veriff are signed the same way;
//! - the legacy scheme of the original service: `X-SIGNATURE` = hex(SHA-256(body ‖ secret)).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Longest Veriff id and URL we accept from Veriff.
const SESSION_ID_LENGTH_MAX: usize = 64;
const SESSION_URL_LENGTH_MAX: usize = 2048;

/// Where Veriff is and the credentials of this integration.
#[derive(Clone)]
pub struct VeriffSettings {
    /// e.g. `https://stationapi.veriff.com`, without a trailing slash.
    pub base_url: String,
    /// Sent as `X-AUTH-CLIENT`; webhooks must carry it too.
    pub api_key: SecretString,
    /// Signs our requests and Veriff's webhooks.
    pub shared_secret: SecretString,
    /// Where Veriff sends the user after the verification flow (Veriff's `callback`).
    pub callback_url: Option<String>,
    /// How long a call to Veriff may take.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for VeriffSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VeriffSettings")
            .field("base_url", &self.base_url)
            .field("callback_url", &self.callback_url)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// A session Veriff created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSession {
    pub id: String,
    pub url: String,
}

/// Why creating a session failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VeriffCallError {
    #[error("Veriff could not be reached: {0}")]
    Unreachable(String),
    #[error("Veriff refused the request with status {0}")]
    Refused(u16),
    #[error("Veriff answered something unexpected: {0}")]
    Malformed(String),
}

/// The headers a webhook authenticates with, as received (absent ones are `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookHeaders<'a> {
    pub auth_client: Option<&'a [u8]>,
    /// `X-HMAC-SIGNATURE`.
    pub hmac_signature: Option<&'a [u8]>,
    /// `X-SIGNATURE` (legacy).
    pub legacy_signature: Option<&'a [u8]>,
}

pub struct VeriffClient {
    settings: VeriffSettings,
    http: reqwest::Client,
}

impl std::fmt::Debug for VeriffClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VeriffClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct CreateRequest<'a> {
    verification: CreateVerification<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateVerification<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    callback: Option<&'a str>,
    person: Person<'a>,
    vendor_data: &'a str,
    timestamp: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Person<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'a str>,
}

#[derive(Deserialize)]
struct CreateResponse {
    status: String,
    verification: Option<CreatedVerification>,
}

#[derive(Deserialize)]
struct CreatedVerification {
    id: String,
    url: String,
}

impl VeriffClient {
    pub fn new(settings: VeriffSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .build()
            .map_err(|e| format!("build the Veriff HTTP client: {e}"))?;
        Ok(Self { settings, http })
    }

    /// Creates a verification session for `address` (Veriff's `vendorData`), `POST
    /// {base_url}/v1/sessions`, signed like Veriff's own requests.
    pub async fn create_session(
        &self,
        address: &str,
        first_name: Option<&str>,
        last_name: Option<&str>,
        timestamp: &str,
    ) -> Result<CreatedSession, VeriffCallError> {
        let body = serde_json::to_vec(&CreateRequest {
            verification: CreateVerification {
                callback: self.settings.callback_url.as_deref(),
                person: Person {
                    first_name,
                    last_name,
                },
                vendor_data: address,
                timestamp,
            },
        })
        .map_err(|e| VeriffCallError::Malformed(e.to_string()))?;
        let secret = self.settings.shared_secret.expose_secret().as_bytes();
        let response = self
            .http
            .post(format!("{}/v1/sessions", self.settings.base_url))
            .header("X-AUTH-CLIENT", self.settings.api_key.expose_secret())
            .header("X-HMAC-SIGNATURE", hmac_signature(secret, &body))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| VeriffCallError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(VeriffCallError::Refused(status.as_u16()));
        }
        let answer: CreateResponse = response
            .json()
            .await
            .map_err(|e| VeriffCallError::Malformed(error_chain(&e)))?;
        let verification = answer
            .verification
            .filter(|_| answer.status == "success")
            .ok_or_else(|| VeriffCallError::Malformed(format!("status {}", answer.status)))?;
        let id_ok = !verification.id.is_empty() && verification.id.len() <= SESSION_ID_LENGTH_MAX;
        let url_ok = verification.url.starts_with("http")
            && verification.url.len() <= SESSION_URL_LENGTH_MAX;
        if !id_ok || !url_ok {
            return Err(VeriffCallError::Malformed(
                "verification id or url out of bounds".into(),
            ));
        }
        Ok(CreatedSession {
            id: verification.id,
            url: verification.url,
        })
    }

    /// True when the webhook carries our API key and at least one signature, and every
    /// signature it carries is right for `body`.
    pub fn webhook_is_authentic(&self, headers: WebhookHeaders<'_>, body: &[u8]) -> bool {
        let api_key = self.settings.api_key.expose_secret().as_bytes();
        let secret = self.settings.shared_secret.expose_secret().as_bytes();
        let Some(auth_client) = headers.auth_client else {
            return false;
        };
        if !bool::from(auth_client.ct_eq(api_key)) {
            return false;
        }
        if headers.hmac_signature.is_none() && headers.legacy_signature.is_none() {
            return false;
        }
        let hmac_ok = headers
            .hmac_signature
            .is_none_or(|signature| hmac_matches(secret, body, signature));
        let legacy_ok = headers
            .legacy_signature
            .is_none_or(|signature| legacy_matches(secret, body, signature));
        hmac_ok && legacy_ok
    }
}

/// hex(HMAC-SHA256(secret, body)), Veriff's `X-HMAC-SIGNATURE`.
pub fn hmac_signature(secret: &[u8], body: &[u8]) -> String {
    hex::encode(new_mac(secret, body).finalize().into_bytes())
}

/// hex(SHA-256(body ‖ secret)), the legacy `X-SIGNATURE`.
pub fn legacy_signature(secret: &[u8], body: &[u8]) -> String {
    hex::encode(legacy_digest(secret, body))
}

fn new_mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    mac
}

fn legacy_digest(secret: &[u8], body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(secret);
    hasher.finalize().to_vec()
}

fn hmac_matches(secret: &[u8], body: &[u8], signature_hex: &[u8]) -> bool {
    let Ok(signature) = hex::decode(signature_hex.trim_ascii()) else {
        return false;
    };
    new_mac(secret, body).verify_slice(&signature).is_ok()
}

fn legacy_matches(secret: &[u8], body: &[u8], signature_hex: &[u8]) -> bool {
    let Ok(signature) = hex::decode(signature_hex.trim_ascii()) else {
        return false;
    };
    bool::from(legacy_digest(secret, body).ct_eq(&signature))
}

/// An error and its sources on one line, for logs and the 503 message (reqwest's own text
/// alone says only "error sending request").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> VeriffClient {
        VeriffClient::new(VeriffSettings {
            base_url: "http://127.0.0.1:1".into(),
            api_key: "key".to_string().into(),
            shared_secret: "secret".to_string().into(),
            callback_url: None,
            request_timeout: Duration::from_secs(1),
        })
        .unwrap()
    }

    #[test]
    fn both_signature_schemes_verify_and_nothing_else_does() {
        let client = client();
        let body = br#"{"status":"success"}"#;
        let hmac = hmac_signature(b"secret", body);
        let legacy = legacy_signature(b"secret", body);
        let headers = |auth: Option<&'static str>, h: Option<&str>, l: Option<&str>| {
            (
                auth.map(str::as_bytes),
                h.map(str::to_string),
                l.map(str::to_string),
            )
        };
        let check = |(auth, h, l): (Option<&[u8]>, Option<String>, Option<String>)| {
            client.webhook_is_authentic(
                WebhookHeaders {
                    auth_client: auth,
                    hmac_signature: h.as_deref().map(str::as_bytes),
                    legacy_signature: l.as_deref().map(str::as_bytes),
                },
                body,
            )
        };
        assert!(check(headers(Some("key"), Some(&hmac), None)));
        assert!(check(headers(
            Some("key"),
            Some(&hmac.to_uppercase()),
            None
        )));
        assert!(check(headers(Some("key"), None, Some(&legacy))));
        assert!(check(headers(Some("key"), Some(&hmac), Some(&legacy))));
        assert!(!check(headers(Some("key"), Some(&legacy), None)));
        assert!(!check(headers(Some("key"), None, Some(&hmac))));
        assert!(!check(headers(Some("key"), Some(&hmac), Some("00"))));
        assert!(!check(headers(Some("key"), None, None)));
        assert!(!check(headers(None, Some(&hmac), None)));
        assert!(!check(headers(Some("kex"), Some(&hmac), None)));
        assert!(!check(headers(Some("key"), Some("zz"), None)));
    }
}
