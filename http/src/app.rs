//! Building and running the server: storage, migrations, the actor system, the router and the
//! listener ([`crate::server`]), and a graceful shutdown that lets in-flight requests finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ampflow_actors::database::Storage;
use ampflow_actors::{ActorSystem, SystemConfig};
use ampflow_types::{Clock, SystemClock};
use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::config::Settings;
use crate::middleware::{self, Limits};
use crate::routes;
use crate::state::{AppState, Inner};

#[derive(OpenApi)]
#[openapi(
    info(title = "ampflow", description = "Donations, public ledger, wallet identity, KYC, faucet and auto-invest."),
    tags(
        (name = "identity", description = "Wallet-signature login (EIP-191), tokens"),
        (name = "user", description = "The signed-in wallet's user record"),
        (name = "faucet", description = "Testnet faucet payouts"),
        (name = "whitelisting", description = "Approving KYC'd wallets on issuers' on-chain whitelists"),
        (name = "kyc", description = "KYC through Veriff: sessions and Veriff's webhooks"),
        (name = "auto-invest", description = "Queued investments in campaigns, carried out on chain once the wallet is ready"),
        (name = "test", description = "Test-mode-only helpers"),
        (name = "donations", description = "Donations through Stripe PaymentIntents"),
        (name = "public", description = "Public, read-only data: organisations, their ledgers, signed checkpoints and inclusion proofs"),
        (name = "partner", description = "The partner API (seed 003): signed donation requests and ad serving"),
        (name = "auth", description = "Dashboard users: login with email and password, session cookies, active sessions, security settings"),
        (name = "organisations", description = "Organisations a dashboard user belongs to, their settings and Stripe Connect onboarding"),
        (name = "audit", description = "The audit log of session, role and key changes"),
        (name = "operations", description = "Probes and documents"),
    )
)]
struct ApiDoc;

/// Options a test or benchmark may change; production uses the defaults.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub clock: Arc<dyn Clock>,
    /// Transaction signers by chain id, used instead of the keys named by `signer_key_env`
    /// (tests and benchmarks, which cannot set environment variables safely).
    pub chain_signers:
        std::collections::HashMap<ampflow_types::ChainId, alloy::signers::local::PrivateKeySigner>,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            chain_signers: Default::default(),
        }
    }
}

/// A server that is listening.
pub struct RunningApp {
    pub addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    metrics_upkeep: JoinHandle<()>,
    /// The database, owned here (the composition root) and closed at shutdown.
    storage: Storage,
    /// This process's node id; its file stays locked until the app is dropped.
    node: crate::node::NodeIdentity,
}

/// The router with every endpoint, and the OpenAPI document generated from it.
pub fn router(state: AppState) -> Router {
    let (router, _) = api_router().split_for_parts();
    let limits = Limits {
        request_timeout: Duration::from_millis(state.settings().http.request_timeout_ms),
    };
    let body_limit = state.settings().http.body_limit_bytes;
    // Outermost last: the envelope (request id, timeout, headers) wraps everything, so 429s
    // and 403s get it too; the metrics wrap the envelope, so they count every answer the
    // client gets (the limiter's refusals, 413s, timeouts and caught panics included). The
    // limiter's layer applies the edge rule after counting, so requests it refuses count too.
    router
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::rate_limit::layer::enforce,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            middleware::BodyLimit(body_limit),
            middleware::buffer_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            middleware::envelope,
        ))
        .layer(axum::middleware::from_fn(crate::metrics::track))
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::identity::router())
        .merge(routes::kyc::router())
        .merge(routes::ops::router())
        .merge(routes::metrics::router())
        .merge(routes::faucet::router())
        .merge(routes::whitelist::router())
        .merge(routes::auto_invest::router())
        .merge(routes::public::router())
        .merge(routes::donations::router())
        .merge(routes::stripe_webhook::router())
        .merge(routes::checkpoints::router())
        .merge(routes::partner::router())
        .merge(routes::auth::router())
        .merge(routes::organisations::router())
        .merge(routes::audit::router())
        .merge(routes::api_keys::router())
}

/// The OpenAPI document as JSON. (Long only because it describes every credential scheme,
/// one declaration each.)
pub fn openapi_json() -> anyhow::Result<String> {
    let (_, mut doc) = api_router().split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = doc.components.get_or_insert_with(Default::default);
    let bearer = |format: &str, description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format(format)
                .description(Some(description))
                .build(),
        )
    };
    let header = |name: &str, description: &str| {
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            name,
            description,
        )))
    };
    // Each operation's `security` names the credentials it takes; a scope is the API-key
    // policy it needs (for a session: the role that holds it). tests/route_matrix.rs checks
    // every operation against what its document says.
    components.add_security_scheme(
        "wallet",
        bearer(
            "JWT",
            "A wallet's access token (RS256, from POST /authorize/jwt) of a session that is still live",
        ),
    );
    components.add_security_scheme(
        "api_key",
        bearer(
            "sk_live_… / sk_test_… or a key's access token",
            "An organisation API key, or an access token of one; scopes are the policies needed",
        ),
    );
    components.add_security_scheme(
        "cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::config::AuthConfig::default().cookie_name,
            "The dashboard session cookie set by POST /auth/login (name: auth.cookie_name); scopes are the policies the member's role must hold. Writes need this server's Origin (or Sec-Fetch-Site: same-origin) and a JSON body"
                .to_string(),
        ))),
    );
    components.add_security_scheme(
        "igf",
        header(
            "Authorization",
            "IGF <access key id>:<Base64(HMAC-SHA1(secret, StringToSign))>, with a Date header",
        ),
    );
    components.add_security_scheme(
        "stripe_signature",
        header(
            "Stripe-Signature",
            "Stripe's webhook signature (t=…,v1=…) with one of stripe.webhook_secrets",
        ),
    );
    components.add_security_scheme(
        "veriff_signature",
        header(
            "X-HMAC-SIGNATURE",
            "Veriff's HMAC-SHA256 of the body with veriff.shared_secret, and X-AUTH-CLIENT: veriff.api_key",
        ),
    );
    components.add_security_scheme(
        "metrics_token",
        bearer(
            "metrics.bearer_token",
            "metrics.bearer_token; without one, a scraper on the same host (loopback, not forwarded)",
        ),
    );
    doc.to_pretty_json()
        .context("serialise the OpenAPI document")
}

/// Connects to storage and applies pending migrations.
pub async fn open_storage(settings: &Settings) -> anyhow::Result<Storage> {
    let storage = Storage::connect(&settings.database_settings())
        .await
        .context("connect to the database")?;
    storage.migrate().await.context("apply migrations")?;
    Ok(storage)
}

/// The transaction signer of every chain that names one, read from the environment variable
/// the chain names. A chain with a faucet must have one.
fn chain_signers(
    settings: &Settings,
    given: &std::collections::HashMap<
        ampflow_types::ChainId,
        alloy::signers::local::PrivateKeySigner,
    >,
) -> anyhow::Result<
    std::collections::HashMap<ampflow_types::ChainId, alloy::signers::local::PrivateKeySigner>,
> {
    let mut signers = std::collections::HashMap::new();
    for chain in settings
        .chains
        .iter()
        .filter(|c| !given.contains_key(&c.chain_id))
    {
        let Some(variable) = &chain.signer_key_env else {
            anyhow::ensure!(
                chain.faucet.is_none(),
                "chain {} has a faucet but no signer_key_env",
                chain.chain_id
            );
            continue;
        };
        let key = std::env::var(variable).with_context(|| {
            format!(
                "chain {}: the signer key variable {variable} is not set",
                chain.chain_id
            )
        })?;
        let signer: alloy::signers::local::PrivateKeySigner = key.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "chain {}: {variable} does not hold a valid private key",
                chain.chain_id
            )
        })?;
        signers.insert(chain.chain_id, signer);
    }
    Ok(signers)
}

/// The dashboard's authentication settings, checked, with the GeoIP database read.
fn dashboard_auth(settings: &Settings) -> anyhow::Result<crate::auth::Auth> {
    let geoip = settings
        .geoip
        .database_path
        .as_deref()
        .map(crate::auth::client::Geoip::open)
        .transpose()
        .map_err(|e| anyhow::anyhow!("configure GeoIP: {e}"))?;
    settings
        .stripe_connect
        .validate()
        .map_err(|e| anyhow::anyhow!("configure Stripe Connect: {e}"))?;
    let stripe_live = settings
        .stripe_settings()
        .ok()
        .flatten()
        .is_some_and(|stripe| stripe.livemode());
    let key_mode = if stripe_live {
        crate::auth::api_keys::KeyMode::Live
    } else {
        crate::auth::api_keys::KeyMode::Test
    };
    crate::auth::Auth::new(&settings.auth, geoip)
        .map(|auth| auth.with_default_key_mode(key_mode))
        .map_err(|e| anyhow::anyhow!("configure auth: {e}"))
}

/// Starts everything and binds the listener. The server runs until `shutdown`. (The
/// composition root of the process: long because it builds each part and hands it to the
/// ones that need it, in the order they must start.)
pub async fn start(settings: Settings, options: StartOptions) -> anyhow::Result<RunningApp> {
    // reqwest (reCAPTCHA, Veriff) uses rustls with this provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    crate::metrics::handle();
    let auth = dashboard_auth(&settings)?;
    let node = crate::node::NodeIdentity::resolve(&settings)?;
    let storage = open_storage(&settings).await?;
    let redis = settings.redis_url.as_ref().map(connect_redis).transpose()?;
    let rate_limiter = crate::rate_limit::RateLimiter::new(
        &settings.rate_limit,
        redis.clone(),
        storage.supervisor(),
    );
    let trusted_proxies = settings
        .trusted_proxies()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let actors = ActorSystem::start(SystemConfig {
        storage: storage.clone(),
        clock: options.clock.clone(),
        runtime: settings.runtime_settings(),
        ledger_batch_max: settings.actors.ledger_batch_max,
        identity: settings.identity_settings(),
        jwt_private_key_pem: settings
            .identity
            .jwt_private_key
            .as_ref()
            .map(|k| k.expose().to_string().into()),
        chains: ampflow_chain::Chains::new(&settings.chains).context("configure chains")?,
        signers: {
            let mut signers = chain_signers(&settings, &options.chain_signers)?;
            signers.extend(options.chain_signers.clone());
            signers
        },
        veriff: settings
            .veriff_settings()
            .map_err(|e| anyhow::anyhow!("configure Veriff: {e}"))?,
        stripe: settings
            .stripe_settings()
            .map_err(|e| anyhow::anyhow!("configure Stripe: {e}"))?,
        checkpoints: settings.checkpoint_settings(),
        accounts: settings.auth.account_settings(),
        api_keys: settings.auth.api_key_settings(),
        node_id: node.id.clone(),
    })
    .await
    .context("start the actor system")?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("bind {}", settings.listen))?;
    let addr = listener.local_addr().context("read the bound address")?;
    let recaptcha = crate::recaptcha::Recaptcha::new(settings.recaptcha.clone())
        .context("build the reCAPTCHA client")?;
    let state = AppState::new(Inner {
        actors,
        redis,
        settings,
        openapi_json: openapi_json()?,
        recaptcha,
        rate_limiter,
        trusted_proxies,
        auth,
    });

    // Hash the dummy password now, off the async workers, not on the first unknown email.
    let warm = state.actors().accounts().passwords().clone();
    tokio::task::spawn_blocking(move || {
        warm.dummy_hash();
    });
    let limits = crate::server::ConnectionLimits::new(
        &state.settings().http,
        state.trusted_proxies().to_vec(),
    );
    warn_if_over_open_files_limit(limits.connections_max);
    let (stop, server) = crate::server::serve(listener, router(state.clone()), limits);
    let metrics_upkeep = crate::metrics::spawn_upkeep(storage.supervisor());
    Ok(RunningApp {
        addr,
        state,
        stop: Some(stop),
        server,
        metrics_upkeep,
        storage,
        node,
    })
}

/// File descriptors kept for what is not a client connection: the database pool, Redis, chain
/// nodes, outside APIs, logs.
const FILES_RESERVED: u64 = 256;

/// Warns when `http.connections_max` leaves too few of the process's open-file limit for the
/// rest: past the limit, accepting fails (nobody gets an answer, not even a 503) and so do the
/// database's and outside services' connections.
fn warn_if_over_open_files_limit(connections_max: usize) {
    let Some(limit) = open_files_limit() else {
        return;
    };
    let needed = (connections_max as u64).saturating_add(FILES_RESERVED);
    if needed > limit {
        tracing::warn!(
            connections_max,
            open_files_limit = limit,
            "http.connections_max plus {FILES_RESERVED} descriptors for the rest is over the open-file limit: raise the limit (ulimit -n, LimitNOFILE) or lower http.connections_max"
        );
    }
}

/// The soft open-file limit, where the system says (Linux's /proc/self/limits).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Redis connection attempts and answers wait this long at most (the rate limiter waits less:
/// `rate_limit.redis_timeout_ms`).
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection attempts after a lost connection before the next command tries again.
const REDIS_RECONNECT_ATTEMPTS: usize = 3;

/// A connection manager that connects lazily, so the server starts while Redis is down
/// (`/ready` then says so and the rate limiter uses memory) and reconnects by itself. The URL
/// holds the password, so it is never logged, and neither is the parse error (which may quote
/// it).
fn connect_redis(url: &crate::config::Secret) -> anyhow::Result<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url.expose())
        .map_err(|_| anyhow::anyhow!("REDIS_URL is not a valid redis:// URL"))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
        .set_number_of_retries(REDIS_RECONNECT_ATTEMPTS)
        .set_max_delay(Duration::from_millis(500));
    redis::aio::ConnectionManager::new_lazy_with_config(client, config)
        .context("set up the redis connection")
}

impl RunningApp {
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn actors(&self) -> &ActorSystem {
        self.state.actors()
    }

    /// The database this process runs on (for the operator's tools and tests; handlers reach
    /// it only through the façades).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The node id this process runs as (`None`: its leases wait for their expiry).
    pub fn node_id(&self) -> Option<&str> {
        self.node.id.as_deref()
    }

    /// Stops accepting connections, lets in-flight requests finish (up to the configured
    /// grace), then stops the actors and closes the database.
    pub async fn shutdown(mut self) {
        self.metrics_upkeep.abort();
        let grace = Duration::from_millis(self.state.settings().http.shutdown_grace_ms);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(grace, &mut self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::error!(%error, "server error during shutdown"),
            Ok(Err(error)) => tracing::error!(%error, "server task failed"),
            Err(_) => {
                tracing::warn!(
                    ?grace,
                    "in-flight requests did not finish in time; closing them"
                );
                self.server.abort();
            }
        }
        self.state.actors().shutdown(grace).await;
        if let Err(error) = self.storage.clone().close().await {
            tracing::warn!(%error, "closing the database");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95602                95602                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        assert_eq!(
            parse_open_files_limit("Max open files  unlimited  unlimited  files"),
            None
        );
        assert_eq!(parse_open_files_limit(""), None);
    }
}
