use crate::registry::RegistryError;
use ampflow_types::ChainId;

/// Why an identity request was refused. The HTTP layer maps each variant to a status and a
/// stable error code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no login message is pending for this address (it expired or was used); request a new one with POST /authorize"
    )]
    NoPendingChallenge,
    #[error("the signature does not match the pending login message for this address")]
    SignatureMismatch,
    #[error(
        "the signature's s value is in the upper half of the curve order; wallets produce the lower-half (EIP-2) form"
    )]
    SignatureMalleable,
    #[error(
        "this session was signed in by a contract wallet on chain {session_chain_id}; it cannot act on chain {chain_id}"
    )]
    WrongChain {
        session_chain_id: ChainId,
        chain_id: ChainId,
    },
    #[error("this login message is unknown, expired or already used; request a new one")]
    ChallengeUnavailable,
    #[error("message_to_sign is not a message issued by POST /authorize/by-message")]
    MessageMalformed,
    #[error(
        "chain {chain_id} is not supported; contract-wallet (EIP-1271) signatures need a configured chain"
    )]
    UnsupportedChain { chain_id: ChainId },
    #[error("the refresh token is invalid or expired")]
    RefreshTokenInvalid,
    #[error("this refresh token was already used; its whole session has been revoked")]
    RefreshTokenReused,
    #[error("the session has ended; log in again")]
    SessionInvalid,
    #[error("test endpoints are disabled; start the server with AMPFLOW_TEST_MODE=true")]
    TestModeOff,
    #[error("{0}")]
    Forbidden(String),
    #[error("the record changed concurrently; retry the request")]
    Conflict,
    #[error(
        "chain {chain_id} could not be reached to check the contract wallet's signature; retry"
    )]
    ChainUnavailable { chain_id: ChainId },
    #[error("KYC is not available: Veriff is not configured on this server")]
    VeriffNotConfigured,
    /// Carries the cause for the logs; clients see only the generic text.
    #[error("Veriff could not be reached or refused the request; retry later")]
    VeriffUnavailable(String),
    #[error("no Veriff session has this id")]
    KycSessionUnknown,
    #[error("the webhook's X-AUTH-CLIENT or signature is missing or wrong")]
    WebhookUnauthenticated,
    #[error(transparent)]
    Unavailable(#[from] RegistryError),
    /// Storage could not carry the request out now (see `StorageError::is_unavailable`);
    /// a retry may well succeed. Carries the cause for the logs.
    #[error("storage is unavailable; retry: {0}")]
    StorageUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ampflow_storage::StorageError> for IdentityError {
    fn from(error: ampflow_storage::StorageError) -> Self {
        if error.is_unavailable() {
            return Self::StorageUnavailable(error.to_string());
        }
        Self::Internal(error.to_string())
    }
}

impl From<crate::tokens::TokenError> for IdentityError {
    fn from(error: crate::tokens::TokenError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<crate::veriff::VeriffCallError> for IdentityError {
    fn from(error: crate::veriff::VeriffCallError) -> Self {
        Self::VeriffUnavailable(error.to_string())
    }
}
