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

#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Requests this process may still admit.
    units: u64,
    /// The room Redis had left after granting the lease.
    remaining: u64,
    limit: u64,
    reset_ms: u64,
    expires: Instant,
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

    /// The units a check of a rule with `limit` asks Redis for (1: no lease).
    pub fn want(&self, limit: u64) -> u64 {
        ((limit as f64 * self.fraction) as u64).max(1)
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Lease>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[index]
    }

    /// Admits one request from the lease of `key`, if one is live: the headline it leaves.
    pub fn take(&self, key: &str, now: Instant) -> Option<Headline> {
        let mut shard = self.shard(key).lock();
        let lease = shard.get_mut(key)?;
        if lease.expires <= now || lease.units == 0 {
            shard.remove(key);
            return None;
        }
        lease.units -= 1;
        Some(Headline {
            limit: lease.limit,
            remaining: lease.remaining + lease.units,
            reset_ms: lease.reset_ms,
        })
    }

    /// Hands back a unit [`take`](Self::take) gave for a request another rule refused.
    pub fn give_back(&self, key: &str) {
        if let Some(lease) = self.shard(key).lock().get_mut(key) {
            lease.units += 1;
        }
    }

    /// Keeps what `grant` leased beyond the request that asked for it; answers that request's
    /// headline. When the table is full of live leases the extra units are dropped: counted
    /// in Redis but never admitted, which errs on the safe side.
    pub fn keep(&self, key: &str, limit: u64, grant: Grant, now: Instant) -> Headline {
        let units = grant.units.saturating_sub(1);
        let headline = Headline {
            limit,
            remaining: grant.remaining + units,
            reset_ms: grant.reset_ms,
        };
        if units == 0 {
            return headline;
        }
        let lease = Lease {
            units,
            remaining: grant.remaining,
            limit,
            reset_ms: grant.reset_ms,
            expires: now + Duration::from_millis(grant.reset_ms.saturating_sub(grant.now_ms)),
        };
        let mut shard = self.shard(key).lock();
        if shard.len() >= self.per_shard_max && !shard.contains_key(key) {
            shard.retain(|_, l| l.expires > now && l.units > 0);
            if shard.len() >= self.per_shard_max {
                return headline;
            }
        }
        shard.insert(key.to_string(), lease);
        headline
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
        assert_eq!(leases.take("k", now), None);
        let first = leases.keep("k", 500, grant(3, 400), now);
        assert_eq!(first.remaining, 402);
        assert_eq!(leases.take("k", now).unwrap().remaining, 401);
        leases.give_back("k");
        assert_eq!(leases.take("k", now).unwrap().remaining, 401);
        assert_eq!(leases.take("k", now).unwrap().remaining, 400);
        assert_eq!(leases.take("k", now), None);
    }

    #[test]
    fn a_lease_ends_with_its_window() {
        let leases = Leases::new(0.1, 1_000);
        let now = Instant::now();
        leases.keep("k", 500, grant(10, 400), now);
        assert!(
            leases
                .take("k", now + Duration::from_millis(29_000))
                .is_some()
        );
        assert_eq!(leases.take("k", now + Duration::from_millis(30_000)), None);
        assert_eq!(leases.len(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let leases = Leases::new(0.1, SHARDS * 2);
        let now = Instant::now();
        for i in 0..1_000 {
            leases.keep(&format!("k{i}"), 500, grant(10, 400), now);
        }
        assert!(leases.len() <= SHARDS * 2);
        // Expired leases make room.
        let later = now + Duration::from_secs(31);
        leases.keep("fresh", 500, grant(10, 400), later);
        assert!(leases.take("fresh", later).is_some());
    }
}
