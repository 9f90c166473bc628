//! Organisation API keys and access tokens (seeds 000 and 001): create a key (its `sk_…`
//! string is answered once), list, read, rename or change its policies, delete it, rotate its
//! internal secret, revoke its old or all tokens, and mint access tokens — by an admin's
//! session, a key holding `keys:admin`, or (minting only) a key holding `tokens:issue`, seed
//! 001's issuer tokens. Every change writes an audit row in the same transaction.

use ampflow_storage::{ApiKeyChanges, ApiKeyCursor, ApiKeyRecord, TokenRevocation};
use ampflow_types::UnixMillis;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin;
use crate::auth::api_keys::{
    KeyMode, KeySpec, Policy, generate_key, mint_token, new_secret, parse_policies,
};
use crate::auth::{Caller, DashboardAuth};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::middleware::RequestId;
use crate::params;
use crate::routes::public::{Envelope, rfc3339};
use crate::state::AppState;

const PAGE_DEFAULT: u64 = 50;
const PAGE_MAX: u64 = 200;
const DAY_MS: i64 = 86_400_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key, delete_key))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_tokens))
        .routes(routes!(issue_token))
}

/// A key as listed: never its `sk_…` string or its secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// `key_…`
    pub id: String,
    pub organisation_id: String,
    pub name: String,
    /// live or test.
    pub mode: String,
    /// e.g. `donations:read`.
    pub policies: Vec<String>,
    /// The key's first and last characters, e.g. `sk_live_AbCd…wxyz`.
    pub key_hint: String,
    /// `usr_…` or `key_…`.
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub last_used_at: Option<String>,
    /// When the current secret became current (creation or the last rotation).
    pub secret_rotated_at: String,
    /// Until when tokens signed before the last rotation still work; null when none do.
    pub deposed_secret_expires_at: Option<String>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(key: &ApiKeyRecord) -> Self {
        Self {
            id: key.id.clone(),
            organisation_id: key.organisation_id.clone(),
            name: key.name.clone(),
            mode: key.mode.clone(),
            policies: key.policies.clone(),
            key_hint: key.key_hint.clone(),
            created_by: key.created_by.clone(),
            created_at: rfc3339(key.created_at_ms),
            updated_at: rfc3339(key.updated_at_ms),
            last_used_at: key.last_used_at_ms.map(rfc3339),
            secret_rotated_at: rfc3339(key.secret_created_at_ms),
            deposed_secret_expires_at: key.deposed.as_ref().map(|(_, until)| rfc3339(*until)),
        }
    }
}

/// A new key, with its `sk_…` string: shown this once, never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyView {
    #[serde(flatten)]
    pub api_key: ApiKeyView,
    /// `sk_live_…` or `sk_test_…`; use it as `Authorization: Bearer <key>`.
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPage {
    pub data: Vec<ApiKeyView>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessTokenView {
    /// A JWT; use it as `Authorization: Bearer <token>`. Shown once.
    pub token: String,
    pub token_type: &'static str,
    /// `tok_…`, as the audit log names it.
    pub token_id: String,
    pub key_id: String,
    pub expires_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    pub organisation_id: String,
    /// 1 to 200 characters.
    pub name: String,
    /// At least one of: donations:read, donations:write, ledger:read, organisations:read,
    /// organisations:write, audit:read, keys:admin, tokens:issue.
    pub policies: Vec<String>,
    /// live or test; must be this server's mode (see `auth.api_key_mode`). Absent: the
    /// server's.
    pub mode: Option<String>,
}

/// Absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub policies: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// `old`: tokens issued before the last rotation; `all`: every token, now.
    pub tokens: String,
}

/// Seed 001's body: `{"expires-at": "2020-06-16T00:24:16Z"}`. Give `expires-at` or
/// `expires_in_days`, or neither for `auth.api_token_days_default`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// RFC 3339, in the future, at most `auth.api_token_days_max` days away.
    #[serde(rename = "expires-at", alias = "expires_at")]
    pub expires_at: Option<String>,
    pub expires_in_days: Option<u32>,
    /// Rotate the key's secret first (seed 001's "Rotate key secret" option): the tokens
    /// issued before stay valid only while the deposed secret does.
    #[serde(default)]
    pub rotate: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct KeyQuery {
    /// The organisation whose keys to list; a key caller may leave it out for its own.
    pub organisation_id: Option<String>,
    /// Keys per page: 50 by default, at most 200.
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn not_found() -> ApiError {
    ApiError::not_found("no API key has this id")
}

/// The live key with `id`, once the caller may act on it with one of `policies`.
async fn authorised_key(
    state: &AppState,
    caller: &Caller,
    id: &str,
    policies: &[Policy],
) -> Result<ApiKeyRecord, ApiError> {
    if !id.starts_with("key_") || id.len() > 40 {
        return Err(not_found());
    }
    let key = state
        .storage()
        .api_key(id)
        .await
        .map_err(ApiError::internal)?
        .filter(|k| k.deleted_at_ms.is_none())
        .ok_or_else(not_found)?;
    caller
        .require_any(state, &key.organisation_id, policies)
        .await?;
    Ok(key)
}

fn key_name(name: &str) -> Result<String, ApiError> {
    admin::name(name, "the name").map_err(|e| ApiError::invalid_param("name", e.to_string()))
}

/// Create a key for an organisation; its `sk_…` string is in this answer only.
#[utoipa::path(post, path = "/admin/api-keys", tag = "api-keys", security(("cookie" = []), ("bearer" = [])),
    request_body = NewKeyBody,
    responses((status = 201, body = inline(Envelope<CreatedApiKeyView>)), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`conflict`: the organisation holds `auth.api_keys_per_organisation_max` keys", body = ErrorBody)))]
async fn create_key(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    axum::Extension(request_id): axum::Extension<RequestId>,
    ApiJson(body): ApiJson<NewKeyBody>,
) -> Result<(StatusCode, Json<Envelope<CreatedApiKeyView>>), ApiError> {
    caller
        .require(&state, &body.organisation_id, Policy::KeysAdmin)
        .await?;
    let name = key_name(&body.name)?;
    let policies = parse_policies(&body.policies)?;
    let mode = state.auth().key_mode();
    if let Some(asked) = body.mode.as_deref()
        && KeyMode::parse(asked) != Some(mode)
    {
        return Err(ApiError::invalid_param(
            "mode",
            format!("this server makes {} keys only", mode.as_str()),
        ));
    }
    let config = state.auth().config();
    let held = state
        .storage()
        .count_api_keys_of(&body.organisation_id)
        .await
        .map_err(ApiError::internal)?;
    if held >= config.api_keys_per_organisation_max {
        return Err(ApiError::conflict(format!(
            "the organisation holds {held} keys, the most allowed; delete one first"
        )));
    }
    let now = state.clock().now_ms();
    let created_by = match caller.actor().id() {
        Some(id) => id.to_string(),
        None => return Err(ApiError::internal("a caller without an id")),
    };
    let new = generate_key(
        KeySpec {
            organisation_id: &body.organisation_id,
            name: &name,
            policies,
            mode,
            created_by: &created_by,
        },
        now,
    );
    let audit = caller
        .audit("api_key.created", now)
        .target("api_key", &new.record.id)
        .organisation(&body.organisation_id)
        .detail("name", name.as_str())
        .detail("policies", new.record.policies.clone())
        .detail("mode", mode.as_str());
    state
        .storage()
        .insert_api_key(&new.record, &audit)
        .await
        .map_err(ApiError::storage)?;
    tracing::info!(key = %new.record.id, organisation = %body.organisation_id, "API key created");
    let view = CreatedApiKeyView {
        api_key: ApiKeyView::from(&new.record),
        key: new.key.expose_secret().to_string(),
    };
    Ok((StatusCode::CREATED, Envelope::new(view, &request_id)))
}

/// An organisation's keys, newest first (deleted ones are not listed).
#[utoipa::path(get, path = "/admin/api-keys", tag = "api-keys", security(("cookie" = []), ("bearer" = [])),
    params(KeyQuery),
    responses((status = 200, body = ApiKeyPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_keys(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    ApiQuery(query): ApiQuery<KeyQuery>,
) -> Result<Json<ApiKeyPage>, ApiError> {
    let limit = params::page_limit(query.limit, PAGE_DEFAULT, PAGE_MAX)?;
    let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let organisation_id = query
        .organisation_id
        .or_else(|| caller.key_organisation().map(str::to_string))
        .ok_or_else(|| {
            ApiError::invalid_param("organisation_id", "give the organisation_id to list")
        })?;
    caller
        .require(&state, &organisation_id, Policy::KeysAdmin)
        .await?;
    let mut keys = state
        .storage()
        .api_keys_of(&organisation_id, cursor.as_ref(), limit + 1)
        .await
        .map_err(ApiError::internal)?;
    let has_more = params::split_page(&mut keys, limit);
    let next_cursor = has_more
        .then(|| {
            keys.last()
                .map(|k| params::encode_cursor(&format!("{}:{}", k.created_at_ms, k.id)))
        })
        .flatten();
    Ok(Json(ApiKeyPage {
        data: keys.iter().map(ApiKeyView::from).collect(),
        has_more,
        next_cursor,
    }))
}

fn decode_cursor(text: &str) -> Result<ApiKeyCursor, ApiError> {
    params::decode_cursor(text, |position| {
        let (at, id) = position.split_once(':')?;
        id.starts_with("key_").then_some(())?;
        Some(ApiKeyCursor {
            created_at_ms: at.parse().ok()?,
            id: id.to_string(),
        })
    })
}

/// One key.
#[utoipa::path(get, path = "/admin/api-keys/{id}", tag = "api-keys", security(("cookie" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The key's id (key_…)")),
    responses((status = 200, body = inline(Envelope<ApiKeyView>)), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_key(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<ApiKeyView>>, ApiError> {
    let key = authorised_key(&state, &caller, &id, &[Policy::KeysAdmin]).await?;
    Ok(Envelope::new(ApiKeyView::from(&key), &request_id))
}

/// Rename a key or replace its policies.
#[utoipa::path(patch, path = "/admin/api-keys/{id}", tag = "api-keys", security(("cookie" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The key's id (key_…)")),
    request_body = KeyPatch,
    responses((status = 200, body = inline(Envelope<ApiKeyView>)), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_key(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    ApiJson(body): ApiJson<KeyPatch>,
) -> Result<Json<Envelope<ApiKeyView>>, ApiError> {
    let key = authorised_key(&state, &caller, &id, &[Policy::KeysAdmin]).await?;
    let changes = ApiKeyChanges {
        name: body.name.as_deref().map(key_name).transpose()?,
        policies: body.policies.as_deref().map(parse_policies).transpose()?,
    };
    if changes == ApiKeyChanges::default() {
        return Err(ApiError::invalid_request(
            "nothing to change: give name or policies",
        ));
    }
    let now = state.clock().now_ms();
    let mut audit = caller
        .audit("api_key.updated", now)
        .target("api_key", &key.id)
        .organisation(&key.organisation_id);
    if let Some(name) = &changes.name {
        audit = audit.detail("name", name.as_str());
    }
    if let Some(policies) = &changes.policies {
        audit = audit
            .detail("policies", policies.clone())
            .detail("previous_policies", key.policies.clone());
    }
    let key = state
        .storage()
        .update_api_key(&key.id, &changes, now, &audit)
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(not_found)?;
    Ok(Envelope::new(ApiKeyView::from(&key), &request_id))
}

/// Delete a key: it and every token minted for it stop working at once.
#[utoipa::path(delete, path = "/admin/api-keys/{id}", tag = "api-keys", security(("cookie" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The key's id (key_…)")),
    responses((status = 200, body = inline(Envelope<ApiKeyView>)), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_key(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<ApiKeyView>>, ApiError> {
    let key = authorised_key(&state, &caller, &id, &[Policy::KeysAdmin]).await?;
    let now = state.clock().now_ms();
    let audit = caller
        .audit("api_key.deleted", now)
        .target("api_key", &key.id)
        .organisation(&key.organisation_id)
        .detail("name", key.name.as_str());
    let key = state
        .storage()
        .delete_api_key(&key.id, now, &audit)
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(not_found)?;
    tracing::info!(key = %key.id, "API key deleted");
    Ok(Envelope::new(ApiKeyView::from(&key), &request_id))
}

/// Rotates `key`'s secret (the current one is deposed for `auth.api_key_deposed_secret_days`)
/// and writes `api_key.rotated`.
async fn rotate(
    state: &AppState,
    caller: &Caller,
    key: &ApiKeyRecord,
    now: UnixMillis,
) -> Result<ApiKeyRecord, ApiError> {
    let days = i64::from(state.auth().config().api_key_deposed_secret_days);
    let deposed_until = now + days * DAY_MS;
    let audit = caller
        .audit("api_key.rotated", now)
        .target("api_key", &key.id)
        .organisation(&key.organisation_id)
        .detail("deposed_until", rfc3339(deposed_until))
        .detail("dropped_deposed_secret", key.deposed.is_some());
    let key = state
        .storage()
        .rotate_api_key_secret(&key.id, &new_secret(), now, deposed_until, &audit)
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(not_found)?;
    tracing::info!(key = %key.id, "API key secret rotated");
    Ok(key)
}

/// Rotate the key's internal secret. Tokens minted before keep working until the deposed
/// secret's window ends (`auth.api_key_deposed_secret_days`, 30 by default); rotating again
/// drops the deposed secret at once, as seed 001 describes. The `sk_…` key itself is not
/// changed.
#[utoipa::path(post, path = "/admin/api-keys/{id}/rotate", tag = "api-keys", security(("cookie" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The key's id (key_…)")),
    responses((status = 200, body = inline(Envelope<ApiKeyView>)), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rotate_key(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<ApiKeyView>>, ApiError> {
    let key = authorised_key(&state, &caller, &id, &[Policy::KeysAdmin]).await?;
    let now = state.clock().now_ms();
    let key = rotate(&state, &caller, &key, now).await?;
    Ok(Envelope::new(ApiKeyView::from(&key), &request_id))
}

/// Revoke the key's tokens: `old` (those issued before the last rotation: the deposed secret
/// is dropped) or `all` (every token, now: the current secret is replaced too). Cannot be
/// undone.
#[utoipa::path(post, path = "/admin/api-keys/{id}/revoke-tokens", tag = "api-keys", security(("cookie" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The key's id (key_…)")),
    request_body = RevokeBody,
    responses((status = 200, body = inline(Envelope<ApiKeyView>)), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_tokens(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    ApiJson(body): ApiJson<RevokeBody>,
) -> Result<Json<Envelope<ApiKeyView>>, ApiError> {
    let revocation = match body.tokens.as_str() {
        "old" => TokenRevocation::Old,
        "all" => TokenRevocation::All(new_secret()),
        _ => {
            return Err(ApiError::invalid_param(
                "tokens",
                "tokens must be old or all",
            ));
        }
    };
    let key = authorised_key(&state, &caller, &id, &[Policy::KeysAdmin]).await?;
    let now = state.clock().now_ms();
    let audit = caller
        .audit("api_key.tokens_revoked", now)
        .target("api_key", &key.id)
        .organisation(&key.organisation_id)
        .detail("tokens", body.tokens.as_str());
    let key = state
        .storage()
        .revoke_api_key_tokens(&key.id, &revocation, now, &audit)
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(not_found)?;
    tracing::info!(key = %key.id, tokens = %body.tokens, "API key tokens revoked");
    Ok(Envelope::new(ApiKeyView::from(&key), &request_id))
}

/// When a token asked for with `body` expires: checked against `auth.api_token_days_max`.
fn token_expiry(
    state: &AppState,
    body: &TokenBody,
    now: UnixMillis,
) -> Result<UnixMillis, ApiError> {
    let config = state.auth().config();
    let max = now + i64::from(config.api_token_days_max) * DAY_MS;
    let at = match (&body.expires_at, body.expires_in_days) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "give expires-at or expires_in_days, not both",
            ));
        }
        (Some(text), None) => chrono::DateTime::parse_from_rfc3339(text.trim())
            .map_err(|_| {
                ApiError::invalid_param("expires-at", "expires-at must be an RFC 3339 time")
            })?
            .timestamp_millis(),
        (None, Some(days)) => {
            if days == 0 || days > config.api_token_days_max {
                return Err(ApiError::invalid_param(
                    "expires_in_days",
                    format!("expires_in_days must be 1 to {}", config.api_token_days_max),
                ));
            }
            now + i64::from(days) * DAY_MS
        }
        (None, None) => now + i64::from(config.api_token_days_default) * DAY_MS,
    };
    if at <= now + 1000 {
        return Err(ApiError::invalid_param(
            "expires-at",
            "expires-at must be in the future",
        ));
    }
    if at > max {
        return Err(ApiError::invalid_param(
            "expires-at",
            format!(
                "a token may live at most {} days",
                config.api_token_days_max
            ),
        ));
    }
    Ok(at)
}

/// Mint an access token for the key, signed with its current secret (seed 001). Allowed to an
/// admin's session, a key with `keys:admin`, and an issuer: a key with `tokens:issue` in the
/// same organisation. With `rotate`, the secret is rotated first.
#[utoipa::path(post, path = "/admin/api-keys/{id}/tokens", tag = "api-keys", security(("cookie" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The key's id (key_…)")),
    request_body = TokenBody,
    responses((status = 201, body = inline(Envelope<AccessTokenView>)), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn issue_token(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<(StatusCode, Json<Envelope<AccessTokenView>>), ApiError> {
    let key = authorised_key(
        &state,
        &caller,
        &id,
        &[Policy::KeysAdmin, Policy::TokensIssue],
    )
    .await?;
    let now = state.clock().now_ms();
    let expires_at = token_expiry(&state, &body, now)?;
    let key = if body.rotate {
        rotate(&state, &caller, &key, now).await?
    } else {
        key
    };
    let minted = mint_token(&key, now, expires_at)?;
    let audit = caller
        .audit("api_key.token_issued", now)
        .target("api_key", &key.id)
        .organisation(&key.organisation_id)
        .detail("issued_token_id", minted.id.as_str())
        .detail("expires_at", rfc3339(minted.expires_at_ms));
    state
        .storage()
        .record_audit_event(&audit)
        .await
        .map_err(ApiError::internal)?;
    let view = AccessTokenView {
        token: minted.token.expose_secret().to_string(),
        token_type: "Bearer",
        token_id: minted.id,
        key_id: key.id,
        expires_at: rfc3339(minted.expires_at_ms),
    };
    Ok((StatusCode::CREATED, Envelope::new(view, &request_id)))
}
