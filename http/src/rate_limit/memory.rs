//! The in-memory store: the sliding-window counters and block list of this process, used
//! without Redis and while Redis is down. Memory is bounded by `memory_keys_max` keys: an LRU
//! cache drops the least recently used key first, which is a stale one long before a live one
//! (a dropped live key only forgets its count, so the limiter errs towards admitting).

use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;

#[cfg(test)]
use super::Headline;
use super::window::{self, Counter, Limit};
use super::{Check, Verdict};

enum Entry {
    Counter(Counter),
    BlockedUntil(u64),
}

pub struct MemoryStore {
    /// One lock for every key: a check reads and writes several keys (its rules, the block
    /// list) atomically, and the critical section is a few hash lookups.
    entries: Mutex<LruCache<String, Entry>>,
}

impl MemoryStore {
    pub fn new(keys_max: usize) -> Self {
        let capacity = NonZeroUsize::new(keys_max.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn check(&self, check: &Check<'_>, now_ms: u64) -> Verdict {
        let mut entries = self.entries.lock();
        if let Some(block) = &check.auto_block
            && let Some(Entry::BlockedUntil(until)) = entries.get(&block.block_key)
            && *until > now_ms
        {
            return Verdict::Blocked {
                retry_after_ms: until - now_ms,
            };
        }
        let counter = |entries: &mut LruCache<String, Entry>, key: &str| match entries.get(key) {
            Some(Entry::Counter(c)) => Some(*c),
            _ => None,
        };
        let outcomes: Vec<_> = check
            .rules
            .iter()
            .map(|rule| window::evaluate(counter(&mut entries, &rule.key), rule.limit, now_ms))
            .collect();
        if outcomes.iter().all(|o| o.allowed) {
            for (rule, outcome) in check.rules.iter().zip(&outcomes) {
                let mut next = outcome.rolled;
                next.current += 1;
                entries.put(rule.key.clone(), Entry::Counter(next));
            }
            return Verdict::allowed(check.rules, &outcomes);
        }
        if let Some(block) = &check.auto_block {
            let limit = Limit {
                limit: block.blocks_max,
                window_ms: block.window_ms,
                fixed: false,
            };
            let outcome = window::evaluate(counter(&mut entries, &block.count_key), limit, now_ms);
            let mut next = outcome.rolled;
            next.current += 1;
            entries.put(block.count_key.clone(), Entry::Counter(next));
            if !outcome.allowed {
                entries.put(
                    block.block_key.clone(),
                    Entry::BlockedUntil(now_ms + block.duration_ms),
                );
            }
        }
        Verdict::limited(check.rules, &outcomes)
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
}
