//! Stripe's wire format: the PaymentIntents client ([`StripeClient`]) and the
//! `Stripe-Signature` header of webhooks. This module only speaks to Stripe; what a payment
//! means for a donation is decided by the donation's actor.
//!
//! Stripe signs each delivery with every active endpoint secret: `Stripe-Signature:
//! t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`, where each `v1` is
//! hex(HMAC-SHA256(secret, "<t>.<raw body>")). A delivery is authentic when any `v1` matches
//! any of our secrets (so a secret can be rotated: both are accepted meanwhile), compared in
//! constant time, and `t` is within the tolerance of our clock. Other schemes (`v0`) are
//! ignored.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

mod payment_intents;
pub use payment_intents::{
    CreatedPaymentIntent, NewPaymentIntent, StripeClient, StripeError, StripeSettings,
};

/// How far `t` may be from our clock by default, as Stripe's own libraries use.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;
/// Longest header we look at.
const HEADER_LENGTH_MAX: usize = 4096;
/// A SHA-256 MAC in hex.
const V1_LENGTH: usize = 64;

/// Why a `Stripe-Signature` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeSignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoV1,
    #[error("the Stripe-Signature timestamp is {age_secs} s from now, beyond the tolerance")]
    Stale { age_secs: i64 },
    #[error("no v1 signature matches")]
    Mismatch,
}

/// Checks a delivery's `Stripe-Signature` header against the raw body; answers its timestamp.
pub fn verify_stripe_signature(
    header: Option<&[u8]>,
    body: &[u8],
    secrets: &[SecretString],
    tolerance_secs: i64,
    now_secs: i64,
) -> Result<i64, StripeSignatureError> {
    let header = header.ok_or(StripeSignatureError::Missing)?;
    if header.len() > HEADER_LENGTH_MAX {
        return Err(StripeSignatureError::Malformed);
    }
    let header = std::str::from_utf8(header).map_err(|_| StripeSignatureError::Malformed)?;
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<[u8; 32]> = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(StripeSignatureError::Malformed)?;
        match key {
            "t" => {
                let t = value
                    .parse::<i64>()
                    .map_err(|_| StripeSignatureError::Malformed)?;
                if timestamp.replace(t).is_some() {
                    return Err(StripeSignatureError::Malformed);
                }
            }
            "v1" => {
                // A v1 that is not a SHA-256 MAC in hex cannot match; skip it.
                let mut mac = [0u8; 32];
                if value.len() == V1_LENGTH && hex::decode_to_slice(value, &mut mac).is_ok() {
                    signatures.push(mac);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(StripeSignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(StripeSignatureError::NoV1);
    }
    let age_secs = now_secs.saturating_sub(timestamp);
    if age_secs.abs() > tolerance_secs {
        return Err(StripeSignatureError::Stale { age_secs });
    }
    let signed_prefix = format!("{timestamp}.");
    let mut matched = false;
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
            continue;
        };
        mac.update(signed_prefix.as_bytes());
        mac.update(body);
        for signature in &signatures {
            // verify_slice compares in constant time; every pair is tried, so the time taken
            // does not say which one matched.
            matched |= mac.clone().verify_slice(signature).is_ok();
        }
    }
    if matched {
        Ok(timestamp)
    } else {
        Err(StripeSignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    const NOW: i64 = 1_700_000_000;

    /// Computed independently of the code under test: HMAC-SHA256 by hand over "<t>.<body>".
    fn v1(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect()
    }

    fn check(header: &str, secrets_list: &[&str]) -> Result<i64, StripeSignatureError> {
        verify_stripe_signature(
            Some(header.as_bytes()),
            BODY,
            &secrets(secrets_list),
            DEFAULT_TOLERANCE_SECS,
            NOW,
        )
    }

    #[test]
    fn a_matching_v1_for_any_secret_is_accepted() {
        let header = format!("t={NOW},v1={}", v1("whsec_a", NOW, BODY));
        assert_eq!(check(&header, &["whsec_a"]), Ok(NOW));
        // Rotation: the old and the new secret are both accepted.
        assert_eq!(check(&header, &["whsec_new", "whsec_a"]), Ok(NOW));
        // Stripe signing with two secrets sends two v1 entries, and a v0 we ignore.
        let header = format!(
            "t={NOW},v1={},v1={},v0=deadbeef",
            v1("whsec_old", NOW, BODY),
            v1("whsec_a", NOW, BODY)
        );
        assert_eq!(check(&header, &["whsec_a"]), Ok(NOW));
    }

    #[test]
    fn everything_else_is_refused() {
        let good = v1("whsec_a", NOW, BODY);
        assert_eq!(
            verify_stripe_signature(None, BODY, &secrets(&["whsec_a"]), 300, NOW),
            Err(StripeSignatureError::Missing)
        );
        assert_eq!(
            check(&format!("t={NOW},v1={good}"), &["whsec_b"]),
            Err(StripeSignatureError::Mismatch)
        );
        assert_eq!(
            check(&format!("t={NOW},v0={good}"), &["whsec_a"]),
            Err(StripeSignatureError::NoV1)
        );
        assert_eq!(
            check(&format!("v1={good}"), &["whsec_a"]),
            Err(StripeSignatureError::Malformed)
        );
        assert_eq!(
            check("garbage", &["whsec_a"]),
            Err(StripeSignatureError::Malformed)
        );
        assert_eq!(
            check(&format!("t=1,t={NOW},v1={good}"), &["whsec_a"]),
            Err(StripeSignatureError::Malformed)
        );
        // Signed over another body, or another timestamp.
        let other = v1("whsec_a", NOW, b"{}");
        assert_eq!(
            check(&format!("t={NOW},v1={other}"), &["whsec_a"]),
            Err(StripeSignatureError::Mismatch)
        );
        let shifted = v1("whsec_a", NOW - 1, BODY);
        assert_eq!(
            check(&format!("t={NOW},v1={shifted}"), &["whsec_a"]),
            Err(StripeSignatureError::Mismatch)
        );
        // Stale or from the future, beyond the tolerance.
        let old = NOW - 301;
        assert_eq!(
            check(
                &format!("t={old},v1={}", v1("whsec_a", old, BODY)),
                &["whsec_a"]
            ),
            Err(StripeSignatureError::Stale { age_secs: 301 })
        );
        let late = NOW - 300;
        assert_eq!(
            check(
                &format!("t={late},v1={}", v1("whsec_a", late, BODY)),
                &["whsec_a"]
            ),
            Ok(late)
        );
        let future = NOW + 301;
        assert!(matches!(
            check(
                &format!("t={future},v1={}", v1("whsec_a", future, BODY)),
                &["whsec_a"]
            ),
            Err(StripeSignatureError::Stale { .. })
        ));
        // A short or non-hex v1 is not a signature.
        assert_eq!(
            check(&format!("t={NOW},v1=abc"), &["whsec_a"]),
            Err(StripeSignatureError::NoV1)
        );
    }

    #[test]
    fn the_stand_in_signs_the_way_stripe_does() {
        // The header the Stripe stand-in sends verifies here.
        let header = ampflow_standins::stripe::signature_header("whsec_x", NOW, BODY);
        assert_eq!(check(&header, &["whsec_x"]), Ok(NOW));
    }
}
