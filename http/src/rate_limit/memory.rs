//! The in-memory store: the sliding-window counters and block list of this process, used
//! without Redis and while Redis is down.
//!
//! Memory is bounded by `memory_keys_max` counters, plus as many blocks. The two never share a
//! cache, so a flood of new counter keys cannot lift a block. When the counters are full, a new
//! key takes the place of the least recently used key that is **not** at its limit (among the
//! [`EVICTION_SCAN_MAX`] least recently used): forgetting such a key can only admit a request
//! its limit would have admitted anyway, while forgetting an exhausted one would reset it.
//! Only when all of those are at their limit (which takes that many distinct callers each
//! at its limit at once) is the least recently used of them forgotten; docs/rate_limiting.md
//! says so. Blocks, when full, drop the expired ones, then the one ending soonest.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;

#[cfg(test)]
use super::Headline;
use super::window::{self, Counter, Limit};
use super::{Check, Verdict};

/// Least recently used counters looked at for one that is not at its limit, when a new key
/// needs room.
pub const EVICTION_SCAN_MAX: usize = 32;

/// A counter and the limit it was last checked against (to tell whether it is exhausted).
#[derive(Debug, Clone, Copy)]
struct Slot {
    counter: Counter,
    limit: Limit,
}

struct State {
    counters: LruCache<String, Slot>,
    /// Block key → blocked until (unix ms).
    blocks: HashMap<String, u64>,
    blocks_max: usize,
}

pub struct MemoryStore {
    /// One lock for every key: a check reads and writes several keys (its rules, the block
    /// list) atomically, and the critical section is a few hash lookups.
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new(keys_max: usize) -> Self {
        let capacity = NonZeroUsize::new(keys_max.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            state: Mutex::new(State {
                counters: LruCache::new(capacity),
                blocks: HashMap::new(),
                blocks_max: keys_max.max(1),
            }),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.state.lock().counters.len()
    }

    pub fn check(&self, check: &Check<'_>, now_ms: u64) -> Verdict {
        let mut state = self.state.lock();
        if let Some(block) = &check.auto_block
            && let Some(until) = state.blocks.get(&block.block_key)
            && *until > now_ms
        {
            return Verdict::Blocked {
                retry_after_ms: until - now_ms,
            };
        }
        let outcomes: Vec<_> = check
            .rules
            .iter()
            .map(|rule| window::evaluate(state.counter(&rule.key), rule.limit, now_ms))
            .collect();
        if outcomes.iter().all(|o| o.allowed) {
            for (rule, outcome) in check.rules.iter().zip(&outcomes) {
                let mut next = outcome.rolled;
                next.current += 1;
                state.put(&rule.key, next, rule.limit, now_ms);
            }
            return Verdict::allowed(check.rules, &outcomes);
        }
        // The refused rules keep their (rolled) counters: they must stay exhausted.
        for (rule, outcome) in check.rules.iter().zip(&outcomes) {
            if !outcome.allowed {
                state.put(&rule.key, outcome.rolled, rule.limit, now_ms);
            }
        }
        if let Some(block) = &check.auto_block {
            let limit = Limit {
                limit: block.blocks_max,
                window_ms: block.window_ms,
                fixed: false,
            };
            let outcome = window::evaluate(state.counter(&block.count_key), limit, now_ms);
            let mut next = outcome.rolled;
            next.current += 1;
            state.put(&block.count_key, next, limit, now_ms);
            if !outcome.allowed {
                state.block(&block.block_key, now_ms + block.duration_ms, now_ms);
            }
        }
        Verdict::limited(check.rules, &outcomes)
    }
}

impl State {
    fn counter(&mut self, key: &str) -> Option<Counter> {
        self.counters.get(key).map(|slot| slot.counter)
    }

    fn put(&mut self, key: &str, counter: Counter, limit: Limit, now_ms: u64) {
        if let Some(slot) = self.counters.get_mut(key) {
            *slot = Slot { counter, limit };
            return;
        }
        if self.counters.len() >= self.counters.cap().get() {
            self.make_room(now_ms);
        }
        self.counters.put(key.to_string(), Slot { counter, limit });
    }

    /// Drops the least recently used counter that is not at its limit, or the least recently
    /// used one when the [`EVICTION_SCAN_MAX`] oldest all are.
    fn make_room(&mut self, now_ms: u64) {
        let idle = self
            .counters
            .iter()
            .rev()
            .take(EVICTION_SCAN_MAX)
            .find(|(_, slot)| window::evaluate(Some(slot.counter), slot.limit, now_ms).allowed)
            .map(|(key, _)| key.clone());
        match idle {
            Some(key) => {
                self.counters.pop(&key);
            }
            None => {
                self.counters.pop_lru();
            }
        }
    }

    fn block(&mut self, key: &str, until_ms: u64, now_ms: u64) {
        if self.blocks.len() >= self.blocks_max && !self.blocks.contains_key(key) {
            self.blocks.retain(|_, until| *until > now_ms);
            if self.blocks.len() >= self.blocks_max
                && let Some(soonest) = self
                    .blocks
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(key, _)| key.clone())
            {
                self.blocks.remove(&soonest);
            }
        }
        self.blocks.insert(key.to_string(), until_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::{AutoBlock, Rule};

    fn rule(key: &str, limit: u64) -> Rule {
        Rule {
            key: key.into(),
            limit: Limit {
                limit,
                window_ms: 60_000,
                fixed: false,
            },
            reason: "tier",
        }
    }

    #[test]
    fn memory_stays_bounded_by_the_key_cap() {
        let store = MemoryStore::new(1_000);
        for n in 0..5_000 {
            let rules = [rule(&format!("k{n}"), 10)];
            let check = Check {
                rules: &rules,
                auto_block: None,
            };
            store.check(&check, 1_000_000);
        }
        assert_eq!(store.len(), 1_000);
    }

    #[test]
    fn a_request_counts_against_every_rule_only_when_all_admit() {
        let store = MemoryStore::new(1_000);
        let rules = [rule("wide", 10), rule("narrow", 1)];
        let check = Check {
            rules: &rules,
            auto_block: None,
        };
        let now = 1_000_000;
        assert!(matches!(
            store.check(&check, now),
            Verdict::Allowed {
                binding: Some(Headline {
                    remaining: 0,
                    limit: 1,
                    ..
                })
            }
        ));
        assert!(matches!(
            store.check(&check, now),
            Verdict::Limited { limit: 1, .. }
        ));
        // The refused request did not use up the wide rule.
        let wide = [rule("wide", 10)];
        let check = Check {
            rules: &wide,
            auto_block: None,
        };
        assert!(matches!(
            store.check(&check, now),
            Verdict::Allowed {
                binding: Some(Headline { remaining: 8, .. })
            }
        ));
    }

    #[test]
    fn the_refusal_above_blocks_max_blocks_the_ip_for_the_duration() {
        let store = MemoryStore::new(1_000);
        let rules = [rule("r", 1)];
        let block = AutoBlock {
            block_key: "block".into(),
            count_key: "count".into(),
            blocks_max: 2,
            window_ms: 60_000,
            duration_ms: 1_000,
        };
        let check = Check {
            rules: &rules,
            auto_block: Some(block),
        };
        let now = 1_000_000;
        assert!(matches!(store.check(&check, now), Verdict::Allowed { .. }));
        for _ in 0..3 {
            assert!(matches!(store.check(&check, now), Verdict::Limited { .. }));
        }
        assert_eq!(
            store.check(&check, now + 1),
            Verdict::Blocked {
                retry_after_ms: 999
            }
        );
        assert!(!matches!(
            store.check(&check, now + 1_000),
            Verdict::Blocked { .. }
        ));
    }

    #[test]
    fn a_flood_of_new_keys_neither_resets_an_exhausted_limit_nor_lifts_a_block() {
        let store = MemoryStore::new(1_000);
        let now = 1_000_000;
        let victim = [rule("exhausted", 2)];
        let block = AutoBlock {
            block_key: "block:attacker".into(),
            count_key: "blocks:attacker".into(),
            blocks_max: 1,
            window_ms: 60_000,
            duration_ms: 600_000,
        };
        let blocked = [rule("attacker", 1)];
        let attacker = Check {
            rules: &blocked,
            auto_block: Some(block),
        };
        for _ in 0..4 {
            store.check(&attacker, now);
        }
        assert!(matches!(
            store.check(&attacker, now),
            Verdict::Blocked { .. }
        ));
        let check = Check {
            rules: &victim,
            auto_block: None,
        };
        for _ in 0..3 {
            store.check(&check, now);
        }
        assert!(matches!(store.check(&check, now), Verdict::Limited { .. }));
        // Ten times the capacity in fresh keys.
        for n in 0..10_000 {
            let rules = [rule(&format!("flood{n}"), 10)];
            store.check(
                &Check {
                    rules: &rules,
                    auto_block: None,
                },
                now + 1,
            );
        }
        assert_eq!(store.len(), 1_000);
        assert!(matches!(
            store.check(&check, now + 2),
            Verdict::Limited { .. }
        ));
        assert!(matches!(
            store.check(&attacker, now + 2),
            Verdict::Blocked { .. }
        ));
    }
}
