//! `[rate_limit]`: the seed's tiers (seed 000, "Rate Limiting") as defaults, the card-testing
//! limits on `POST /donations`, auto-blocking and the Redis fallback.

use serde::{Deserialize, Serialize};

/// One limit: `limit` requests per `window_secs`. `fixed` counts in fixed windows (the seed's
/// "Fixed" rows); otherwise the window slides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub limit: u64,
    pub window_secs: u64,
    #[serde(default)]
    pub fixed: bool,
}

impl Tier {
    const fn sliding(limit: u64, window_secs: u64) -> Self {
        Self {
            limit,
            window_secs,
            fixed: false,
        }
    }

    const fn fixed(limit: u64, window_secs: u64) -> Self {
        Self {
            limit,
            window_secs,
            fixed: true,
        }
    }
}

/// The seed's tiers. Anonymous callers are counted by IP, signed-in users by user id, API keys
/// by key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tiers {
    /// Anonymous: the general public API.
    pub public: Tier,
    /// Anonymous: `POST /donations`.
    pub donation_initiation: Tier,
    /// Anonymous: ledgers, checkpoints and proofs.
    pub ledger_view: Tier,
    /// Anyone: `GET /public/organisations/{id}/ledger/export`.
    pub ledger_export: Tier,
    /// Anonymous: widget embeds (`/nonprofit-json/…`), sustained.
    pub widget: Tier,
    /// Anonymous: widget embeds, the burst allowance on top of `widget`.
    pub widget_burst: Tier,
    /// Signed in: the general dashboard API.
    pub dashboard: Tier,
    /// Signed in: `POST /donations`.
    pub donation_creation: Tier,
    /// Signed in: settings changes (`PUT /user`, `PATCH /auth/security-settings`).
    pub settings: Tier,
    /// Signed in: `POST /auth/password`.
    pub password: Tier,
    /// API keys: GET and HEAD.
    pub api_read: Tier,
    /// API keys: everything else.
    pub api_write: Tier,
}

impl Default for Tiers {
    fn default() -> Self {
        Self {
            public: Tier::sliding(60, 60),
            donation_initiation: Tier::sliding(5, 60),
            ledger_view: Tier::sliding(30, 60),
            ledger_export: Tier::fixed(3, 3600),
            widget: Tier::sliding(300, 60),
            widget_burst: Tier::sliding(100, 10),
            dashboard: Tier::sliding(200, 60),
            donation_creation: Tier::sliding(20, 60),
            settings: Tier::sliding(10, 60),
            password: Tier::fixed(3, 3600),
            api_read: Tier::sliding(500, 60),
            api_write: Tier::sliding(100, 60),
        }
    }
}

impl Tiers {
    fn all(&self) -> [(&'static str, &Tier); 12] {
        [
            ("public", &self.public),
            ("donation_initiation", &self.donation_initiation),
            ("ledger_view", &self.ledger_view),
            ("ledger_export", &self.ledger_export),
            ("widget", &self.widget),
            ("widget_burst", &self.widget_burst),
            ("dashboard", &self.dashboard),
            ("donation_creation", &self.donation_creation),
            ("settings", &self.settings),
            ("password", &self.password),
            ("api_read", &self.api_read),
            ("api_write", &self.api_write),
        ]
    }
}

/// The card-testing defence on `POST /donations` (seed 000, "Card Testing Prevention"), on top
/// of the tier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardTestingConfig {
    pub enabled: bool,
    /// Per client IP, whoever is signed in.
    pub per_ip: Tier,
    /// Per payer fingerprint (see `rate_limit::card`).
    pub per_fingerprint: Tier,
    /// Per disposable email domain (the list in `disposable_domains.txt`).
    pub per_disposable_domain: Tier,
    /// Every donation on the platform together.
    pub global: Tier,
    /// More disposable email domains, on top of the list kept in the repository.
    pub extra_disposable_domains: Vec<String>,
}

impl Default for CardTestingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_ip: Tier::sliding(5, 60),
            per_fingerprint: Tier::sliding(3, 3600),
            per_disposable_domain: Tier::sliding(50, 3600),
            global: Tier::sliding(1000, 60),
            extra_disposable_domains: Vec::new(),
        }
    }
}

/// Auto-block (seed 000, "Single IP flood"): an IP refused more than `blocks_max` times within
/// `window_secs` is refused everything (403) for `duration_secs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoBlockConfig {
    pub enabled: bool,
    pub blocks_max: u64,
    pub window_secs: u64,
    pub duration_secs: u64,
}

impl Default for AutoBlockConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            blocks_max: 50,
            window_secs: 60,
            duration_secs: 86_400,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Put before every Redis key (`<prefix>ratelimit:…`), so several deployments (or tests)
    /// can share one Redis.
    pub key_prefix: String,
    /// Route templates that are never limited and carry no rate-limit headers. An entry ending
    /// in `/` matches every route under it.
    pub exempt_routes: Vec<String>,
    pub tiers: Tiers,
    /// An identified caller (dashboard user, wallet, API key) is also counted by its client IP
    /// under the same tier, at this many times the tier's limit: fresh identities from one
    /// address share that budget instead of each bringing a new one.
    pub identities_per_ip: u64,
    pub card_testing: CardTestingConfig,
    pub auto_block: AutoBlockConfig,
    /// How long one check may wait for Redis before it counts as down.
    pub redis_timeout_ms: u64,
    /// While Redis is down, checks use the in-memory limits and Redis is probed this often.
    pub redis_retry_interval_ms: u64,
    /// Counters the in-memory store holds at most (and as many blocks, kept apart); when full,
    /// the least recently used counter that is not at its limit goes first. Also bounds the
    /// Redis leases held.
    pub memory_keys_max: usize,
    /// With Redis: the share of a rule's limit one Redis check may lease, so this process
    /// admits that many requests locally before asking again (fewer Redis round trips). The
    /// grant shrinks as the limit nears and a lease ends with its window; 0 turns leasing off
    /// (one Redis check per request). Limits under `1 / fraction` are never leased.
    pub redis_lease_fraction: f64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key_prefix: String::new(),
            exempt_routes: [
                "/webhooks/",
                "/veriff/webhook/",
                "/health",
                "/ready",
                "/metrics",
            ]
            .map(String::from)
            .to_vec(),
            tiers: Tiers::default(),
            identities_per_ip: 5,
            card_testing: CardTestingConfig::default(),
            auto_block: AutoBlockConfig::default(),
            redis_timeout_ms: 200,
            redis_retry_interval_ms: 2_000,
            memory_keys_max: 100_000,
            redis_lease_fraction: 0.1,
        }
    }
}

/// Windows longer than a day are a typo (and would outlive the auto-block).
const WINDOW_SECS_MAX: u64 = 86_400;
const LIMIT_MAX: u64 = 1_000_000_000;

impl RateLimitConfig {
    pub fn validate(&self) -> Result<(), String> {
        let card = &self.card_testing;
        let named = self
            .tiers
            .all()
            .into_iter()
            .map(|(name, tier)| (format!("tiers.{name}"), *tier))
            .chain([
                ("card_testing.per_ip".into(), card.per_ip),
                ("card_testing.per_fingerprint".into(), card.per_fingerprint),
                (
                    "card_testing.per_disposable_domain".into(),
                    card.per_disposable_domain,
                ),
                ("card_testing.global".into(), card.global),
            ]);
        for (name, tier) in named {
            if !(1..=LIMIT_MAX).contains(&tier.limit) {
                return Err(format!(
                    "rate_limit.{name}.limit must be from 1 to {LIMIT_MAX}"
                ));
            }
            if !(1..=WINDOW_SECS_MAX).contains(&tier.window_secs) {
                return Err(format!(
                    "rate_limit.{name}.window_secs must be from 1 to {WINDOW_SECS_MAX}"
                ));
            }
        }
        if !(1..=1_000).contains(&self.identities_per_ip) {
            return Err("rate_limit.identities_per_ip must be from 1 to 1000".into());
        }
        let block = &self.auto_block;
        if block.blocks_max == 0 || !(1..=WINDOW_SECS_MAX).contains(&block.window_secs) {
            return Err(
                "rate_limit.auto_block needs blocks_max >= 1 and window_secs from 1 to 86400"
                    .into(),
            );
        }
        if !(1..=30 * 86_400).contains(&block.duration_secs) {
            return Err("rate_limit.auto_block.duration_secs must be from 1 to 2592000".into());
        }
        if !(1..=10_000).contains(&self.redis_timeout_ms) {
            return Err("rate_limit.redis_timeout_ms must be from 1 to 10000".into());
        }
        if !(10..=600_000).contains(&self.redis_retry_interval_ms) {
            return Err("rate_limit.redis_retry_interval_ms must be from 10 to 600000".into());
        }
        if !(1_000..=100_000_000).contains(&self.memory_keys_max) {
            return Err("rate_limit.memory_keys_max must be from 1000 to 100000000".into());
        }
        if !(0.0..=0.5).contains(&self.redis_lease_fraction) {
            return Err("rate_limit.redis_lease_fraction must be from 0 to 0.5".into());
        }
        if let Some(route) = self.exempt_routes.iter().find(|r| !r.starts_with('/')) {
            return Err(format!(
                "rate_limit.exempt_routes: {route:?} must be a route template starting with /"
            ));
        }
        if self.key_prefix.len() > 64 || self.key_prefix.chars().any(char::is_whitespace) {
            return Err("rate_limit.key_prefix must be at most 64 characters, no spaces".into());
        }
        Ok(())
    }

    pub fn is_exempt(&self, route: &str) -> bool {
        self.exempt_routes.iter().any(|exempt| {
            if exempt.ends_with('/') {
                route.starts_with(exempt.as_str())
            } else {
                route == exempt
            }
        })
    }
}
