//! Minting access tokens for a key (seed 001): by an admin's session or a key holding
//! `keys:admin` (the token carries the key's policies), or by an issuer key holding
//! `tokens:issue`, within what it may delegate (the token carries a scope; see
//! [`crate::auth::api_keys::delegation`]). Only `keys:admin` may rotate while minting.

use ampflow_actors::api_keys::ApiKeyRecord;
use ampflow_types::UnixMillis;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DAY_MS, authorised_key, rotate};
use crate::auth::api_keys::delegation::{TokenScope, delegated_scope};
use crate::auth::api_keys::{Policy, mint_token};
use crate::auth::{Caller, DashboardAuth};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::middleware::RequestId;
use crate::routes::public::{Envelope, rfc3339};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessTokenView {
    /// A JWT; use it as `Authorization: Bearer <token>`. Shown once.
    pub token: String,
    pub token_type: &'static str,
    /// `tok_…`, as the audit log names it.
    pub token_id: String,
    pub key_id: String,
    pub expires_at: String,
    /// Minted by an issuer key: the policies the token may use, fixed now (the key's within
    /// the issuer's delegation). Null: the key's own policies, whenever it is used.
    pub scope: Option<Vec<String>>,
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
    /// issued before stay valid only while the deposed secret does. Needs `keys:admin` (403 to
    /// an issuer key).
    #[serde(default)]
    pub rotate: bool,
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

/// The issuer key minting a token, or `None` when the caller mints with `keys:admin` (a key
/// holding it, or an admin's session: [`authorised_key`] let only those and issuers through).
fn minting_issuer(caller: &Caller) -> Option<&ApiKeyRecord> {
    match caller {
        Caller::Key(c) if !c.credential.grants(&c.key, Policy::KeysAdmin) => Some(&c.key),
        Caller::Key(_) | Caller::Session(_) => None,
    }
}

/// The scope of the token `caller` asks for `key`: `None` (the key's own policies) for
/// `keys:admin`; for an issuer, the key's policies within its delegation, and 403 for a
/// rotation or a key outside its delegation.
fn token_scope(
    caller: &Caller,
    key: &ApiKeyRecord,
    body: &TokenBody,
) -> Result<Option<TokenScope>, ApiError> {
    let Some(issuer) = minting_issuer(caller) else {
        return Ok(None);
    };
    if body.rotate {
        // A rotation deposes the secret every holder's tokens hang on, and a second one drops
        // them: revoking is a keys:admin power.
        return Err(ApiError::authorization(
            "rotating a key's secret needs keys:admin; an issuer key may only mint",
        ));
    }
    Ok(Some(delegated_scope(issuer, key)?))
}

/// Mint an access token for the key, signed with its current secret (seed 001). Allowed to an
/// admin's session and a key with `keys:admin` (the token carries the key's policies as they
/// are when it is used), and to an issuer key with `tokens:issue` in the same organisation
/// within its delegation: never for a key holding `keys:admin` or `tokens:issue`, only for
/// its `delegable_keys` when it has some, and the token is limited to the key's policies
/// within its `delegable_policies` (its `scope`, fixed now). With `rotate` (`keys:admin`
/// only), the secret is rotated first.
#[utoipa::path(post, path = "/admin/api-keys/{id}/tokens", tag = "api-keys", security(("cookie" = ["keys:admin"]), ("api_key" = ["keys:admin", "tokens:issue"])),
    params(("id" = String, Path, description = "The key's id (key_…)")),
    request_body = TokenBody,
    responses((status = 201, body = inline(Envelope<AccessTokenView>)), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`authorization_error`: no keys:admin or tokens:issue in the key's organisation; an issuer key asking for a key outside its delegation, or to rotate", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn issue_token(
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
    let scope = token_scope(&caller, &key, &body)?;
    let now = state.clock().now_ms();
    let expires_at = token_expiry(&state, &body, now)?;
    let key = if body.rotate {
        rotate(&state, &caller, &key, now).await?
    } else {
        key
    };
    let minted = mint_token(&key, now, expires_at, scope.as_ref())?;
    let audit = caller
        .audit("api_key.token_issued", now)
        .target("api_key", &key.id)
        .organisation(&key.organisation_id)
        .detail("issued_token_id", minted.id.as_str())
        .detail("expires_at", rfc3339(minted.expires_at_ms))
        .detail("issuer", caller.actor().id())
        .detail("scope", scope.as_ref().map(TokenScope::names));
    state
        .actors()
        .api_keys()
        .token_issued(&audit)
        .await
        .map_err(ApiError::storage)?;
    let view = AccessTokenView {
        token: minted.token.expose_secret().to_string(),
        token_type: "Bearer",
        token_id: minted.id,
        key_id: key.id,
        expires_at: rfc3339(minted.expires_at_ms),
        scope: scope.as_ref().map(TokenScope::names),
    };
    Ok((StatusCode::CREATED, Envelope::new(view, &request_id)))
}
