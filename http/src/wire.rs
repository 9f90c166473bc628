//! Request and response bodies of the identity family (seed 002): bare snake_case JSON, exactly
//! as the original service's clients expect; Veriff's webhooks keep Veriff's camelCase.

use ampflow_actors::wallet::UserRecord;
use ampflow_actors::{KycSessionView, TokenPair};
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
            address: user.address.to_string(),
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

/// `POST /veriff/session`'s answer (seed 002 §3.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct VeriffSessionResponse {
    /// Where the user verifies.
    pub verification_url: String,
    /// `created`, then `started` and `submitted` as Veriff reports the user's progress.
    #[schema(example = "created")]
    pub state: String,
    /// The session's decision; for a new session that replaced a decided one, that one's.
    pub decision: Option<VeriffDecisionResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VeriffDecisionResponse {
    pub session_id: String,
    /// approved, declined, resubmission_requested, expired, abandoned or review.
    #[schema(example = "declined")]
    pub status: String,
    /// Veriff's decision code, e.g. 9001 approved, 9102 declined.
    pub code: i32,
    pub reason: Option<String>,
    pub reason_code: Option<i32>,
    pub decision_time: Option<String>,
    pub acceptance_time: Option<String>,
}

impl From<KycSessionView> for VeriffSessionResponse {
    fn from(view: KycSessionView) -> Self {
        Self {
            verification_url: view.session.url,
            state: view.session.last_event.unwrap_or_else(|| "created".into()),
            decision: view.decision.map(|shown| VeriffDecisionResponse {
                session_id: shown.session_id,
                status: shown.decision.status.as_str().to_string(),
                code: shown.decision.code,
                reason: shown.decision.reason,
                reason_code: shown.decision.reason_code,
                decision_time: shown.decision.decision_time,
                acceptance_time: shown.decision.acceptance_time,
            }),
        }
    }
}

/// Veriff's decision webhook (camelCase, as Veriff sends it). Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VeriffDecisionWebhook {
    #[schema(example = "success")]
    pub status: String,
    pub verification: VeriffVerification,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VeriffVerification {
    /// The Veriff session id.
    pub id: String,
    /// 9001 approved, 9102 declined, 9103 resubmission requested, 9104 expired or abandoned,
    /// 9121 review.
    pub code: i32,
    /// approved, declined, resubmission_requested, expired, abandoned or review.
    pub status: String,
    pub reason: Option<String>,
    pub reason_code: Option<i32>,
    pub person: Option<VeriffPerson>,
    pub document: Option<VeriffDocument>,
    /// The wallet address the session was created for.
    pub vendor_data: Option<String>,
    pub decision_time: Option<String>,
    pub acceptance_time: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VeriffPerson {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VeriffDocument {
    #[serde(rename = "type")]
    pub document_type: Option<String>,
    pub country: Option<String>,
    /// `YYYY-MM-DD`.
    pub valid_until: Option<String>,
}

/// Veriff's event webhook (seed 002 §3.3).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VeriffEventWebhook {
    /// The Veriff session id.
    pub id: String,
    pub attempt_id: Option<String>,
    pub feature: Option<String>,
    /// 7001 started, 7002 submitted.
    pub code: i32,
    /// `started` or `submitted`.
    pub action: String,
    pub vendor_data: Option<String>,
}
