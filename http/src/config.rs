//! The settings tree. Values are read in this order, each overriding the one before: built-in
//! defaults, an optional TOML file (`--config` or `AMPFLOW_CONFIG`), then environment variables.
//!
//! Environment variables: the documented short names (`AMPFLOW_LISTEN`, `DATABASE_URL`,
//! `REDIS_URL`, `AMPFLOW_TEST_MODE`, `AMPFLOW_LOG_FORMAT`, `AMPFLOW_JWT_PRIVATE_KEY`,
//! `AMPFLOW_NODE_ID`) and, for any other key, `AMPFLOW_<SECTION>__<KEY>`, e.g.
//! `AMPFLOW_IDENTITY__NONCE_TTL_SECS=300`.
//! Secrets are [`Secret`]s: they never print in logs or `Debug` output.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ampflow_actors::database::{DatabaseSettings, SqliteSync};
use ampflow_actors::stripe::StripeSettings;
use ampflow_actors::{IdentitySettings, RuntimeSettings, VeriffSettings};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// A configured secret. It prints as `[redacted]`; `expose` is the only way to read it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Turns on the test-only endpoints (`POST /test/kyc`). Never in production.
    pub test_mode: bool,
    pub log_format: LogFormat,
    pub database: DatabaseConfig,
    /// Optional Redis; when set, `/ready` also checks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<Secret>,
    pub http: HttpConfig,
    pub identity: IdentityConfig,
    pub actors: ActorConfig,
    /// The EVM chains, as `[[chains]]` tables. A chain id that is not listed is unsupported.
    pub chains: Vec<ampflow_chain::ChainSettings>,
    /// KYC through Veriff; off until both `api_key` and `shared_secret` are set.
    pub veriff: VeriffConfig,
    /// reCAPTCHA v3, checked on faucet requests.
    pub recaptcha: RecaptchaConfig,
    /// Donations through Stripe; off until `secret_key` (and a webhook secret) is set.
    pub stripe: StripeConfig,
    /// The public ledger's daily signed checkpoints.
    pub checkpoints: CheckpointConfig,
    /// The partner API (signed requests, seed 003).
    pub partner: PartnerConfig,
    /// Rate limits, the card-testing defence on donations and auto-blocking.
    #[serde(default)]
    pub rate_limit: crate::rate_limit::RateLimitConfig,
    /// `GET /metrics` (Prometheus text format).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Dashboard users: passwords, session cookies and the failed-login throttle.
    pub auth: AuthConfig,
    /// Country and city of session clients; off until `database_path` is set.
    pub geoip: GeoipConfig,
    /// The Stripe Connect onboarding URL (`GET /organisations/{id}/stripe/connect`); off until
    /// `client_id`, `redirect_url` and `state_secret` are set.
    pub stripe_connect: StripeConnectConfig,
    /// This process as a node: the stable id its leases are held under.
    #[serde(default)]
    pub node: NodeConfig,
}

/// This process's identity among the processes sharing a database. A restarted node takes
/// its previous run's leases back at once; another node waits for them to expire. Two live
/// processes must never share a node id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node's id (1 to 40 letters, digits, `.`, `_`, `-`); unset: one generated on first
    /// start and kept in `id_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where a generated id is kept (and locked while the process runs); unset: beside the
    /// SQLite database (`<database file>.node_id`), or `data/node_id` in the working directory
    /// with PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` at all.
    pub enabled: bool,
    /// With a token, `/metrics` needs `Authorization: Bearer <token>` from anywhere. Without
    /// one, it answers only a loopback peer that sent no forwarding header (a scraper on the
    /// same host), and 403 to everyone else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bearer_token: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The session cookie's name (seed 000: `session`).
    pub cookie_name: String,
    /// Send the cookie with `Secure` (HTTPS only). Turn off only for plain-HTTP development.
    pub cookie_secure: bool,
    /// A new user's session lifetime, until they change it.
    pub session_timeout_days_default: u32,
    /// The longest lifetime a user may choose.
    pub session_timeout_days_max: u32,
    /// `last_activity` is written at most this often per session.
    pub activity_write_interval_secs: u64,
    /// A session with no request for this long ends (401), whatever its lifetime; 0: no idle
    /// timeout. At least twice `activity_write_interval_secs`, which is its precision.
    pub session_idle_timeout_mins: u32,
    /// argon2id cost: memory in KiB, passes, lanes. The defaults are OWASP's minimum
    /// (19 MiB, 2 passes, 1 lane).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub password_length_min: usize,
    /// Failed logins (and wrong current passwords) allowed per (account, client IP) and per
    /// client IP (/64 for IPv6) within `login_failure_window_secs`; more answer 429 until the
    /// window ends. Each attempt is counted before the password is checked and handed back when
    /// it succeeds, so concurrent guesses cannot overrun the limits.
    pub login_failures_per_account_ip_max: u32,
    pub login_failures_per_ip_max: u32,
    pub login_failure_window_secs: u64,
    /// From this many failures on an account (from any address) within the window, each
    /// attempt on it waits `login_delay_base_ms`, doubling with every further failure up to
    /// `login_delay_max_ms`, before its password is checked. The account is slowed down for
    /// guessers, never locked for its owner.
    pub login_delay_after_account_failures: u32,
    pub login_delay_base_ms: u64,
    pub login_delay_max_ms: u64,
    /// Password hashes (logins, password changes) computed at once; more wait up to
    /// `password_hashing_wait_ms`, at most `password_hashing_waiters_max` of them, and are
    /// answered 503 `server_busy` after that. Each one holds `argon2_memory_kib` of memory.
    pub password_hashing_concurrency_max: u32,
    pub password_hashing_waiters_max: u32,
    pub password_hashing_wait_ms: u64,
    /// `live` or `test`: which API keys (`sk_live_…` / `sk_test_…`) this server makes and
    /// takes. Unset: live when the Stripe secret key is live, test otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_mode: Option<String>,
    /// How long a deposed API key secret keeps verifying its tokens after a rotation.
    pub api_key_deposed_secret_days: u32,
    /// An access token's lifetime when the request names none, and the longest allowed.
    pub api_token_days_default: u32,
    pub api_token_days_max: u32,
    /// Keys an organisation may hold at once (deleted ones do not count).
    pub api_keys_per_organisation_max: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            cookie_name: "session".into(),
            cookie_secure: true,
            session_timeout_days_default: 7,
            session_timeout_days_max: 90,
            activity_write_interval_secs: 60,
            session_idle_timeout_mins: 30,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            password_length_min: 12,
            login_failures_per_account_ip_max: 5,
            login_failures_per_ip_max: 20,
            login_failure_window_secs: 900,
            login_delay_after_account_failures: 5,
            login_delay_base_ms: 500,
            login_delay_max_ms: 10_000,
            password_hashing_concurrency_max: 4,
            password_hashing_waiters_max: 256,
            password_hashing_wait_ms: 10_000,
            api_key_mode: None,
            api_key_deposed_secret_days: 30,
            api_token_days_default: 30,
            api_token_days_max: 365,
            api_keys_per_organisation_max: 100,
        }
    }
}

pub use ampflow_actors::accounts::PASSWORD_LENGTH_MAX;
/// The longest a login may be made to wait (`auth.login_delay_max_ms`): past this a client
/// would time out and the delay would be a lockout again.
pub const LOGIN_DELAY_MAX_MS: u64 = 30_000;

impl AuthConfig {
    /// What the API keys façade takes of it.
    pub fn api_key_settings(&self) -> ampflow_actors::ApiKeySettings {
        ampflow_actors::ApiKeySettings {
            keys_per_organisation_max: self.api_keys_per_organisation_max,
            deposed_secret_days: self.api_key_deposed_secret_days,
        }
    }

    /// What the accounts façade takes of it.
    pub fn account_settings(&self) -> ampflow_actors::AccountSettings {
        use ampflow_actors::accounts::{PasswordSettings, ThrottleSettings};
        ampflow_actors::AccountSettings {
            passwords: PasswordSettings {
                argon2_memory_kib: self.argon2_memory_kib,
                argon2_iterations: self.argon2_iterations,
                argon2_parallelism: self.argon2_parallelism,
                length_min: self.password_length_min,
                hashing_concurrency_max: self.password_hashing_concurrency_max,
                hashing_waiters_max: self.password_hashing_waiters_max,
                hashing_wait_ms: self.password_hashing_wait_ms,
            },
            throttle: ThrottleSettings {
                failure_window_secs: self.login_failure_window_secs,
                failures_per_account_ip_max: self.login_failures_per_account_ip_max,
                failures_per_ip_max: self.login_failures_per_ip_max,
                delay_after_account_failures: self.login_delay_after_account_failures,
                delay_base_ms: self.login_delay_base_ms,
                delay_max_ms: self.login_delay_max_ms,
            },
            session_idle_timeout_ms: i64::from(self.session_idle_timeout_mins) * 60_000,
            session_timeout_days_default: self.session_timeout_days_default,
            session_timeout_days_max: self.session_timeout_days_max,
            activity_write_interval_ms: (self.activity_write_interval_secs as i64)
                .saturating_mul(1000),
        }
    }

    /// Checks the ranges; called at start. (Long only because it lists every setting's
    /// range, one check each.)
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.cookie_name.is_empty()
            && self
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err("auth.cookie_name must be letters, digits, '_' or '-'".into());
        }
        if self.session_timeout_days_max == 0 || self.session_timeout_days_max > 365 {
            return Err("auth.session_timeout_days_max must be 1 to 365".into());
        }
        if !(1..=self.session_timeout_days_max).contains(&self.session_timeout_days_default) {
            return Err(
                "auth.session_timeout_days_default must be 1 to session_timeout_days_max".into(),
            );
        }
        ampflow_actors::accounts::PasswordSettings::check_argon2(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
        )?;
        if !(8..=PASSWORD_LENGTH_MAX).contains(&self.password_length_min) {
            return Err(format!(
                "auth.password_length_min must be 8 to {PASSWORD_LENGTH_MAX}"
            ));
        }
        if self.login_failures_per_account_ip_max == 0
            || self.login_failures_per_ip_max == 0
            || self.login_failure_window_secs == 0
            || self.login_delay_after_account_failures == 0
        {
            return Err(
                "auth.login_failure* and login_delay_after_account_failures must be above 0".into(),
            );
        }
        if self.login_delay_base_ms > self.login_delay_max_ms
            || self.login_delay_max_ms > LOGIN_DELAY_MAX_MS
        {
            return Err(format!(
                "auth.login_delay_base_ms must be at most login_delay_max_ms, which is at most {LOGIN_DELAY_MAX_MS}"
            ));
        }
        let idle_secs = u64::from(self.session_idle_timeout_mins) * 60;
        if idle_secs != 0 && idle_secs < 2 * self.activity_write_interval_secs {
            return Err(
                "auth.session_idle_timeout_mins must be 0 (off) or at least twice activity_write_interval_secs"
                    .into(),
            );
        }
        if self.password_hashing_concurrency_max == 0 || self.password_hashing_wait_ms == 0 {
            return Err(
                "auth.password_hashing_concurrency_max and _wait_ms must be above 0".into(),
            );
        }
        if let Some(mode) = &self.api_key_mode
            && mode != "live"
            && mode != "test"
        {
            return Err("auth.api_key_mode must be live or test".into());
        }
        if self.api_key_deposed_secret_days > 365 {
            return Err("auth.api_key_deposed_secret_days must be 0 to 365".into());
        }
        if self.api_token_days_max == 0 || self.api_token_days_max > 3_650 {
            return Err("auth.api_token_days_max must be 1 to 3650".into());
        }
        if !(1..=self.api_token_days_max).contains(&self.api_token_days_default) {
            return Err("auth.api_token_days_default must be 1 to api_token_days_max".into());
        }
        if self.api_keys_per_organisation_max == 0 {
            return Err("auth.api_keys_per_organisation_max must be above 0".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GeoipConfig {
    /// A MaxMind City database (`GeoLite2-City.mmdb` or `GeoIP2-City.mmdb`), read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_path: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConnectConfig {
    /// The platform's Connect client id (`ca_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Where Stripe sends the organisation's admin back to (registered with Stripe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// Signs the `state` parameter (HMAC-SHA256), so a callback's state cannot be forged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_secret: Option<Secret>,
    /// Stripe's OAuth authorize endpoint.
    pub authorize_url: String,
    /// How long a `state` stays valid.
    pub state_ttl_secs: u64,
}

impl Default for StripeConnectConfig {
    fn default() -> Self {
        Self {
            client_id: None,
            redirect_url: None,
            state_secret: None,
            authorize_url: "https://connect.stripe.com/oauth/authorize".into(),
            state_ttl_secs: 3_600,
        }
    }
}

impl StripeConnectConfig {
    /// Whether it is configured; an error when it is configured halfway or a URL is not
    /// http(s).
    pub fn validate(&self) -> Result<bool, String> {
        let set = [
            self.client_id.as_deref().is_some_and(|v| !v.is_empty()),
            self.redirect_url.as_deref().is_some_and(|v| !v.is_empty()),
            self.state_secret
                .as_ref()
                .is_some_and(|v| !v.expose().is_empty()),
        ];
        if set.iter().all(|s| !s) {
            return Ok(false);
        }
        if !set.iter().all(|s| *s) {
            return Err(
                "stripe_connect.client_id, redirect_url and state_secret must be set together"
                    .into(),
            );
        }
        let is_http = |text: &str| {
            url::Url::parse(text)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        };
        if !is_http(&self.authorize_url) || !self.redirect_url.as_deref().is_some_and(is_http) {
            return Err("stripe_connect URLs must be http(s) URLs".into());
        }
        if self
            .state_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 32)
        {
            return Err("stripe_connect.state_secret must be at least 32 characters".into());
        }
        Ok(true)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerConfig {
    /// How far a signed request's `Date` may be from our clock, either way.
    pub date_skew_secs: u64,
}

impl Default for PartnerConfig {
    fn default() -> Self {
        Self {
            date_skew_secs: 900,
        }
    }
}

/// The Stripe version every request is pinned to (`Stripe-Version`), so the shape of Stripe's
/// answers and events does not change with the account's default.
pub const STRIPE_API_VERSION: &str = "2024-06-20";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConfig {
    /// `sk_test_…` or `sk_live_…`; its prefix sets the mode (`livemode`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// The webhook endpoint's signing secrets (`whsec_…`); list two while rotating.
    pub webhook_secrets: Vec<Secret>,
    /// Stripe's API, without `/v1`.
    pub base_url: String,
    /// Sent as `Stripe-Version`.
    pub api_version: String,
    /// How far a webhook's signed timestamp may be from our clock.
    pub webhook_tolerance_secs: u64,
    /// How long one call to Stripe may take.
    pub request_timeout_ms: u64,
    /// Attempts per call (retries after timeouts and 5xx reuse the idempotency key).
    pub attempts_max: u32,
    /// The wait before the first retry; it doubles after each.
    pub retry_backoff_ms: u64,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self {
            secret_key: None,
            webhook_secrets: Vec::new(),
            base_url: "https://api.stripe.com".into(),
            api_version: STRIPE_API_VERSION.into(),
            webhook_tolerance_secs: 300,
            request_timeout_ms: 8_000,
            attempts_max: 3,
            retry_backoff_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// The log's origin line in every checkpoint (e.g. `ledger.example.org`).
    pub origin: String,
    /// An Ed25519 key in the note format, `PRIVATE+KEY+<name>+<hex id>+<base64>`. Without
    /// one, a key named after the origin is generated on first start and kept in the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<Secret>,
    /// Whether this process runs the daily checkpoint job (a lease lets one process build).
    pub job_enabled: bool,
    /// How often the job looks for a day to checkpoint.
    pub interval_ms: u64,
    /// A day's checkpoint is built this long after midnight UTC, so late commits land.
    pub grace_ms: u64,
    /// A builder that stops renewing its lease for this long is replaced.
    pub lease_ttl_ms: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        let defaults = ampflow_actors::checkpoints::CheckpointSettings::default();
        Self {
            origin: defaults.origin,
            signing_key: None,
            job_enabled: defaults.job_enabled,
            interval_ms: defaults.interval.as_millis() as u64,
            grace_ms: defaults.grace_ms as u64,
            lease_ttl_ms: defaults.lease_ttl_ms as u64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecaptchaConfig {
    /// The siteverify secret. Without one, the check is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    pub verify_url: String,
    /// The lowest v3 score accepted (0.0 is a bot, 1.0 a human).
    pub min_score: f64,
    pub timeout_ms: u64,
}

impl Default for RecaptchaConfig {
    fn default() -> Self {
        Self {
            secret: None,
            verify_url: "https://www.google.com/recaptcha/api/siteverify".into(),
            min_score: 0.5,
            timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` or `postgres://user:pass@host/db`.
    pub url: Secret,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub sqlite_sync: SqliteSync,
    /// Commit writes that arrive together in groups (on by default; off is a benchmark
    /// baseline).
    #[serde(default = "group_commit_default")]
    pub group_commit: bool,
}

fn group_commit_default() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    /// How long in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_ms: u64,
    /// The proxies (addresses or CIDR blocks, e.g. `10.0.0.0/8`) whose `X-Forwarded-For` is
    /// believed. From such a peer, the client is the rightmost entry that is not itself a
    /// trusted proxy; from any other peer, the peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Origins (`https://dashboard.example.org`) besides this server's own whose pages may
    /// send cookie-authenticated writes (see `edge`).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How long a new connection has to send its first request's whole header.
    pub header_read_timeout_ms: u64,
    /// How long a connection may go without a request after its last answer (HTTP/1.1
    /// keep-alive and HTTP/2 alike) before the server closes it.
    pub keep_alive_idle_timeout_ms: u64,
    /// HTTP/2 PING interval on a quiet connection; 0 sends none.
    pub http2_keep_alive_interval_ms: u64,
    /// How long an HTTP/2 PING may go unanswered before the connection is closed.
    pub http2_keep_alive_timeout_ms: u64,
    /// Streams one HTTP/2 connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub http2_max_concurrent_streams: u32,
    /// Open connections in all; one more is answered 503 `too_many_connections` and closed.
    pub connections_max: usize,
    /// Open connections per client address (IPv6 by /64); peers in `trusted_proxies` are
    /// exempt. One more is answered 503 `too_many_connections` and closed.
    pub connections_per_ip_max: usize,
}

/// A request header is a few hundred bytes: ten seconds is ample for a slow mobile client and
/// short for a client that trickles it to hold the connection.
pub const HEADER_READ_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Above the 60 s idle timeout common load balancers default to, so a balancer never reuses a
/// connection the server is closing.
pub const KEEP_ALIVE_IDLE_TIMEOUT_MS_DEFAULT: u64 = 75_000;
pub const HTTP2_KEEP_ALIVE_INTERVAL_MS_DEFAULT: u64 = 30_000;
/// hyper's own default.
pub const HTTP2_KEEP_ALIVE_TIMEOUT_MS_DEFAULT: u64 = 20_000;
/// The least RFC 9113 recommends; every stream is a request the router serves at once.
pub const HTTP2_MAX_CONCURRENT_STREAMS_DEFAULT: u32 = 100;
/// Below common open-file limits (set the limit above it plus the reserve; a warning at start
/// says when it is not).
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;
/// Enough for a browser's six connections times a busy office behind one NAT address, or a
/// load test of a few hundred clients from one machine.
pub const CONNECTIONS_PER_IP_MAX_DEFAULT: usize = 256;
/// The longest timeout the connection settings accept: one hour.
const CONNECTION_TIMEOUT_MS_MAX: u64 = 3_600_000;

impl HttpConfig {
    /// Checks the connection settings: every timeout positive and at most an hour, at least
    /// one stream and one connection, and a per-address cap no larger than the total.
    pub fn validate(&self) -> Result<(), String> {
        let timeouts = [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            (
                "keep_alive_idle_timeout_ms",
                self.keep_alive_idle_timeout_ms,
            ),
            (
                "http2_keep_alive_timeout_ms",
                self.http2_keep_alive_timeout_ms,
            ),
        ];
        for (key, value) in timeouts {
            if value == 0 || value > CONNECTION_TIMEOUT_MS_MAX {
                return Err(format!(
                    "http.{key} must be between 1 and {CONNECTION_TIMEOUT_MS_MAX}"
                ));
            }
        }
        if self.http2_keep_alive_interval_ms > CONNECTION_TIMEOUT_MS_MAX {
            return Err(format!(
                "http.http2_keep_alive_interval_ms must be at most {CONNECTION_TIMEOUT_MS_MAX} (0 sends no PINGs)"
            ));
        }
        if self.http2_max_concurrent_streams == 0 {
            return Err("http.http2_max_concurrent_streams must be at least 1".into());
        }
        if self.connections_max == 0 {
            return Err("http.connections_max must be at least 1".into());
        }
        if self.connections_per_ip_max == 0 || self.connections_per_ip_max > self.connections_max {
            return Err(
                "http.connections_per_ip_max must be between 1 and http.connections_max".into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub nonce_ttl_secs: u64,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub pending_challenges_max: usize,
    pub state_recheck_ms: u64,
    /// An RSA private key (PKCS#8 or PKCS#1 PEM) to sign access tokens with. Without one, a key
    /// is generated on first start and kept in the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_private_key: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VeriffConfig {
    /// Veriff's API, e.g. `https://stationapi.veriff.com`.
    pub base_url: String,
    /// Veriff's API key (`X-AUTH-CLIENT`), also expected on its webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Veriff's shared secret: signs our requests and its webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<Secret>,
    /// Where Veriff sends the user after the verification flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// How long a call to Veriff may take.
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorConfig {
    pub idle_timeout_ms: u64,
    pub restarts_max: u32,
    pub restart_window_ms: u64,
    pub call_timeout_ms: u64,
    /// Ledger entries an organisation's ledger actor hands to storage as one group at most (1:
    /// each entry alone); storage may commit several organisations' groups together.
    #[serde(default = "ledger_batch_max_default")]
    pub ledger_batch_max: usize,
}

fn ledger_batch_max_default() -> usize {
    ampflow_actors::ledger::BATCH_MAX_DEFAULT
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            test_mode: false,
            log_format: LogFormat::Text,
            database: DatabaseConfig {
                url: Secret::new("sqlite://data/ampflow.db?mode=rwc"),
                max_connections: 16,
                acquire_timeout_ms: 10_000,
                sqlite_sync: SqliteSync::Normal,
                group_commit: true,
            },
            redis_url: None,
            http: HttpConfig {
                body_limit_bytes: 64 * 1024,
                request_timeout_ms: 30_000,
                shutdown_grace_ms: 30_000,
                trusted_proxies: Vec::new(),
                allowed_origins: Vec::new(),
                header_read_timeout_ms: HEADER_READ_TIMEOUT_MS_DEFAULT,
                keep_alive_idle_timeout_ms: KEEP_ALIVE_IDLE_TIMEOUT_MS_DEFAULT,
                http2_keep_alive_interval_ms: HTTP2_KEEP_ALIVE_INTERVAL_MS_DEFAULT,
                http2_keep_alive_timeout_ms: HTTP2_KEEP_ALIVE_TIMEOUT_MS_DEFAULT,
                http2_max_concurrent_streams: HTTP2_MAX_CONCURRENT_STREAMS_DEFAULT,
                connections_max: CONNECTIONS_MAX_DEFAULT,
                connections_per_ip_max: CONNECTIONS_PER_IP_MAX_DEFAULT,
            },
            identity: IdentityConfig {
                nonce_ttl_secs: 600,
                access_token_ttl_secs: 86_400,
                refresh_token_ttl_secs: 90 * 86_400,
                pending_challenges_max: 4,
                state_recheck_ms: 1000,
                jwt_private_key: None,
            },
            actors: ActorConfig {
                idle_timeout_ms: 120_000,
                restarts_max: 5,
                restart_window_ms: 60_000,
                call_timeout_ms: 10_000,
                ledger_batch_max: ledger_batch_max_default(),
            },
            chains: Vec::new(),
            recaptcha: RecaptchaConfig::default(),
            stripe: StripeConfig::default(),
            checkpoints: CheckpointConfig::default(),
            partner: PartnerConfig::default(),
            rate_limit: Default::default(),
            metrics: MetricsConfig::default(),
            auth: AuthConfig::default(),
            geoip: GeoipConfig::default(),
            stripe_connect: StripeConnectConfig::default(),
            node: NodeConfig::default(),
            veriff: VeriffConfig {
                base_url: "https://stationapi.veriff.com".into(),
                api_key: None,
                shared_secret: None,
                callback_url: None,
                request_timeout_ms: 5_000,
            },
        }
    }
}

/// The short environment names and the keys they set.
const ENV_ALIASES: [(&str, &str); 7] = [
    ("AMPFLOW_LISTEN", "listen"),
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis_url"),
    ("AMPFLOW_TEST_MODE", "test_mode"),
    ("AMPFLOW_LOG_FORMAT", "log_format"),
    ("AMPFLOW_JWT_PRIVATE_KEY", "identity.jwt_private_key"),
    ("AMPFLOW_NODE_ID", "node.id"),
];

impl Settings {
    /// Defaults, then the TOML file if given, then the environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            if !path.exists() {
                return Err(Box::new(figment::Error::from(format!(
                    "configuration file {} does not exist",
                    path.display()
                ))));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let aliases: Vec<&str> = ENV_ALIASES.iter().map(|(name, _)| *name).collect();
        figment = figment
            .merge(
                Env::prefixed("AMPFLOW_")
                    .filter(|key| key.as_str().contains("__"))
                    .map(|key| key.as_str().to_ascii_lowercase().replace("__", ".").into()),
            )
            .merge(Env::raw().only(&aliases).map(|key| {
                let name = key.as_str().to_ascii_uppercase();
                ENV_ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == name)
                    .map(|(_, target)| (*target).into())
                    .unwrap_or_else(|| key.into())
            }));
        figment.extract().map_err(Box::new)
    }

    /// `http.trusted_proxies` parsed; a bare address is a one-address block.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.http
            .trusted_proxies
            .iter()
            .map(|text| {
                let text = text.trim();
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("http.trusted_proxies: {text:?} is not an address or CIDR block")
                    })
            })
            .collect()
    }

    /// Checks the values that parse but make no sense, so a bad file fails at start with a
    /// message naming the key rather than misbehaving later.
    pub fn validate(&self) -> Result<(), String> {
        self.trusted_proxies()?;
        for origin in &self.http.allowed_origins {
            let parsed = url::Url::parse(origin).ok();
            let bare = parsed.as_ref().is_some_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some()
                    && url.path() == "/"
                    && !origin.ends_with('/')
                    && url.query().is_none()
                    && url.username().is_empty()
            });
            if !bare {
                return Err(format!(
                    "http.allowed_origins: {origin:?} is not an origin like https://dashboard.example.org (scheme, host and optional port, nothing else)"
                ));
            }
        }
        self.http.validate()?;
        self.rate_limit.validate()?;
        if let Some(id) = &self.node.id {
            ampflow_actors::database::check_node_id(id).map_err(|e| format!("node.id: {e}"))?;
        }
        if let Some(chain) = self.chains.iter().find(|c| c.tx.gas_budget_per_hour == 0) {
            return Err(format!(
                "chain {}: tx.gas_budget_per_hour must be above 0 (nothing could be sent)",
                chain.chain_id
            ));
        }
        if self
            .metrics
            .bearer_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().len() < 16)
        {
            return Err("metrics.bearer_token must be at least 16 characters".into());
        }
        Ok(())
    }

    pub fn database_settings(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: self.database.url.expose().to_string(),
            max_connections: self.database.max_connections,
            acquire_timeout: Duration::from_millis(self.database.acquire_timeout_ms),
            sqlite_sync: self.database.sqlite_sync,
            group_commit: self.database.group_commit,
        }
    }

    pub fn identity_settings(&self) -> IdentitySettings {
        let secs = |s: u64| (s as i64).saturating_mul(1000);
        IdentitySettings {
            nonce_ttl_ms: secs(self.identity.nonce_ttl_secs),
            access_token_ttl_ms: secs(self.identity.access_token_ttl_secs),
            refresh_token_ttl_ms: secs(self.identity.refresh_token_ttl_secs),
            pending_challenges_max: self.identity.pending_challenges_max.max(2),
            state_recheck_ms: self.identity.state_recheck_ms as i64,
            test_mode: self.test_mode,
        }
    }

    /// Veriff's settings, `None` when it is not configured; an error when it is configured
    /// halfway or its URLs are not http(s).
    pub fn veriff_settings(&self) -> Result<Option<VeriffSettings>, String> {
        let config = &self.veriff;
        let non_empty = |s: &Option<Secret>| s.as_ref().filter(|s| !s.expose().is_empty()).cloned();
        let (api_key, shared_secret) =
            match (non_empty(&config.api_key), non_empty(&config.shared_secret)) {
                (None, None) => return Ok(None),
                (Some(key), Some(secret)) => (key, secret),
                _ => {
                    return Err(
                        "veriff.api_key and veriff.shared_secret must be set together".into(),
                    );
                }
            };
        let is_http = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        if !is_http(&config.base_url) {
            return Err("veriff.base_url must be an http(s) URL".into());
        }
        if config
            .callback_url
            .as_deref()
            .is_some_and(|url| !is_http(url))
        {
            return Err("veriff.callback_url must be an http(s) URL".into());
        }
        Ok(Some(VeriffSettings {
            base_url: config.base_url.trim_end_matches('/').to_string(),
            api_key: api_key.expose().to_string().into(),
            shared_secret: shared_secret.expose().to_string().into(),
            callback_url: config.callback_url.clone(),
            request_timeout: Duration::from_millis(config.request_timeout_ms.max(1)),
        }))
    }

    /// Stripe's settings, `None` when no secret key is set; an error when the key is not a
    /// Stripe secret key, no webhook secret is set, or the base URL is not http(s).
    pub fn stripe_settings(&self) -> Result<Option<StripeSettings>, String> {
        let config = &self.stripe;
        let Some(key) = config
            .secret_key
            .as_ref()
            .filter(|k| !k.expose().is_empty())
        else {
            return Ok(None);
        };
        let key_ok = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"]
            .iter()
            .any(|prefix| key.expose().starts_with(prefix));
        if !key_ok {
            return Err("stripe.secret_key must start with sk_test_ or sk_live_".into());
        }
        let webhook_secrets: Vec<_> = config
            .webhook_secrets
            .iter()
            .filter(|s| !s.expose().is_empty())
            .map(|s| s.expose().to_string().into())
            .collect();
        if webhook_secrets.is_empty() {
            return Err("stripe.webhook_secrets must hold the webhook endpoint's secret".into());
        }
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err("stripe.base_url must be an http(s) URL".into());
        }
        if config.api_version.trim().is_empty() {
            return Err("stripe.api_version must not be empty".into());
        }
        Ok(Some(StripeSettings {
            base_url: config.base_url.trim_end_matches('/').to_string(),
            secret_key: key.expose().to_string().into(),
            webhook_secrets,
            api_version: config.api_version.trim().to_string(),
            webhook_tolerance_secs: config.webhook_tolerance_secs.min(i64::MAX as u64) as i64,
            request_timeout: Duration::from_millis(config.request_timeout_ms.max(1)),
            attempts_max: config.attempts_max.max(1),
            retry_backoff: Duration::from_millis(config.retry_backoff_ms),
        }))
    }

    pub fn checkpoint_settings(&self) -> ampflow_actors::checkpoints::CheckpointSettings {
        let config = &self.checkpoints;
        ampflow_actors::checkpoints::CheckpointSettings {
            origin: config.origin.clone(),
            signing_key: config
                .signing_key
                .as_ref()
                .filter(|k| !k.expose().is_empty())
                .map(|k| k.expose().to_string().into()),
            job_enabled: config.job_enabled,
            interval: Duration::from_millis(config.interval_ms.max(10)),
            grace_ms: config.grace_ms.min(i64::MAX as u64) as i64,
            lease_ttl_ms: config.lease_ttl_ms.clamp(1_000, i64::MAX as u64) as i64,
        }
    }

    pub fn runtime_settings(&self) -> RuntimeSettings {
        RuntimeSettings {
            idle_timeout: Duration::from_millis(self.actors.idle_timeout_ms),
            restarts_max: self.actors.restarts_max,
            restart_window: Duration::from_millis(self.actors.restart_window_ms),
            call_timeout: Duration::from_millis(self.actors.call_timeout_ms),
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_then_file_then_environment() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "ampflow.toml",
                "listen = \"127.0.0.1:9000\"\n[identity]\nnonce_ttl_secs = 60\n[database]\nurl = \"sqlite://file.db\"\n",
            )?;
            jail.set_env("DATABASE_URL", "postgres://app:hunter2@db/ampflow");
            jail.set_env("AMPFLOW_IDENTITY__NONCE_TTL_SECS", "30");
            jail.set_env("AMPFLOW_TEST_MODE", "true");
            let settings = Settings::load(Some(Path::new("ampflow.toml"))).map_err(|e| *e)?;
            assert_eq!(settings.listen.port(), 9000);
            assert_eq!(settings.identity.nonce_ttl_secs, 30);
            assert!(settings.test_mode);
            assert_eq!(
                settings.database.url.expose(),
                "postgres://app:hunter2@db/ampflow"
            );
            assert_eq!(settings.http.body_limit_bytes, 64 * 1024);
            Ok(())
        });
    }

    #[test]
    fn the_node_id_comes_from_the_file_or_the_environment_and_is_checked() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "ampflow.toml",
                "[node]\nid_file = \"/var/lib/ampflow/id\"\n",
            )?;
            let settings = Settings::load(Some(Path::new("ampflow.toml"))).map_err(|e| *e)?;
            assert_eq!(settings.node.id, None);
            assert_eq!(
                settings.node.id_file.as_deref(),
                Some(Path::new("/var/lib/ampflow/id"))
            );
            jail.set_env("AMPFLOW_NODE_ID", "eu-1");
            let settings = Settings::load(None).map_err(|e| *e)?;
            assert_eq!(settings.node.id.as_deref(), Some("eu-1"));
            assert!(settings.validate().is_ok());
            jail.set_env("AMPFLOW_NODE_ID", "eu 1#2");
            let error = Settings::load(None)
                .map_err(|e| *e)?
                .validate()
                .unwrap_err();
            assert!(error.contains("node.id"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_chain_has_a_gas_budget_and_may_name_an_operator_key() {
        Jail::expect_with(|jail| {
            let chain = "[[chains]]\nchain_id = 31337\nname = \"anvil\"\nrpc_url = \"http://127.0.0.1:8545\"\noperator_key_env = \"OPERATOR_KEY\"\n";
            jail.create_file("default.toml", chain)?;
            let settings = Settings::load(Some(Path::new("default.toml"))).map_err(|e| *e)?;
            let chain_settings = &settings.chains[0];
            assert_eq!(
                chain_settings.tx.gas_budget_per_hour,
                ampflow_chain::tx::GAS_BUDGET_PER_HOUR_DEFAULT
            );
            assert_eq!(
                chain_settings.operator_key_env.as_deref(),
                Some("OPERATOR_KEY")
            );
            assert_eq!(settings.validate(), Ok(()));

            jail.create_file(
                "zero.toml",
                &format!("{chain}[chains.tx]\ngas_budget_per_hour = 0\n"),
            )?;
            let settings = Settings::load(Some(Path::new("zero.toml"))).map_err(|e| *e)?;
            assert!(
                settings
                    .validate()
                    .unwrap_err()
                    .contains("tx.gas_budget_per_hour")
            );
            Ok(())
        });
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        Jail::expect_with(|jail| {
            jail.set_env("DATABASE_URL", "postgres://app:hunter2@db/ampflow");
            jail.set_env(
                "AMPFLOW_JWT_PRIVATE_KEY",
                "-----BEGIN PRIVATE KEY-----\nsecretkeymaterial\n",
            );
            jail.set_env("REDIS_URL", "redis://:redispass@127.0.0.1/");
            jail.set_env("AMPFLOW_METRICS__BEARER_TOKEN", "metricstokensecret");
            jail.set_env("AMPFLOW_VERIFF__API_KEY", "veriffkey");
            jail.set_env("AMPFLOW_VERIFF__SHARED_SECRET", "veriffsecret");
            jail.set_env("AMPFLOW_STRIPE__SECRET_KEY", "sk_test_stripekey");
            jail.set_env("AMPFLOW_STRIPE__WEBHOOK_SECRETS", "[whsec_hooksecret]");
            jail.set_env(
                "AMPFLOW_CHECKPOINTS__SIGNING_KEY",
                "PRIVATE+KEY+ledger+01234567+checkpointsecret",
            );
            let settings = Settings::load(None).map_err(|e| *e)?;
            let debug = format!(
                "{settings:?} {:?} {:?} {:?} {:?}",
                settings.database_settings(),
                settings.veriff_settings(),
                settings.stripe_settings(),
                settings.checkpoint_settings()
            );
            for secret in [
                "hunter2",
                "secretkeymaterial",
                "redispass",
                "veriffkey",
                "veriffsecret",
                "stripekey",
                "hooksecret",
                "checkpointsecret",
                "metricstokensecret",
            ] {
                assert!(!debug.contains(secret), "{secret} leaked into {debug}");
            }
            Ok(())
        });
    }

    #[test]
    fn veriff_is_configured_from_the_file_and_the_environment() {
        Jail::expect_with(|jail| {
            assert!(
                Settings::load(None)
                    .map_err(|e| *e)?
                    .veriff_settings()?
                    .is_none()
            );
            jail.create_file(
                "ampflow.toml",
                "[veriff]\nbase_url = \"http://127.0.0.1:9/\"\napi_key = \"k\"\n",
            )?;
            let path = Some(Path::new("ampflow.toml"));
            let halfway = Settings::load(path).map_err(|e| *e)?;
            assert!(halfway.veriff_settings().is_err());
            jail.set_env("AMPFLOW_VERIFF__SHARED_SECRET", "s");
            let settings = Settings::load(path).map_err(|e| *e)?;
            let veriff = settings.veriff_settings()?.expect("configured");
            assert_eq!(veriff.base_url, "http://127.0.0.1:9");
            assert_eq!(veriff.request_timeout, Duration::from_secs(5));
            Ok(())
        });
    }

    #[test]
    fn stripe_is_configured_from_the_file_and_the_environment() {
        Jail::expect_with(|jail| {
            let defaults = Settings::load(None).map_err(|e| *e)?;
            assert!(defaults.stripe_settings()?.is_none());
            assert_eq!(defaults.stripe.base_url, "https://api.stripe.com");
            assert_eq!(defaults.stripe.webhook_tolerance_secs, 300);
            jail.create_file(
                "ampflow.toml",
                "[stripe]\nbase_url = \"http://127.0.0.1:9/\"\nwebhook_secrets = [\"whsec_old\", \"whsec_new\"]\nwebhook_tolerance_secs = 60\n",
            )?;
            let path = Some(Path::new("ampflow.toml"));
            jail.set_env("AMPFLOW_STRIPE__SECRET_KEY", "pk_test_publishable");
            assert!(
                Settings::load(path)
                    .map_err(|e| *e)?
                    .stripe_settings()
                    .is_err()
            );
            jail.set_env("AMPFLOW_STRIPE__SECRET_KEY", "sk_live_abc");
            let stripe = Settings::load(path)
                .map_err(|e| *e)?
                .stripe_settings()?
                .expect("configured");
            assert!(stripe.livemode());
            assert_eq!(stripe.base_url, "http://127.0.0.1:9");
            assert_eq!(stripe.webhook_secrets.len(), 2);
            assert_eq!(stripe.webhook_tolerance_secs, 60);
            assert_eq!(stripe.api_version, STRIPE_API_VERSION);
            jail.set_env("AMPFLOW_STRIPE__SECRET_KEY", "sk_test_abc");
            jail.set_env("AMPFLOW_STRIPE__WEBHOOK_SECRETS", "[whsec_env]");
            let stripe = Settings::load(path)
                .map_err(|e| *e)?
                .stripe_settings()?
                .expect("configured");
            assert!(!stripe.livemode());
            assert_eq!(stripe.webhook_secrets.len(), 1);
            jail.set_env("AMPFLOW_STRIPE__WEBHOOK_SECRETS", "[]");
            assert!(
                Settings::load(path)
                    .map_err(|e| *e)?
                    .stripe_settings()
                    .is_err()
            );
            Ok(())
        });
    }

    #[test]
    fn the_partner_date_skew_defaults_to_15_minutes_and_can_be_set() {
        Jail::expect_with(|jail| {
            assert_eq!(
                Settings::load(None).map_err(|e| *e)?.partner.date_skew_secs,
                900
            );
            jail.create_file("ampflow.toml", "[partner]\ndate_skew_secs = 60\n")?;
            let path = Some(Path::new("ampflow.toml"));
            assert_eq!(
                Settings::load(path).map_err(|e| *e)?.partner.date_skew_secs,
                60
            );
            jail.set_env("AMPFLOW_PARTNER__DATE_SKEW_SECS", "30");
            assert_eq!(
                Settings::load(path).map_err(|e| *e)?.partner.date_skew_secs,
                30
            );
            Ok(())
        });
    }

    #[test]
    fn rate_limits_default_to_the_seed_and_are_set_from_the_file_and_the_environment() {
        Jail::expect_with(|jail| {
            let defaults = Settings::load(None).map_err(|e| *e)?;
            let limits = &defaults.rate_limit;
            assert!(limits.enabled);
            assert_eq!(
                (limits.tiers.public.limit, limits.tiers.public.window_secs),
                (60, 60)
            );
            assert!(limits.tiers.ledger_export.fixed);
            assert_eq!(limits.card_testing.per_fingerprint.limit, 3);
            assert_eq!(limits.card_testing.global.limit, 1000);
            assert_eq!(limits.auto_block.blocks_max, 50);
            assert!(limits.is_exempt("/webhooks/stripe"));
            assert!(limits.is_exempt("/veriff/webhook/decision"));
            assert!(limits.is_exempt("/health"));
            assert!(!limits.is_exempt("/healthz"));
            assert!(defaults.validate().is_ok());
            jail.create_file(
                "ampflow.toml",
                "[http]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[rate_limit.tiers.public]\nlimit = 7\nwindow_secs = 10\n[rate_limit.card_testing]\nextra_disposable_domains = [\"spam.test\"]\n",
            )?;
            let path = Some(Path::new("ampflow.toml"));
            jail.set_env("AMPFLOW_RATE_LIMIT__AUTO_BLOCK__BLOCKS_MAX", "9");
            let settings = Settings::load(path).map_err(|e| *e)?;
            assert_eq!(settings.rate_limit.tiers.public.limit, 7);
            assert_eq!(settings.rate_limit.tiers.dashboard.limit, 200);
            assert_eq!(settings.rate_limit.auto_block.blocks_max, 9);
            assert_eq!(settings.trusted_proxies()?.len(), 1);
            jail.set_env("AMPFLOW_RATE_LIMIT__REDIS_TIMEOUT_MS", "0");
            assert!(Settings::load(path).map_err(|e| *e)?.validate().is_err());
            Ok(())
        });
    }

    #[test]
    fn auth_settings_are_validated() {
        Jail::expect_with(|jail| {
            let defaults = Settings::load(None).map_err(|e| *e)?;
            assert_eq!(defaults.auth.cookie_name, "session");
            assert!(defaults.auth.cookie_secure);
            defaults.auth.validate()?;
            assert!(!defaults.stripe_connect.validate()?);
            jail.create_file(
                "ampflow.toml",
                "[auth]\ncookie_name = \"bad name\"\n[stripe_connect]\nclient_id = \"ca_1\"\n",
            )?;
            let path = Some(Path::new("ampflow.toml"));
            let settings = Settings::load(path).map_err(|e| *e)?;
            assert!(settings.auth.validate().is_err());
            assert!(settings.stripe_connect.validate().is_err());
            jail.set_env("AMPFLOW_AUTH__COOKIE_NAME", "sid");
            jail.set_env("AMPFLOW_AUTH__ARGON2_MEMORY_KIB", "1");
            assert!(
                Settings::load(path)
                    .map_err(|e| *e)?
                    .auth
                    .validate()
                    .is_err()
            );
            jail.set_env("AMPFLOW_AUTH__ARGON2_MEMORY_KIB", "64");
            jail.set_env(
                "AMPFLOW_STRIPE_CONNECT__REDIRECT_URL",
                "https://app.example/cb",
            );
            jail.set_env("AMPFLOW_STRIPE_CONNECT__STATE_SECRET", "s".repeat(32));
            let settings = Settings::load(path).map_err(|e| *e)?;
            settings.auth.validate()?;
            assert!(settings.stripe_connect.validate()?);
            assert!(!format!("{settings:?}").contains(&"s".repeat(32)));
            Ok(())
        });
    }

    #[test]
    fn connection_settings_have_safe_defaults_and_are_validated() {
        Jail::expect_with(|jail| {
            let defaults = Settings::load(None).map_err(|e| *e)?;
            assert_eq!(defaults.http.header_read_timeout_ms, 10_000);
            assert_eq!(defaults.http.keep_alive_idle_timeout_ms, 75_000);
            assert_eq!(defaults.http.connections_per_ip_max, 256);
            defaults.validate()?;
            jail.create_file(
                "ampflow.toml",
                "[http]\nconnections_max = 50\nconnections_per_ip_max = 10\nhttp2_keep_alive_interval_ms = 0\n",
            )?;
            let path = Some(Path::new("ampflow.toml"));
            let settings = Settings::load(path).map_err(|e| *e)?;
            assert_eq!(settings.http.connections_max, 50);
            settings.validate()?;
            for (variable, value) in [
                ("AMPFLOW_HTTP__CONNECTIONS_PER_IP_MAX", "51"),
                ("AMPFLOW_HTTP__CONNECTIONS_PER_IP_MAX", "0"),
                ("AMPFLOW_HTTP__HEADER_READ_TIMEOUT_MS", "0"),
                ("AMPFLOW_HTTP__KEEP_ALIVE_IDLE_TIMEOUT_MS", "3600001"),
                ("AMPFLOW_HTTP__HTTP2_MAX_CONCURRENT_STREAMS", "0"),
            ] {
                jail.clear_env();
                jail.set_env(variable, value);
                let error = Settings::load(path)
                    .map_err(|e| *e)?
                    .validate()
                    .unwrap_err();
                assert!(error.starts_with("http."), "{variable}={value}: {error}");
            }
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        Jail::expect_with(|jail| {
            jail.create_file("ampflow.toml", "lisen = \"127.0.0.1:9000\"\n")?;
            assert!(Settings::load(Some(Path::new("ampflow.toml"))).is_err());
            Ok(())
        });
    }
}
