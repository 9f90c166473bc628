//! Wallet-signature login and the user record (seed 002, sections 2, 4 and 5). Handlers parse
//! the edge into typed values, make one call and map the reply.

use ampflow_chain::{SignatureBytes, SignatureError, WalletSignature};
use axum::Json;
use axum::extract::State;
use secrecy::SecretString;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, WalletAuth, authenticate_headers};
use crate::params;
use crate::state::AppState;
use crate::wire::*;
use axum::extract::FromRequest;

const EMAIL_LENGTH_MAX: usize = 254;
const NAME_LENGTH_MAX: usize = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(authorize))
        .routes(routes!(authorize_by_message))
        .routes(routes!(jwt))
        .routes(routes!(jwt_by_message))
        .routes(routes!(refresh))
        .routes(routes!(get_user, put_user))
        .routes(routes!(logout))
        .routes(routes!(test_kyc))
}

fn parse_signature(param: &str, text: &str) -> Result<WalletSignature, ApiError> {
    WalletSignature::parse(text)
        .map_err(|e: SignatureError| ApiError::invalid_param(param, e.to_string()))
}

/// Get a login payload for an address.
#[utoipa::path(post, path = "/authorize", tag = "identity",
    request_body = AuthorizeRequest,
    responses((status = 200, body = PayloadResponse), (status = 400, body = ErrorBody)))]
async fn authorize(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AuthorizeRequest>,
) -> Result<Json<PayloadResponse>, ApiError> {
    let address = params::address("address", &body.address)?;
    let payload = state.identity().authorize(address).await?;
    Ok(Json(PayloadResponse { payload }))
}

/// Get a login payload with a unique id, not yet bound to an address.
#[utoipa::path(post, path = "/authorize/by-message", tag = "identity",
    responses((status = 200, body = PayloadResponse)))]
async fn authorize_by_message(
    State(state): State<AppState>,
) -> Result<Json<PayloadResponse>, ApiError> {
    let payload = state.identity().authorize_by_message().await?;
    Ok(Json(PayloadResponse { payload }))
}

/// Exchange a signed `/authorize` payload for tokens. The user is created on first login.
#[utoipa::path(post, path = "/authorize/jwt", tag = "identity",
    request_body = JwtRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn jwt(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<JwtRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let address = params::address("address", &body.address)?;
    // An EOA signature is exactly 65 bytes; a contract wallet's (with a chain id) may be any
    // length.
    let signature = match body.chain_id.filter(|id| *id != 0) {
        Some(_) => SignatureBytes::parse(&body.signed_payload),
        None => WalletSignature::parse(&body.signed_payload).map(SignatureBytes::from),
    }
    .map_err(|e| ApiError::invalid_param("signed_payload", e.to_string()))?;
    let pair = state
        .identity()
        .login(
            address,
            signature,
            body.chain_id.map(ampflow_types::ChainId::new),
        )
        .await?;
    Ok(Json(pair.into()))
}

/// Exchange a signed `/authorize/by-message` payload for tokens.
#[utoipa::path(post, path = "/authorize/jwt/by-message", tag = "identity",
    request_body = JwtByMessageRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn jwt_by_message(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<JwtByMessageRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let address = params::address("address", &body.address)?;
    let signature = parse_signature("signed_payload", &body.signed_payload)?;
    let pair = state
        .identity()
        .login_by_message(address, &body.message_to_sign, signature)
        .await?;
    Ok(Json(pair.into()))
}

/// Rotate a refresh token. Reusing a spent one revokes its whole session.
#[utoipa::path(post, path = "/authorize/refresh", tag = "identity",
    request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    if body.refresh_token.is_empty() || body.refresh_token.len() > 512 {
        return Err(ApiError::invalid_param(
            "refresh_token",
            "refresh_token is empty or too long",
        ));
    }
    let token = SecretString::from(body.refresh_token);
    let pair = state.identity().refresh(&token).await?;
    Ok(Json(pair.into()))
}

/// The signed-in wallet's user record.
#[utoipa::path(get, path = "/user", tag = "user", security(("wallet" = [])),
    responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody)))]
async fn get_user(
    State(state): State<AppState>,
    WalletAuth(principal): WalletAuth,
) -> Result<Json<UserResponse>, ApiError> {
    let user = state.identity().user(&principal).await?;
    Ok(Json(user.into()))
}

/// Set the user's email. A changed email is unverified.
#[utoipa::path(put, path = "/user", tag = "user", security(("wallet" = [])),
    request_body = UpdateUserRequest,
    responses((status = 200, body = UserResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn put_user(
    State(state): State<AppState>,
    WalletAuth(principal): WalletAuth,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    let email = body.email.trim();
    if email.len() > EMAIL_LENGTH_MAX || !email_address::EmailAddress::is_valid(email) {
        return Err(ApiError::invalid_param(
            "email",
            "email is not a valid address",
        ));
    }
    let user = state
        .identity()
        .update_email(&principal, email.to_string())
        .await?;
    Ok(Json(user.into()))
}

/// End this session: its refresh token and every access token minted in it stop working.
#[utoipa::path(post, path = "/user/logout", tag = "user", security(("wallet" = [])),
    responses((status = 200, description = "Logged out"), (status = 401, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    WalletAuth(principal): WalletAuth,
) -> Result<(), ApiError> {
    state.identity().logout(&principal).await?;
    Ok(())
}

/// Test mode only: mark the caller's wallet as KYC-verified. Answers 403 otherwise.
#[utoipa::path(post, path = "/test/kyc", tag = "test", security(("wallet" = [])),
    request_body = TestKycRequest,
    responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn test_kyc(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Json<UserResponse>, ApiError> {
    // Disabled means 403 whatever the request holds, so check it before auth and body.
    if !state.identity().test_mode() {
        return Err(ApiError::from(ampflow_actors::IdentityError::TestModeOff));
    }
    let principal = authenticate_headers(&state, request.headers()).await?;
    let ApiJson(body) = ApiJson::<TestKycRequest>::from_request(request, &state).await?;
    let address = params::address("address", &body.address)?;
    for (param, value) in [
        ("first_name", &body.first_name),
        ("last_name", &body.last_name),
    ] {
        if value.trim().is_empty() || value.len() > NAME_LENGTH_MAX {
            return Err(ApiError::invalid_param(
                param,
                format!("{param} must be 1 to {NAME_LENGTH_MAX} characters"),
            ));
        }
    }
    let user = state
        .identity()
        .test_kyc(
            &principal,
            address,
            body.first_name.trim().to_string(),
            body.last_name.trim().to_string(),
        )
        .await?;
    Ok(Json(user.into()))
}
