//! The one rule for work that rides in a transaction (a faucet payment, a whitelisting, an
//! auto-invest task) and saw an attempt fail: try again behind a doubling backoff, or give up.

use crate::UnixMillis;

/// How requests in a failed transaction are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Transactions a request may ride in before it is marked failed.
    pub attempts_max: u32,
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
}

/// What a failed attempt leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Back to pending, looked at again at `at_ms`; the reason says so.
    Retry { at_ms: UnixMillis, reason: String },
    /// Failed for good, with the reason.
    GiveUp { reason: String },
}

impl RetryPolicy {
    /// The wait before attempt `attempts + 1`, doubling from the base up to the cap.
    pub fn backoff_ms(&self, attempts: u32) -> i64 {
        let doublings = attempts.saturating_sub(1).min(30);
        self.backoff_base_ms
            .saturating_mul(1i64 << doublings)
            .min(self.backoff_max_ms)
    }

    /// What the `attempts`-th failed attempt (counting this one) leads to: given up at once
    /// when `retryable` is false (a revert on chain, or a refusal another attempt would pay
    /// for again), given up once the attempts are used, otherwise retried after the backoff.
    pub fn after_failure(
        &self,
        attempts: u32,
        failure: &str,
        retryable: bool,
        now: UnixMillis,
    ) -> AfterFailure {
        if !retryable {
            AfterFailure::GiveUp {
                reason: format!("refused on chain, not retried: {failure}"),
            }
        } else if attempts >= self.attempts_max {
            AfterFailure::GiveUp {
                reason: format!("gave up after {attempts} attempts: {failure}"),
            }
        } else {
            AfterFailure::Retry {
                at_ms: now.saturating_add(self.backoff_ms(attempts)),
                reason: format!("attempt {attempts} failed, will retry: {failure}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        attempts_max: 3,
        backoff_base_ms: 1_000,
        backoff_max_ms: 3_000,
    };

    #[test]
    fn a_failed_attempt_is_retried_behind_a_doubling_capped_backoff_then_given_up() {
        assert_eq!(
            (1..=4).map(|a| POLICY.backoff_ms(a)).collect::<Vec<_>>(),
            [1_000, 2_000, 3_000, 3_000]
        );
        assert_eq!(
            POLICY.after_failure(2, "nonce taken", true, 10_000),
            AfterFailure::Retry {
                at_ms: 12_000,
                reason: "attempt 2 failed, will retry: nonce taken".into()
            }
        );
        assert_eq!(
            POLICY.after_failure(3, "nonce taken", true, 10_000),
            AfterFailure::GiveUp {
                reason: "gave up after 3 attempts: nonce taken".into()
            }
        );
        assert_eq!(
            POLICY.after_failure(1, "reverted", false, 10_000),
            AfterFailure::GiveUp {
                reason: "refused on chain, not retried: reverted".into()
            }
        );
    }
}
