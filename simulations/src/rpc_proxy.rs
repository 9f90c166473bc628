//! A JSON-RPC proxy on loopback that counts what a client asks of a node: calls and time per
//! method (the node's round trip, seen from the proxy). Put between the server and anvil, it
//! shows where the chain side of a benchmark spends its time. It adds one loopback hop per
//! call, so benchmarks run it only when asked.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::ensure;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Calls and time per method.
pub type RpcStats = BTreeMap<String, (u64, Duration)>;

#[derive(Clone)]
pub struct RpcProxy {
    pub url: String,
    stats: Arc<Mutex<RpcStats>>,
}

impl RpcProxy {
    /// Listens on a free loopback port and forwards every POST to `upstream` (a loopback
    /// URL). The proxy runs on the current runtime until the process ends.
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        ensure!(
            upstream.starts_with("http://127.0.0.1:"),
            "the proxy only forwards to loopback, not {upstream}"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let stats = Arc::new(Mutex::new(RpcStats::new()));
        let client = reqwest::Client::new();
        let upstream = upstream.to_string();
        let shared = stats.clone();
        serve_http1(
            listener,
            || true,
            move |request| forward(request, client.clone(), upstream.clone(), shared.clone()),
        );
        Ok(Self {
            url: format!("http://{addr}"),
            stats,
        })
    }

    /// What was counted since the last call, and forget it.
    pub fn take(&self) -> RpcStats {
        self.stats
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    /// "eth_call 412 calls 3.1 s; …", the most time first.
    pub fn summary(stats: &RpcStats) -> String {
        let mut rows: Vec<_> = stats.iter().collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.1.1));
        rows.iter()
            .map(|(method, (calls, time))| {
                format!(
                    "{method} {calls} calls {:.2} s ({:.1} ms each)",
                    time.as_secs_f64(),
                    time.as_secs_f64() * 1000.0 / (*calls).max(1) as f64
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Serves HTTP/1 on `listener` until the process ends or the task is aborted: every
/// connection `admit` lets in (it is asked at each accept; a refused one is closed at once)
/// gets `service` for each of its requests.
pub(crate) fn serve_http1<S, Fut, E>(
    listener: tokio::net::TcpListener,
    admit: impl Fn() -> bool + Send + 'static,
    service: S,
) -> tokio::task::JoinHandle<()>
where
    S: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            if !admit() {
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn forward(
    request: Request<hyper::body::Incoming>,
    client: reqwest::Client,
    upstream: String,
    stats: Arc<Mutex<RpcStats>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let failed = |message: String| {
        let mut response = Response::new(Full::new(Bytes::from(message)));
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        Ok(response)
    };
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return failed(e.to_string()),
    };
    let methods: Vec<String> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(calls)) => calls
            .iter()
            .map(|c| c["method"].as_str().unwrap_or("?").to_string())
            .collect(),
        Ok(call) => vec![call["method"].as_str().unwrap_or("?").to_string()],
        Err(_) => vec!["?".into()],
    };
    let started = Instant::now();
    let answer = async {
        let response = client
            .post(&upstream)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        anyhow::Ok((status, bytes))
    }
    .await;
    let took = started.elapsed();
    if let Ok(mut stats) = stats.lock() {
        let share = took / methods.len().max(1) as u32;
        for method in methods {
            let entry = stats.entry(method).or_default();
            entry.0 += 1;
            entry.1 += share;
        }
    }
    match answer {
        Ok((status, bytes)) => {
            let mut response = Response::new(Full::new(bytes));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        Err(e) => failed(e.to_string()),
    }
}
