//! Auto-invest (seed 002, section 7): queue, merge and cancel a (wallet, campaign, chain) task,
//! and list tasks by wallet or campaign, open or finished, with a cursor.
//!
//! One path shape serves both the campaign (POST, DELETE) and the wallet (GET): the router
//! cannot tell two parameter names apart at the same place, so both are `{address}`.

use ampflow_actors::auto_invest::TaskFilter;
use ampflow_actors::auto_invest::{AutoInvestError, Submitted, Triple};
use ampflow_types::auto_invest::AutoInvestTask;
use ampflow_types::{AmountError, ChainId, Keyset, TokenAmount};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ApiQuery, WalletAuth};
use crate::params;
use crate::state::AppState;

/// Tasks per page by default, and at most.
const PAGE_DEFAULT: u64 = 20;
const PAGE_MAX: u64 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit, cancel, list_for_wallet))
        .routes(routes!(history_for_wallet))
        .routes(routes!(list_for_campaign))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AutoInvestBody {
    /// Stablecoin base units, as a decimal string: a uint256 greater than 0.
    pub amount: String,
}

/// An auto-invest task.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoInvestResponse {
    pub id: String,
    pub chain_id: u64,
    pub wallet_address: String,
    pub campaign_address: String,
    /// Requested, in stablecoin base units.
    pub amount: String,
    /// Invested, once it succeeded: min(amount, balance, allowance) at execution.
    pub invested_amount: Option<String>,
    /// pending, in_process, success, failed, expired or cancelled.
    pub status: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The `investFor` transaction, once one was sent: while `in_process`, the hash it was last
    /// sent under (a fee-bumped replacement's once it was replaced; null until signed), then
    /// the one that was mined; a task back to pending keeps its failed attempt's.
    pub tx_hash: Option<String>,
    /// Why it waits (not whitelisted, no allowance, …), why the last attempt failed, or why it
    /// failed.
    pub reason: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// When it expires if it is still pending.
    pub expires_at: i64,
    pub finished_at: Option<i64>,
}

impl From<AutoInvestTask> for AutoInvestResponse {
    fn from(t: AutoInvestTask) -> Self {
        Self {
            id: t.id,
            chain_id: t.chain_id.get(),
            wallet_address: t.wallet.to_string(),
            campaign_address: t.campaign.to_string(),
            amount: t.amount.to_string(),
            invested_amount: t.invested_amount.map(|a| a.to_string()),
            status: t.status.as_str().to_string(),
            attempts: t.attempts,
            tx_hash: t.tx_hash,
            reason: t.reason,
            created_at: t.created_at_ms,
            updated_at: t.updated_at_ms,
            expires_at: t.expires_at_ms,
            finished_at: t.finished_at_ms,
        }
    }
}

/// A page of tasks, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoInvestList {
    pub auto_invests: Vec<AutoInvestResponse>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Tasks per page: 20 by default, at most 100.
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl From<AutoInvestError> for ApiError {
    fn from(error: AutoInvestError) -> Self {
        let message = error.to_string();
        match error {
            AutoInvestError::UnsupportedChain(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnsupportedChain,
                message,
            )
            .with_param("chainId"),
            AutoInvestError::NotEnabled(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::AutoInvestUnsupported,
                message,
            )
            .with_param("chainId"),
            AutoInvestError::CampaignNotRegistered(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::CampaignNotRegistered,
                message,
            )
            .with_param("campaign"),
            AutoInvestError::InProcess => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::AutoInvestInProcess,
                message,
            ),
            AutoInvestError::TooMany { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::AutoInvestLimit, message)
            }
            AutoInvestError::NotFound => ApiError::not_found(message),
            AutoInvestError::Storage(cause) => ApiError::internal(cause),
            AutoInvestError::Unavailable(cause) => ApiError::storage_unavailable(cause),
            AutoInvestError::Actor(error) => error.into(),
        }
    }
}

/// A decimal uint256 greater than zero.
fn parse_amount(text: &str) -> Result<TokenAmount, ApiError> {
    let bad = |why: &str| ApiError::invalid_param("amount", why.to_string());
    let amount = TokenAmount::parse(text).map_err(|e| match e {
        AmountError::NotDecimal => {
            bad("amount must be a decimal string of stablecoin base units, e.g. \"500\"")
        }
        AmountError::TooLarge => bad("amount does not fit in a uint256"),
    })?;
    if amount.is_zero() {
        return Err(bad("amount must be greater than 0"));
    }
    Ok(amount)
}

fn encode_cursor(task: &AutoInvestTask) -> String {
    params::encode_keyset(task.created_at_ms, &task.id)
}

fn decode_cursor(text: &str) -> Result<Keyset, ApiError> {
    params::decode_keyset(text, |id| Some(uuid::Uuid::parse_str(id).ok()?.to_string()))
}

/// Lists one page of tasks.
async fn page(
    state: &AppState,
    chain_id: ChainId,
    filter: TaskFilter,
    open: bool,
    query: PageQuery,
) -> Result<Json<AutoInvestList>, ApiError> {
    let limit = params::page_limit(query.limit, PAGE_DEFAULT, PAGE_MAX)?;
    let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
    // One more than asked tells whether there is a next page.
    let mut tasks = state
        .actors()
        .auto_invest()
        .list(chain_id, filter, open, cursor.as_ref(), limit + 1)
        .await?;
    let has_more = params::split_page(&mut tasks, limit);
    let next_cursor = has_more.then(|| tasks.last().map(encode_cursor)).flatten();
    Ok(Json(AutoInvestList {
        auto_invests: tasks.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// Queue an auto-invest in a campaign, or change the amount of the pending one (its expiry
/// restarts). The campaign must be in the platform's registry of campaigns. Refused while the
/// task is in process.
#[utoipa::path(post, path = "/auto_invest/{chainId}/{address}", tag = "auto-invest", security(("wallet" = [])),
    params(("chainId" = u64, Path), ("address" = String, Path, description = "The campaign contract")),
    request_body = AutoInvestBody,
    responses(
        (status = 200, body = AutoInvestResponse, description = "Queued, or merged into the pending task"),
        (status = 400, body = ErrorBody, description = "Bad input, unsupported chain, a campaign not in the registry (campaign_not_registered), in process, or the wallet's open-task limit"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "The session was signed in by a contract wallet (EIP-1271) on another chain")))]
async fn submit(
    State(state): State<AppState>,
    ApiPath((chain_id, campaign)): ApiPath<(String, String)>,
    WalletAuth(principal): WalletAuth,
    ApiJson(body): ApiJson<AutoInvestBody>,
) -> Result<Json<AutoInvestResponse>, ApiError> {
    let chain_id = params::chain_id(&chain_id)?;
    let triple = Triple {
        chain_id,
        wallet: principal.on_chain(chain_id)?,
        campaign: params::address("campaign", &campaign)?,
    };
    let amount = parse_amount(&body.amount)?;
    let task = match state.actors().auto_invest().submit(triple, amount).await? {
        Submitted::Created(task) | Submitted::Merged(task) => task,
    };
    Ok(Json(task.into()))
}

/// Cancel the caller's pending auto-invest in a campaign.
#[utoipa::path(delete, path = "/auto_invest/{chainId}/{address}", tag = "auto-invest", security(("wallet" = [])),
    params(("chainId" = u64, Path), ("address" = String, Path, description = "The campaign contract")),
    responses(
        (status = 200, body = AutoInvestResponse, description = "Cancelled"),
        (status = 400, body = ErrorBody, description = "Bad input, unsupported chain, or in process"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "The session was signed in by a contract wallet (EIP-1271) on another chain"),
        (status = 404, body = ErrorBody, description = "No pending task")))]
async fn cancel(
    State(state): State<AppState>,
    ApiPath((chain_id, campaign)): ApiPath<(String, String)>,
    WalletAuth(principal): WalletAuth,
) -> Result<Json<AutoInvestResponse>, ApiError> {
    let chain_id = params::chain_id(&chain_id)?;
    let triple = Triple {
        chain_id,
        wallet: principal.on_chain(chain_id)?,
        campaign: params::address("campaign", &campaign)?,
    };
    let task = state.actors().auto_invest().cancel(triple).await?;
    Ok(Json(task.into()))
}

/// A wallet's open (pending or in process) auto-invest tasks.
#[utoipa::path(get, path = "/auto_invest/{chainId}/{address}", tag = "auto-invest",
    params(("chainId" = u64, Path), ("address" = String, Path, description = "The wallet"), PageQuery),
    responses((status = 200, body = AutoInvestList), (status = 400, body = ErrorBody)))]
async fn list_for_wallet(
    State(state): State<AppState>,
    ApiPath((chain_id, wallet)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<AutoInvestList>, ApiError> {
    let chain_id = params::chain_id(&chain_id)?;
    let wallet = params::address("wallet", &wallet)?;
    page(&state, chain_id, TaskFilter::Wallet(wallet), true, query).await
}

/// A wallet's finished auto-invest tasks (success, failed, expired or cancelled), with the
/// amount requested and the amount invested.
#[utoipa::path(get, path = "/auto_invest/{chainId}/{address}/history", tag = "auto-invest",
    params(("chainId" = u64, Path), ("address" = String, Path, description = "The wallet"), PageQuery),
    responses((status = 200, body = AutoInvestList), (status = 400, body = ErrorBody)))]
async fn history_for_wallet(
    State(state): State<AppState>,
    ApiPath((chain_id, wallet)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<AutoInvestList>, ApiError> {
    let chain_id = params::chain_id(&chain_id)?;
    let wallet = params::address("wallet", &wallet)?;
    page(&state, chain_id, TaskFilter::Wallet(wallet), false, query).await
}

/// A campaign's open (pending or in process) auto-invest tasks.
#[utoipa::path(get, path = "/auto_invest/{chainId}/campaign/{address}", tag = "auto-invest",
    params(("chainId" = u64, Path), ("address" = String, Path, description = "The campaign contract"), PageQuery),
    responses((status = 200, body = AutoInvestList), (status = 400, body = ErrorBody)))]
async fn list_for_campaign(
    State(state): State<AppState>,
    ApiPath((chain_id, campaign)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<AutoInvestList>, ApiError> {
    let chain_id = params::chain_id(&chain_id)?;
    let campaign = params::address("campaign", &campaign)?;
    page(
        &state,
        chain_id,
        TaskFilter::Campaign(campaign),
        true,
        query,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_positive_decimal_uint256() {
        assert_eq!(parse_amount("500").unwrap(), TokenAmount::from(500u128));
        let max = alloy::primitives::U256::MAX;
        assert_eq!(parse_amount(&max.to_string()).unwrap().as_u256(), max);
        for bad in [
            "",
            "0",
            "000",
            "-5",
            "+5",
            "5.0",
            "1e6",
            " 5",
            "0x10",
            "abc",
            // 2^256
            "115792089237316195423570985008687907853269984665640564039457584007913129639936",
        ] {
            let error = parse_amount(bad).unwrap_err();
            assert_eq!(error.param.as_deref(), Some("amount"), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_forgeries_are_refused() {
        let id = uuid::Uuid::new_v4().to_string();
        let task = AutoInvestTask {
            id: id.clone(),
            chain_id: ChainId::new(1),
            wallet: ampflow_types::WalletAddress::from_alloy(alloy::primitives::Address::ZERO),
            campaign: ampflow_types::WalletAddress::from_alloy(alloy::primitives::Address::ZERO),
            amount: TokenAmount::from(1u128),
            invested_amount: None,
            status: ampflow_types::auto_invest::AutoInvestStatus::Pending,
            version: 0,
            attempts: 0,
            next_check_at_ms: 0,
            expires_at_ms: 0,
            tx_intent_id: None,
            tx_hash: None,
            reason: None,
            created_at_ms: 1_700_000_000_123,
            updated_at_ms: 0,
            finished_at_ms: None,
        };
        let cursor = decode_cursor(&encode_cursor(&task)).unwrap();
        assert_eq!(cursor.at_ms, 1_700_000_000_123);
        assert_eq!(cursor.id, id);
        for bad in ["", "!!", "bm90LWEtY3Vyc29y", "MTIzOmFiYw"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
