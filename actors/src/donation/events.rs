//! Stripe's webhook events applied to donations (`POST /webhooks/stripe`).
//!
//! - The delivery's `Stripe-Signature` is checked over the raw body against every configured
//!   secret before anything is parsed; a bad or stale one changes nothing. The event's
//!   `livemode` must match the secret key's mode.
//! - `payment_intent.succeeded` completes the donation, `payment_intent.payment_failed` fails
//!   it (a failure after a success is refused by the state machine), `charge.refunded` refunds
//!   it (a refund proves the payment, so a donation whose success was not seen yet is
//!   completed first), `payment_intent.canceled` cancels a pending one. Other types are
//!   ignored.
//! - A success whose amount or currency differs from the donation's, or a refund whose refunded
//!   total exceeds the donation's amount or whose currency differs, is not applied: it is
//!   recorded once per event id (`stripe_amount_mismatches`: the ids, the expected and the
//!   received amount and currency), counted (`stripe_webhook_amount_mismatches_total`) and
//!   logged as a warning, and the delivery is acknowledged so Stripe does not retry it
//!   forever.
//! - Exactly once: the event id is recorded in the same transaction as the donation's move, so
//!   a redelivery changes nothing. The ledger entries (`donation_received:don_…`,
//!   `donation_refunded:don_…`) are appended after that move, idempotently by their dedupe
//!   keys, on every delivery of the event, redeliveries included; the delivery is
//!   acknowledged only once they are durable. A crash between the two is therefore repaired
//!   by Stripe's redelivery, and an entry is never written twice.
//! - Refunds: Stripe sends `charge.refunded` for every refund, full or partial, with the
//!   charge's refunded total so far (`amount_refunded`). The first moves the donation to
//!   `refunded`; each appends a `donation_refunded` entry for the part of that total the
//!   donation's earlier refund entries do not cover yet (worked out under the ledger's head
//!   lock, dedupe key `donation_refunded:don_…:<total>`). Refunds of 300 then 200 give entries
//!   of -300 and -200, whatever order and however often the two events arrive.

use std::collections::HashMap;

use ampflow_storage::{
    AmountMismatchRecord, AmountRule, DonationRecord, DonationStatus, NewLedgerEntry,
    StripeEventRecord,
};
use ampflow_types::DonationId;
use ampflow_types::ledger::LedgerMetadata;
use serde::Deserialize;

use super::{DonationError, DonationMsg, Donations, Moved};
use crate::stripe::verify_stripe_signature;

/// Longest event and object ids we accept.
const STRIPE_ID_LENGTH_MAX: usize = 255;
const FAILURE_MESSAGE_LENGTH_MAX: usize = 500;
/// Signed events not applied because their amount or currency differs from the donation's
/// (each event counted once, however often it is delivered).
pub const AMOUNT_MISMATCH_METRIC: &str = "stripe_webhook_amount_mismatches_total";

/// What a webhook delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    Applied,
    /// The event was applied before; the ledger was checked again.
    Duplicate,
    /// Nothing to do, and why.
    Ignored(&'static str),
}

#[derive(Deserialize)]
struct EventBody {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    livemode: bool,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct PaymentIntentObject {
    id: String,
    amount: i64,
    currency: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
    last_payment_error: Option<PaymentError>,
}

#[derive(Deserialize)]
struct PaymentError {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct ChargeObject {
    payment_intent: Option<String>,
    amount_refunded: i64,
    currency: Option<String>,
}

impl Donations {
    /// Authenticates a webhook delivery over its raw body, then applies its event.
    pub async fn apply_webhook(
        &self,
        signature_header: Option<&[u8]>,
        raw_body: &[u8],
    ) -> Result<WebhookOutcome, DonationError> {
        let stripe = self.stripe.as_ref().ok_or(DonationError::NotConfigured)?;
        let settings = stripe.settings();
        verify_stripe_signature(
            signature_header,
            raw_body,
            &settings.webhook_secrets,
            settings.webhook_tolerance_secs,
            self.clock.now_ms().div_euclid(1000),
        )
        .map_err(DonationError::Signature)?;
        let mut event: EventBody = serde_json::from_slice(raw_body)
            .map_err(|e| DonationError::EventMalformed(format!("event: {e}")))?;
        if event.id.is_empty() || event.id.len() > STRIPE_ID_LENGTH_MAX {
            return Err(DonationError::EventMalformed(
                "event id out of bounds".into(),
            ));
        }
        if event.livemode != settings.livemode() {
            return Err(DonationError::LivemodeMismatch);
        }
        let outcome = match event.event_type.as_str() {
            "payment_intent.succeeded" => self.payment_succeeded(&mut event).await,
            "payment_intent.payment_failed" => self.payment_failed(&mut event).await,
            "payment_intent.canceled" => self.payment_canceled(&mut event).await,
            "charge.refunded" => self.charge_refunded(&mut event).await,
            _ => Ok(WebhookOutcome::Ignored("event type not handled")),
        }?;
        tracing::info!(event = %event.id, event_type = %event.event_type, ?outcome, "Stripe webhook");
        Ok(outcome)
    }

    async fn payment_succeeded(
        &self,
        event: &mut EventBody,
    ) -> Result<WebhookOutcome, DonationError> {
        let intent: PaymentIntentObject = object(event)?;
        let Some(donation) = self.donation_of_intent(&intent).await? else {
            return Ok(WebhookOutcome::Ignored(
                "no donation for this PaymentIntent",
            ));
        };
        if intent.amount != donation.amount
            || !intent.currency.eq_ignore_ascii_case(&donation.currency)
        {
            return self
                .amount_mismatch(
                    event,
                    &donation,
                    &intent.id,
                    intent.amount,
                    &intent.currency,
                )
                .await;
        }
        let (outcome, donation) = self
            .move_for_event(&donation, DonationStatus::Succeeded, None, event)
            .await?;
        // The crash test stops here: the move is durable, its ledger entry not yet.
        fail::fail_point!("stripe_webhook_after_move");
        self.record_in_ledger(&donation, None).await?;
        Ok(outcome)
    }

    /// A signed event whose amount or currency does not fit its donation (a success's
    /// PaymentIntent amount, a refund's refunded total above the donation's amount) is not
    /// applied: the donation keeps its state and nothing reaches the ledger. It is recorded once
    /// per event id (`stripe_amount_mismatches`), counted and logged as a warning, and the
    /// delivery is acknowledged (2xx), so Stripe does not retry it forever.
    async fn amount_mismatch(
        &self,
        event: &EventBody,
        donation: &DonationRecord,
        payment_intent_id: &str,
        received_amount: i64,
        received_currency: &str,
    ) -> Result<WebhookOutcome, DonationError> {
        let record = AmountMismatchRecord {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            donation_id: donation.id.clone(),
            payment_intent_id: payment_intent_id.to_string(),
            expected_amount: donation.amount,
            expected_currency: donation.currency.clone(),
            received_amount,
            received_currency: received_currency.to_string(),
            received_at_ms: self.clock.now_ms(),
        };
        if self
            .storage
            .donations()
            .record_amount_mismatch(&record)
            .await?
        {
            metrics::counter!(AMOUNT_MISMATCH_METRIC).increment(1);
            tracing::warn!(
                event = %event.id,
                donation = %donation.id,
                payment_intent = %payment_intent_id,
                expected_amount = donation.amount,
                expected_currency = %donation.currency,
                received_amount,
                received_currency = %record.received_currency,
                "a signed Stripe event's amount does not match its donation: not applied, recorded in stripe_amount_mismatches"
            );
        } else {
            tracing::info!(
                event = %event.id,
                donation = %donation.id,
                "redelivery of a Stripe event whose amount does not match its donation: recorded already"
            );
        }
        Ok(WebhookOutcome::Ignored(
            "amount does not match the donation",
        ))
    }

    async fn payment_canceled(
        &self,
        event: &mut EventBody,
    ) -> Result<WebhookOutcome, DonationError> {
        let intent: PaymentIntentObject = object(event)?;
        let Some(donation) = self.donation_of_intent(&intent).await? else {
            return Ok(WebhookOutcome::Ignored(
                "no donation for this PaymentIntent",
            ));
        };
        let (outcome, _) = self
            .move_for_event(&donation, DonationStatus::Cancelled, None, event)
            .await?;
        Ok(outcome)
    }

    async fn payment_failed(&self, event: &mut EventBody) -> Result<WebhookOutcome, DonationError> {
        let intent: PaymentIntentObject = object(event)?;
        let Some(donation) = self.donation_of_intent(&intent).await? else {
            return Ok(WebhookOutcome::Ignored(
                "no donation for this PaymentIntent",
            ));
        };
        let reason = intent.last_payment_error.map(|e| {
            let mut text = format!(
                "{}: {}",
                e.code.unwrap_or_else(|| "payment_failed".into()),
                e.message.unwrap_or_default()
            );
            if text.len() > FAILURE_MESSAGE_LENGTH_MAX {
                let mut end = FAILURE_MESSAGE_LENGTH_MAX;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            text
        });
        let (outcome, donation) = self
            .move_for_event(&donation, DonationStatus::Failed, reason, event)
            .await?;
        // A failure after the success left it succeeded: make sure its entry is there.
        self.record_in_ledger(&donation, None).await?;
        Ok(outcome)
    }

    async fn charge_refunded(
        &self,
        event: &mut EventBody,
    ) -> Result<WebhookOutcome, DonationError> {
        let charge: ChargeObject = object(event)?;
        let Some(intent_id) = charge
            .payment_intent
            .filter(|id| id.len() <= STRIPE_ID_LENGTH_MAX)
        else {
            return Ok(WebhookOutcome::Ignored("the charge has no PaymentIntent"));
        };
        let Some(mut donation) = self
            .storage
            .donations()
            .donation_by_payment_intent(&intent_id)
            .await?
        else {
            return Ok(WebhookOutcome::Ignored(
                "no donation for this PaymentIntent",
            ));
        };
        if charge.amount_refunded <= 0 {
            return Ok(WebhookOutcome::Ignored("nothing was refunded"));
        }
        let currency = charge.currency.as_deref().unwrap_or(&donation.currency);
        if charge.amount_refunded > donation.amount
            || !currency.eq_ignore_ascii_case(&donation.currency)
        {
            return self
                .amount_mismatch(
                    event,
                    &donation,
                    &intent_id,
                    charge.amount_refunded,
                    currency,
                )
                .await;
        }
        let id = donation_id(&donation)?;
        if matches!(
            donation.status,
            DonationStatus::Pending | DonationStatus::Failed
        ) {
            // The refund overtook the success: a refunded charge was paid.
            donation = self
                .donations
                .call(&id, |reply| DonationMsg::Transition {
                    to: DonationStatus::Succeeded,
                    failure_reason: None,
                    event: None,
                    reply,
                })
                .await??
                .record()
                .clone();
        }
        let (outcome, donation) = self
            .move_for_event(&donation, DonationStatus::Refunded, None, event)
            .await?;
        self.record_in_ledger(&donation, Some(charge.amount_refunded))
            .await?;
        Ok(match outcome {
            // A later (partial) refund of a refunded donation: its part is in the ledger now.
            WebhookOutcome::Ignored(_) if donation.status == DonationStatus::Refunded => {
                WebhookOutcome::Applied
            }
            other => other,
        })
    }

    /// The donation a PaymentIntent pays: by the `donation_id` in its metadata, else by its id.
    /// A donation that recorded another PaymentIntent is not this one's.
    async fn donation_of_intent(
        &self,
        intent: &PaymentIntentObject,
    ) -> Result<Option<DonationRecord>, DonationError> {
        if intent.id.len() > STRIPE_ID_LENGTH_MAX {
            return Err(DonationError::EventMalformed(
                "PaymentIntent id out of bounds".into(),
            ));
        }
        let donation = match intent
            .metadata
            .get("donation_id")
            .and_then(|id| DonationId::parse(id).ok())
        {
            Some(id) => {
                self.donations
                    .call(&id, |reply| DonationMsg::Get { reply })
                    .await??
            }
            None => {
                self.storage
                    .donations()
                    .donation_by_payment_intent(&intent.id)
                    .await?
            }
        };
        Ok(donation.filter(|d| {
            d.stripe_payment_intent_id
                .as_deref()
                .is_none_or(|pi| pi == intent.id)
        }))
    }

    /// Moves the donation to `to` and records the event in the same transaction. An illegal
    /// move (e.g. a failure after the success) is logged by the actor and ignored here.
    async fn move_for_event(
        &self,
        donation: &DonationRecord,
        to: DonationStatus,
        failure_reason: Option<String>,
        event: &EventBody,
    ) -> Result<(WebhookOutcome, DonationRecord), DonationError> {
        let id = donation_id(donation)?;
        let record = StripeEventRecord {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            donation_id: Some(donation.id.clone()),
            received_at_ms: self.clock.now_ms(),
        };
        let moved = self
            .donations
            .call(&id, |reply| DonationMsg::Transition {
                to,
                failure_reason: failure_reason.clone(),
                event: Some(record.clone()),
                reply,
            })
            .await?;
        match moved {
            Ok(Moved::Applied(d)) => Ok((WebhookOutcome::Applied, d)),
            Ok(Moved::Duplicate(d)) => Ok((WebhookOutcome::Duplicate, d)),
            Ok(Moved::AlreadyThere(d)) => Ok((WebhookOutcome::Ignored("already in that state"), d)),
            Err(DonationError::IllegalTransition { .. }) => {
                let current = self
                    .donations
                    .call(&id, |reply| DonationMsg::Get { reply })
                    .await??
                    .ok_or(DonationError::NotFound)?;
                Ok((
                    WebhookOutcome::Ignored("not a legal move from its state"),
                    current,
                ))
            }
            Err(error) => Err(error),
        }
    }

    /// Appends the ledger entries the donation's state calls for; each is recorded once
    /// (dedupe key), however often this runs. `refunded` is the charge's refunded total so far,
    /// when known.
    async fn record_in_ledger(
        &self,
        donation: &DonationRecord,
        refunded: Option<i64>,
    ) -> Result<(), DonationError> {
        if !matches!(
            donation.status,
            DonationStatus::Succeeded | DonationStatus::Refunded
        ) {
            return Ok(());
        }
        let metadata = LedgerMetadata {
            donation_id: Some(donation.id.clone()),
            donor_name: donation.donor_name.clone(),
            stripe_payment_intent_id: donation.stripe_payment_intent_id.clone(),
        };
        let now = self.clock.now_ms();
        let mut entries = vec![NewLedgerEntry {
            entry_type: "donation_received".into(),
            amount: donation.amount,
            currency: donation.currency.clone(),
            metadata: metadata.clone(),
            created_at_ms: now,
            dedupe_key: Some(format!("donation_received:{}", donation.id)),
            rule: AmountRule::Exact,
        }];
        if let (DonationStatus::Refunded, Some(amount)) = (donation.status, refunded) {
            entries.push(NewLedgerEntry {
                entry_type: "donation_refunded".into(),
                amount: -amount,
                currency: donation.currency.clone(),
                metadata,
                created_at_ms: now,
                dedupe_key: Some(format!("donation_refunded:{}:{amount}", donation.id)),
                rule: AmountRule::RunningTotal,
            });
        }
        // In order: the refund follows the donation in the chain.
        for entry in entries {
            self.ledger
                .append(&donation.organisation_id, entry)
                .await
                .map_err(|e| DonationError::Ledger(e.to_string()))?;
        }
        Ok(())
    }
}

/// The event's object as `T`, taken out of the event (each handler reads it once).
fn object<T: serde::de::DeserializeOwned>(event: &mut EventBody) -> Result<T, DonationError> {
    serde_json::from_value(std::mem::take(&mut event.data.object))
        .map_err(|e| DonationError::EventMalformed(format!("{} object: {e}", event.event_type)))
}

pub(super) fn donation_id(donation: &DonationRecord) -> Result<DonationId, DonationError> {
    DonationId::parse(&donation.id)
        .map_err(|_| DonationError::Storage(format!("stored donation id {}", donation.id)))
}
