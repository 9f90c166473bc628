//! The algorithm, shared by both stores: a two-bucket sliding window counter (the one
//! Cloudflare describes), kept per key as (current window index, count in it, count in the
//! previous window). The Redis store runs the same arithmetic in Lua (`redis.rs`).
//!
//! A request at `elapsed` ms into the current window sees
//! `used = previous × (window − elapsed) / window + current`; it is admitted when
//! `used + 1 <= limit`. A fixed window gives the previous count weight 0.
//!
//! Why not a sliding log (a sorted set of timestamps)? It is exact, but costs one entry per
//! admitted request: 1,000 per key for the platform-wide donation limit and O(log n) work per
//! check. The counter costs three numbers per key whatever the limit, which is what keeps the
//! in-memory store bounded. Its error: it assumes the previous window's requests were spread
//! evenly, so a burst at the very end of the previous window is under-weighted as it ages.
//! The admitted count over any window-long span can exceed the limit by at most the share of
//! the previous window's requests that the weighting has already discounted; for traffic that
//! is not timed against the window edge it is within a few percent, and it never admits more
//! than twice the limit in any window-long span (the fixed-window worst case is the same
//! bound, reached much more easily).

/// The state of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    pub window_index: u64,
    pub current: u64,
    pub previous: u64,
}

/// A rule's limit and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub limit: u64,
    pub window_ms: u64,
    pub fixed: bool,
}

/// What one rule says about one more request at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Requests still admitted after this one (0 when refused).
    pub remaining: u64,
    /// Unix ms at which the current window ends.
    pub reset_ms: u64,
    /// When refused: ms until one more request would be admitted.
    pub retry_after_ms: u64,
    /// The counter as it is once rolled to `now_ms` (not counting this request).
    pub rolled: Counter,
}

/// Rolls `stored` forward to `now_ms` and evaluates one more request.
pub fn evaluate(stored: Option<Counter>, limit: Limit, now_ms: u64) -> Outcome {
    let window = limit.window_ms.max(1);
    let index = now_ms / window;
    let rolled = match stored {
        Some(c) if c.window_index == index => c,
        Some(c) if c.window_index + 1 == index => Counter {
            window_index: index,
            current: 0,
            previous: c.current,
        },
        _ => Counter {
            window_index: index,
            current: 0,
            previous: 0,
        },
    };
    let elapsed = now_ms - index * window;
    let reset_ms = (index + 1) * window;
    let previous = if limit.fixed { 0 } else { rolled.previous };
    // Integer arithmetic, as in Lua, rounding the previous window's weight up (never admitting
    // early): used = ceil(previous*(window-elapsed)/window) + current.
    let weighted_previous = (previous * (window - elapsed)).div_ceil(window);
    let used = weighted_previous + rolled.current;
    if used < limit.limit {
        return Outcome {
            allowed: true,
            remaining: limit.limit - used - 1,
            reset_ms,
            retry_after_ms: 0,
            rolled,
        };
    }
    Outcome {
        allowed: false,
        remaining: 0,
        reset_ms,
        retry_after_ms: if limit.fixed {
            window - elapsed + 1
        } else {
            retry_after_ms(previous, rolled.current, limit.limit, window, elapsed)
        },
        rolled,
    }
}

/// When one more request fits: later in this window, once the previous window's weight has
/// decayed enough; or in the next window, once this window's (then previous) weight has.
fn retry_after_ms(previous: u64, current: u64, limit: u64, window: u64, elapsed: u64) -> u64 {
    // In this window: previous*(window-t)/window + current <= limit-1.
    if current < limit && previous > 0 {
        let room = limit - 1 - current;
        // t >= window - room*window/previous
        let t = window - (room * window / previous).min(window);
        if t > elapsed && t < window {
            return t - elapsed + 1;
        }
    }
    // In the next window: current*(window-t)/window <= limit-1, t from its start.
    let t = ((limit - 1) * window)
        .checked_div(current)
        .map_or(0, |room| window - room.min(window));
    window - elapsed + t + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Limit = Limit {
        limit: 10,
        window_ms: 60_000,
        fixed: false,
    };

    fn admit(state: &mut Option<Counter>, limit: Limit, now: u64) -> Outcome {
        let outcome = evaluate(*state, limit, now);
        if outcome.allowed {
            let mut c = outcome.rolled;
            c.current += 1;
            *state = Some(c);
        }
        outcome
    }

    #[test]
    fn admits_the_limit_then_refuses_with_a_retry_after() {
        let mut state = None;
        let start = 600_000;
        for i in 0..10 {
            let o = admit(&mut state, MINUTE, start + i);
            assert!(o.allowed);
            assert_eq!(o.remaining, 9 - i);
        }
        let refused = admit(&mut state, MINUTE, start + 10);
        assert!(!refused.allowed);
        // The ten are in this window: the next fits once they weigh at most 9 of 10,
        // 6 s into the next window.
        assert_eq!(refused.retry_after_ms, 60_000 - 10 + 6_000 + 1);
        let later = start + 10 + refused.retry_after_ms;
        assert!(admit(&mut state, MINUTE, later).allowed);
        assert!(!admit(&mut state, MINUTE, later).allowed);
    }

    #[test]
    fn the_previous_window_decays_linearly() {
        let mut state = Some(Counter {
            window_index: 9,
            current: 10,
            previous: 0,
        });
        // Half-way into window 10, the ten weigh five: five more fit.
        let now = 10 * 60_000 + 30_000;
        for _ in 0..5 {
            assert!(admit(&mut state, MINUTE, now).allowed);
        }
        assert!(!admit(&mut state, MINUTE, now).allowed);
        // Two windows later everything is forgotten.
        let far = 12 * 60_000;
        assert_eq!(evaluate(state, MINUTE, far).remaining, 9);
    }

    #[test]
    fn a_fixed_window_ignores_the_previous_one() {
        let fixed = Limit {
            fixed: true,
            ..MINUTE
        };
        let state = Some(Counter {
            window_index: 9,
            current: 10,
            previous: 0,
        });
        let o = evaluate(state, fixed, 10 * 60_000 + 1);
        assert!(o.allowed);
        assert_eq!(o.remaining, 9);
        let full = Some(Counter {
            window_index: 10,
            current: 10,
            previous: 0,
        });
        let o = evaluate(full, fixed, 10 * 60_000 + 1_000);
        assert!(!o.allowed);
        assert_eq!(o.retry_after_ms, 59_000 + 1);
    }
}
