//! Local leases of Redis budget. When a rule's limit is large, one Redis check counts several
//! requests at once (`rate_limit.redis_lease_fraction` of the limit, shrinking with the room
//! left) and the process admits the rest from memory until they are spent or the window the
//! lease was taken in ends. Every leased unit was counted in Redis first, so all processes
//! together never admit more than the limit; the cost is that a process may hold a few units
//! its client then sends to another process, which may refuse it a little early. A lease
//! never outlives its window, so a unit is never spent in a window that did not count it.
//!
//! A request admitted from leases alone does not ask Redis whether its IP was auto-blocked by
//! another process: it learns that at its next Redis check, a few requests later.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Headline;
use super::redis_store::Grant;

const SHARDS: usize = 16;

/// How long a lease request may be in flight before another request may ask for one (a
/// request dropped mid-flight must not stop leasing for good).
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Requests this process may still admit.
    units: u64,
    /// The room Redis had left after granting the lease.
    remaining: u64,
    limit: u64,
    reset_ms: u64,
    expires: Instant,
    /// While a request is asking Redis for a lease of this key: until when it may.
    fetching_until: Option<Instant>,
}

impl Lease {
    fn live(&self, now: Instant) -> bool {
        self.expires > now && self.units > 0
    }

    fn fetching(&self, now: Instant) -> bool {
        self.fetching_until.is_some_and(|until| until > now)
    }
}

/// What [`Leases::take`] decided for one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Admitted from a lease, leaving this headline.
    Admitted(Headline),
    /// Ask Redis, for this many units: a lease when this request is the one to fetch it, 1
    /// when the limit is too small to lease or another request is fetching the lease already
    /// (so a burst does not lease the budget many times over).
    Ask(u64),
}

pub struct Leases {
    fraction: f64,
    shards: Vec<Mutex<HashMap<String, Lease>>>,
    hasher: RandomState,
    per_shard_max: usize,
}

impl Leases {
    /// Leases of `fraction` of each limit, for at most `keys_max` rule keys at once.
    pub fn new(fraction: f64, keys_max: usize) -> Self {
        Self {
            fraction,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            per_shard_max: (keys_max / SHARDS).max(1),
        }
    }

    /// The units a lease of a rule with `limit` asks Redis for (1: no lease).
    pub fn want(&self, limit: u64) -> u64 {
        ((limit as f64 * self.fraction) as u64).max(1)
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Lease>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[index]
    }

    /// Admits one request from the lease of `key` if one is live; otherwise says what to ask
    /// Redis for, and when it is a lease, marks it as being fetched.
    pub fn take(&self, key: &str, limit: u64, now: Instant) -> Take {
        let want = self.want(limit);
        if want <= 1 {
            return Take::Ask(1);
        }
        let mut shard = self.shard(key).lock();
        if let Some(lease) = shard.get_mut(key) {
            if lease.live(now) {
                lease.units -= 1;
                return Take::Admitted(Headline {
                    limit: lease.limit,
                    remaining: lease.remaining + lease.units,
                    reset_ms: lease.reset_ms,
                });
            }
            if lease.fetching(now) {
                return Take::Ask(1);
            }
            lease.units = 0;
            lease.fetching_until = Some(now + FETCH_TIMEOUT);
            return Take::Ask(want);
        }
        if shard.len() >= self.per_shard_max {
            shard.retain(|_, l| l.live(now) || l.fetching(now));
            if shard.len() >= self.per_shard_max {
                return Take::Ask(1);
            }
        }
        shard.insert(
            key.to_string(),
            Lease {
                units: 0,
                remaining: 0,
                limit,
                reset_ms: 0,
                expires: now,
                fetching_until: Some(now + FETCH_TIMEOUT),
            },
        );
        Take::Ask(want)
    }

    /// Hands back a unit [`take`](Self::take) gave for a request another rule refused.
    pub fn give_back(&self, key: &str) {
        if let Some(lease) = self.shard(key).lock().get_mut(key) {
            lease.units += 1;
        }
    }

    /// Ends a lease request that got no grant (refused, or Redis failed), so the next request
    /// may ask again.
    pub fn abandon(&self, key: &str) {
        if let Some(lease) = self.shard(key).lock().get_mut(key) {
            lease.fetching_until = None;
        }
    }

    /// Keeps what a lease request's `grant` holds beyond the request that asked for it (added
    /// to what the process still holds in the same window); answers that request's headline.
    pub fn keep(&self, key: &str, limit: u64, grant: Grant, now: Instant) -> Headline {
        let units = grant.units.saturating_sub(1);
        let expires = now + Duration::from_millis(grant.reset_ms.saturating_sub(grant.now_ms));
        let mut shard = self.shard(key).lock();
        let Some(lease) = shard.get_mut(key) else {
            // Dropped meanwhile (table full): the units stay unused, the safe side.
            return Headline {
                limit,
                remaining: grant.remaining + units,
                reset_ms: grant.reset_ms,
            };
        };
        let same_window = lease.expires > now && lease.reset_ms == grant.reset_ms;
        let held = if same_window { lease.units } else { 0 };
        *lease = Lease {
            units: held + units,
            remaining: grant.remaining,
            limit,
            reset_ms: grant.reset_ms,
            expires,
            fetching_until: None,
        };
        Headline {
            limit,
            remaining: lease.remaining + lease.units,
            reset_ms: lease.reset_ms,
        }
    }

    /// Leases held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(units: u64, remaining: u64) -> Grant {
        Grant {
            units,
            remaining,
            reset_ms: 60_000,
            now_ms: 30_000,
        }
    }

    #[test]
    fn a_lease_admits_its_units_then_runs_out() {
        let leases = Leases::new(0.1, 1_000);
        assert_eq!(leases.want(500), 50);
        assert_eq!(leases.want(5), 1);
        let now = Instant::now();
        assert_eq!(leases.take("small", 5, now), Take::Ask(1));
        assert_eq!(leases.take("k", 500, now), Take::Ask(50));
        // While that lease is being fetched, others ask for one unit.
        assert_eq!(leases.take("k", 500, now), Take::Ask(1));
        let first = leases.keep("k", 500, grant(3, 400), now);
        assert_eq!(first.remaining, 402);
        let Take::Admitted(headline) = leases.take("k", 500, now) else {
            panic!("a live lease admits");
        };
        assert_eq!(headline.remaining, 401);
        leases.give_back("k");
        assert!(matches!(leases.take("k", 500, now), Take::Admitted(h) if h.remaining == 401));
        assert!(matches!(leases.take("k", 500, now), Take::Admitted(h) if h.remaining == 400));
        // Spent: the next request fetches a new lease, the one after it waits for none.
        assert_eq!(leases.take("k", 500, now), Take::Ask(50));
        assert_eq!(leases.take("k", 500, now), Take::Ask(1));
        leases.abandon("k");
        assert_eq!(leases.take("k", 500, now), Take::Ask(50));
    }

    #[test]
    fn a_lease_ends_with_its_window_and_a_stuck_fetch_times_out() {
        let leases = Leases::new(0.1, 1_000);
        let now = Instant::now();
        assert_eq!(leases.take("k", 500, now), Take::Ask(50));
        leases.keep("k", 500, grant(10, 400), now);
        let before_end = now + Duration::from_millis(29_000);
        assert!(matches!(
            leases.take("k", 500, before_end),
            Take::Admitted(_)
        ));
        let at_end = now + Duration::from_millis(30_000);
        assert_eq!(leases.take("k", 500, at_end), Take::Ask(50));
        // Nobody answers that fetch: after the timeout another request may ask.
        assert_eq!(leases.take("k", 500, at_end), Take::Ask(1));
        let later = at_end + FETCH_TIMEOUT;
        assert_eq!(leases.take("k", 500, later), Take::Ask(50));
    }

    #[test]
    fn grants_in_one_window_add_up() {
        let leases = Leases::new(0.1, 1_000);
        let now = Instant::now();
        leases.take("k", 500, now);
        leases.keep("k", 500, grant(5, 400), now);
        leases.take("k", 500, now);
        let headline = leases.keep("k", 500, grant(5, 390), now);
        assert_eq!(headline.remaining, 390 + 4 + 3);
    }

    #[test]
    fn the_table_is_bounded() {
        let leases = Leases::new(0.1, SHARDS * 2);
        let now = Instant::now();
        for i in 0..1_000 {
            let key = format!("k{i}");
            if leases.take(&key, 500, now) == Take::Ask(50) {
                leases.keep(&key, 500, grant(10, 400), now);
            }
        }
        assert!(leases.len() <= SHARDS * 2);
        // Expired leases make room.
        let later = now + Duration::from_secs(31);
        assert_eq!(leases.take("fresh", 500, later), Take::Ask(50));
        leases.keep("fresh", 500, grant(10, 400), later);
        assert!(matches!(
            leases.take("fresh", 500, later),
            Take::Admitted(_)
        ));
    }
}
