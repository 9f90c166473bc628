//! The one error type of the HTTP front. Each variant maps to a status and a stable `code`; the
//! body is always `{"error":{"code","message","param"}}`. Internal causes are logged, never sent.

use ampflow_actors::{IdentityError, RegistryError};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
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
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::invalid_request(message).with_param(param)
    }

    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
    }

    pub fn authorization(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "authorization_error", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            message,
        )
    }

    /// 409 `conflict`: another writer got there first, or a limit on what is stored.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
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
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_busy", message).retry_after(2)
    }

    /// 503 `storage_unavailable` with `Retry-After: 1`: storage could not complete the request
    /// and a retry may well succeed (a writer restarting after a panic, a lost database
    /// connection). The cause goes to the log, not to the client.
    pub fn storage_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(%cause, "storage unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "storage could not complete the request just now; retry it",
        )
        .retry_after(1)
    }

    /// A 500 whose cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
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
                "rate_limit_exceeded",
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
            UnsupportedChain { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "unsupported_chain", message)
                    .with_param("chain_id")
            }
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
                    "chain_unavailable",
                    message,
                )
            }
            VeriffNotConfigured => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "veriff_not_configured",
                message,
            ),
            VeriffUnavailable(cause) => {
                tracing::warn!(%cause, "Veriff unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "veriff_unavailable",
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
                    "entity_failed",
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
