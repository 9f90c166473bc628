//! The Stripe Connect onboarding URL (OAuth), with a `state` that names the organisation and
//! the admin who asked, expires, and is signed with HMAC-SHA256 so the callback can trust it:
//! `<organisation id>.<user id>.<expiry ms>.<hex MAC>`.

use ampflow_types::UnixMillis;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::config::StripeConnectConfig;

type HmacSha256 = hmac::Hmac<Sha256>;

/// What a valid `state` vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectState {
    pub organisation_id: String,
    pub user_id: String,
    pub expires_at_ms: UnixMillis,
}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC takes a key of any length.
    #[allow(clippy::expect_used)]
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length")
}

/// The signed state for `organisation_id` and `user_id`, valid until `expires_at_ms`.
pub fn sign_state(secret: &str, state: &ConnectState) -> String {
    let payload = format!(
        "{}.{}.{}",
        state.organisation_id, state.user_id, state.expires_at_ms
    );
    let mut mac = mac(secret);
    mac.update(payload.as_bytes());
    format!("{payload}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// The state's contents if its MAC is right (checked in constant time) and it has not expired.
pub fn verify_state(secret: &str, text: &str, now: UnixMillis) -> Option<ConnectState> {
    let (payload, tag) = text.rsplit_once('.')?;
    let tag = hex::decode(tag).ok()?;
    let mut mac = mac(secret);
    mac.update(payload.as_bytes());
    mac.verify_slice(&tag).ok()?;
    let mut parts = payload.splitn(3, '.');
    let state = ConnectState {
        organisation_id: parts.next()?.to_string(),
        user_id: parts.next()?.to_string(),
        expires_at_ms: parts.next()?.parse().ok()?,
    };
    (now < state.expires_at_ms).then_some(state)
}

/// The onboarding URL for an organisation's admin; `None` when Connect is not configured.
pub fn onboarding_url(
    config: &StripeConnectConfig,
    organisation_id: &str,
    user_id: &str,
    now: UnixMillis,
) -> Option<(String, UnixMillis)> {
    let client_id = config.client_id.as_deref()?;
    let redirect_url = config.redirect_url.as_deref()?;
    let secret = config.state_secret.as_ref()?.expose();
    let expires_at_ms = now.saturating_add((config.state_ttl_secs as i64).saturating_mul(1000));
    let state = sign_state(
        secret,
        &ConnectState {
            organisation_id: organisation_id.to_string(),
            user_id: user_id.to_string(),
            expires_at_ms,
        },
    );
    let mut url = url::Url::parse(&config.authorize_url).ok()?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("scope", "read_write")
        .append_pair("redirect_uri", redirect_url)
        .append_pair("state", &state);
    Some((url.to_string(), expires_at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_verify_and_forgeries_do_not() {
        let secret = "k".repeat(32);
        let state = ConnectState {
            organisation_id: "org_1".into(),
            user_id: "usr_1".into(),
            expires_at_ms: 1_000,
        };
        let signed = sign_state(&secret, &state);
        assert_eq!(verify_state(&secret, &signed, 999), Some(state));
        assert_eq!(verify_state(&secret, &signed, 1_000), None);
        assert_eq!(verify_state(&"x".repeat(32), &signed, 0), None);
        let forged = signed.replace("org_1", "org_2");
        assert_eq!(verify_state(&secret, &forged, 0), None);
        assert_eq!(verify_state(&secret, "garbage", 0), None);
    }
}
