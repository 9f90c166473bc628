//! The login throttle, for logins and password changes. Attempts are counted in the database
//! (shared by every process) within `auth.login_failure_window_secs`, under three keys: the
//! account, the (account, client IP) pair and the client IP (IPv6 by /64).
//!
//! - An attempt is reserved before its password is checked (one statement adds one to every
//!   key and answers the counts), so 40 concurrent guesses cannot all get past a limit of 5.
//! - Past `login_failures_per_account_ip_max` for the pair, or `login_failures_per_ip_max` for
//!   the address, the attempt answers 429 until the window ends and its reservation is handed
//!   back. These limits refuse the guesser, not the account's owner on another address.
//! - Failures on the account from every address only slow it down: from
//!   `login_delay_after_account_failures` on, each attempt waits a delay that doubles with
//!   every further failure, up to `login_delay_max_ms`. Nobody can lock an account for
//!   everyone.
//! - A success hands the reservation back and forgets the account's failures; a failure stays
//!   counted.

use std::net::IpAddr;
use std::time::Duration;

use ampflow_storage::{AuditEvent, FailureCount, LoginSuccess};
use ampflow_types::UnixMillis;
use axum::http::StatusCode;

use crate::config::AuthConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// The counters of one login: the account's, the (account, IP) pair's and the IP's.
pub struct Keys([String; 3]);

impl Keys {
    pub fn new(email: &str, ip: IpAddr) -> Self {
        let ip = crate::net::ip_key(ip);
        Self([
            format!("account:{email}"),
            format!("account_ip:{email}|{ip}"),
            format!("ip:{ip}"),
        ])
    }

    fn all(&self) -> [&str; 3] {
        [&self.0[0], &self.0[1], &self.0[2]]
    }
}

/// An attempt whose reservation is counted.
pub struct Attempt {
    keys: Keys,
    /// The counts after the reservation, in the order of [`Keys::all`].
    reserved: Vec<FailureCount>,
}

fn window_ms(config: &AuthConfig) -> i64 {
    (config.login_failure_window_secs as i64).saturating_mul(1000)
}

/// Reserves an attempt: 429 `rate_limit_exceeded` with `Retry-After` past the pair's or the
/// address's limit, else waits the account's delay (if any) and answers the attempt.
pub async fn reserve(state: &AppState, keys: Keys, now: UnixMillis) -> Result<Attempt, ApiError> {
    let config = state.auth().config();
    let window = window_ms(config);
    let reserved = state
        .storage()
        .reserve_login_attempt(&keys.all(), now, window)
        .await
        .map_err(ApiError::storage)?;
    let count = |key: &str| reserved.iter().find(|c| c.key == key);
    let limits = [
        (&keys.0[1], config.login_failures_per_account_ip_max),
        (&keys.0[2], config.login_failures_per_ip_max),
    ];
    let refusing = limits
        .iter()
        .filter_map(|(key, max)| count(key).filter(|c| c.failures as i64 > i64::from(*max)))
        .map(|c| c.window_start_ms + window)
        .max();
    if let Some(window_end_ms) = refusing {
        state
            .storage()
            .refund_login_attempt(&reserved)
            .await
            .map_err(ApiError::storage)?;
        let retry_after_secs = ((window_end_ms - now).max(1000) + 999) / 1000;
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            format!("too many failed logins; retry after {retry_after_secs} seconds"),
        )
        .retry_after(retry_after_secs as u64));
    }
    let account_failures = count(&keys.0[0]).map_or(0, |c| c.failures.saturating_sub(1));
    if let Some(delay) = delay(config, account_failures as u32) {
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            account_failures,
            "login slowed down after failures on the account"
        );
        tokio::time::sleep(delay).await;
    }
    Ok(Attempt { keys, reserved })
}

/// The wait before an attempt on an account with `failures` recent failures.
fn delay(config: &AuthConfig, failures: u32) -> Option<Duration> {
    let beyond = failures.checked_sub(config.login_delay_after_account_failures)?;
    let factor = 1u64.checked_shl(beyond.min(32)).unwrap_or(u64::MAX);
    let ms = config
        .login_delay_base_ms
        .saturating_mul(factor)
        .min(config.login_delay_max_ms);
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl Attempt {
    /// The password was wrong: the attempt stays counted; writes `audit`.
    pub async fn failed(
        self,
        state: &AppState,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<(), ApiError> {
        state
            .storage()
            .record_login_failure(now, window_ms(state.auth().config()), audit)
            .await
            .map_err(ApiError::storage)
    }

    /// What a successful login writes with its session: the account's failures are forgotten
    /// (the account and pair keys) and the address's reservation is handed back.
    pub fn success(&self) -> LoginSuccess<'_> {
        let refunded = self
            .reserved
            .iter()
            .position(|c| c.key == self.keys.0[2])
            .map_or(&[][..], |i| &self.reserved[i..=i]);
        LoginSuccess {
            cleared_keys: &self.keys.0[..2],
            refunded,
        }
    }

    /// The password was right but no session is opened (a password change): the reservation
    /// is handed back.
    pub async fn succeeded(self, state: &AppState) -> Result<(), ApiError> {
        state
            .storage()
            .refund_login_attempt(&self.reserved)
            .await
            .map_err(ApiError::storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_failures_slow_down_progressively_and_never_past_the_cap() {
        let config = AuthConfig {
            login_delay_after_account_failures: 5,
            login_delay_base_ms: 500,
            login_delay_max_ms: 10_000,
            ..AuthConfig::default()
        };
        assert_eq!(delay(&config, 0), None);
        assert_eq!(delay(&config, 4), None);
        assert_eq!(delay(&config, 5), Some(Duration::from_millis(500)));
        assert_eq!(delay(&config, 6), Some(Duration::from_millis(1_000)));
        assert_eq!(delay(&config, 8), Some(Duration::from_millis(4_000)));
        assert_eq!(delay(&config, 10), Some(Duration::from_millis(10_000)));
        assert_eq!(
            delay(&config, u32::MAX),
            Some(Duration::from_millis(10_000))
        );
    }

    #[test]
    fn ipv6_logins_share_their_64() {
        let a = Keys::new("a@example.org", "2001:db8:1:2::1".parse().unwrap());
        let b = Keys::new("a@example.org", "2001:db8:1:2::99".parse().unwrap());
        assert_eq!(a.all(), b.all());
    }
}
