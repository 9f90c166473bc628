//! Organisation API keys and access tokens (seeds 000 and 001): create a key (its `sk_…`
//! string is answered once), list, read, rename or change its policies, delete it, rotate its
//! internal secret, revoke its old or all tokens, and mint access tokens — by an admin's
//! session, a key holding `keys:admin`, or (minting only, within the delegation a
//! `keys:admin` named for it) a key holding `tokens:issue`, seed 001's issuer tokens. Every
//! change writes an audit row in the same transaction.

mod delegation;
mod tokens;

use ampflow_actors::api_keys::{ApiKeyChanges, ApiKeyRecord, AuditEvent};
use ampflow_types::Keyset;
use ampflow_types::UnixMillis;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::api_keys::{KeyMode, KeySpec, Policy, generate_key, parse_policies};
use crate::auth::{Caller, DashboardAuth};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::middleware::RequestId;
use crate::params;
use crate::routes::public::{Envelope, rfc3339};
use crate::state::AppState;
use delegation::{Delegation, DelegationField, DelegationRequest, delegation_after, nullable_list};

const PAGE_DEFAULT: u64 = 50;
const PAGE_MAX: u64 = 200;
const DAY_MS: i64 = 86_400_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key, delete_key))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_tokens))
        .routes(routes!(tokens::issue_token))
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
    /// An issuer's (`tokens:issue`) delegable policies; null: not limited by policy (or not an
    /// issuer).
    pub delegable_policies: Option<Vec<String>>,
    /// An issuer's delegable keys; null: not limited by key (or not an issuer). An issuer
    /// with both null delegates nothing.
    pub delegable_keys: Option<Vec<String>>,
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
            delegable_policies: key.delegable_policies.clone(),
            delegable_keys: key.delegable_keys.clone(),
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
    /// With `tokens:issue` only: the policies the tokens this issuer mints may carry (at
    /// least one; never keys:admin or tokens:issue). Absent: not limited by policy.
    pub delegable_policies: Option<Vec<String>>,
    /// With `tokens:issue` only: the keys of the organisation this issuer may mint for (1 to
    /// 100; none holding keys:admin or tokens:issue). Absent: not limited by key. With
    /// neither, the issuer delegates nothing until a `PATCH` names what it may.
    pub delegable_keys: Option<Vec<String>>,
}

/// Absent fields stay as they are. Dropping `tokens:issue` drops the key's delegation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub policies: Option<Vec<String>>,
    /// As when creating; null removes the limit by policy.
    #[serde(default, deserialize_with = "nullable_list")]
    #[schema(value_type = Option<Vec<String>>)]
    pub delegable_policies: DelegationField,
    /// As when creating; null removes the limit by key.
    #[serde(default, deserialize_with = "nullable_list")]
    #[schema(value_type = Option<Vec<String>>)]
    pub delegable_keys: DelegationField,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// `old`: tokens issued before the last rotation; `all`: every token, now.
    pub tokens: String,
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
    let key = state.actors().api_keys().live(id).await?;
    caller
        .require_any(state, &key.organisation_id, policies)
        .await?;
    Ok(key)
}

fn key_name(name: &str) -> Result<String, ApiError> {
    ampflow_actors::organisations::name(name, "the name")
        .map_err(|message| ApiError::invalid_param("name", message))
}

/// Create a key for an organisation; its `sk_…` string is in this answer only.
#[utoipa::path(post, path = "/admin/api-keys", tag = "api-keys", security(("cookie" = ["keys:admin"]), ("api_key" = ["keys:admin"])),
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
    let delegation = delegation_after(
        &state,
        &body.organisation_id,
        None,
        &policies,
        Delegation::default(),
        DelegationRequest::create(&body.delegable_policies, &body.delegable_keys),
    )
    .await?;
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
            delegable_policies: delegation.policies,
            delegable_keys: delegation.keys,
        },
        now,
    );
    let audit = caller
        .audit("api_key.created", now)
        .target("api_key", &new.record.id)
        .organisation(&body.organisation_id)
        .detail("name", name.as_str())
        .detail("policies", new.record.policies.clone())
        .detail("mode", mode.as_str())
        .detail("delegable_policies", new.record.delegable_policies.clone())
        .detail("delegable_keys", new.record.delegable_keys.clone());
    state
        .actors()
        .api_keys()
        .create(&new.record, &audit)
        .await?;
    tracing::info!(key = %new.record.id, organisation = %body.organisation_id, "API key created");
    let view = CreatedApiKeyView {
        api_key: ApiKeyView::from(&new.record),
        key: new.key.expose_secret().to_string(),
    };
    Ok((StatusCode::CREATED, Envelope::new(view, &request_id)))
}

/// An organisation's keys, newest first (deleted ones are not listed).
#[utoipa::path(get, path = "/admin/api-keys", tag = "api-keys", security(("cookie" = ["keys:admin"]), ("api_key" = ["keys:admin"])),
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
        .actors()
        .api_keys()
        .page(&organisation_id, cursor.as_ref(), limit + 1)
        .await?;
    let has_more = params::split_page(&mut keys, limit);
    let next_cursor = has_more
        .then(|| {
            keys.last()
                .map(|k| params::encode_keyset(k.created_at_ms, &k.id))
        })
        .flatten();
    Ok(Json(ApiKeyPage {
        data: keys.iter().map(ApiKeyView::from).collect(),
        has_more,
        next_cursor,
    }))
}

fn decode_cursor(text: &str) -> Result<Keyset, ApiError> {
    params::decode_keyset(text, |id| id.starts_with("key_").then(|| id.to_string()))
}

/// One key.
#[utoipa::path(get, path = "/admin/api-keys/{id}", tag = "api-keys", security(("cookie" = ["keys:admin"]), ("api_key" = ["keys:admin"])),
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

/// Rename a key, replace its policies or change what it may delegate.
#[utoipa::path(patch, path = "/admin/api-keys/{id}", tag = "api-keys", security(("cookie" = ["keys:admin"]), ("api_key" = ["keys:admin"])),
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
    let policies = body.policies.as_deref().map(parse_policies).transpose()?;
    let current = Delegation::of(&key);
    let delegation = delegation_after(
        &state,
        &key.organisation_id,
        Some(&key.id),
        policies.as_deref().unwrap_or(&key.policies),
        current.clone(),
        DelegationRequest::patch(&body.delegable_policies, &body.delegable_keys),
    )
    .await?;
    let named = body.delegable_policies.is_some() || body.delegable_keys.is_some();
    let delegation = (named || delegation != current).then_some(delegation);
    let changes = ApiKeyChanges {
        name: body.name.as_deref().map(key_name).transpose()?,
        policies,
        delegable_policies: delegation.as_ref().map(|d| d.policies.clone()),
        delegable_keys: delegation.map(|d| d.keys),
    };
    if changes == ApiKeyChanges::default() {
        return Err(ApiError::invalid_request(
            "nothing to change: give name, policies, delegable_policies or delegable_keys",
        ));
    }
    let now = state.clock().now_ms();
    let audit = update_audit(&caller, &key, &changes, now);
    let key = state
        .actors()
        .api_keys()
        .update(&key.id, &changes, &audit)
        .await?;
    Ok(Envelope::new(ApiKeyView::from(&key), &request_id))
}

/// `api_key.updated`: the changed fields, with the previous policies and delegation.
fn update_audit(
    caller: &Caller,
    key: &ApiKeyRecord,
    changes: &ApiKeyChanges,
    now: UnixMillis,
) -> AuditEvent {
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
    if let Some(delegable) = &changes.delegable_policies {
        audit = audit
            .detail("delegable_policies", delegable.clone())
            .detail(
                "previous_delegable_policies",
                key.delegable_policies.clone(),
            );
    }
    if let Some(delegable) = &changes.delegable_keys {
        audit = audit
            .detail("delegable_keys", delegable.clone())
            .detail("previous_delegable_keys", key.delegable_keys.clone());
    }
    audit
}

/// Delete a key: it and every token minted for it stop working at once.
#[utoipa::path(delete, path = "/admin/api-keys/{id}", tag = "api-keys", security(("cookie" = ["keys:admin"]), ("api_key" = ["keys:admin"])),
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
    let key = state.actors().api_keys().delete(&key.id, &audit).await?;
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
    let deposed_until = state.actors().api_keys().deposed_until(now);
    let audit = caller
        .audit("api_key.rotated", now)
        .target("api_key", &key.id)
        .organisation(&key.organisation_id)
        .detail("deposed_until", rfc3339(deposed_until))
        .detail("dropped_deposed_secret", key.deposed.is_some());
    let key = state
        .actors()
        .api_keys()
        .rotate(&key.id, now, &audit)
        .await?;
    tracing::info!(key = %key.id, "API key secret rotated");
    Ok(key)
}

/// Rotate the key's internal secret. Tokens minted before keep working until the deposed
/// secret's window ends (`auth.api_key_deposed_secret_days`, 30 by default); rotating again
/// drops the deposed secret at once, as seed 001 describes. The `sk_…` key itself is not
/// changed.
#[utoipa::path(post, path = "/admin/api-keys/{id}/rotate", tag = "api-keys", security(("cookie" = ["keys:admin"]), ("api_key" = ["keys:admin"])),
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
#[utoipa::path(post, path = "/admin/api-keys/{id}/revoke-tokens", tag = "api-keys", security(("cookie" = ["keys:admin"]), ("api_key" = ["keys:admin"])),
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
    let all = match body.tokens.as_str() {
        "old" => false,
        "all" => true,
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
        .actors()
        .api_keys()
        .revoke_tokens(&key.id, all, &audit)
        .await?;
    tracing::info!(key = %key.id, tokens = %body.tokens, "API key tokens revoked");
    Ok(Envelope::new(ApiKeyView::from(&key), &request_id))
}
