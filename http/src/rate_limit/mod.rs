//! Rate limiting (seed 000, "Rate Limiting"): the seed's tiers per caller, the card-testing
//! defence on `POST /donations`, and auto-blocking of flooding IPs.
//!
//! - `window`: the algorithm (a two-bucket sliding window counter) and its accuracy;
//! - `memory` and `redis`: its two stores (Redis: one Lua script per check, shared by every
//!   process; memory: this process only, bounded);
//! - this file: [`RateLimiter`], which uses Redis when configured and reachable and the memory
//!   store otherwise (a circuit breaker: while Redis is down no request waits for it);
//! - `lease`: with Redis, budget leased for large limits and spent locally;
//! - `identifier`: who is counted; `card`: the donation signals; `layer`: the middleware.

pub mod card;
mod config;
pub mod identifier;
pub mod layer;
mod lease;
mod memory;
mod redis_store;
pub mod window;

use ampflow_runtime::Supervisor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use config::{AutoBlockConfig, CardTestingConfig, RateLimitConfig, Tier, Tiers};
pub use identifier::Identifier;
pub use window::Limit;

use lease::{Leases, Take};
use memory::MemoryStore;
use redis_store::RedisStore;

/// One limit on one key.
#[derive(Debug, Clone)]
pub struct Rule {
    pub key: String,
    pub limit: Limit,
    /// The `reason` label when this rule refuses (`tier`, `card_ip`, …).
    pub reason: &'static str,
}

/// The auto-block keys and limits of the client IP.
#[derive(Debug, Clone)]
pub struct AutoBlock {
    pub block_key: String,
    pub count_key: String,
    pub blocks_max: u64,
    pub window_ms: u64,
    pub duration_ms: u64,
}

/// One request's rules, checked together: the request is counted against every rule only
/// when every rule admits it.
#[derive(Debug)]
pub struct Check<'a> {
    pub rules: &'a [Rule],
    pub auto_block: Option<AutoBlock>,
}

/// The rule closest to its limit, for the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headline {
    pub limit: u64,
    pub remaining: u64,
    /// Unix ms at which its current window ends.
    pub reset_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        binding: Option<Headline>,
    },
    Limited {
        reason: &'static str,
        limit: u64,
        reset_ms: u64,
        retry_after_ms: u64,
    },
    /// The client IP is auto-blocked.
    Blocked {
        retry_after_ms: u64,
    },
}

impl Verdict {
    fn allowed(rules: &[Rule], outcomes: &[window::Outcome]) -> Self {
        let binding = rules
            .iter()
            .zip(outcomes)
            .min_by_key(|(_, o)| o.remaining)
            .map(|(rule, o)| Headline {
                limit: rule.limit.limit,
                remaining: o.remaining,
                reset_ms: o.reset_ms,
            });
        Verdict::Allowed { binding }
    }

    /// The refusing rule that lasts longest: the client must wait for all of them.
    fn limited(rules: &[Rule], outcomes: &[window::Outcome]) -> Self {
        let now_ms = now_ms();
        rules
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| !o.allowed)
            .max_by_key(|(_, o)| o.retry_after_ms)
            .map(|(rule, o)| Verdict::Limited {
                reason: rule.reason,
                limit: rule.limit.limit,
                reset_ms: now_ms + o.retry_after_ms,
                retry_after_ms: o.retry_after_ms,
            })
            .unwrap_or(Verdict::Allowed { binding: None })
    }
}

/// Which store answered a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Redis,
    Memory,
}

/// Redis with its health flag. While `up` is false, checks go to memory and one probe task
/// pings Redis every `retry_interval` until it answers.
struct SharedStore {
    store: RedisStore,
    /// Runs the probe.
    supervisor: Supervisor,
    up: AtomicBool,
    timeout: Duration,
    retry_interval: Duration,
}

pub struct RateLimiter {
    memory: MemoryStore,
    redis: Option<Arc<SharedStore>>,
    /// Budget leased from Redis; `None` when `redis_lease_fraction` is 0.
    leases: Option<Leases>,
}

impl RateLimiter {
    pub fn new(
        config: &RateLimitConfig,
        redis: Option<::redis::aio::ConnectionManager>,
        supervisor: &Supervisor,
    ) -> Self {
        let redis = redis.map(|connection| {
            metrics::gauge!("ratelimit_redis_up").set(1.0);
            Arc::new(SharedStore {
                store: RedisStore::new(connection),
                supervisor: supervisor.clone(),
                up: AtomicBool::new(true),
                timeout: Duration::from_millis(config.redis_timeout_ms),
                retry_interval: Duration::from_millis(config.redis_retry_interval_ms),
            })
        });
        let leases = (config.redis_lease_fraction > 0.0)
            .then(|| Leases::new(config.redis_lease_fraction, config.memory_keys_max));
        Self {
            memory: MemoryStore::new(config.memory_keys_max),
            redis,
            leases,
        }
    }

    /// Checks and counts one request. Never fails: without a reachable Redis the in-memory
    /// store answers (limits per process until Redis is back).
    pub async fn check(&self, check: &Check<'_>) -> (Verdict, Store) {
        if let Some(shared) = &self.redis
            && shared.up.load(Ordering::Acquire)
        {
            let answer = match &self.leases {
                Some(leases) => check_leased(shared, leases, check).await,
                None => tokio::time::timeout(shared.timeout, shared.store.check(check)).await,
            };
            match answer {
                Ok(Ok(verdict)) => return (verdict, Store::Redis),
                Ok(Err(error)) => mark_down(shared, &error.to_string()),
                Err(_) => mark_down(shared, "no answer within rate_limit.redis_timeout_ms"),
            }
        }
        (self.memory.check(check, now_ms()), Store::Memory)
    }

    /// Whether checks currently go to Redis.
    pub fn redis_up(&self) -> Option<bool> {
        self.redis.as_ref().map(|s| s.up.load(Ordering::Acquire))
    }
}

/// A check through the leases: rules with a live lease admit from it, and only the others go
/// to Redis (asking for a lease each). When Redis refuses, the units taken are handed back.
async fn check_leased(
    shared: &SharedStore,
    leases: &Leases,
    check: &Check<'_>,
) -> Result<::redis::RedisResult<Verdict>, tokio::time::error::Elapsed> {
    let now = Instant::now();
    let mut binding: Option<Headline> = None;
    let mut bind = |headline: Headline| {
        if binding.is_none_or(|b| headline.remaining < b.remaining) {
            binding = Some(headline);
        }
    };
    let mut taken: Vec<&str> = Vec::new();
    let mut asked: Vec<(&Rule, u64)> = Vec::new();
    for rule in check.rules {
        match leases.take(&rule.key, rule.limit.limit, now) {
            Take::Admitted(headline) => {
                taken.push(&rule.key);
                bind(headline);
            }
            Take::Ask(want) => asked.push((rule, want)),
        }
    }
    if asked.is_empty() {
        return Ok(Ok(Verdict::Allowed { binding }));
    }
    let answer = tokio::time::timeout(
        shared.timeout,
        shared
            .store
            .check_leasing(&asked, check.auto_block.as_ref()),
    )
    .await;
    let verdict = match answer {
        Ok(Ok((Verdict::Allowed { .. }, grants))) => {
            for ((rule, want), grant) in asked.iter().zip(grants) {
                if *want > 1 {
                    bind(leases.keep(&rule.key, rule.limit.limit, grant, now));
                } else {
                    bind(Headline {
                        limit: rule.limit.limit,
                        remaining: grant.remaining,
                        reset_ms: grant.reset_ms,
                    });
                }
            }
            return Ok(Ok(Verdict::Allowed { binding }));
        }
        other => other,
    };
    for key in taken {
        leases.give_back(key);
    }
    for (rule, want) in &asked {
        if *want > 1 {
            leases.abandon(&rule.key);
        }
    }
    verdict.map(|answer| answer.map(|(verdict, _)| verdict))
}

/// Opens the breaker: logs once per outage and starts the one probe.
fn mark_down(shared: &Arc<SharedStore>, cause: &str) {
    if !shared.up.swap(false, Ordering::AcqRel) {
        return;
    }
    metrics::gauge!("ratelimit_redis_up").set(0.0);
    tracing::warn!(
        %cause,
        "redis unreachable: rate limits fall back to this process's memory until it is back"
    );
    let weak = Arc::downgrade(shared);
    let (interval, timeout) = (shared.retry_interval, shared.timeout);
    shared
        .supervisor
        .spawn("redis_probe", "redis probe", move || {
            probe(weak.clone(), interval, timeout)
        });
}

/// Pings Redis every `interval` until it answers (or the limiter is gone).
async fn probe(shared: Weak<SharedStore>, interval: Duration, timeout: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        fail::fail_point!("redis_probe_panic");
        if ping(strong.store.connection(), timeout).await.is_ok() {
            strong.up.store(true, Ordering::Release);
            metrics::gauge!("ratelimit_redis_up").set(1.0);
            tracing::info!("redis reachable again: rate limits are shared again");
            return;
        }
    }
}

/// `PING`s Redis, waiting at most `timeout`; the error says what went wrong.
pub async fn ping(
    connection: &::redis::aio::ConnectionManager,
    timeout: Duration,
) -> Result<(), String> {
    let mut connection = connection.clone();
    let ping = ::redis::cmd("PING");
    match tokio::time::timeout(timeout, ping.query_async::<String>(&mut connection)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
