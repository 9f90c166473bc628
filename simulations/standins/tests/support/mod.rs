//! Helpers for the Stripe stand-in tests: a form-encoding client, a webhook receiver that checks
//! Stripe signatures with its own HMAC code, and polling with a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use serde_json::Value;
use sha2::Sha256;

pub const SECRET_KEY: &str = "sk_test_51StandIn4eC39HqLyjWDarjtT1zdp7dc";
pub const WEBHOOK_SECRET: &str = "whsec_standin_0123456789abcdef";
pub const STRIPE_VERSION: &str = "2024-06-20";
/// Stripe's default signature tolerance.
pub const TOLERANCE_S: i64 = 300;

/// A Stripe client as the product would write one: form bodies, Bearer key, pinned version.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base_url: String,
    pub key: String,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    pub fn new(base_url: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url: base_url.to_string(),
            key: key.to_string(),
        }
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)], key: Option<&str>) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.key)
            .header("Stripe-Version", STRIPE_VERSION)
            .form(form);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        answer(request.send().await.expect("stand-in answers")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        let request = self
            .http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(&self.key)
            .header("Stripe-Version", STRIPE_VERSION);
        answer(request.send().await.expect("stand-in answers")).await
    }

    /// A PaymentIntent for 50.00 EUR; answers its JSON.
    pub async fn create_payment_intent(&self) -> Value {
        let form = [("amount", "5000"), ("currency", "eur")];
        let answer = self.post("/v1/payment_intents", &form, None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    pub async fn confirm_with_number(&self, id: &str, number: &str) -> Answer {
        let form = [
            ("payment_method_data[type]", "card"),
            ("payment_method_data[card][number]", number),
            ("payment_method_data[card][exp_month]", "12"),
            ("payment_method_data[card][exp_year]", "2034"),
            ("payment_method_data[card][cvc]", "123"),
        ];
        let path = format!("/v1/payment_intents/{id}/confirm");
        self.post(&path, &form, None).await
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).expect("JSON body");
    Answer {
        status,
        headers,
        body,
    }
}

/// One webhook as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: String,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Received {
    pub fn event(&self) -> Value {
        serde_json::from_slice(&self.body).expect("event JSON")
    }

    pub fn event_id(&self) -> String {
        self.event()["id"].as_str().unwrap_or_default().to_string()
    }
}

struct ReceiverState {
    secrets: Vec<String>,
    failures_left: Mutex<usize>,
    received: Mutex<Vec<Received>>,
}

/// An endpoint that answers 500 for its first `failures` requests, then 200 for a valid
/// signature and 400 for anything else, as the product's endpoint should.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start(secrets: &[&str], failures: usize) -> Self {
        let state = Arc::new(ReceiverState {
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            failures_left: Mutex::new(failures),
            received: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/webhooks/stripe", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/webhooks/stripe"),
            state,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().clone()
    }

    /// The events answered 200, in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        let received = self.received();
        let accepted = received.iter().filter(|r| r.status == 200);
        accepted.map(Received::event).collect()
    }

    pub fn accepted_types(&self) -> Vec<String> {
        let accepted = self.accepted();
        let types = accepted
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default());
        types.map(str::to_string).collect()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let failing = {
        let mut failures_left = state.failures_left.lock();
        let failing = *failures_left > 0;
        *failures_left = failures_left.saturating_sub(1);
        failing
    };
    let status = if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if verify(&signature, &body, &state.secrets, TOLERANCE_S) {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    state.received.lock().push(Received {
        signature,
        body: body.to_vec(),
        status: status.as_u16(),
    });
    status
}

/// Stripe's check, written independently of the stand-in: `t` within the tolerance, and some
/// `v1` equal (in constant time) to HMAC-SHA256(secret, "{t}.{body}") for some secret.
pub fn verify(header: &str, body: &[u8], secrets: &[String], tolerance_s: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    if (now - timestamp).abs() > tolerance_s {
        return false;
    }
    secrets.iter().any(|secret| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        signatures
            .iter()
            .any(|signature| mac.clone().verify_slice(signature).is_ok())
    })
}

/// Polls `condition` until it holds; fails the test after five seconds.
pub async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
