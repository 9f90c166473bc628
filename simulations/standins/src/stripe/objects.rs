//! The objects the stand-in keeps (PaymentIntents, Charges, Refunds) and their JSON, with the
//! fields a client reads; fields the stand-in has no behaviour for are sent as Stripe sends
//! them when unused (`null`, `false`, `[]`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::cards::Card;

/// A fresh Stripe-style id: the prefix, `_`, then 24 alphanumerics.
pub(crate) fn new_id(prefix: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &random[..24])
}

/// Seconds added to the system clock by [`unix_now`]; see [`set_clock_offset_secs`].
static CLOCK_OFFSET_SECS: AtomicI64 = AtomicI64::new(0);

/// Moves the stand-in's clock (every `created` field and every signature's timestamp) by
/// `secs`, for a run whose servers are on a shifted clock (the fault campaign's). It holds
/// for the whole process.
pub fn set_clock_offset_secs(secs: i64) {
    CLOCK_OFFSET_SECS.store(secs, Ordering::Relaxed);
}

/// Unix seconds, as in every `created` field.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
        + CLOCK_OFFSET_SECS.load(Ordering::Relaxed)
}

/// The PaymentIntent statuses the stand-in reaches. Stripe has more (`requires_action`,
/// `processing`, `requires_capture`) that need 3-D Secure, delayed methods or manual capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentIntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    Succeeded,
    Canceled,
}

impl PaymentIntentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::RequiresConfirmation => "requires_confirmation",
            Self::Succeeded => "succeeded",
            Self::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PaymentIntent {
    pub id: String,
    pub amount: i64,
    /// Lowercase ISO code, as Stripe answers it.
    pub currency: String,
    pub status: PaymentIntentStatus,
    pub client_secret: String,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
    pub receipt_email: Option<String>,
    /// `automatic_payment_methods[enabled]`, when it was sent.
    pub automatic_payment_methods: Option<bool>,
    pub payment_method: Option<String>,
    pub latest_charge: Option<String>,
    /// The `last_payment_error` object after a decline, `None` once a payment succeeds.
    pub last_payment_error: Option<Value>,
    pub livemode: bool,
    pub created: i64,
    pub canceled_at: Option<i64>,
    pub cancellation_reason: Option<String>,
}

impl PaymentIntent {
    pub fn to_json(&self) -> Value {
        let succeeded = self.status == PaymentIntentStatus::Succeeded;
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": if succeeded { self.amount } else { 0 },
            "application": null,
            "application_fee_amount": null,
            "automatic_payment_methods": self.automatic_payment_methods
                .map(|enabled| json!({"allow_redirects": "always", "enabled": enabled})),
            "canceled_at": self.canceled_at,
            "cancellation_reason": self.cancellation_reason,
            "capture_method": "automatic",
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "customer": null,
            "description": self.description,
            "last_payment_error": self.last_payment_error,
            "latest_charge": self.latest_charge,
            "livemode": self.livemode,
            "metadata": self.metadata,
            "next_action": null,
            "on_behalf_of": null,
            "payment_method": self.payment_method,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"],
            "processing": null,
            "receipt_email": self.receipt_email,
            "review": null,
            "setup_future_usage": null,
            "shipping": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": self.status.as_str(),
            "transfer_data": null,
            "transfer_group": null,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub id: String,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
    /// `succeeded` or `failed`.
    pub status: String,
    pub payment_intent: String,
    pub payment_method: String,
    pub card: Card,
    /// `card_declined` and the decline code, for a failed charge.
    pub failure: Option<(String, String)>,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
    pub receipt_email: Option<String>,
    pub livemode: bool,
    pub created: i64,
}

impl Charge {
    pub fn paid(&self) -> bool {
        self.failure.is_none()
    }

    pub fn refunded(&self) -> bool {
        self.paid() && self.amount_refunded == self.amount
    }

    pub fn to_json(&self) -> Value {
        let paid = self.paid();
        let outcome = match &self.failure {
            None => json!({
                "network_status": "approved_by_network", "reason": null, "risk_level": "normal",
                "risk_score": 32, "seller_message": "Payment complete.", "type": "authorized",
            }),
            Some((_, decline_code)) => json!({
                "network_status": "declined_by_network", "reason": decline_code,
                "risk_level": "normal", "risk_score": 32,
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined",
            }),
        };
        json!({
            "id": self.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": if paid { self.amount } else { 0 },
            "amount_refunded": self.amount_refunded,
            "balance_transaction": paid.then(|| format!("txn_{}", &self.id[3..])),
            "billing_details": {"address": null, "email": null, "name": null, "phone": null},
            "captured": paid,
            "created": self.created,
            "currency": self.currency,
            "customer": null,
            "description": self.description,
            "disputed": false,
            "failure_code": self.failure.as_ref().map(|(code, _)| code),
            "failure_message": self.failure.as_ref().map(|(_, decline)| super::cards::decline_message(decline)),
            "livemode": self.livemode,
            "metadata": self.metadata,
            "outcome": outcome,
            "paid": paid,
            "payment_intent": self.payment_intent,
            "payment_method": self.payment_method,
            "payment_method_details": {"card": self.card.details_json(), "type": "card"},
            "receipt_email": self.receipt_email,
            "refunded": self.refunded(),
            "status": self.status,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub charge: String,
    pub payment_intent: String,
    pub currency: String,
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub livemode: bool,
    pub created: i64,
}

impl Refund {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "balance_transaction": format!("txn_{}", &self.id[3..]),
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "metadata": self.metadata,
            "payment_intent": self.payment_intent,
            "reason": self.reason,
            "receipt_number": null,
            "source_transfer_reversal": null,
            "status": "succeeded",
            "transfer_reversal": null,
        })
    }
}

/// Rows in the order they were made, found by id, with a fixed maximum.
#[derive(Debug)]
pub(crate) struct Table<T> {
    rows: Vec<T>,
    index: HashMap<String, usize>,
    rows_max: usize,
}

impl<T: Clone> Table<T> {
    pub(crate) fn new(rows_max: usize) -> Self {
        Self {
            rows: Vec::new(),
            index: HashMap::new(),
            rows_max,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.rows.len() >= self.rows_max
    }

    /// Adds a row; the caller checks `is_full` first, so a full table is a bug here.
    pub(crate) fn insert(&mut self, id: &str, row: T) {
        debug_assert!(!self.is_full(), "table is full");
        self.index.insert(id.to_string(), self.rows.len());
        self.rows.push(row);
    }

    pub(crate) fn get(&self, id: &str) -> Option<&T> {
        self.index.get(id).map(|&at| &self.rows[at])
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.index.get(id).map(|&at| &mut self.rows[at])
    }

    pub(crate) fn all(&self) -> Vec<T> {
        self.rows.clone()
    }
}
