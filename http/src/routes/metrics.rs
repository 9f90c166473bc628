//! `GET /metrics`: Prometheus text format.
//!
//! Who may read it: with `metrics.bearer_token` set, a request with
//! `Authorization: Bearer <token>` (compared in constant time), from anywhere; without a token,
//! only a loopback peer that sent no forwarding header, i.e. a scraper on the same host and not
//! a client relayed by a local reverse proxy. `metrics.enabled = false` removes the endpoint's
//! answers (404).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics: HTTP requests and latency, rate-limit checks and refusals.
#[utoipa::path(get, path = "/metrics", tag = "operations", security((), ("metrics_token" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let config = &state.settings().metrics;
    if !config.enabled {
        return Err(ApiError::not_found("no such endpoint"));
    }
    authorise(config.bearer_token.as_ref(), peer, &headers)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    ))
}

fn authorise(
    token: Option<&crate::config::Secret>,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    match token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::extract::bearer_of)
                .ok_or_else(|| {
                    ApiError::authentication("/metrics needs Authorization: Bearer <token>")
                })?;
            if bool::from(given.trim().as_bytes().ct_eq(token.expose().as_bytes())) {
                Ok(())
            } else {
                Err(ApiError::authentication("the metrics token is not valid"))
            }
        }
        None => {
            let forwarded =
                headers.contains_key("x-forwarded-for") || headers.contains_key(header::FORWARDED);
            if peer.ip().to_canonical().is_loopback() && !forwarded {
                Ok(())
            } else {
                Err(ApiError::authorization(
                    "/metrics answers only local scrapers unless metrics.bearer_token is set",
                ))
            }
        }
    }
}
