//! Creating PaymentIntents over Stripe's REST API, in Stripe's wire format: a form-encoded body
//! with bracketed keys, `Authorization: Bearer <secret key>`, a pinned `Stripe-Version`, and
//! `Idempotency-Key` set to the donation id, so a retry after a timeout or a 5xx (same key,
//! same parameters) gets the PaymentIntent the first attempt created instead of a second one.
//!
//! The PaymentIntent's `client_secret` lets a browser pay it; it is held as a [`SecretString`]
//! and never logged or stored.

use std::time::Duration;

use ampflow_types::{Currency, DonationId};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::veriff::error_chain;

/// Longest PaymentIntent id and client secret we accept from Stripe.
const PAYMENT_INTENT_ID_LENGTH_MAX: usize = 255;
const CLIENT_SECRET_LENGTH_MAX: usize = 512;
/// Longest error message from Stripe we keep.
const ERROR_MESSAGE_LENGTH_MAX: usize = 500;
/// Upper bound on attempts per request, whatever the settings say.
const ATTEMPTS_CAP: u32 = 5;

/// Where Stripe is and the credentials of this integration.
#[derive(Clone)]
pub struct StripeSettings {
    /// e.g. `https://api.stripe.com`, without a trailing slash.
    pub base_url: String,
    /// `sk_test_…` or `sk_live_…` (or a restricted `rk_…` key).
    pub secret_key: SecretString,
    /// The webhook endpoint's signing secrets (`whsec_…`); several during a rotation.
    pub webhook_secrets: Vec<SecretString>,
    /// Sent as `Stripe-Version`, so the answers' shape does not follow the account's default.
    pub api_version: String,
    /// How far a webhook's signed timestamp may be from our clock.
    pub webhook_tolerance_secs: i64,
    /// How long one call to Stripe may take.
    pub request_timeout: Duration,
    /// Attempts per call: the first, then retries after a timeout, a connection failure, a
    /// 429 or a 5xx, with the same idempotency key.
    pub attempts_max: u32,
    /// The wait before the first retry; it doubles after each.
    pub retry_backoff: Duration,
}

impl StripeSettings {
    /// True for a live key: live objects and events only. Derived from the key's prefix.
    pub fn livemode(&self) -> bool {
        let key = self.secret_key.expose_secret();
        key.starts_with("sk_live_") || key.starts_with("rk_live_")
    }
}

impl std::fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSettings")
            .field("base_url", &self.base_url)
            .field("livemode", &self.livemode())
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("api_version", &self.api_version)
            .field("webhook_tolerance_secs", &self.webhook_tolerance_secs)
            .field("request_timeout", &self.request_timeout)
            .field("attempts_max", &self.attempts_max)
            .finish_non_exhaustive()
    }
}

/// The PaymentIntent to create for a donation.
#[derive(Debug, Clone)]
pub struct NewPaymentIntent<'a> {
    pub donation_id: &'a DonationId,
    /// Minor units.
    pub amount: i64,
    pub currency: Currency,
    pub receipt_email: &'a str,
    pub organisation_id: &'a str,
    pub fund_id: Option<&'a str>,
}

/// A PaymentIntent Stripe created.
#[derive(Clone)]
pub struct CreatedPaymentIntent {
    /// `pi_…`
    pub id: String,
    /// For Stripe.js in the donor's browser; answered once, never stored.
    pub client_secret: SecretString,
    pub livemode: bool,
}

impl std::fmt::Debug for CreatedPaymentIntent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedPaymentIntent")
            .field("id", &self.id)
            .field("livemode", &self.livemode)
            .finish_non_exhaustive()
    }
}

/// Why a call to Stripe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    #[error("Stripe could not be reached: {0}")]
    Unreachable(String),
    /// Stripe's error body: `type` (card_error, invalid_request_error, api_error, …), `code`,
    /// `decline_code`, `message` and `param`.
    #[error("Stripe refused the request ({status} {kind}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Api {
        status: u16,
        kind: String,
        code: Option<String>,
        decline_code: Option<String>,
        param: Option<String>,
        message: String,
        /// Stripe's `Stripe-Should-Retry` header, when it sent one.
        should_retry: Option<bool>,
    },
    #[error("Stripe answered something unexpected: {0}")]
    Malformed(String),
}

impl StripeError {
    /// Worth another attempt with the same idempotency key: nothing was decided yet.
    fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Api {
                status,
                should_retry,
                ..
            } => should_retry.unwrap_or(*status == 429 || *status >= 500),
            Self::Malformed(_) => false,
        }
    }
}

#[derive(Deserialize)]
struct PaymentIntentBody {
    id: String,
    client_secret: Option<SecretString>,
    livemode: bool,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    param: Option<String>,
    message: Option<String>,
}

pub struct StripeClient {
    settings: StripeSettings,
    http: reqwest::Client,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl StripeClient {
    pub fn new(settings: StripeSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .build()
            .map_err(|e| format!("build the Stripe HTTP client: {e}"))?;
        Ok(Self { settings, http })
    }

    pub fn settings(&self) -> &StripeSettings {
        &self.settings
    }

    /// `POST {base_url}/v1/payment_intents`, retried with the same idempotency key (the
    /// donation id) while the failure leaves the outcome open.
    pub async fn create_payment_intent(
        &self,
        new: &NewPaymentIntent<'_>,
    ) -> Result<CreatedPaymentIntent, StripeError> {
        let form = payment_intent_form(new);
        let attempts_max = self.settings.attempts_max.clamp(1, ATTEMPTS_CAP);
        let mut backoff = self.settings.retry_backoff;
        let mut attempt = 1;
        loop {
            match self
                .post_form("/v1/payment_intents", new.donation_id, &form)
                .await
            {
                Ok(created) => return Ok(created),
                Err(error) if attempt < attempts_max && error.is_retryable() => {
                    tracing::warn!(donation = %new.donation_id, attempt, %error, "creating a PaymentIntent failed; retrying with the same idempotency key");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn post_form(
        &self,
        path: &str,
        idempotency_key: &DonationId,
        form: &[(String, String)],
    ) -> Result<CreatedPaymentIntent, StripeError> {
        let response = self
            .http
            .post(format!("{}{path}", self.settings.base_url))
            .bearer_auth(self.settings.secret_key.expose_secret())
            .header("Stripe-Version", &self.settings.api_version)
            .header("Idempotency-Key", idempotency_key.as_str())
            .form(form)
            .send()
            .await
            .map_err(|e| StripeError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let should_retry = response
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.eq_ignore_ascii_case("true"));
        let bytes = response
            .bytes()
            .await
            .map_err(|e| StripeError::Unreachable(error_chain(&e)))?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), should_retry, &bytes));
        }
        let body: PaymentIntentBody = serde_json::from_slice(&bytes)
            .map_err(|e| StripeError::Malformed(format!("PaymentIntent body: {e}")))?;
        let client_secret = body
            .client_secret
            .filter(|s| {
                let s = s.expose_secret();
                !s.is_empty() && s.len() <= CLIENT_SECRET_LENGTH_MAX
            })
            .ok_or_else(|| StripeError::Malformed("no client_secret".into()))?;
        if !body.id.starts_with("pi_") || body.id.len() > PAYMENT_INTENT_ID_LENGTH_MAX {
            return Err(StripeError::Malformed(
                "PaymentIntent id out of bounds".into(),
            ));
        }
        Ok(CreatedPaymentIntent {
            id: body.id,
            client_secret,
            livemode: body.livemode,
        })
    }
}

/// The form fields, in Stripe's bracketed notation. The currency goes lowercase, as Stripe
/// documents it.
fn payment_intent_form(new: &NewPaymentIntent<'_>) -> Vec<(String, String)> {
    let mut form = vec![
        ("amount".to_string(), new.amount.to_string()),
        (
            "currency".to_string(),
            new.currency.as_str().to_ascii_lowercase(),
        ),
        (
            "automatic_payment_methods[enabled]".to_string(),
            "true".to_string(),
        ),
        ("receipt_email".to_string(), new.receipt_email.to_string()),
        (
            "metadata[donation_id]".to_string(),
            new.donation_id.to_string(),
        ),
        (
            "metadata[organisation_id]".to_string(),
            new.organisation_id.to_string(),
        ),
    ];
    if let Some(fund_id) = new.fund_id {
        form.push(("metadata[fund_id]".to_string(), fund_id.to_string()));
    }
    form
}

/// Stripe's error body as a typed error; a body that is not one keeps the status only.
fn api_error(status: u16, should_retry: Option<bool>, body: &[u8]) -> StripeError {
    let parsed: Option<ErrorBody> = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .map(|e| e.error);
    let Some(error) = parsed else {
        return StripeError::Api {
            status,
            kind: "api_error".into(),
            code: None,
            decline_code: None,
            param: None,
            message: format!("HTTP {status} without a Stripe error body"),
            should_retry,
        };
    };
    let mut message = error.message.unwrap_or_default();
    if message.len() > ERROR_MESSAGE_LENGTH_MAX {
        let mut end = ERROR_MESSAGE_LENGTH_MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    StripeError::Api {
        status,
        kind: error.kind.unwrap_or_else(|| "api_error".into()),
        code: error.code,
        decline_code: error.decline_code,
        param: error.param,
        message,
        should_retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ampflow_standins::stripe::StripeStandIn;

    fn settings(base_url: String, key: &str) -> StripeSettings {
        StripeSettings {
            base_url,
            secret_key: key.to_string().into(),
            webhook_secrets: vec!["whsec_test".to_string().into()],
            api_version: ampflow_standins::stripe::API_VERSION.into(),
            webhook_tolerance_secs: 300,
            request_timeout: Duration::from_millis(500),
            attempts_max: 3,
            retry_backoff: Duration::from_millis(10),
        }
    }

    fn donation() -> DonationId {
        DonationId::from_bytes([7; 16])
    }

    fn new(id: &DonationId, amount: i64) -> NewPaymentIntent<'_> {
        NewPaymentIntent {
            donation_id: id,
            amount,
            currency: Currency::parse("EUR").unwrap(),
            receipt_email: "donor@example.org",
            organisation_id: "org_1",
            fund_id: Some("fund_1"),
        }
    }

    #[tokio::test]
    async fn a_payment_intent_is_created_in_stripes_wire_format() {
        let stripe = StripeStandIn::start("sk_test_abc", "whsec_test")
            .await
            .unwrap();
        let client = StripeClient::new(settings(stripe.base_url(), "sk_test_abc")).unwrap();
        assert!(!client.settings().livemode());
        let id = donation();
        let created = client.create_payment_intent(&new(&id, 5000)).await.unwrap();
        assert!(created.id.starts_with("pi_"));
        assert!(!created.livemode);
        let stored = stripe.payment_intent(&created.id).unwrap();
        assert_eq!(stored.client_secret, created.client_secret.expose_secret());
        assert_eq!(stored.amount, 5000);
        assert_eq!(stored.currency, "eur");
        assert_eq!(stored.metadata["donation_id"], id.as_str());
        assert_eq!(stored.metadata["fund_id"], "fund_1");
        assert_eq!(stored.receipt_email.as_deref(), Some("donor@example.org"));
        assert_eq!(stripe.idempotency_keys(), vec![id.to_string()]);
        assert_eq!(
            stripe.stripe_versions(),
            vec![Some(ampflow_standins::stripe::API_VERSION.to_string())]
        );
        // The secret never shows in Debug output.
        let debug = format!("{created:?} {client:?}");
        assert!(!debug.contains(created.client_secret.expose_secret()));
        assert!(!debug.contains("sk_test_abc"));
    }

    #[tokio::test]
    async fn outages_are_retried_with_the_same_idempotency_key() {
        let stripe = StripeStandIn::start("sk_test_abc", "whsec_test")
            .await
            .unwrap();
        let client = StripeClient::new(settings(stripe.base_url(), "sk_test_abc")).unwrap();
        let id = donation();
        stripe.fail_next_requests(2, 503);
        let created = client.create_payment_intent(&new(&id, 700)).await.unwrap();
        assert_eq!(stripe.payment_intents().len(), 1);
        assert_eq!(stripe.idempotency_keys(), vec![id.to_string(); 3]);
        // A timeout after Stripe did the work: the retry replays the same PaymentIntent.
        let other = DonationId::from_bytes([8; 16]);
        stripe.set_response_delay(Duration::from_millis(700));
        let slow = client.create_payment_intent(&new(&other, 900)).await;
        stripe.set_response_delay(Duration::ZERO);
        assert!(matches!(slow, Err(StripeError::Unreachable(_))), "{slow:?}");
        let replayed = client
            .create_payment_intent(&new(&other, 900))
            .await
            .unwrap();
        assert_eq!(stripe.payment_intents().len(), 2);
        assert_ne!(replayed.id, created.id);
        // Failing more often than the attempts allow ends in the error.
        stripe.fail_next_requests(3, 500);
        let third = DonationId::from_bytes([9; 16]);
        let failed = client.create_payment_intent(&new(&third, 900)).await;
        assert!(
            matches!(failed, Err(StripeError::Api { status: 500, .. })),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn stripe_errors_are_typed_and_not_retried() {
        let stripe = StripeStandIn::start("sk_test_abc", "whsec_test")
            .await
            .unwrap();
        let client = StripeClient::new(settings(stripe.base_url(), "sk_test_abc")).unwrap();
        let id = donation();
        let error = client
            .create_payment_intent(&new(&id, 0))
            .await
            .unwrap_err();
        match &error {
            StripeError::Api {
                status,
                kind,
                param,
                ..
            } => {
                assert_eq!(*status, 400);
                assert_eq!(kind, "invalid_request_error");
                assert_eq!(param.as_deref(), Some("amount"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stripe.idempotency_keys().len(), 1);
        let wrong_key = StripeClient::new(settings(stripe.base_url(), "sk_test_wrong")).unwrap();
        let error = wrong_key
            .create_payment_intent(&new(&id, 100))
            .await
            .unwrap_err();
        assert!(
            matches!(error, StripeError::Api { status: 401, .. }),
            "{error:?}"
        );
        let live = settings(stripe.base_url(), "sk_live_x");
        assert!(live.livemode());
    }
}
