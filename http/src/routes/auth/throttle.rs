//! The login throttle at the edge: the accounts façade's throttle
//! (`ampflow_actors::accounts::LoginThrottle`), keyed by the client's address grouped as every
//! rate limit groups it (IPv6 by /64), and its refusal as 429 `rate_limit_exceeded`.

use std::net::IpAddr;

use ampflow_actors::accounts::{Attempt, Keys, ThrottleError};
use ampflow_storage::AuditEvent;
use ampflow_types::UnixMillis;
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::state::AppState;

/// The counters of a login by `email` from `ip`.
pub fn keys(email: &str, ip: IpAddr) -> Keys {
    Keys::new(email, crate::net::ip_key(ip))
}

impl From<ThrottleError> for ApiError {
    fn from(error: ThrottleError) -> Self {
        match error {
            ThrottleError::Limited { retry_after_secs } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                error.to_string(),
            )
            .retry_after(retry_after_secs),
            ThrottleError::Storage(error) => ApiError::storage(error),
        }
    }
}

/// Reserves an attempt (429 past the limits; waits the account's delay, if any).
pub async fn reserve(state: &AppState, keys: Keys, now: UnixMillis) -> Result<Attempt, ApiError> {
    Ok(state
        .actors()
        .accounts()
        .throttle()
        .reserve(keys, now)
        .await?)
}

/// The password was wrong: the attempt stays counted; writes `audit`.
pub async fn failed(
    state: &AppState,
    attempt: Attempt,
    now: UnixMillis,
    audit: &AuditEvent,
) -> Result<(), ApiError> {
    state
        .actors()
        .accounts()
        .throttle()
        .failed(attempt, now, audit)
        .await
        .map_err(ApiError::storage)
}

/// The password was right but no session is opened: the reservation is handed back.
pub async fn succeeded(state: &AppState, attempt: Attempt) -> Result<(), ApiError> {
    state
        .actors()
        .accounts()
        .throttle()
        .succeeded(attempt)
        .await
        .map_err(ApiError::storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_logins_share_their_64() {
        let a = keys("a@example.org", "2001:db8:1:2::1".parse().unwrap());
        let b = keys("a@example.org", "2001:db8:1:2::99".parse().unwrap());
        assert_eq!(format!("{:?}", a), format!("{:?}", b));
    }
}
