//! A Veriff stand-in: `POST /v1/sessions` as Veriff serves it (checking `X-AUTH-CLIENT` and
//! `X-HMAC-SIGNATURE`), and decision and event webhooks sent to the product the way Veriff
//! sends them, signed with Veriff's HMAC scheme or the legacy `X-SIGNATURE` one.
//!
//! The server runs on a loopback port until the value is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How a webhook is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// Veriff's: `X-HMAC-SIGNATURE` = hex(HMAC-SHA256(secret, body)).
    Hmac,
    /// The original service's: `X-SIGNATURE` = hex(SHA-256(body ‖ secret)).
    Legacy,
}

/// A session created through `POST /v1/sessions`.
#[derive(Debug, Clone, PartialEq)]
pub struct StandInSession {
    pub id: String,
    pub url: String,
    /// What the product sent as `vendorData` (the wallet address).
    pub vendor_data: String,
    /// The whole `verification` object the product sent.
    pub request: Value,
}

/// Veriff's decision statuses with their codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionStatus {
    Approved,
    Declined,
    ResubmissionRequested,
    Expired,
    Abandoned,
    Review,
}

impl DecisionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::ResubmissionRequested => "resubmission_requested",
            Self::Expired => "expired",
            Self::Abandoned => "abandoned",
            Self::Review => "review",
        }
    }

    pub fn code(self) -> i32 {
        match self {
            Self::Approved => 9001,
            Self::Declined => 9102,
            Self::ResubmissionRequested => 9103,
            Self::Expired | Self::Abandoned => 9104,
            Self::Review => 9121,
        }
    }
}

/// A decision to send; the constructors give the seed's example person and document.
#[derive(Debug, Clone)]
pub struct Decision {
    pub status: DecisionStatus,
    pub first_name: String,
    pub last_name: String,
    pub document_type: String,
    pub document_country: String,
    /// `YYYY-MM-DD`, or `None` for a document without an expiry.
    pub valid_until: Option<String>,
    pub reason: Option<String>,
    pub reason_code: Option<i32>,
}

impl Decision {
    pub fn new(status: DecisionStatus) -> Self {
        let refused = status != DecisionStatus::Approved && status != DecisionStatus::Review;
        Self {
            status,
            first_name: "SARAH".into(),
            last_name: "MORGAN".into(),
            document_type: "DRIVERS_LICENSE".into(),
            document_country: "GB".into(),
            valid_until: Some("2222-04-20".into()),
            reason: refused.then(|| "Physical document not used".into()),
            reason_code: refused.then_some(101),
        }
    }

    pub fn approved() -> Self {
        Self::new(DecisionStatus::Approved)
    }

    pub fn declined() -> Self {
        Self::new(DecisionStatus::Declined)
    }

    pub fn resubmission_requested() -> Self {
        Self::new(DecisionStatus::ResubmissionRequested)
    }

    pub fn expired() -> Self {
        Self::new(DecisionStatus::Expired)
    }

    pub fn abandoned() -> Self {
        Self::new(DecisionStatus::Abandoned)
    }

    pub fn with_names(mut self, first_name: &str, last_name: &str) -> Self {
        self.first_name = first_name.into();
        self.last_name = last_name.into();
        self
    }

    pub fn with_valid_until(mut self, valid_until: Option<&str>) -> Self {
        self.valid_until = valid_until.map(str::to_string);
        self
    }
}

struct Shared {
    api_key: String,
    shared_secret: String,
    sessions: Mutex<Vec<StandInSession>>,
    rejected: AtomicUsize,
    webhook_base: Mutex<Option<String>>,
}

pub struct VeriffStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl VeriffStandIn {
    /// Serves on a free loopback port with these credentials.
    pub async fn start(api_key: &str, shared_secret: &str) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            api_key: api_key.into(),
            shared_secret: shared_secret.into(),
            sessions: Mutex::new(Vec::new()),
            rejected: AtomicUsize::new(0),
            webhook_base: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/v1/sessions", post(create_session))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the Veriff stand-in")?;
        let addr = listener.local_addr().context("stand-in address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::warn!(%error, "Veriff stand-in stopped");
            }
        });
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("stand-in HTTP client")?;
        Ok(Self {
            addr,
            shared,
            client,
            stop: Some(stop),
            server,
        })
    }

    /// What the product's `veriff.base_url` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where webhooks go: the product's base URL (`…/veriff/webhook/decision` is added).
    pub fn set_webhook_base(&self, url: &str) {
        *self.shared.webhook_base.lock() = Some(url.trim_end_matches('/').to_string());
    }

    /// Sessions created so far, oldest first.
    pub fn sessions(&self) -> Vec<StandInSession> {
        self.shared.sessions.lock().clone()
    }

    /// Session requests refused for a missing or wrong API key or signature.
    pub fn rejected_requests(&self) -> usize {
        self.shared.rejected.load(Ordering::SeqCst)
    }

    /// A decision webhook body for `session_id`, exactly as it will be sent.
    pub fn decision_body(&self, session_id: &str, decision: &Decision) -> Vec<u8> {
        let vendor_data = self.vendor_data(session_id);
        let status = decision.status;
        json!({
            "status": "success",
            "verification": {
                "id": session_id,
                "code": status.code(),
                "person": {
                    "gender": null, "idNumber": null,
                    "lastName": decision.last_name, "firstName": decision.first_name,
                    "citizenship": null, "dateOfBirth": "1967-03-30", "nationality": null,
                    "yearOfBirth": "1967", "placeOfBirth": "MADRID", "pepSanctionMatch": null,
                },
                "reason": decision.reason,
                "status": status.as_str(),
                "comments": [],
                "document": {
                    "type": decision.document_type, "number": "MORGA753116SM9IJ",
                    "country": decision.document_country, "validFrom": null,
                    "validUntil": decision.valid_until,
                },
                "reasonCode": decision.reason_code,
                "vendorData": vendor_data,
                "decisionTime": "2019-11-06T07:18:36.916Z",
                "acceptanceTime": "2019-11-06T07:15:27.000Z",
                "additionalVerifiedData": {"driversLicenseCategory": {"B": true}},
                "riskLabels": [],
            },
            "technicalData": {"ip": "186.153.67.122"},
        })
        .to_string()
        .into_bytes()
    }

    /// An event webhook body: `code` 7001 (`started`) or 7002 (`submitted`).
    pub fn event_body(&self, session_id: &str, code: i32, action: &str) -> Vec<u8> {
        json!({
            "id": session_id,
            "attemptId": uuid::Uuid::new_v4().to_string(),
            "feature": "selfid",
            "code": code,
            "action": action,
            "vendorData": self.vendor_data(session_id),
        })
        .to_string()
        .into_bytes()
    }

    /// The headers Veriff would send with `body`.
    pub fn signed_headers(&self, body: &[u8], scheme: SignatureScheme) -> Vec<(String, String)> {
        let secret = self.shared.shared_secret.as_bytes();
        let signature = match scheme {
            SignatureScheme::Hmac => ("X-HMAC-SIGNATURE", hmac_signature(secret, body)),
            SignatureScheme::Legacy => ("X-SIGNATURE", legacy_signature(secret, body)),
        };
        vec![
            ("X-AUTH-CLIENT".into(), self.shared.api_key.clone()),
            (signature.0.into(), signature.1),
        ]
    }

    /// Sends a signed decision webhook; answers the product's status.
    pub async fn send_decision(
        &self,
        session_id: &str,
        decision: &Decision,
        scheme: SignatureScheme,
    ) -> anyhow::Result<u16> {
        let body = self.decision_body(session_id, decision);
        let headers = self.signed_headers(&body, scheme);
        self.post_webhook("/veriff/webhook/decision", body, &headers)
            .await
    }

    /// Sends a signed event webhook; answers the product's status.
    pub async fn send_event(
        &self,
        session_id: &str,
        code: i32,
        action: &str,
        scheme: SignatureScheme,
    ) -> anyhow::Result<u16> {
        let body = self.event_body(session_id, code, action);
        let headers = self.signed_headers(&body, scheme);
        self.post_webhook("/veriff/webhook/event", body, &headers)
            .await
    }

    /// Posts `body` with exactly `headers` to the product's `path` (for forged deliveries).
    pub async fn post_webhook(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(String, String)],
    ) -> anyhow::Result<u16> {
        let base = self
            .shared
            .webhook_base
            .lock()
            .clone()
            .context("set_webhook_base first")?;
        let mut request = self
            .client
            .post(format!("{base}{path}"))
            .header("Content-Type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.context("send webhook")?;
        Ok(response.status().as_u16())
    }

    fn vendor_data(&self, session_id: &str) -> Value {
        self.shared
            .sessions
            .lock()
            .iter()
            .find(|s| s.id == session_id)
            .map(|s| Value::String(s.vendor_data.clone()))
            .unwrap_or(Value::Null)
    }
}

impl Drop for VeriffStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.abort();
    }
}

async fn create_session(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature_ok = header("x-hmac-signature").is_some_and(|signature| {
        signature.eq_ignore_ascii_case(&hmac_signature(shared.shared_secret.as_bytes(), &body))
    });
    if header("x-auth-client") != Some(shared.api_key.as_str()) || !signature_ok {
        shared.rejected.fetch_add(1, Ordering::SeqCst);
        let answer = json!({"status": "fail", "code": 1102,
            "message": "Mandatory X-AUTH-CLIENT header containing the API key is missing from the request, or the signature is wrong."});
        return (StatusCode::UNAUTHORIZED, Json(answer));
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => {
            let answer = json!({"status": "fail", "code": 1104, "message": error.to_string()});
            return (StatusCode::BAD_REQUEST, Json(answer));
        }
    };
    let verification = request["verification"].clone();
    let vendor_data = verification["vendorData"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let url = format!("https://alchemy.veriff.com/v/{token}");
    shared.sessions.lock().push(StandInSession {
        id: id.clone(),
        url: url.clone(),
        vendor_data: vendor_data.clone(),
        request: verification,
    });
    let answer = json!({
        "status": "success",
        "verification": {
            "id": id,
            "url": url,
            "vendorData": vendor_data,
            "host": "https://alchemy.veriff.com",
            "status": "created",
            "sessionToken": token,
        }
    });
    (StatusCode::CREATED, Json(answer))
}

/// hex(HMAC-SHA256(secret, body)).
pub fn hmac_signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// hex(SHA-256(body ‖ secret)).
pub fn legacy_signature(secret: &[u8], body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(secret);
    hex::encode(hasher.finalize())
}
