//! The workload's HTTP client: each call goes to a node the caller's stream picks (one draw
//! per call, so the sequence of choices is the seed's), falling over to the next node when
//! that one is down or does not answer, as a client behind a load balancer would see it. Every
//! answer is counted by operation and status, and every 5xx that is not one of the documented
//! 503s is kept as evidence.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::Rng;
use reqwest::Method;
use serde_json::Value;

use super::rng::Stream;

/// The 503 codes the README documents: retry later.
pub const DOCUMENTED_503: &[&str] = &[
    "chain_unavailable",
    "recaptcha_unavailable",
    "veriff_unavailable",
    "stripe_not_configured",
    "veriff_not_configured",
    "request_timeout",
    "service_unavailable",
    "server_busy",
    "too_many_connections",
    "entity_failed",
    "storage_unavailable",
];
/// How long one request may take before the client gives up on that node.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// Rounds over every node before a call counts as unanswered.
const ROUNDS_MAX: usize = 3;
/// Undocumented 5xx answers kept as evidence; the rest are counted.
const EVIDENCE_MAX: usize = 50;

pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// A dashboard session cookie; writes also carry `Sec-Fetch-Site: same-origin`.
    Cookie(&'a str),
    /// Extra headers (a partner's signed request).
    Headers(Vec<(String, String)>),
}

#[derive(Debug, Clone)]
pub struct Answer {
    /// The node that answered.
    pub node: usize,
    /// The request was sent to another node first, which did not answer (it may still carry
    /// it out, e.g. once a paused node resumes).
    pub fell_over: bool,
    pub status: u16,
    pub body: Value,
    pub set_cookie: Option<String>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Answers by operation and status; calls no node answered; undocumented 5xx.
#[derive(Debug, Default)]
pub struct Answers {
    /// By operation, then "status code" (e.g. `400 auto_invest_in_process`).
    pub by_op: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// The first answer of each (operation, status, code) that is not a 2xx: node and message.
    pub samples: BTreeMap<String, String>,
    pub unanswered: BTreeMap<&'static str, u64>,
    pub documented_503: u64,
    pub undocumented_5xx: u64,
    pub evidence: Vec<String>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub nodes: Arc<RwLock<Vec<Option<SocketAddr>>>>,
    pub answers: Arc<Mutex<Answers>>,
}

impl Client {
    pub fn new(nodes: Arc<RwLock<Vec<Option<SocketAddr>>>>) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .pool_max_idle_per_host(4)
                .build()?,
            nodes,
            answers: Arc::default(),
        })
    }

    /// Calls `path` on a node; `None` when no node answered (the write may or may not have
    /// happened: it was not acknowledged).
    pub async fn call(
        &self,
        rng: &mut Stream,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        auth: Auth<'_>,
    ) -> Option<Answer> {
        let count = self.nodes.read().map(|n| n.len()).unwrap_or(1).max(1);
        let first = rng.random_range(0..count);
        let mut sent_before = false;
        for round in 0..ROUNDS_MAX {
            for i in 0..count {
                let addr = self
                    .nodes
                    .read()
                    .ok()
                    .and_then(|n| n.get((first + i) % count).copied().flatten());
                let Some(addr) = addr else { continue };
                let node = (first + i) % count;
                if let Some(mut answer) = self.send(node, addr, &method, path, body, &auth).await {
                    answer.fell_over = sent_before;
                    self.count(op, &answer, &method, path);
                    return Some(answer);
                }
                sent_before = true;
            }
            tokio::time::sleep(Duration::from_millis(300 * (round as u64 + 1))).await;
        }
        if let Ok(mut answers) = self.answers.lock() {
            *answers.unanswered.entry(op).or_default() += 1;
        }
        None
    }

    async fn send(
        &self,
        node: usize,
        addr: SocketAddr,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        auth: &Auth<'_>,
    ) -> Option<Answer> {
        let mut request = self
            .http
            .request(method.clone(), format!("http://{addr}{path}"));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        request = match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Cookie(cookie) => request
                .header("cookie", format!("session={cookie}"))
                .header("sec-fetch-site", "same-origin"),
            Auth::Headers(headers) => headers
                .iter()
                .fold(request, |r, (name, value)| r.header(name, value)),
        };
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let set_cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("session="))
            .map(|v| v.split(';').next().unwrap_or_default().to_string());
        let bytes = response.bytes().await.ok()?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Some(Answer {
            node,
            fell_over: false,
            status,
            body,
            set_cookie,
        })
    }

    fn count(&self, op: &'static str, answer: &Answer, method: &Method, path: &str) {
        let Ok(mut answers) = self.answers.lock() else {
            return;
        };
        let key = format!("{} {}", answer.status, answer.code())
            .trim()
            .to_string();
        if !answer.ok() {
            let sample = format!(
                "node {}: {method} {} {}",
                answer.node,
                path.split('?').next().unwrap_or(path),
                answer.body["error"]["message"].as_str().unwrap_or_default()
            );
            answers
                .samples
                .entry(format!("{op} {key}"))
                .or_insert(sample);
        }
        *answers.by_op.entry(op).or_default().entry(key).or_default() += 1;
        if answer.status < 500 {
            return;
        }
        if answer.status == 503 && DOCUMENTED_503.contains(&answer.code()) {
            answers.documented_503 += 1;
            return;
        }
        answers.undocumented_5xx += 1;
        if answers.evidence.len() < EVIDENCE_MAX {
            let path = path.split('?').next().unwrap_or(path);
            let body = answer.body.to_string();
            let body: String = body.chars().take(300).collect();
            answers
                .evidence
                .push(format!("{method} {path} -> {}: {body}", answer.status));
        }
    }
}
