//! Prometheus metrics: one process-wide recorder (the `metrics` facade, rendered by
//! `metrics-exporter-prometheus`), and the HTTP request counter and latency histogram.
//!
//! Series and labels (every label has a bounded set of values: route templates from the router,
//! `unmatched` for any path no route knows, known methods, status codes):
//! - `http_requests_total{method, route, status}`;
//! - `http_request_duration_seconds{method, route, status}` (histogram);
//! - `ratelimit_checked_total{endpoint, identifier_type}`;
//! - `ratelimit_blocked_total{endpoint, identifier_type, reason}`, reason one of `tier`, `ip`,
//!   `card_ip`, `card_fingerprint`, `email_domain`, `global`, `auto_block`;
//! - `ratelimit_redis_up` (gauge, 1 while checks go to Redis);
//! - per chain (recorded by the transaction senders in the actors crate, through the same
//!   recorder): `chain_gas_budget_per_hour{chain_id}`, `chain_gas_used_last_hour{chain_id}`,
//!   `chain_gas_budget_exhausted{chain_id}` (gauge, 1 while transactions wait for the budget)
//!   and `chain_gas_budget_exhausted_total{chain_id}` (episodes).
//! - `http_connections_open` (gauge) and `http_connections_shed_total{reason}`, reason `global`
//!   or `per_ip` (counted in [`crate::server::caps`]);
//! - `http_connections_closed_total{reason}`, reason `header_timeout` or `idle_timeout`
//!   (counted in [`crate::server::connection`]);
//! - `stripe_webhook_amount_mismatches_total`: signed Stripe events not applied because their
//!   amount or currency differs from the donation's, each event once however often it is
//!   delivered (counted by the donations in the actors crate).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::rate_limit::layer::UNMATCHED_ROUTE;

/// Latency buckets, seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How often histogram samples are folded into their buckets between scrapes, so memory stays
/// bounded when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. The `metrics` facade has one global
/// recorder, so several servers in one process (tests) share it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = match PrometheusBuilder::new().set_buckets_for_metric(
            Matcher::Suffix("duration_seconds".into()),
            &DURATION_BUCKETS,
        ) {
            Ok(with_buckets) => with_buckets,
            Err(error) => {
                tracing::warn!(%error, "metrics: latency buckets refused; using summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("metrics: another recorder is installed; /metrics will be empty");
        }
        handle
    })
}

/// Folds histogram samples every [`UPKEEP_INTERVAL`] until aborted.
pub fn spawn_upkeep(supervisor: &ampflow_runtime::Supervisor) -> tokio::task::JoinHandle<()> {
    let handle = handle().clone();
    supervisor.spawn("metrics_upkeep", "metrics upkeep", move || {
        let handle = handle.clone();
        async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        }
    })
}

/// Counts and times every request by method, route template and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
