//! The failed-login throttle: failures are counted per account and per client IP in the
//! database (shared by every process) within `auth.login_failure_window_secs`; past
//! `login_failures_per_account_max` or `login_failures_per_ip_max`, logins (and password
//! changes) answer 429 until the window ends, even with the right password.

use std::net::IpAddr;

use ampflow_storage::AuditEvent;
use ampflow_types::UnixMillis;
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::state::AppState;

/// The account's key first, then the IP's.
pub fn keys(email: &str, ip: IpAddr) -> [String; 2] {
    [format!("account:{email}"), format!("ip:{ip}")]
}

fn window_ms(state: &AppState) -> i64 {
    (state.auth().config().login_failure_window_secs as i64).saturating_mul(1000)
}

/// 429 `rate_limit_exceeded` with `Retry-After` when a key is over its limit.
pub async fn check(state: &AppState, keys: &[String; 2], now: UnixMillis) -> Result<(), ApiError> {
    let config = state.auth().config();
    let window = window_ms(state);
    let counts = state
        .storage()
        .login_failures(&[&keys[0], &keys[1]], now, window)
        .await
        .map_err(ApiError::internal)?;
    for count in counts {
        let max = if count.key == keys[0] {
            config.login_failures_per_account_max
        } else {
            config.login_failures_per_ip_max
        };
        if count.failures as i64 >= max as i64 {
            let retry_after_secs = ((count.window_start_ms + window - now).max(1000) + 999) / 1000;
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                format!("too many failed logins; retry after {retry_after_secs} seconds"),
            )
            .retry_after(retry_after_secs as u64));
        }
    }
    Ok(())
}

/// Counts a failure under both keys and writes `audit`.
pub async fn record(
    state: &AppState,
    keys: &[String; 2],
    now: UnixMillis,
    audit: &AuditEvent,
) -> Result<(), ApiError> {
    state
        .storage()
        .record_login_failure(&[&keys[0], &keys[1]], now, window_ms(state), audit)
        .await
        .map_err(ApiError::internal)
}
