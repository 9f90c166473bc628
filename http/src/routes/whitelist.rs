//! Whitelisting a KYC'd wallet on an issuer (seed 002, section 4.3), and the wallet's
//! whitelisting requests.

use alloy::primitives::Address;
use ampflow_actors::whitelist::WhitelistRequestRecord;
use ampflow_actors::whitelist::{WhitelistAnswer, WhitelistError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, WalletAuth};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(request_whitelisting, list_requests))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct WhitelistBody {
    /// The issuer contract whose whitelist the wallet should be on.
    pub issuer_address: String,
    pub chain_id: u64,
}

/// A whitelisting request and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhitelistResponse {
    /// Null when the wallet was already approved and nothing was queued.
    pub id: Option<String>,
    pub chain_id: u64,
    pub issuer_address: String,
    pub wallet_address: String,
    /// pending, submitted, confirmed or failed; `approved` when the wallet was already on the
    /// issuer's whitelist.
    pub status: String,
    /// The `approveWallets` transaction, once one was sent: while `submitted`, the hash it was
    /// last sent under (a fee-bumped replacement's once it was replaced; null until signed),
    /// then the one that was mined.
    pub tx_hash: Option<String>,
    /// Why it failed, or why the last attempt failed.
    pub reason: Option<String>,
    /// Transactions tried so far.
    pub attempts: u32,
    /// Unix milliseconds; null for `approved`.
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

/// The caller's whitelisting requests, newest first (at most 100).
#[derive(Debug, Serialize, ToSchema)]
pub struct WhitelistList {
    pub requests: Vec<WhitelistResponse>,
}

impl From<WhitelistRequestRecord> for WhitelistResponse {
    fn from(r: WhitelistRequestRecord) -> Self {
        Self {
            id: Some(r.id),
            chain_id: r.chain_id.get(),
            issuer_address: r.issuer.to_string(),
            wallet_address: r.address.to_string(),
            status: r.status.as_str().to_string(),
            tx_hash: r.tx_hash,
            reason: r.reason,
            attempts: r.attempts,
            created_at: Some(r.created_at_ms),
            updated_at: Some(r.updated_at_ms),
        }
    }
}

impl From<WhitelistError> for ApiError {
    fn from(error: WhitelistError) -> Self {
        let message = error.to_string();
        let bad = |code, param| {
            ApiError::new(StatusCode::BAD_REQUEST, code, message.clone()).with_param(param)
        };
        match error {
            WhitelistError::UnsupportedChain(_) => bad(ErrorCode::UnsupportedChain, "chain_id"),
            WhitelistError::NotSupported(_) => bad(ErrorCode::WhitelistingUnsupported, "chain_id"),
            WhitelistError::KycRequired => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::KycRequired, message)
            }
            WhitelistError::KycExpired { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::KycExpired, message)
            }
            WhitelistError::IssuerNotRegistered(_) => {
                bad(ErrorCode::IssuerNotRegistered, "issuer_address")
            }
            WhitelistError::NotAnIssuer(issuer) => {
                // A registered address that is not an issuer: the registry is wrong.
                tracing::error!(issuer = %format!("{issuer:#x}"), "a registered issuer does not answer as an issuer; check the registry");
                bad(ErrorCode::NotAnIssuer, "issuer_address")
            }
            WhitelistError::IssuerNotManaged { .. } => {
                bad(ErrorCode::IssuerNotManaged, "issuer_address")
            }
            WhitelistError::ChainUnavailable { cause, .. } => {
                tracing::warn!(%cause, "chain unavailable for whitelisting");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::ChainUnavailable,
                    message,
                )
                .retry_after(5)
            }
            WhitelistError::Identity(error) => error.into(),
        }
    }
}

/// Ask for the caller's wallet to be approved on an issuer's whitelist. The issuer must be in
/// the platform's registry of issuers, and KYC complete with its document still valid. 202 when an approval was queued, 200 when one was already
/// open (it is returned) or the wallet is already approved (status `approved`, no id).
#[utoipa::path(post, path = "/user/whitelist", tag = "whitelisting", security(("wallet" = [])),
    request_body = WhitelistBody,
    responses(
        (status = 202, body = WhitelistResponse, description = "Approval queued"),
        (status = 200, body = WhitelistResponse, description = "Already approved, or the open request"),
        (status = 400, body = ErrorBody, description = "Bad input, unsupported chain, an issuer not in the registry (issuer_not_registered) or not managed by the platform's WalletApprover, KYC missing or expired"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "The session was signed in by a contract wallet (EIP-1271) on another chain"),
        (status = 503, body = ErrorBody, description = "The chain could not be reached")))]
async fn request_whitelisting(
    State(state): State<AppState>,
    WalletAuth(principal): WalletAuth,
    ApiJson(body): ApiJson<WhitelistBody>,
) -> Result<(StatusCode, Json<WhitelistResponse>), ApiError> {
    let issuer: Address =
        crate::params::address("issuer_address", &body.issuer_address)?.as_alloy();
    let chain_id = ampflow_types::ChainId::new(body.chain_id);
    let answer = state
        .actors()
        .whitelisting()
        .request(chain_id, issuer, &principal.on_chain(chain_id)?)
        .await?;
    Ok(match answer {
        WhitelistAnswer::AlreadyApproved => (
            StatusCode::OK,
            Json(WhitelistResponse {
                id: None,
                chain_id: body.chain_id,
                issuer_address: format!("{issuer:#x}"),
                wallet_address: principal.address.to_string(),
                status: "approved".into(),
                tx_hash: None,
                reason: None,
                attempts: 0,
                created_at: None,
                updated_at: None,
            }),
        ),
        WhitelistAnswer::Queued(request) => (StatusCode::ACCEPTED, Json(request.into())),
        WhitelistAnswer::Open(request) => (StatusCode::OK, Json(request.into())),
    })
}

/// The caller's whitelisting requests on every chain and issuer, newest first.
#[utoipa::path(get, path = "/user/whitelist", tag = "whitelisting", security(("wallet" = [])),
    responses((status = 200, body = WhitelistList), (status = 401, body = ErrorBody)))]
async fn list_requests(
    State(state): State<AppState>,
    WalletAuth(principal): WalletAuth,
) -> Result<Json<WhitelistList>, ApiError> {
    let requests = state
        .actors()
        .whitelisting()
        .list(&principal.address)
        .await?;
    Ok(Json(WhitelistList {
        requests: requests.into_iter().map(Into::into).collect(),
    }))
}
