//! The testnet faucet (seed 002, section 6): ask for funds, then follow the request.

use std::net::SocketAddr;

use ampflow_actors::faucet::FaucetRequestRecord;
use ampflow_actors::faucet::{FaucetAnswer, FaucetError};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiPath, WalletAuth};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_funds))
        .routes(routes!(get_request))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FaucetRequestBody {
    /// A reCAPTCHA v3 token; required when the server checks reCAPTCHA.
    pub re_captcha_token: Option<String>,
}

/// A faucet request and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaucetRequestResponse {
    pub id: String,
    pub chain_id: u64,
    pub wallet_address: String,
    /// pending, submitted, paid, skipped or failed.
    pub status: String,
    /// The faucet transaction, once one was sent: while `submitted`, the hash it was last sent
    /// under (a fee-bumped replacement's once it was replaced; null until signed), then the
    /// one that was mined.
    pub tx_hash: Option<String>,
    /// Wei paid, once paid.
    pub amount: Option<String>,
    /// Why it was skipped or failed, or why the last attempt failed.
    pub reason: Option<String>,
    /// Transactions tried so far.
    pub attempts: u32,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<FaucetRequestRecord> for FaucetRequestResponse {
    fn from(r: FaucetRequestRecord) -> Self {
        Self {
            id: r.id,
            chain_id: r.chain_id.get(),
            wallet_address: r.address.to_string(),
            status: r.status.as_str().to_string(),
            tx_hash: r.tx_hash,
            amount: r.amount_wei.map(|a| a.to_string()),
            reason: r.reason,
            attempts: r.attempts,
            created_at: r.created_at_ms,
            updated_at: r.updated_at_ms,
        }
    }
}

impl From<FaucetError> for ApiError {
    fn from(error: FaucetError) -> Self {
        match error {
            FaucetError::UnsupportedChain(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnsupportedChain,
                error.to_string(),
            )
            .with_param("chainId"),
            FaucetError::NoFaucet(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::FaucetUnsupported,
                error.to_string(),
            )
            .with_param("chainId"),
            FaucetError::CoolingDown { retry_after_secs } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::FaucetCooldown,
                error.to_string(),
            )
            .retry_after(retry_after_secs),
            FaucetError::TooManyFromIp { retry_after_secs } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                error.to_string(),
            )
            .retry_after(retry_after_secs),
            FaucetError::NotFound => ApiError::not_found("no such faucet request"),
            FaucetError::Storage(cause) => ApiError::internal(cause),
            FaucetError::Unavailable(cause) => ApiError::storage_unavailable(cause),
            FaucetError::Actor(error) => error.into(),
        }
    }
}

/// Ask the chain's faucet for funds. Answers the request (or the wallet's request that is
/// still open): 202 when created, 200 when an open one is returned.
#[utoipa::path(post, path = "/faucet/{chainId}", tag = "faucet", security(("wallet" = [])),
    params(("chainId" = u64, Path, description = "The chain to be paid on")),
    request_body = FaucetRequestBody,
    responses(
        (status = 202, body = FaucetRequestResponse, description = "Request accepted"),
        (status = 200, body = FaucetRequestResponse, description = "The wallet's open request"),
        (status = 400, body = ErrorBody, description = "Unsupported chain, no faucet, or reCAPTCHA failed"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "The session was signed in by a contract wallet (EIP-1271) on another chain"),
        (status = 429, body = ErrorBody, description = "Cooldown or per-IP limit; see Retry-After")))]
async fn request_funds(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiPath(chain_id): ApiPath<String>,
    WalletAuth(principal): WalletAuth,
    headers: HeaderMap,
    ApiJson(body): ApiJson<FaucetRequestBody>,
) -> Result<(StatusCode, Json<FaucetRequestResponse>), ApiError> {
    // Parsed after the body is read: refusing earlier would leave an unread body behind, and
    // a client still sending it would see the connection close instead of the answer.
    let chain_id = crate::params::chain_id(&chain_id)?;
    let ip = crate::extract::client_ip(&state, peer, &headers);
    // Cheap refusals first: an unsupported chain needs no reCAPTCHA round trip.
    state.actors().faucet().check_chain(chain_id)?;
    state
        .recaptcha()
        .verify(body.re_captcha_token.as_deref(), &ip.to_string())
        .await?;
    // The per-IP limit counts an IPv6 client by its /64.
    let ip_key = crate::net::ip_key(ip).to_string();
    let FaucetAnswer { request, created } = state
        .actors()
        .faucet()
        .request(chain_id, &principal.on_chain(chain_id)?, &ip_key)
        .await?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(request.into())))
}

/// One of the caller's faucet requests.
#[utoipa::path(get, path = "/faucet/{chainId}/requests/{id}", tag = "faucet", security(("wallet" = [])),
    params(("chainId" = u64, Path), ("id" = String, Path, description = "The request id")),
    responses((status = 200, body = FaucetRequestResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "The session was signed in by a contract wallet (EIP-1271) on another chain"), (status = 404, body = ErrorBody)))]
async fn get_request(
    State(state): State<AppState>,
    ApiPath((chain_id, id)): ApiPath<(u64, String)>,
    WalletAuth(principal): WalletAuth,
) -> Result<Json<FaucetRequestResponse>, ApiError> {
    let chain_id = ampflow_types::ChainId::new(chain_id);
    let request = state
        .actors()
        .faucet()
        .get(chain_id, &id, &principal.on_chain(chain_id)?)
        .await?;
    Ok(Json(request.into()))
}
