//! The one error type of the HTTP front. Each variant maps to a status and a stable `code`; the
//! body is always `{"error":{"code","message","param"}}`. Internal causes are logged, never sent.

use ampflow_actors::{IdentityError, RegistryError};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every `code` the API answers with, in one place: the wire's stable vocabulary. The README's
/// error table documents each (`tests/surface.rs` checks that it does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    AuthenticationError,
    AuthorizationError,
    AutoInvestInProcess,
    AutoInvestLimit,
    AutoInvestUnsupported,
    CampaignNotRegistered,
    ChainUnavailable,
    Conflict,
    EntityFailed,
    FaucetCooldown,
    FaucetUnsupported,
    IdempotencyConflict,
    InternalError,
    InvalidRequest,
    InvalidSignature,
    IpBlocked,
    IssuerNotManaged,
    IssuerNotRegistered,
    KycExpired,
    KycRequired,
    MethodNotAllowed,
    NotAnIssuer,
    NotCheckpointed,
    NotFound,
    PaymentError,
    RateLimitExceeded,
    RateLimited,
    RecaptchaFailed,
    RecaptchaUnavailable,
    RequestTimeout,
    RequestTooLarge,
    ServerBusy,
    ServiceUnavailable,
    StorageUnavailable,
    StripeConnectNotConfigured,
    StripeNotConfigured,
    TooManyConnections,
    UnsupportedChain,
    VeriffNotConfigured,
    VeriffUnavailable,
    WhitelistingUnsupported,
}

impl ErrorCode {
    pub const ALL: [Self; 41] = [
        Self::AuthenticationError,
        Self::AuthorizationError,
        Self::AutoInvestInProcess,
        Self::AutoInvestLimit,
        Self::AutoInvestUnsupported,
        Self::CampaignNotRegistered,
        Self::ChainUnavailable,
        Self::Conflict,
        Self::EntityFailed,
        Self::FaucetCooldown,
        Self::FaucetUnsupported,
        Self::IdempotencyConflict,
        Self::InternalError,
        Self::InvalidRequest,
        Self::InvalidSignature,
        Self::IpBlocked,
        Self::IssuerNotManaged,
        Self::IssuerNotRegistered,
        Self::KycExpired,
        Self::KycRequired,
        Self::MethodNotAllowed,
        Self::NotAnIssuer,
        Self::NotCheckpointed,
        Self::NotFound,
        Self::PaymentError,
        Self::RateLimitExceeded,
        Self::RateLimited,
        Self::RecaptchaFailed,
        Self::RecaptchaUnavailable,
        Self::RequestTimeout,
        Self::RequestTooLarge,
        Self::ServerBusy,
        Self::ServiceUnavailable,
        Self::StorageUnavailable,
        Self::StripeConnectNotConfigured,
        Self::StripeNotConfigured,
        Self::TooManyConnections,
        Self::UnsupportedChain,
        Self::VeriffNotConfigured,
        Self::VeriffUnavailable,
        Self::WhitelistingUnsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthenticationError => "authentication_error",
            Self::AuthorizationError => "authorization_error",
            Self::AutoInvestInProcess => "auto_invest_in_process",
            Self::AutoInvestLimit => "auto_invest_limit",
            Self::AutoInvestUnsupported => "auto_invest_unsupported",
            Self::CampaignNotRegistered => "campaign_not_registered",
            Self::ChainUnavailable => "chain_unavailable",
            Self::Conflict => "conflict",
            Self::EntityFailed => "entity_failed",
            Self::FaucetCooldown => "faucet_cooldown",
            Self::FaucetUnsupported => "faucet_unsupported",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::InternalError => "internal_error",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidSignature => "invalid_signature",
            Self::IpBlocked => "ip_blocked",
            Self::IssuerNotManaged => "issuer_not_managed",
            Self::IssuerNotRegistered => "issuer_not_registered",
            Self::KycExpired => "kyc_expired",
            Self::KycRequired => "kyc_required",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotAnIssuer => "not_an_issuer",
            Self::NotCheckpointed => "not_checkpointed",
            Self::NotFound => "not_found",
            Self::PaymentError => "payment_error",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::RateLimited => "rate_limited",
            Self::RecaptchaFailed => "recaptcha_failed",
            Self::RecaptchaUnavailable => "recaptcha_unavailable",
            Self::RequestTimeout => "request_timeout",
            Self::RequestTooLarge => "request_too_large",
            Self::ServerBusy => "server_busy",
            Self::ServiceUnavailable => "service_unavailable",
            Self::StorageUnavailable => "storage_unavailable",
            Self::StripeConnectNotConfigured => "stripe_connect_not_configured",
            Self::StripeNotConfigured => "stripe_not_configured",
            Self::TooManyConnections => "too_many_connections",
            Self::UnsupportedChain => "unsupported_chain",
            Self::VeriffNotConfigured => "veriff_not_configured",
            Self::VeriffUnavailable => "veriff_unavailable",
            Self::WhitelistingUnsupported => "whitelisting_unsupported",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    /// Seconds, sent as `Retry-After` (429 and 503 answers).
    pub retry_after_secs: Option<u64>,
}

/// The error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_request`.
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// Seconds to wait, on 429 answers (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            param: None,
            retry_after_secs: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::invalid_request(message).with_param(param)
    }

    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::AuthenticationError,
            message,
        )
    }

    pub fn authorization(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AuthorizationError,
            message,
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            message,
        )
    }

    /// 409 `conflict`: another writer got there first, or a limit on what is stored.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// A storage failure: its conflicts answer 409, anything else 500.
    pub fn storage(error: ampflow_actors::StorageError) -> Self {
        match error {
            ampflow_actors::StorageError::Conflict(message) => Self::conflict(message),
            other if other.is_unavailable() => Self::storage_unavailable(other),
            other => Self::internal(other),
        }
    }

    /// 503 `server_busy` with `Retry-After: 2`: a bounded resource is full.
    pub fn server_busy(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServerBusy,
            message,
        )
        .retry_after(2)
    }

    /// 503 `storage_unavailable` with `Retry-After: 1`: storage could not complete the request
    /// and a retry may well succeed (a writer restarting after a panic, a lost database
    /// connection). The cause goes to the log, not to the client.
    pub fn storage_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(%cause, "storage unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable,
            "storage could not complete the request just now; retry it",
        )
        .retry_after(1)
    }

    /// A 500 whose cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "an internal error occurred; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str(),
                message: self.message,
                param: self.param,
                retry_after: self
                    .retry_after_secs
                    .filter(|_| self.status == StatusCode::TOO_MANY_REQUESTS),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<ampflow_actors::OrganisationError> for ApiError {
    fn from(error: ampflow_actors::OrganisationError) -> Self {
        use ampflow_actors::OrganisationError::*;
        match error {
            NotFound => Self::not_found(error.to_string()),
            NotMember => Self::authorization(error.to_string()),
            Refused(message) => Self::invalid_request(message),
            Invalid { param, message } => Self::invalid_param(param, message),
            NothingToChange => Self::invalid_request(error.to_string()),
            Storage(error) => Self::storage(error),
        }
    }
}

impl From<ampflow_actors::AuditError> for ApiError {
    fn from(error: ampflow_actors::AuditError) -> Self {
        match error {
            ampflow_actors::AuditError::OrganisationNeeded => {
                Self::invalid_param("organisation_id", error.to_string())
            }
            ampflow_actors::AuditError::Storage(error) => Self::storage(error),
        }
    }
}

impl From<ampflow_actors::ApiKeyError> for ApiError {
    fn from(error: ampflow_actors::ApiKeyError) -> Self {
        use ampflow_actors::ApiKeyError::*;
        match error {
            NotFound => Self::not_found(error.to_string()),
            Full { .. } => Self::conflict(error.to_string()),
            Storage(error) => Self::storage(error),
        }
    }
}

impl From<ampflow_actors::accounts::ThrottleError> for ApiError {
    fn from(error: ampflow_actors::accounts::ThrottleError) -> Self {
        use ampflow_actors::accounts::ThrottleError::*;
        match error {
            Limited { retry_after_secs } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimitExceeded,
                error.to_string(),
            )
            .retry_after(retry_after_secs),
            Storage(error) => Self::storage(error),
        }
    }
}

impl From<ampflow_actors::accounts::AccountError> for ApiError {
    fn from(error: ampflow_actors::accounts::AccountError) -> Self {
        use ampflow_actors::accounts::AccountError::*;
        match error {
            WrongCredentials => Self::authentication(error.to_string()),
            WrongCurrentPassword => Self::invalid_param("current_password", error.to_string()),
            SessionNotFound => Self::not_found(error.to_string()),
            Invalid { param, message } => Self::invalid_param(param, message),
            Throttled(error) => error.into(),
            Password(error) => error.into(),
            Storage(error) => Self::storage(error),
        }
    }
}

impl From<ampflow_actors::accounts::PasswordError> for ApiError {
    fn from(error: ampflow_actors::accounts::PasswordError) -> Self {
        use ampflow_actors::accounts::PasswordError::*;
        match error {
            Busy => Self::server_busy(error.to_string()),
            // Only a new password is checked against the rules.
            Rejected(message) => Self::invalid_param("new_password", message),
            Hashing(cause) => Self::internal(cause),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        use IdentityError::*;
        let message = error.to_string();
        match error {
            NoPendingChallenge | SignatureMismatch | ChallengeUnavailable => {
                Self::authentication(message).with_param("signed_payload")
            }
            MessageMalformed => Self::invalid_param("message_to_sign", message),
            SignatureMalleable => Self::invalid_param("signed_payload", message),
            WrongChain { .. } => Self::authorization(message),
            UnsupportedChain { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnsupportedChain,
                message,
            )
            .with_param("chain_id"),
            RefreshTokenInvalid | RefreshTokenReused => {
                Self::authentication(message).with_param("refresh_token")
            }
            SessionInvalid => Self::authentication(message),
            TestModeOff | Forbidden(_) => Self::authorization(message),
            Conflict => Self::conflict(message),
            ChainUnavailable { .. } => {
                tracing::warn!(%message, "chain unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::ChainUnavailable,
                    message,
                )
            }
            VeriffNotConfigured => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::VeriffNotConfigured,
                message,
            ),
            VeriffUnavailable(cause) => {
                tracing::warn!(%cause, "Veriff unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::VeriffUnavailable,
                    message,
                )
            }
            KycSessionUnknown => Self::not_found(message),
            WebhookUnauthenticated => Self::authentication(message),
            Unavailable(registry) => registry.into(),
            StorageUnavailable(cause) => Self::storage_unavailable(cause),
            Internal(cause) => Self::internal(cause),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match &error {
            RegistryError::EntityFailed { .. } => {
                tracing::warn!(%error, "request for a failed entity");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::EntityFailed,
                    "this record is disabled after repeated failures; an operator has been alerted",
                )
            }
            RegistryError::StartFailed { .. } => Self::internal(error),
            RegistryError::StorageUnavailable { .. } => Self::storage_unavailable(error),
            RegistryError::Timeout { .. } | RegistryError::Interrupted { .. } => {
                tracing::warn!(%error, "actor unavailable");
                Self::unavailable("the request could not be completed; retry it")
            }
            RegistryError::ShuttingDown => Self::unavailable("the server is shutting down"),
        }
    }
}
