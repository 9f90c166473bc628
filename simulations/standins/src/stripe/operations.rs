//! What each endpoint does to the stored objects, and the events it raises. Every operation runs
//! under the store's lock with no I/O, so two requests never interleave; events are returned to
//! the caller, which hands them to delivery once the lock is released.

use serde_json::{Value, json};

use super::cards::{Card, TestCard, card_for_token, card_from_data, decline_message};
use super::error::ApiError;
use super::event::Event;
use super::form::Params;
use super::objects::{Charge, PaymentIntent, PaymentIntentStatus, Refund, Table, new_id, unix_now};
use super::validate;

/// How many objects of each kind the stand-in keeps; past this it answers 429.
const OBJECTS_MAX: usize = 1_000_000;

/// Who made the call: the key's mode, and the request the events will name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    pub(crate) livemode: bool,
    pub(crate) request_id: Option<String>,
    pub(crate) idempotency_key: Option<String>,
}

impl Caller {
    pub(crate) fn event(&self, event_type: &str, object: Value) -> Event {
        Event::new(
            event_type,
            object,
            self.livemode,
            self.request_id.as_deref(),
            self.idempotency_key.as_deref(),
        )
    }
}

pub(crate) struct Store {
    pub(crate) payment_intents: Table<PaymentIntent>,
    pub(crate) charges: Table<Charge>,
    pub(crate) refunds: Table<Refund>,
    pub(crate) events: Table<Event>,
    /// PaymentMethods made from tokens and card data, by id, with their mode.
    payment_methods: Table<(Card, bool)>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            payment_intents: Table::new(OBJECTS_MAX),
            charges: Table::new(OBJECTS_MAX),
            refunds: Table::new(OBJECTS_MAX),
            events: Table::new(OBJECTS_MAX),
            payment_methods: Table::new(OBJECTS_MAX),
        }
    }
}

const CREATE_PARAMS: &[&str] = &[
    "amount",
    "currency",
    "confirm",
    "description",
    "metadata",
    "payment_method",
    "receipt_email",
    "return_url",
    "automatic_payment_methods[enabled]",
    "automatic_payment_methods[allow_redirects]",
];
const PAYMENT_METHOD_DATA: &str = "payment_method_data[";
const CONFIRM_PARAMS: &[&str] = &["payment_method", "receipt_email", "return_url"];
const CANCELLATION_REASONS: &[&str] = &[
    "abandoned",
    "duplicate",
    "fraudulent",
    "requested_by_customer",
];

impl Store {
    pub(crate) fn check_room(&self) -> Result<(), ApiError> {
        let full = self.payment_intents.is_full()
            || self.charges.is_full()
            || self.refunds.is_full()
            || self.events.is_full()
            || self.payment_methods.is_full();
        if full {
            return Err(ApiError::rate_limited(
                "The Stripe stand-in holds as many objects as it may.",
            ));
        }
        Ok(())
    }

    /// `POST /v1/payment_intents`.
    pub(crate) fn create_payment_intent(
        &mut self,
        caller: &Caller,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<Value, ApiError> {
        validate::known_params(params, CREATE_PARAMS, &["metadata[", PAYMENT_METHOD_DATA])?;
        let amount = validate::amount(params)?;
        let currency = validate::currency(params)?;
        validate::minimum_amount(amount, &currency)?;
        let metadata = validate::metadata(params)?;
        let automatic_payment_methods =
            validate::boolean(params, "automatic_payment_methods[enabled]")?;
        validate::one_of(
            params,
            "automatic_payment_methods[allow_redirects]",
            &["always", "never"],
        )?;
        let confirm = validate::boolean(params, "confirm")?.unwrap_or(false);
        let receipt_email = validate::email(params, "receipt_email")?;
        self.check_room()?;
        let payment_method = self.payment_method_from(params, caller.livemode)?;
        if confirm && payment_method.is_none() {
            return Err(ApiError::param(
                "payment_method",
                "payment_intent_unexpected_state",
                "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method.",
            ));
        }
        let id = new_id("pi");
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let payment_intent = PaymentIntent {
            client_secret: format!("{id}_secret_{}", &secret[..25]),
            id: id.clone(),
            amount,
            currency,
            status: match payment_method {
                Some(_) => PaymentIntentStatus::RequiresConfirmation,
                None => PaymentIntentStatus::RequiresPaymentMethod,
            },
            metadata,
            description: params.get("description").map(str::to_string),
            receipt_email,
            automatic_payment_methods,
            payment_method: payment_method.as_ref().map(|(pm, _)| pm.clone()),
            latest_charge: None,
            last_payment_error: None,
            livemode: caller.livemode,
            created: unix_now(),
            canceled_at: None,
            cancellation_reason: None,
        };
        events.push(caller.event("payment_intent.created", payment_intent.to_json()));
        self.payment_intents.insert(&id, payment_intent.clone());
        match payment_method {
            Some((pm, card)) if confirm => self.charge(caller, &id, &pm, &card, events),
            _ => Ok(payment_intent.to_json()),
        }
    }

    /// `GET /v1/payment_intents/{id}`.
    pub(crate) fn payment_intent(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<&PaymentIntent, ApiError> {
        match self.payment_intents.get(id) {
            Some(pi) if pi.livemode == caller.livemode => Ok(pi),
            Some(_) => Err(other_mode("payment_intent", "intent", id, caller.livemode)),
            None => Err(ApiError::no_such("payment_intent", "intent", id)),
        }
    }

    /// `POST /v1/payment_intents/{id}/confirm`, with a card from the request or the one attached.
    pub(crate) fn confirm_payment_intent(
        &mut self,
        caller: &Caller,
        id: &str,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<Value, ApiError> {
        validate::known_params(params, CONFIRM_PARAMS, &[PAYMENT_METHOD_DATA])?;
        let receipt_email = validate::email(params, "receipt_email")?;
        let payment_intent = self.payment_intent(caller, id)?.clone();
        confirmable(&payment_intent)?;
        self.check_room()?;
        let attached = payment_intent.payment_method.as_deref().and_then(|pm| {
            let (card, _) = self.payment_methods.get(pm)?;
            Some((pm.to_string(), card.clone()))
        });
        let Some((pm, card)) = self
            .payment_method_from(params, caller.livemode)?
            .or(attached)
        else {
            return Err(ApiError::unexpected_state(
                "payment_intent_unexpected_state",
                "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method.",
                Some(("payment_intent", payment_intent.to_json())),
            ));
        };
        if let Some(email) = receipt_email
            && let Some(stored) = self.payment_intents.get_mut(id)
        {
            stored.receipt_email = Some(email);
        }
        self.charge(caller, id, &pm, &card, events)
    }

    /// Confirms as the customer's browser would through Stripe.js, with a test card.
    pub(crate) fn confirm_with_card(
        &mut self,
        id: &str,
        test_card: TestCard,
        events: &mut Vec<Event>,
    ) -> Result<PaymentIntent, ApiError> {
        let livemode = self
            .payment_intents
            .get(id)
            .map(|pi| pi.livemode)
            .unwrap_or_default();
        let caller = Caller {
            livemode,
            request_id: Some(new_id("req")),
            idempotency_key: None,
        };
        let payment_intent = self.payment_intent(&caller, id)?.clone();
        confirmable(&payment_intent)?;
        self.check_room()?;
        let card = test_card.card(livemode);
        let pm = new_id("pm");
        self.payment_methods.insert(&pm, (card.clone(), livemode));
        // A decline is an outcome here, not an error: the PaymentIntent shows it.
        let _ = self.charge(&caller, id, &pm, &card, events);
        Ok(self.payment_intent(&caller, id)?.clone())
    }

    /// `payment_method` (a `pm_card_*` token or a stored id) or `payment_method_data[…]`.
    fn payment_method_from(
        &mut self,
        params: &Params,
        livemode: bool,
    ) -> Result<Option<(String, Card)>, ApiError> {
        let card = if let Some(pm) = params.get("payment_method") {
            if let Some((card, mode)) = self.payment_methods.get(pm)
                && *mode == livemode
            {
                return Ok(Some((pm.to_string(), card.clone())));
            }
            card_for_token(pm, livemode)
                .ok_or_else(|| ApiError::no_such_param("PaymentMethod", "payment_method", pm))?
        } else if params.get("payment_method_data[type]").is_some() {
            card_from_data(params, livemode)?
        } else {
            return Ok(None);
        };
        let pm = new_id("pm");
        self.payment_methods.insert(&pm, (card.clone(), livemode));
        Ok(Some((pm, card)))
    }

    /// Charges the card: the PaymentIntent succeeds, or goes back to `requires_payment_method`
    /// with `last_payment_error` and the answer is a 402 `card_error`.
    fn charge(
        &mut self,
        caller: &Caller,
        id: &str,
        pm: &str,
        card: &Card,
        events: &mut Vec<Event>,
    ) -> Result<Value, ApiError> {
        let Some(payment_intent) = self.payment_intents.get_mut(id) else {
            return Err(ApiError::no_such("payment_intent", "intent", id));
        };
        let charge = new_charge(payment_intent, id, pm, card);
        payment_intent.latest_charge = Some(charge.id.clone());
        let pm_json = card.payment_method_json(pm, payment_intent.livemode, charge.created);
        let declined = settle(payment_intent, &charge.id, pm, card, &pm_json);
        let payment_intent = payment_intent.to_json();
        let (charge_event, intent_event) = match declined {
            None => ("charge.succeeded", "payment_intent.succeeded"),
            Some(_) => ("charge.failed", "payment_intent.payment_failed"),
        };
        events.push(caller.event(charge_event, charge.to_json()));
        events.push(caller.event(intent_event, payment_intent.clone()));
        let charge_id = charge.id.clone();
        self.charges.insert(&charge_id, charge);
        let Some(decline_code) = declined else {
            return Ok(payment_intent);
        };
        Err(ApiError::card(
            "card_declined",
            decline_message(&decline_code),
            vec![
                ("charge", json!(charge_id)),
                ("decline_code", json!(decline_code)),
                ("payment_intent", payment_intent),
                ("payment_method", pm_json),
            ],
        ))
    }

    /// `POST /v1/payment_intents/{id}/cancel`.
    pub(crate) fn cancel_payment_intent(
        &mut self,
        caller: &Caller,
        id: &str,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<Value, ApiError> {
        validate::known_params(params, &["cancellation_reason"], &[])?;
        let reason = validate::one_of(params, "cancellation_reason", CANCELLATION_REASONS)?;
        let current = self.payment_intent(caller, id)?.clone();
        if matches!(
            current.status,
            PaymentIntentStatus::Succeeded | PaymentIntentStatus::Canceled
        ) {
            return Err(ApiError::unexpected_state(
                "payment_intent_unexpected_state",
                &format!(
                    "You cannot cancel this PaymentIntent because it has a status of {}. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.",
                    current.status.as_str()
                ),
                Some(("payment_intent", current.to_json())),
            ));
        }
        let Some(payment_intent) = self.payment_intents.get_mut(id) else {
            return Err(ApiError::no_such("payment_intent", "intent", id));
        };
        payment_intent.status = PaymentIntentStatus::Canceled;
        payment_intent.canceled_at = Some(unix_now());
        payment_intent.cancellation_reason = reason;
        let object = payment_intent.to_json();
        events.push(caller.event("payment_intent.canceled", object.clone()));
        Ok(object)
    }

    /// `GET /v1/charges/{id}`, `/v1/refunds/{id}`, `/v1/events/{id}`.
    pub(crate) fn retrieve(
        &self,
        caller: &Caller,
        kind: &str,
        id: &str,
    ) -> Result<Value, ApiError> {
        let found = match kind {
            "charges" => self.charges.get(id).map(|c| (c.livemode, c.to_json())),
            "refunds" => self.refunds.get(id).map(|r| (r.livemode, r.to_json())),
            "events" => self.events.get(id).map(|e| {
                (
                    e.json["livemode"].as_bool().unwrap_or_default(),
                    e.json.clone(),
                )
            }),
            _ => None,
        };
        let name = kind.trim_end_matches('s');
        match found {
            Some((livemode, json)) if livemode == caller.livemode => Ok(json),
            Some(_) => Err(other_mode(name, "id", id, caller.livemode)),
            None => Err(ApiError::no_such(name, "id", id)),
        }
    }
}

/// The Charge of `card` for the PaymentIntent `id`: succeeded, or failed with the card's
/// decline code.
fn new_charge(payment_intent: &PaymentIntent, id: &str, pm: &str, card: &Card) -> Charge {
    Charge {
        id: new_id("ch"),
        amount: payment_intent.amount,
        amount_refunded: 0,
        currency: payment_intent.currency.clone(),
        status: if card.decline_code.is_some() {
            "failed"
        } else {
            "succeeded"
        }
        .into(),
        payment_intent: id.to_string(),
        payment_method: pm.to_string(),
        card: card.clone(),
        failure: card
            .decline_code
            .clone()
            .map(|decline| ("card_declined".to_string(), decline)),
        metadata: payment_intent.metadata.clone(),
        description: payment_intent.description.clone(),
        receipt_email: payment_intent.receipt_email.clone(),
        livemode: payment_intent.livemode,
        created: unix_now(),
    }
}

/// The PaymentIntent after the charge `charge_id`: succeeded with the payment method, or back
/// to `requires_payment_method` with `last_payment_error`. Answers the decline code, if any.
fn settle(
    payment_intent: &mut PaymentIntent,
    charge_id: &str,
    pm: &str,
    card: &Card,
    pm_json: &Value,
) -> Option<String> {
    match &card.decline_code {
        None => {
            payment_intent.status = PaymentIntentStatus::Succeeded;
            payment_intent.payment_method = Some(pm.to_string());
            payment_intent.last_payment_error = None;
            None
        }
        Some(decline_code) => {
            let error = json!({
                "charge": charge_id, "code": "card_declined", "decline_code": decline_code,
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "message": decline_message(decline_code), "payment_method": pm_json,
                "type": "card_error",
            });
            payment_intent.status = PaymentIntentStatus::RequiresPaymentMethod;
            payment_intent.payment_method = None;
            payment_intent.last_payment_error = Some(error);
            Some(decline_code.clone())
        }
    }
}

/// Refuses to confirm a PaymentIntent that has succeeded or was canceled.
fn confirmable(payment_intent: &PaymentIntent) -> Result<(), ApiError> {
    let message = match payment_intent.status {
        PaymentIntentStatus::Succeeded => {
            "You cannot confirm this PaymentIntent because it has already succeeded after being previously confirmed."
                .to_string()
        }
        PaymentIntentStatus::Canceled => {
            "You cannot confirm this PaymentIntent because it has a status of canceled. Only a PaymentIntent with one of the following statuses may be confirmed: requires_confirmation, requires_action, requires_payment_method."
                .to_string()
        }
        PaymentIntentStatus::RequiresPaymentMethod | PaymentIntentStatus::RequiresConfirmation => {
            return Ok(());
        }
    };
    Err(ApiError::unexpected_state(
        "payment_intent_unexpected_state",
        &message,
        Some(("payment_intent", payment_intent.to_json())),
    ))
}

/// Stripe's 404 for an object that exists, but in the other mode.
fn other_mode(object_name: &str, param: &str, id: &str, livemode: bool) -> ApiError {
    let (exists_in, used) = if livemode {
        ("test", "live")
    } else {
        ("live", "test")
    };
    let mut error = ApiError::no_such(object_name, param, id);
    error.body["error"]["message"] = json!(format!(
        "No such {object_name}: '{id}'; a similar object exists in {exists_in} mode, but a {used} mode key was used to make this request."
    ));
    error
}
