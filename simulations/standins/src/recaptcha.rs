//! A reCAPTCHA v3 stand-in: Google's `POST /recaptcha/api/siteverify` (form-encoded `secret`,
//! `response`, `remoteip`), answering `{success, score, action, challenge_ts, hostname,
//! error-codes}`. Tokens are registered with the score they should get; any other token, or a
//! wrong secret, is refused with Google's error codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use axum::extract::{Form, State};
use axum::routing::post;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The path the product's `recaptcha.verify_url` should end with.
pub const SITEVERIFY_PATH: &str = "/recaptcha/api/siteverify";

struct Shared {
    secret: String,
    scores: Mutex<HashMap<String, f64>>,
    checks: AtomicUsize,
}

pub struct RecaptchaStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl RecaptchaStandIn {
    /// Serves on a free loopback port, accepting `secret`.
    pub async fn start(secret: &str) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            secret: secret.into(),
            scores: Mutex::new(HashMap::new()),
            checks: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route(SITEVERIFY_PATH, post(siteverify))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the reCAPTCHA stand-in")?;
        let addr = listener.local_addr().context("stand-in address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::warn!(%error, "reCAPTCHA stand-in stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            server,
        })
    }

    /// What the product's `recaptcha.verify_url` should be.
    pub fn verify_url(&self) -> String {
        format!("http://{}{SITEVERIFY_PATH}", self.addr)
    }

    /// Makes `token` valid, with this v3 score.
    pub fn issue(&self, token: &str, score: f64) {
        self.shared.scores.lock().insert(token.into(), score);
    }

    /// How many siteverify calls were made.
    pub fn checks(&self) -> usize {
        self.shared.checks.load(Ordering::Relaxed)
    }
}

impl Drop for RecaptchaStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.abort();
    }
}

#[derive(Deserialize)]
struct SiteVerifyForm {
    #[serde(default)]
    secret: String,
    #[serde(default)]
    response: String,
}

async fn siteverify(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<SiteVerifyForm>,
) -> Json<Value> {
    shared.checks.fetch_add(1, Ordering::Relaxed);
    let refused = |code: &str| Json(json!({"success": false, "error-codes": [code]}));
    if form.secret != shared.secret {
        return refused("invalid-input-secret");
    }
    let Some(score) = shared.scores.lock().get(&form.response).copied() else {
        return refused("invalid-input-response");
    };
    Json(json!({
        "success": true,
        "score": score,
        "action": "faucet",
        "challenge_ts": "2026-01-01T00:00:00Z",
        "hostname": "localhost",
        "error-codes": [],
    }))
}
