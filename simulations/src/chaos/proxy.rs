//! The two proxies the campaign controls.
//!
//! - [`RpcFaults`]: the nodes' only way to the chain. It forwards JSON-RPC over HTTP to anvil
//!   and, when told, cuts (closes every connection and refuses new ones), slows every call
//!   down, or answers a share of calls with errors: an HTTP 503 or a JSON-RPC error without
//!   forwarding, or a 503 after forwarding (the call happened, its answer was lost).
//! - [`Balancer`]: a TCP balancer in front of the nodes, for the webhook senders (Stripe and
//!   Veriff post to one URL): each connection goes to the next node that accepts it, as a load
//!   balancer with health checks would do. A killed node refuses; a paused one accepts and
//!   never answers (the sender times out and retries).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// What the RPC proxy does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcMode {
    Pass,
    /// Close connections and refuse new ones.
    Cut,
    /// Forward after this delay.
    Slow {
        delay_ms: u64,
    },
    /// This share of calls (percent) fail.
    Errors {
        percent: u8,
    },
}

/// Calls seen, by what was done with them.
#[derive(Debug, Default)]
pub struct RpcCounts {
    pub forwarded: AtomicU64,
    pub refused: AtomicU64,
    pub errors_injected: AtomicU64,
    pub answers_lost: AtomicU64,
}

pub struct RpcFaults {
    pub url: String,
    mode: Arc<Mutex<RpcMode>>,
    pub counts: Arc<RpcCounts>,
    /// Woken each time a forwarded `eth_sendRawTransaction` has been answered: the node now
    /// has a transaction on the chain and no receipt yet.
    pub sends: Arc<tokio::sync::Notify>,
    task: JoinHandle<()>,
}

impl RpcFaults {
    /// Listens on a free loopback port in front of `upstream` (a loopback URL).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        ensure!(
            upstream.starts_with("http://127.0.0.1:"),
            "the proxy only forwards to loopback, not {upstream}"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let mode = Arc::new(Mutex::new(RpcMode::Pass));
        let counts = Arc::new(RpcCounts::default());
        let sends = Arc::new(tokio::sync::Notify::new());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let upstream = upstream.to_string();
        let (shared_mode, shared_counts, shared_sends) =
            (mode.clone(), counts.clone(), sends.clone());
        let call = Call {
            client,
            upstream,
            mode: shared_mode.clone(),
            counts: shared_counts.clone(),
            sends: shared_sends,
        };
        let admit = move || {
            let cut = current(&shared_mode) == RpcMode::Cut;
            if cut {
                shared_counts.refused.fetch_add(1, Ordering::Relaxed);
            }
            !cut
        };
        let task = crate::rpc_proxy::serve_http1(listener, admit, move |request| {
            call.clone().handle(request)
        });
        Ok(Self {
            url: format!("http://{addr}"),
            mode,
            counts,
            sends,
            task,
        })
    }

    pub fn set_mode(&self, mode: RpcMode) {
        if let Ok(mut current) = self.mode.lock() {
            *current = mode;
        }
    }
}

impl Drop for RpcFaults {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn current(mode: &Mutex<RpcMode>) -> RpcMode {
    mode.lock().map(|m| *m).unwrap_or(RpcMode::Pass)
}

#[derive(Clone)]
struct Call {
    client: reqwest::Client,
    upstream: String,
    mode: Arc<Mutex<RpcMode>>,
    counts: Arc<RpcCounts>,
    sends: Arc<tokio::sync::Notify>,
}

/// How an injected error looks.
enum Injected {
    Http503,
    RpcError,
    /// Forwarded, then answered 503: the node did the work, the caller never learns it.
    LostAnswer,
}

impl Call {
    /// Answers one call as the current mode says: refused, failed on the spot, or forwarded to
    /// anvil (and then, for a lost answer, answered 503 anyway).
    async fn handle(
        self,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        let body = request
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        let injected = self.inject().await?;
        match injected {
            Some(Injected::Http503) => {
                self.counts.errors_injected.fetch_add(1, Ordering::Relaxed);
                return Ok(answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable",
                ));
            }
            Some(Injected::RpcError) => {
                self.counts.errors_injected.fetch_add(1, Ordering::Relaxed);
                return Ok(answer(StatusCode::OK, &rpc_errors(&body)));
            }
            _ => {}
        }
        let is_send = body
            .windows(b"eth_sendRawTransaction".len())
            .any(|w| w == b"eth_sendRawTransaction");
        let forwarded = self.forward(body).await;
        self.counts.forwarded.fetch_add(1, Ordering::Relaxed);
        if is_send && forwarded.is_ok() {
            self.sends.notify_waiters();
        }
        if matches!(injected, Some(Injected::LostAnswer)) {
            self.counts.answers_lost.fetch_add(1, Ordering::Relaxed);
            return Ok(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
            ));
        }
        match forwarded {
            Ok((status, bytes)) => Ok(upstream_answer(status, bytes)),
            Err(_) => Ok(answer(StatusCode::BAD_GATEWAY, "upstream failed")),
        }
    }

    /// What the current mode does to a call before it is forwarded: a cut refuses it (the
    /// error closes the connection), a slow link waits, an erroring one draws whether and how
    /// this call fails.
    async fn inject(&self) -> Result<Option<Injected>, std::io::Error> {
        let injected = match current(&self.mode) {
            RpcMode::Cut => {
                // Closing the connection without an answer, as a dead link would.
                self.counts.refused.fetch_add(1, Ordering::Relaxed);
                return Err(std::io::Error::other("rpc cut"));
            }
            RpcMode::Slow { delay_ms } => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                None
            }
            RpcMode::Errors { percent } => {
                let roll: u8 = rand::random_range(0..100);
                (roll < percent).then_some(match roll % 3 {
                    0 => Injected::Http503,
                    1 => Injected::RpcError,
                    _ => Injected::LostAnswer,
                })
            }
            RpcMode::Pass => None,
        };
        Ok(injected)
    }

    async fn forward(&self, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        let response = self
            .client
            .post(&self.upstream)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?))
    }
}

fn answer(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// anvil's answer, passed on with its status.
fn upstream_answer(status: u16, bytes: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON-RPC error answer for each call of `body` (one call or a batch).
fn rpc_errors(body: &[u8]) -> String {
    let error = |id: &Value| json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "chaos: injected error"}});
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(calls)) => {
            Value::Array(calls.iter().map(|c| error(&c["id"])).collect()).to_string()
        }
        Ok(call) => error(&call["id"]).to_string(),
        Err(_) => error(&Value::Null).to_string(),
    }
}

/// Connection-level round robin over the nodes that are up.
pub struct Balancer {
    pub addr: SocketAddr,
    targets: Arc<RwLock<Vec<Option<SocketAddr>>>>,
    task: JoinHandle<()>,
}

impl Balancer {
    pub async fn start(targets: Arc<RwLock<Vec<Option<SocketAddr>>>>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let next = Arc::new(AtomicUsize::new(0));
        let shared = targets.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let (targets, next) = (shared.clone(), next.clone());
                tokio::spawn(async move {
                    let Some(mut outbound) = connect_next(&targets, &next).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Ok(Self {
            addr,
            targets,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The nodes' addresses now (`None` for a node that is down).
    pub fn targets(&self) -> Vec<Option<SocketAddr>> {
        self.targets.read().map(|t| t.clone()).unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect_next(
    targets: &RwLock<Vec<Option<SocketAddr>>>,
    next: &AtomicUsize,
) -> Option<tokio::net::TcpStream> {
    let live: Vec<SocketAddr> = targets
        .read()
        .map(|t| t.iter().flatten().copied().collect())
        .unwrap_or_default();
    let start = next.fetch_add(1, Ordering::Relaxed);
    for i in 0..live.len() {
        let target = live[(start + i) % live.len()];
        let connect = tokio::net::TcpStream::connect(target);
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            let _ = stream.set_nodelay(true);
            return Some(stream);
        }
    }
    None
}
