//! The login throttle, for logins and password changes. Attempts are counted in the database
//! (shared by every process) within the failure window, under three keys: the account, the
//! (account, client address) pair and the client address (the caller groups IPv6 by /64).
//!
//! - An attempt is reserved before its password is checked (one statement adds one to every
//!   key and answers the counts), so 40 concurrent guesses cannot all get past a limit of 5.
//! - Past `per_account_ip_max` for the pair, or `per_ip_max` for the address, the attempt is
//!   refused until the window ends and its reservation is handed back. These limits refuse
//!   the guesser, not the account's owner on another address.
//! - Failures on the account from every address only slow it down: from
//!   `delay_after_account_failures` on, each attempt waits a delay that doubles with every
//!   further failure, up to `delay_max_ms`. Nobody can lock an account for everyone.
//! - A success hands the reservation back and forgets the account's failures; a failure stays
//!   counted.

use std::net::IpAddr;
use std::time::Duration;

use ampflow_storage::{AuditEvent, DashboardRepo, FailureCount, LoginSuccess, StorageError};
use ampflow_types::UnixMillis;

/// `auth.login_*`.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    pub failure_window_secs: u64,
    pub failures_per_account_ip_max: u32,
    pub failures_per_ip_max: u32,
    pub delay_after_account_failures: u32,
    pub delay_base_ms: u64,
    pub delay_max_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    /// Too many failures from the address (or on the account from it).
    #[error("too many failed logins; retry after {retry_after_secs} seconds")]
    Limited { retry_after_secs: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The counters of one login: the account's, the (account, address) pair's and the address's.
#[derive(Debug)]
pub struct Keys([String; 3]);

impl Keys {
    /// `address` is the client's, grouped as the rate limits group it (IPv6 by /64).
    pub fn new(email: &str, address: IpAddr) -> Self {
        Self([
            format!("account:{email}"),
            format!("account_ip:{email}|{address}"),
            format!("ip:{address}"),
        ])
    }

    fn all(&self) -> [&str; 3] {
        [&self.0[0], &self.0[1], &self.0[2]]
    }
}

#[derive(Clone)]
pub struct LoginThrottle {
    failures: DashboardRepo,
    settings: ThrottleSettings,
}

/// An attempt whose reservation is counted.
pub struct Attempt {
    keys: Keys,
    /// The counts after the reservation, in the order of [`Keys::all`].
    reserved: Vec<FailureCount>,
}

impl LoginThrottle {
    pub fn new(failures: DashboardRepo, settings: ThrottleSettings) -> Self {
        Self { failures, settings }
    }

    fn window_ms(&self) -> i64 {
        (self.settings.failure_window_secs as i64).saturating_mul(1000)
    }

    /// Reserves an attempt: `Limited` past the pair's or the address's limit, else waits the
    /// account's delay (if any) and answers the attempt.
    pub async fn reserve(&self, keys: Keys, now: UnixMillis) -> Result<Attempt, ThrottleError> {
        let window = self.window_ms();
        let reserved = self
            .failures
            .reserve_login_attempt(&keys.all(), now, window)
            .await?;
        let count = |key: &str| reserved.iter().find(|c| c.key == key);
        let limits = [
            (&keys.0[1], self.settings.failures_per_account_ip_max),
            (&keys.0[2], self.settings.failures_per_ip_max),
        ];
        let refusing = limits
            .iter()
            .filter_map(|(key, max)| count(key).filter(|c| c.failures as i64 > i64::from(*max)))
            .map(|c| c.window_start_ms + window)
            .max();
        if let Some(window_end_ms) = refusing {
            self.failures.refund_login_attempt(&reserved).await?;
            let retry_after_secs = ((window_end_ms - now).max(1000) + 999) / 1000;
            return Err(ThrottleError::Limited {
                retry_after_secs: retry_after_secs as u64,
            });
        }
        let account_failures = count(&keys.0[0]).map_or(0, |c| c.failures.saturating_sub(1));
        if let Some(delay) = delay(&self.settings, account_failures as u32) {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                account_failures,
                "login slowed down after failures on the account"
            );
            tokio::time::sleep(delay).await;
        }
        Ok(Attempt { keys, reserved })
    }

    /// The password was wrong: the attempt stays counted; writes `audit`.
    pub async fn failed(
        &self,
        _attempt: Attempt,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<(), StorageError> {
        self.failures
            .record_login_failure(now, self.window_ms(), audit)
            .await
    }

    /// The password was right but no session is opened (a password change): the reservation
    /// is handed back.
    pub async fn succeeded(&self, attempt: Attempt) -> Result<(), StorageError> {
        self.failures.refund_login_attempt(&attempt.reserved).await
    }
}

/// The wait before an attempt on an account with `failures` recent failures.
fn delay(settings: &ThrottleSettings, failures: u32) -> Option<Duration> {
    let beyond = failures.checked_sub(settings.delay_after_account_failures)?;
    let factor = 1u64.checked_shl(beyond.min(32)).unwrap_or(u64::MAX);
    let ms = settings
        .delay_base_ms
        .saturating_mul(factor)
        .min(settings.delay_max_ms);
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl Attempt {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_failures_slow_down_progressively_and_never_past_the_cap() {
        let settings = ThrottleSettings {
            failure_window_secs: 900,
            failures_per_account_ip_max: 5,
            failures_per_ip_max: 20,
            delay_after_account_failures: 5,
            delay_base_ms: 500,
            delay_max_ms: 10_000,
        };
        assert_eq!(delay(&settings, 0), None);
        assert_eq!(delay(&settings, 4), None);
        assert_eq!(delay(&settings, 5), Some(Duration::from_millis(500)));
        assert_eq!(delay(&settings, 6), Some(Duration::from_millis(1_000)));
        assert_eq!(delay(&settings, 8), Some(Duration::from_millis(4_000)));
        assert_eq!(delay(&settings, 10), Some(Duration::from_millis(10_000)));
        assert_eq!(
            delay(&settings, u32::MAX),
            Some(Duration::from_millis(10_000))
        );
    }

    #[test]
    fn the_three_keys_name_the_account_the_pair_and_the_address() {
        let keys = Keys::new("a@example.org", "2001:db8:1:2::".parse().unwrap());
        assert_eq!(
            keys.all(),
            [
                "account:a@example.org",
                "account_ip:a@example.org|2001:db8:1:2::",
                "ip:2001:db8:1:2::"
            ]
        );
    }
}
