//! Request and response bodies of the identity family (seed 002): bare snake_case JSON, exactly
//! as the original service's clients expect.

use ampflow_actors::TokenPair;
use ampflow_storage::UserRecord;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
pub struct AuthorizeRequest {
    /// The wallet address, any letter case.
    #[schema(example = "0xef678007d18427e6022059dbc264f27507cd1ffc")]
    pub address: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayloadResponse {
    /// The exact text to sign with `personal_sign`.
    pub payload: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct JwtRequest {
    pub address: String,
    /// The 65-byte signature of the payload, `0x`-hex, with v as 0/1 or 27/28.
    pub signed_payload: String,
    /// For contract wallets (EIP-1271): the chain the wallet lives on. 0 or absent for EOAs.
    pub chain_id: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct JwtByMessageRequest {
    pub address: String,
    /// The payload returned by `POST /authorize/by-message`, unchanged.
    pub message_to_sign: String,
    pub signed_payload: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// RS256 JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Lifetime of the access token, in milliseconds.
    pub expires_in: i64,
    /// Single use: each refresh answers a new one.
    pub refresh_token: String,
    /// Remaining lifetime of the session's refresh tokens, in milliseconds.
    pub refresh_token_expires_in: i64,
}

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            expires_in: pair.expires_in_ms,
            refresh_token: pair.refresh_token.expose_secret().to_string(),
            refresh_token_expires_in: pair.refresh_token_expires_in_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub address: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub kyc_completed: bool,
}

impl From<UserRecord> for UserResponse {
    fn from(user: UserRecord) -> Self {
        Self {
            address: user.address,
            email: user.email,
            email_verified: user.email_verified,
            kyc_completed: user.kyc_completed,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUserRequest {
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TestKycRequest {
    pub address: String,
    pub first_name: String,
    pub last_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    pub status: &'static str,
}
