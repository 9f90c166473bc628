//! Stripe Event objects and Stripe's webhook signature, `Stripe-Signature:
//! t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>[,v1=…][,v0=…]`.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::objects::new_id;

/// The API version events are rendered with (the account's default on the real service).
pub const API_VERSION: &str = "2024-06-20";

/// A Stripe Event: `{id, object: "event", type, created, livemode, api_version,
/// data: {object}, pending_webhooks, request: {id, idempotency_key}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    /// The whole event as it is sent; edit it to forge one (e.g. flip `livemode`).
    pub json: Value,
}

impl Event {
    /// A new event about `object` (a snapshot of the object's JSON at this moment).
    pub fn new(
        event_type: &str,
        object: Value,
        livemode: bool,
        request_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Self {
        let id = new_id("evt");
        let json = json!({
            "id": id,
            "object": "event",
            "api_version": API_VERSION,
            "created": super::objects::unix_now(),
            "data": {"object": object},
            "livemode": livemode,
            "pending_webhooks": 0,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": event_type,
        });
        Self {
            id,
            event_type: event_type.to_string(),
            json,
        }
    }

    /// `data.object`.
    pub fn object(&self) -> &Value {
        &self.json["data"]["object"]
    }

    /// The bytes sent: pretty-printed with two spaces, as Stripe sends them, so a receiver that
    /// re-serialises the JSON before checking the signature fails here too.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.json).unwrap_or_default()
    }
}

/// hex(HMAC-SHA256(secret, "{timestamp}.{body}")): one `v1` signature.
pub fn v1_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Stripe-Signature` header for one secret: `t=<timestamp>,v1=<signature>`.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    signature_header_for(&[secret], timestamp, body, false)
}

/// The header Stripe sends while several signing secrets are active (during a rotation): one
/// `v1=` per secret. With `test_mode`, a `v0=` entry follows, as Stripe adds in test mode; a
/// receiver must ignore schemes other than `v1`.
pub fn signature_header_for(
    secrets: &[&str],
    timestamp: i64,
    body: &[u8],
    test_mode: bool,
) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(&format!(",v1={}", v1_signature(secret, timestamp, body)));
    }
    if test_mode {
        // Stripe's v0 uses a scheme of its own; an unrelated key stands for it here.
        let v0 = v1_signature("stand-in-v0-scheme", timestamp, body);
        header.push_str(&format!(",v0={v0}"));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lists_one_v1_per_secret_then_v0_in_test_mode() {
        let header = signature_header_for(&["whsec_a", "whsec_b"], 1_700_000_000, b"{}", true);
        let parts: Vec<&str> = header.split(',').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "t=1700000000");
        assert_eq!(
            parts[1],
            format!("v1={}", v1_signature("whsec_a", 1_700_000_000, b"{}"))
        );
        assert_eq!(
            parts[2],
            format!("v1={}", v1_signature("whsec_b", 1_700_000_000, b"{}"))
        );
        assert!(parts[3].starts_with("v0="));
        assert_eq!(
            signature_header("whsec_a", 1_700_000_000, b"{}"),
            format!("{},{}", parts[0], parts[1])
        );
    }
}
