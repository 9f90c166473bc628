//! Probes and documents: `/health`, `/ready`, `/openapi.json`, `/.well-known/jwks.json`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::wire::StatusResponse;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(openapi))
        .routes(routes!(jwks))
}

/// Answers while the process is up.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = StatusResponse)))]
async fn health() -> Json<StatusResponse> {
    Json(StatusResponse { status: "ok" })
}

/// Answers 200 when the database (and Redis, when configured) can be reached, the actor
/// system runs and no background task was given up after panicking past its restart cap; 503
/// naming what is down otherwise.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = StatusResponse), (status = 503, body = ErrorBody)))]
async fn ready(State(state): State<AppState>) -> Result<Json<StatusResponse>, ApiError> {
    if !state.actors().is_running() {
        return Err(ApiError::unavailable("the actor system is not running"));
    }
    let failed = state.actors().supervisor().failed();
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|f| f.name.as_str()).collect();
        return Err(ApiError::unavailable(format!(
            "background tasks failed (restart the process): {}",
            names.join(", ")
        )));
    }
    if let Err(error) = state.actors().ping_storage().await {
        tracing::warn!(%error, "readiness: database unreachable");
        return Err(ApiError::unavailable("the database cannot be reached"));
    }
    if let Some(redis) = state.redis() {
        let pong = crate::rate_limit::ping(redis, std::time::Duration::from_secs(2)).await;
        if let Err(error) = pong {
            tracing::warn!(%error, "readiness: redis unreachable");
            return Err(ApiError::unavailable("redis cannot be reached"));
        }
    }
    Ok(Json(StatusResponse { status: "ready" }))
}

/// This OpenAPI 3 document, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3 document")))]
async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_json().to_string(),
    )
}

#[derive(Serialize, ToSchema)]
struct Jwks {
    #[schema(value_type = Vec<Object>)]
    keys: Vec<ampflow_actors::tokens::PublicJwk>,
}

/// The public key access tokens are signed with, as a JWK set, for services that verify them.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations", responses((status = 200, body = Jwks)))]
async fn jwks(State(state): State<AppState>) -> Json<Jwks> {
    Json(Jwks {
        keys: vec![state.identity().jwk().clone()],
    })
}
