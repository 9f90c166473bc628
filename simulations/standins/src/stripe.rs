//! A Stripe stand-in: the part of Stripe's API v1 that the product calls, over Stripe's wire
//! format (form-encoded requests with bracketed keys, `Authorization: Bearer sk_…`,
//! `Idempotency-Key`, `Stripe-Version`, pretty-printed JSON answers and error bodies), and
//! webhooks signed with Stripe's `Stripe-Signature` scheme. The product never depends on it: its
//! Stripe client only gets this server's [`StripeStandIn::base_url`] in tests.
//!
//! Implemented:
//! - `POST /v1/payment_intents` (`amount`, `currency`, `metadata[…]`, `description`,
//!   `receipt_email`, `automatic_payment_methods[enabled|allow_redirects]`, `payment_method`,
//!   `payment_method_data[…]`, `confirm`, `return_url`), `GET /v1/payment_intents/{id}`,
//!   `POST /v1/payment_intents/{id}/confirm` and `/cancel`; `POST /v1/refunds` (`payment_intent`
//!   or `charge`, `amount`, `reason`, `metadata[…]`); `GET /v1/charges/{id}`,
//!   `/v1/refunds/{id}`, `/v1/events/{id}`.
//! - Stripe's validation: unknown parameters, missing or malformed `amount`/`currency`, amounts
//!   below 1 or below the currency's minimum, metadata limits, bad emails, each a 400
//!   `invalid_request_error` with `param` and `code`; `resource_missing` 404s (naming the other
//!   mode when the object exists there); `payment_intent_unexpected_state`.
//! - Test cards ([`TestCard`]): `pm_card_visa` / 4242 4242 4242 4242 succeed,
//!   `pm_card_chargeDeclined` / 4000 0000 0000 0002 decline with a 402 `card_error`
//!   (`card_declined`, `generic_decline`), and the PaymentIntent returns to
//!   `requires_payment_method` with `last_payment_error`; a bad Luhn number is
//!   `incorrect_number`; a non-test number is declined in test mode as on Stripe.
//! - Test and live mode from the key prefix (`sk_test_` / `sk_live_`): `livemode` on objects
//!   and events, and objects of one mode invisible to the other's key.
//! - Idempotency per API key: the same key and parameters replay the saved status and body
//!   with `Idempotent-Replayed: true`; other parameters get a 400 `idempotency_error`; results
//!   of refused parameters are not saved, declines are.
//! - Events (`payment_intent.created|succeeded|payment_failed|canceled`,
//!   `charge.succeeded|failed|refunded`, `refund.created`) delivered to one endpoint by a
//!   background worker, with retries on a configurable schedule and test controls: copies,
//!   delays, hold and release in any order, pause and resume, forged timestamps and signatures.
//! - Faults: failing the next requests with an `api_error`, and delaying answers after the
//!   work is done (a client timeout whose retry must replay).
//!
//! Not implemented: Customers, PaymentMethods as an API, 3-D Secure (`requires_action`),
//! manual capture, updating a PaymentIntent, lists and `expand[]`, Basic authentication,
//! Connect, disputes, and Stripe's multi-day retry schedule and endpoint disabling. Events
//! raised while no endpoint is set are stored but never delivered.

mod api;
mod cards;
mod delivery;
mod error;
mod event;
mod form;
mod objects;
mod operations;
mod refunds;
mod validate;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use api::RecordedRequest;
pub use cards::{Card, TestCard};
pub use delivery::{COPIES_MAX, DeliveryAttempt, RETRIES_MAX, ReleaseOrder};
pub use event::{API_VERSION, Event, signature_header, signature_header_for, v1_signature};
pub use objects::{
    Charge, PaymentIntent, PaymentIntentStatus, Refund, set_clock_offset_secs, unix_now,
};

use delivery::Deliveries;
use error::ApiError;
use operations::Store;

/// Requests kept for inspection; the oldest are dropped past this.
const REQUESTS_KEPT_MAX: usize = 100_000;

/// Injected faults.
struct Faults {
    failures_left: usize,
    failure_status: StatusCode,
    response_delay: Duration,
}

struct Shared {
    api_keys: Mutex<Vec<String>>,
    store: Mutex<Store>,
    idempotency: Mutex<api::Idempotency>,
    requests: Mutex<VecDeque<RecordedRequest>>,
    faults: Mutex<Faults>,
    deliveries: Arc<Deliveries>,
}

impl Shared {
    /// The API key of the request, if it is one the stand-in accepts.
    fn authenticate(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let authorization = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let Some(key) = authorization.strip_prefix("Bearer ").map(str::trim) else {
            return Err(ApiError::unauthorized(
                "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
            ));
        };
        if !self.api_keys.lock().iter().any(|known| known == key) {
            return Err(ApiError::unauthorized(&format!(
                "Invalid API Key provided: {}",
                api::redact_key(key)
            )));
        }
        Ok(key.to_string())
    }

    fn take_injected_failure(&self) -> Option<StatusCode> {
        let mut faults = self.faults.lock();
        if faults.failures_left == 0 {
            return None;
        }
        faults.failures_left -= 1;
        Some(faults.failure_status)
    }

    fn record(&self, request: RecordedRequest) {
        let mut requests = self.requests.lock();
        if requests.len() == REQUESTS_KEPT_MAX {
            requests.pop_front();
        }
        requests.push_back(request);
    }

    /// Stores events and hands them to delivery, in the order raised.
    fn emit(&self, events: Vec<Event>) {
        for mut event in events {
            let pending = u8::from(self.deliveries.wants(&event.event_type));
            event.json["pending_webhooks"] = json!(pending);
            {
                let mut store = self.store.lock();
                if !store.events.is_full() {
                    store.events.insert(&event.id.clone(), event.clone());
                }
            }
            self.deliveries.dispatch(event);
        }
    }
}

pub struct StripeStandIn {
    addr: SocketAddr,
    livemode: bool,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
}

impl StripeStandIn {
    /// Serves on a free loopback port, accepting `secret_key` (`sk_test_…` or `sk_live_…`) and
    /// signing webhooks with `webhook_secret` (`whsec_…`).
    pub async fn start(secret_key: &str, webhook_secret: &str) -> anyhow::Result<Self> {
        let (deliveries, worker) = Deliveries::start(webhook_secret)?;
        let shared = Arc::new(Shared {
            api_keys: Mutex::new(vec![secret_key.to_string()]),
            store: Mutex::new(Store::default()),
            idempotency: Mutex::new(api::Idempotency::default()),
            requests: Mutex::new(VecDeque::new()),
            faults: Mutex::new(Faults {
                failures_left: 0,
                failure_status: StatusCode::INTERNAL_SERVER_ERROR,
                response_delay: Duration::ZERO,
            }),
            deliveries,
        });
        let app = axum::Router::new()
            .fallback(api::handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the Stripe stand-in")?;
        let addr = listener.local_addr().context("stand-in address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::warn!(%error, "Stripe stand-in stopped");
            }
        });
        Ok(Self {
            addr,
            livemode: secret_key.starts_with("sk_live_"),
            shared,
            stop: Some(stop),
            server,
            worker,
        })
    }

    /// What the product's Stripe base URL should be (paths start with `/v1/`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Accepts one more secret key, e.g. a live key next to the test key.
    pub fn add_api_key(&self, secret_key: &str) {
        self.shared.api_keys.lock().push(secret_key.to_string());
    }

    // Objects.

    /// PaymentIntents, oldest first.
    pub fn payment_intents(&self) -> Vec<PaymentIntent> {
        self.shared.store.lock().payment_intents.all()
    }

    pub fn payment_intent(&self, id: &str) -> Option<PaymentIntent> {
        self.shared.store.lock().payment_intents.get(id).cloned()
    }

    /// Charges, oldest first, failed ones included.
    pub fn charges(&self) -> Vec<Charge> {
        self.shared.store.lock().charges.all()
    }

    pub fn refunds(&self) -> Vec<Refund> {
        self.shared.store.lock().refunds.all()
    }

    /// Confirms a PaymentIntent as the donor's browser does through Stripe.js, raising the same
    /// events as the confirm endpoint. A decline is not an error: the PaymentIntent comes back
    /// in `requires_payment_method` with `last_payment_error`.
    pub fn confirm(&self, id: &str, card: TestCard) -> anyhow::Result<PaymentIntent> {
        let mut events = Vec::new();
        let confirmed = self
            .shared
            .store
            .lock()
            .confirm_with_card(id, card, &mut events);
        self.shared.emit(events);
        confirmed.map_err(|error| anyhow::anyhow!("confirm {id}: {}", error.body))
    }

    // Requests.

    /// Requests received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().iter().cloned().collect()
    }

    /// The `Idempotency-Key` of each POST that carried one, in order (repeats included).
    pub fn idempotency_keys(&self) -> Vec<String> {
        let requests = self.shared.requests.lock();
        let keys = requests.iter().filter_map(|r| r.idempotency_key.clone());
        keys.collect()
    }

    /// The `Stripe-Version` header of each request, in order.
    pub fn stripe_versions(&self) -> Vec<Option<String>> {
        let requests = self.shared.requests.lock();
        requests.iter().map(|r| r.stripe_version.clone()).collect()
    }

    /// The next `count` authenticated requests get `status` with an `api_error` body, without
    /// being executed or saved under their idempotency key.
    pub fn fail_next_requests(&self, count: usize, status: u16) {
        let mut faults = self.shared.faults.lock();
        faults.failures_left = count;
        faults.failure_status =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// Every answer waits this long after the request was carried out, so a client that times
    /// out has changed Stripe's state all the same.
    pub fn set_response_delay(&self, delay: Duration) {
        self.shared.faults.lock().response_delay = delay;
    }

    // Events.

    /// Events raised so far (API calls, `confirm`, `emit`), oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.shared.store.lock().events.all()
    }

    pub fn event(&self, id: &str) -> Option<Event> {
        self.shared.store.lock().events.get(id).cloned()
    }

    /// A new event of any type about `object`, in this stand-in's mode; not raised until
    /// passed to [`emit`](Self::emit) or one of the `send_event*` methods.
    pub fn build_event(&self, event_type: &str, object: Value) -> Event {
        Event::new(event_type, object, self.livemode, None, None)
    }

    /// A new event about the PaymentIntent as it is now, e.g. a late
    /// `payment_intent.payment_failed` for a PaymentIntent that has succeeded.
    pub fn payment_intent_event(&self, id: &str, event_type: &str) -> Option<Event> {
        let payment_intent = self.payment_intent(id)?;
        let livemode = payment_intent.livemode;
        Some(Event::new(
            event_type,
            payment_intent.to_json(),
            livemode,
            None,
            None,
        ))
    }

    /// Stores the event and delivers it like one Stripe raised (retries and controls apply).
    pub fn emit(&self, event: Event) {
        self.shared.emit(vec![event]);
    }

    /// Delivers a stored event once more, now (Stripe's "resend"); false if it is unknown.
    pub fn redeliver(&self, event_id: &str) -> bool {
        match self.event(event_id) {
            Some(event) => {
                self.shared.deliveries.redeliver(event);
                true
            }
            None => false,
        }
    }

    // Webhook delivery.

    /// The endpoint events are posted to, e.g. `http://127.0.0.1:1234/webhooks/stripe`.
    pub fn set_webhook_url(&self, url: &str) {
        self.shared.deliveries.set_url(Some(url));
    }

    pub fn clear_webhook_url(&self) {
        self.shared.deliveries.set_url(None);
    }

    /// Signs with one more secret, as during a rotation: each delivery then carries one `v1=`
    /// per secret.
    pub fn add_webhook_secret(&self, secret: &str) {
        self.shared.deliveries.add_secret(secret);
    }

    /// Stops signing with `secret` (the end of a rotation).
    pub fn remove_webhook_secret(&self, secret: &str) {
        self.shared.deliveries.remove_secret(secret);
    }

    pub fn webhook_secrets(&self) -> Vec<String> {
        self.shared.deliveries.secrets()
    }

    /// The event types the endpoint receives; `None` for all (Stripe's `*`).
    pub fn set_enabled_events(&self, event_types: Option<&[&str]>) {
        self.shared.deliveries.set_enabled_events(event_types);
    }

    /// The waits before each retry of a failed delivery; the number of retries is their count
    /// (at most [`RETRIES_MAX`]). An empty schedule never retries.
    pub fn set_retry_delays(&self, delays: &[Duration]) {
        self.shared.deliveries.set_retry_delays(delays);
    }

    /// How long one delivery attempt may take (10 s by default).
    pub fn set_attempt_timeout(&self, timeout: Duration) {
        self.shared.deliveries.set_attempt_timeout(timeout);
    }

    /// Each event raised from now on is delivered `copies` times (1 to [`COPIES_MAX`]).
    pub fn set_copies(&self, copies: usize) {
        self.shared.deliveries.set_copies(copies);
    }

    /// Events raised from now on wait this long before their first attempt; later events can
    /// overtake them. `Duration::ZERO` turns it off.
    pub fn set_delivery_delay(&self, delay: Duration) {
        self.shared.deliveries.set_delay(None, delay);
    }

    /// As [`set_delivery_delay`](Self::set_delivery_delay), for one event type only (it wins
    /// over the global delay).
    pub fn set_delivery_delay_for(&self, event_type: &str, delay: Duration) {
        self.shared.deliveries.set_delay(Some(event_type), delay);
    }

    /// Holds events raised from now on, until [`release_held`](Self::release_held).
    pub fn hold_deliveries(&self) {
        self.shared.deliveries.hold();
    }

    pub fn held_events(&self) -> Vec<Event> {
        self.shared.deliveries.held()
    }

    /// Stops holding and delivers the held events in `order`; answers how many.
    pub fn release_held(&self, order: ReleaseOrder) -> usize {
        self.shared.deliveries.release(order)
    }

    /// Stops the delivery worker; queued events and retries wait.
    pub fn pause_deliveries(&self) {
        self.shared.deliveries.pause();
    }

    pub fn resume_deliveries(&self) {
        self.shared.deliveries.resume();
    }

    /// Every delivery attempt so far, in the order made.
    pub fn deliveries(&self) -> Vec<DeliveryAttempt> {
        self.shared.deliveries.attempts()
    }

    /// The ids of events the endpoint acknowledged (2xx), once per acknowledgement.
    pub fn acknowledged_event_ids(&self) -> Vec<String> {
        let attempts = self.shared.deliveries.attempts();
        let acknowledged = attempts.into_iter().filter(DeliveryAttempt::succeeded);
        acknowledged.map(|attempt| attempt.event_id).collect()
    }

    // One-off sends, outside the queue and the attempt log; each answers the endpoint's status.

    /// Posts `event` once, signed now with the current secrets.
    pub async fn send_event(&self, event: &Event) -> anyhow::Result<u16> {
        self.send(event, None, None).await
    }

    /// Posts `event` once, signed as of `timestamp` (unix seconds): a stale or future replay.
    pub async fn send_event_signed_at(&self, event: &Event, timestamp: i64) -> anyhow::Result<u16> {
        self.send(event, Some(timestamp), None).await
    }

    /// Posts `event` once, signed now with `secret` instead of the endpoint's secrets.
    pub async fn send_event_signed_with(&self, event: &Event, secret: &str) -> anyhow::Result<u16> {
        let header = signature_header(secret, unix_now(), &event.body());
        self.send(event, None, Some(&header)).await
    }

    /// Posts `event` once with exactly this `Stripe-Signature` header.
    pub async fn send_event_with_header(&self, event: &Event, header: &str) -> anyhow::Result<u16> {
        self.send(event, None, Some(header)).await
    }

    async fn send(
        &self,
        event: &Event,
        timestamp: Option<i64>,
        header: Option<&str>,
    ) -> anyhow::Result<u16> {
        let livemode = event.json["livemode"].as_bool().unwrap_or(false);
        let body = event.body();
        let deliveries = &self.shared.deliveries;
        deliveries
            .send_once(&body, livemode, timestamp, header)
            .await
    }
}

impl Drop for StripeStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.abort();
        self.worker.abort();
    }
}
