//! Rate limits over real HTTP, in memory and against a real Redis: the seed's headers, 429
//! body and Retry-After, exemptions, two servers sharing one Redis, Redis killed and restarted
//! mid-run, the card-testing limits on donations, auto-blocking and `/metrics`.
//!
//! Redis tests use `TEST_REDIS_URL` (skipped without it) with a key prefix of their own, and
//! delete their keys at the end. The outage test runs a private `redis-server` on a free
//! loopback port, never the shared one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ampflow_http::config::{Secret, Settings};
use ampflow_http::rate_limit::Tier;
use ampflow_storage::testdb::Backend;
use common::{TestApp, Wallet, assert_error, wait_until};
use serde_json::{Value, json};

/// The shared test Redis, when configured.
fn redis_url() -> Option<String> {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

/// Limits on, with a tiny public tier.
fn limited(s: &mut Settings, prefix: &str, redis: Option<&str>) {
    s.rate_limit.enabled = true;
    s.rate_limit.key_prefix = prefix.to_string();
    s.rate_limit.tiers.public = Tier {
        limit: 3,
        window_secs: 60,
        fixed: false,
    };
    s.rate_limit.redis_timeout_ms = 300;
    s.rate_limit.redis_retry_interval_ms = 100;
    s.redis_url = redis.map(Secret::new);
}

/// The keys under `prefix`, and a connection.
async fn keys_under(url: &str, prefix: &str) -> (Vec<String>, redis::aio::MultiplexedConnection) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    (keys, connection)
}

/// Deletes every key under `prefix`.
async fn delete_keys(url: &str, prefix: &str) {
    let (keys, mut connection) = keys_under(url, prefix).await;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.parse().ok()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn limits_headers_retry_after_and_exemptions(redis: Option<&str>) {
    let prefix = unique_prefix();
    let app = TestApp::start_with(Backend::Sqlite, |s| limited(s, &prefix, redis))
        .await
        .unwrap();
    for remaining in [2, 1, 0] {
        let response = get(&app, "/public/organisations").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit"), Some(3));
        assert_eq!(header(&response, "x-ratelimit-remaining"), Some(remaining));
        let reset = header(&response, "x-ratelimit-reset").unwrap();
        assert!(
            reset > unix_now() - 1 && reset <= unix_now() + 61,
            "{reset}"
        );
    }
    let response = get(&app, "/public/organisations").await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "x-ratelimit-limit"), Some(3));
    assert_eq!(header(&response, "x-ratelimit-remaining"), Some(0));
    let retry_after = header(&response, "retry-after").unwrap();
    assert!((1..=120).contains(&retry_after), "{retry_after}");
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {
            "code": "rate_limit_exceeded",
            "message": format!("Too many requests. Retry after {retry_after} seconds."),
            "param": null,
            "retry_after": retry_after,
        }})
    );
    // Another tier has its own count; an unknown path counts against the caller's tier.
    assert_eq!(get(&app, "/public/checkpoints").await.status(), 200);
    let unknown = get(&app, "/no/such/route").await;
    assert_eq!(unknown.status(), 429);
    assert_eq!(header(&unknown, "x-ratelimit-limit"), Some(3));
    // Probes and webhooks are exempt and carry no headers.
    for _ in 0..5 {
        for path in ["/health", "/ready"] {
            let response = get(&app, path).await;
            assert_eq!(response.status(), 200, "{path}");
            assert!(!response.headers().contains_key("x-ratelimit-limit"));
        }
        let webhook = app
            .client
            .post(app.url("/webhooks/stripe"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_ne!(webhook.status(), 429);
        assert!(!webhook.headers().contains_key("x-ratelimit-limit"));
    }
    assert_eq!(
        app.app().state().rate_limiter().redis_up(),
        redis.map(|_| true)
    );
    app.stop().await;
    if let Some(url) = redis {
        delete_keys(url, &prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_limits_answer_429_with_the_seeds_headers_and_body() {
    limits_headers_retry_after_and_exemptions(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limits_answer_429_with_the_seeds_headers_and_body() {
    let Some(url) = redis_url() else {
        eprintln!("TEST_REDIS_URL is not set: skipping");
        return;
    };
    limits_headers_retry_after_and_exemptions(Some(&url)).await;
}

/// Made-up methods (405) and unknown paths (404) count against the caller's tier like any
/// request: the key is the tier and the caller, never the method. With Redis they make no new
/// keys.
async fn made_up_methods_count_against_the_tier(backend: Backend, redis: Option<&str>) {
    let prefix = unique_prefix();
    let Some(app) = TestApp::start_with(backend, |s| limited(s, &prefix, redis)).await else {
        return;
    };
    for (i, method) in ["FROB", "BREW", "X-ANYTHING"].into_iter().enumerate() {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url("/public/organisations"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            Some(2 - i as u64)
        );
    }
    for method in ["FROB", "GET"] {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url("/public/organisations"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 429, "{method}");
    }
    if let Some(url) = redis {
        let (keys, _) = keys_under(url, &prefix).await;
        // The tier's counter and the address's refusal count.
        assert!(keys.len() <= 2, "{keys:?}");
        delete_keys(url, &prefix).await;
    }
    app.stop().await;
}

/// In memory, and through Redis when there is one.
async fn made_up_methods_count_against_the_tier_in_memory_and_redis(backend: Backend) {
    made_up_methods_count_against_the_tier(backend, None).await;
    match redis_url() {
        Some(url) => made_up_methods_count_against_the_tier(backend, Some(&url)).await,
        None => eprintln!("TEST_REDIS_URL is not set: skipping the Redis half"),
    }
}

/// `ledger_export` counts anonymous callers and identified ones: what the identified callers
/// of an address spend (counted at `identities_per_ip` × the limit) leaves the address's
/// anonymous budget whole, in memory and through Redis, where the identified count is leased
/// in large grants (20 of 200 here: a grant on a key the anonymous rule shared used up its 20
/// at once, which the fault campaign's seed 1 met as a 429 on its final export).
async fn identified_exports_leave_the_anonymous_export_budget_of_their_address(backend: Backend) {
    for redis in [None, redis_url()] {
        let prefix = unique_prefix();
        let Some(app) = TestApp::start_with(backend, |s| {
            limited(s, &prefix, redis.as_deref());
            s.http.trusted_proxies = vec!["127.0.0.1".into()];
            s.rate_limit.tiers.public.limit = 100;
            s.rate_limit.tiers.ledger_export = Tier {
                limit: 20,
                window_secs: 60,
                fixed: false,
            };
            s.rate_limit.identities_per_ip = 10;
        })
        .await
        else {
            return;
        };
        let token = app.access_token(&Wallet::random()).await;
        // An unknown organisation: 404 once admitted, 429 when refused.
        let path = "/public/organisations/org_none/ledger/export";
        for _ in 0..20 {
            let response = get_from(&app, path, "198.51.100.7", Some(&token)).await;
            assert_eq!(response.status(), 404);
        }
        assert_eq!(
            get_from(&app, path, "198.51.100.7", Some(&token))
                .await
                .status(),
            429,
            "the wallet's own 20 are spent"
        );
        for i in 0..20 {
            let response = get_from(&app, path, "198.51.100.7", None).await;
            assert_eq!(response.status(), 404, "anonymous export {i}");
        }
        assert_eq!(
            get_from(&app, path, "198.51.100.7", None).await.status(),
            429,
            "the address's anonymous 20 are spent"
        );
        app.stop().await;
        if let Some(url) = &redis {
            delete_keys(url, &prefix).await;
        }
    }
}

on_both_databases!(
    made_up_methods_count_against_the_tier_in_memory_and_redis,
    fresh_identities_do_not_multiply_an_addresss_budget,
    identified_exports_leave_the_anonymous_export_budget_of_their_address,
    a_flood_of_fresh_keys_neither_resets_a_limit_nor_lifts_a_block_in_memory,
);

/// A request from `ip` (the loopback peer is a trusted proxy in these tests).
async fn get_from(app: &TestApp, path: &str, ip: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path)).header("x-forwarded-for", ip);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// Every fresh wallet is a new identity, but an address's budget is shared: the identity
/// tier counts the wallet, and the same tier at `identities_per_ip` times its limit counts the
/// address. IPv6 addresses count by their /64.
async fn fresh_identities_do_not_multiply_an_addresss_budget(backend: Backend) {
    let prefix = unique_prefix();
    let Some(app) = TestApp::start_with(backend, |s| {
        limited(s, &prefix, None);
        s.http.trusted_proxies = vec!["127.0.0.1".into()];
        s.rate_limit.tiers.dashboard = Tier {
            limit: 2,
            window_secs: 60,
            fixed: false,
        };
        s.rate_limit.identities_per_ip = 2;
        // Room for the logins; the IPv6 check below uses the ledger tier.
        s.rate_limit.tiers.public.limit = 100;
        s.rate_limit.tiers.ledger_view = Tier {
            limit: 3,
            window_secs: 60,
            fixed: false,
        };
    })
    .await
    else {
        return;
    };
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(app.access_token(&Wallet::random()).await);
    }
    for token in &tokens[..2] {
        for _ in 0..2 {
            let response = get_from(&app, "/user", "198.51.100.1", Some(token)).await;
            assert_eq!(response.status(), 200);
        }
    }
    // The third wallet from the same address: the address's 2 × 2 are spent.
    let response = get_from(&app, "/user", "198.51.100.1", Some(&tokens[2])).await;
    assert_eq!(response.status(), 429);
    // From another address it has its own budget.
    let response = get_from(&app, "/user", "198.51.100.2", Some(&tokens[2])).await;
    assert_eq!(response.status(), 200);
    // Anonymous requests from one IPv6 /64 share one budget (ledger_view: 3).
    for i in 1..=3 {
        let ip = format!("2001:db8:5:5::{i}");
        assert_eq!(
            get_from(&app, "/public/checkpoints", &ip, None)
                .await
                .status(),
            200
        );
    }
    let other_host = get_from(&app, "/public/checkpoints", "2001:db8:5:5:ffff::9", None).await;
    assert_eq!(other_host.status(), 429);
    let other_net = get_from(&app, "/public/checkpoints", "2001:db8:5:6::1", None).await;
    assert_eq!(other_net.status(), 200);
    app.stop().await;
}

/// In memory, counters and blocks are kept apart and a full cache forgets idle counters
/// before exhausted ones: a flood of fresh identities from other addresses neither resets an
/// exhausted limit nor lifts a block.
async fn a_flood_of_fresh_keys_neither_resets_a_limit_nor_lifts_a_block_in_memory(
    backend: Backend,
) {
    let prefix = unique_prefix();
    let Some(app) = TestApp::start_with(backend, |s| {
        limited(s, &prefix, None);
        s.http.trusted_proxies = vec!["127.0.0.1".into()];
        s.rate_limit.memory_keys_max = 1_000;
        s.rate_limit.auto_block.blocks_max = 2;
    })
    .await
    else {
        return;
    };
    // One address exhausted, another blocked.
    for _ in 0..3 {
        assert_eq!(
            get_from(&app, "/public/organisations", "198.51.100.1", None)
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        get_from(&app, "/public/organisations", "198.51.100.1", None)
            .await
            .status(),
        429
    );
    for _ in 0..3 {
        get_from(&app, "/public/organisations", "198.51.100.2", None).await;
    }
    for _ in 0..3 {
        get_from(&app, "/public/organisations", "198.51.100.2", None).await;
    }
    assert_eq!(
        get_from(&app, "/public/organisations", "198.51.100.2", None)
            .await
            .status(),
        403
    );
    // Three times the cache's size in fresh addresses.
    for n in 0..3_000u32 {
        let ip = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
        get_from(&app, "/public/organisations", &ip, None).await;
    }
    assert_eq!(
        get_from(&app, "/public/organisations", "198.51.100.1", None)
            .await
            .status(),
        429
    );
    assert_eq!(
        get_from(&app, "/public/organisations", "198.51.100.2", None)
            .await
            .status(),
        403
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_user_is_counted_by_user_not_by_ip() {
    let prefix = unique_prefix();
    let app = TestApp::start_with(Backend::Sqlite, |s| {
        limited(s, &prefix, None);
        s.rate_limit.tiers.dashboard = Tier {
            limit: 5,
            window_secs: 60,
            fixed: false,
        };
    })
    .await
    .unwrap();
    let token = app.access_token(&Wallet::random()).await;
    let signed_in = app
        .client
        .get(app.url("/public/organisations"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&signed_in, "x-ratelimit-limit"), Some(5));
    // A token that does not verify counts as the IP, never as a user of its choosing.
    let forged = app
        .client
        .get(app.url("/public/organisations"))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&forged, "x-ratelimit-limit"), Some(3));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_session_is_counted_by_its_user_from_any_address() {
    use common::dashboard::{Session, create_user, dashboard_settings, login_from, with_session};
    let prefix = unique_prefix();
    let app = TestApp::start_with(Backend::Sqlite, |s| {
        limited(s, &prefix, None);
        dashboard_settings(s);
        s.rate_limit.tiers.dashboard = Tier {
            limit: 5,
            window_secs: 60,
            fixed: false,
        };
    })
    .await
    .unwrap();
    create_user(&app, "limits@example.org").await;
    let agent = common::dashboard::CHROME_WINDOWS;
    let a = login_from(&app, "limits@example.org", "198.51.100.1", agent).await;
    let b = login_from(&app, "limits@example.org", "198.51.100.2", agent).await;
    let me = |session: &Session| with_session(&app, "GET", "/auth/me", session).send();
    // One user's budget, whichever session and address the requests come from.
    for (i, session) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let response = me(session).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit"), Some(5));
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            Some(4 - i as u64)
        );
    }
    assert_eq!(me(&b).await.unwrap().status(), 429);
    // A cookie whose secret does not match counts as its address, never as the user.
    let forged = Session {
        cookie: format!("{}.forged", a.id),
        ..a.clone()
    };
    let response = me(&forged).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "x-ratelimit-limit"), Some(3));
    // So does a session that has ended: the limiter makes the extractor's own check.
    create_user(&app, "ended@example.org").await;
    let c = login_from(&app, "ended@example.org", "198.51.100.3", agent).await;
    let logout = with_session(&app, "POST", "/auth/logout", &c)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    let response = me(&c).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "x-ratelimit-limit"), Some(3));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_sharing_one_redis_share_the_limits() {
    let Some(url) = redis_url() else {
        eprintln!("TEST_REDIS_URL is not set: skipping");
        return;
    };
    let prefix = unique_prefix();
    let a = TestApp::start_with(Backend::Sqlite, |s| limited(s, &prefix, Some(&url)))
        .await
        .unwrap();
    let b = TestApp::start_with(Backend::Sqlite, |s| limited(s, &prefix, Some(&url)))
        .await
        .unwrap();
    assert_eq!(get(&a, "/public/organisations").await.status(), 200);
    assert_eq!(get(&b, "/public/organisations").await.status(), 200);
    let third = get(&a, "/public/organisations").await;
    assert_eq!(header(&third, "x-ratelimit-remaining"), Some(0));
    assert_eq!(get(&b, "/public/organisations").await.status(), 429);
    assert_eq!(get(&a, "/public/organisations").await.status(), 429);
    a.stop().await;
    b.stop().await;
    delete_keys(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_leasing_budget_from_one_redis_never_admit_more_than_the_limit() {
    let Some(url) = redis_url() else {
        eprintln!("TEST_REDIS_URL is not set: skipping");
        return;
    };
    let prefix = unique_prefix();
    let settings = |s: &mut Settings| {
        limited(s, &prefix, Some(&url));
        // An hour-long window, so the run does not straddle two of them.
        s.rate_limit.tiers.public = Tier {
            limit: 200,
            window_secs: 3_600,
            fixed: false,
        };
        s.rate_limit.redis_lease_fraction = 0.1;
    };
    let a = TestApp::start_with(Backend::Sqlite, settings)
        .await
        .unwrap();
    let b = TestApp::start_with(Backend::Sqlite, settings)
        .await
        .unwrap();

    // The first request leases 20 units (10 % of 200): Redis counts them all at once.
    let first = get(&a, "/public/organisations").await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-remaining"), Some(199));
    assert_eq!(counted_in_redis(&url, &prefix).await, 20);
    // The next ones are admitted from the lease, with the headers counting down.
    let second = get(&a, "/public/organisations").await;
    assert_eq!(header(&second, "x-ratelimit-remaining"), Some(198));

    // Both servers together admit at most the limit, and only a few units short of it.
    let mut admitted = 2;
    for i in 0..400 {
        let app = if i % 3 == 0 { &a } else { &b };
        if get(app, "/public/organisations").await.status() == 200 {
            admitted += 1;
        }
    }
    assert!(
        (190..=200).contains(&admitted),
        "admitted {admitted} of a limit of 200"
    );
    a.stop().await;
    b.stop().await;
    delete_keys(&url, &prefix).await;

    // A burst on a fresh key fetches one lease; the requests arriving while it is fetched
    // ask Redis for one unit each instead of leasing the budget many times over.
    let prefix = unique_prefix();
    let burst = TestApp::start_with(Backend::Sqlite, |s| {
        limited(s, &prefix, Some(&url));
        s.rate_limit.tiers.public = Tier {
            limit: 10_000,
            window_secs: 3_600,
            fixed: false,
        };
        s.rate_limit.redis_lease_fraction = 0.1;
    })
    .await
    .unwrap();
    let requests = (0..64).map(|_| get(&burst, "/public/organisations"));
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.status(), 200);
    }
    let counted = counted_in_redis(&url, &prefix).await;
    assert!(
        counted <= 1_000 + 64,
        "64 requests counted {counted} in Redis"
    );
    burst.stop().await;
    delete_keys(&url, &prefix).await;
}

/// The current window's count of the one rate-limit key under `prefix`.
async fn counted_in_redis(url: &str, prefix: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}ratelimit:ip:*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    redis::cmd("HGET")
        .arg(&keys[0])
        .arg("c")
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// A private redis-server on a loopback port, killed when dropped.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed?)");
        let url = format!("redis://127.0.0.1:{port}/");
        let up = wait_until(Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                let Ok(client) = redis::Client::open(url) else {
                    return false;
                };
                match client.get_multiplexed_async_connection().await {
                    Ok(mut c) => redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        assert!(up, "redis-server did not answer on port {port}");
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one request and checks it is answered by the limiter's verdict quickly, never with a
/// 5xx or a wait for Redis.
async fn quick(app: &TestApp) -> u16 {
    let started = Instant::now();
    let status = get(app, "/public/organisations").await.status().as_u16();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a request waited {:?}",
        started.elapsed()
    );
    assert!(status == 200 || status == 429, "{status}");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_falls_back_to_memory_and_the_shared_limits_come_back() {
    let port = free_port();
    let mut redis = PrivateRedis::start(port).await;
    let url = redis.url();
    let prefix = unique_prefix();
    let a = TestApp::start_with(Backend::Sqlite, |s| limited(s, &prefix, Some(&url)))
        .await
        .unwrap();
    let b = TestApp::start_with(Backend::Sqlite, |s| limited(s, &prefix, Some(&url)))
        .await
        .unwrap();
    assert_eq!(quick(&a).await, 200);
    assert_eq!(quick(&b).await, 200);

    redis.kill();
    // Requests keep working on each server's own memory: three more each, then 429.
    let statuses: Vec<u16> = {
        let mut s = Vec::new();
        for _ in 0..4 {
            s.push(quick(&a).await);
        }
        s
    };
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(a.app().state().rate_limiter().redis_up(), Some(false));
    assert_eq!(
        quick(&b).await,
        200,
        "b has its own memory while Redis is down"
    );
    let (status, _) = b.send(b.client.get(b.url("/ready"))).await;
    assert_eq!(status, 503);

    // Redis is back (empty): both servers find it and count together again.
    let _redis = PrivateRedis::start(port).await;
    for app in [&a, &b] {
        let limiter_back = wait_until(Duration::from_secs(10), || async {
            app.app().state().rate_limiter().redis_up() == Some(true)
        })
        .await;
        assert!(limiter_back, "the limiter did not go back to Redis");
    }
    assert_eq!(quick(&a).await, 200);
    assert_eq!(quick(&b).await, 200);
    assert_eq!(quick(&a).await, 200);
    assert_eq!(quick(&b).await, 429, "the count is shared again");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_starts_while_redis_is_down_and_limits_in_memory() {
    let port = free_port();
    let prefix = unique_prefix();
    let url = format!("redis://:secretpass@127.0.0.1:{port}/");
    let app = TestApp::start_with(Backend::Sqlite, |s| limited(s, &prefix, Some(&url)))
        .await
        .unwrap();
    let (status, body) = app.send(app.client.get(app.url("/ready"))).await;
    assert_error(status, &body, 503, "service_unavailable", None);
    let statuses = [quick(&app).await, quick(&app).await, quick(&app).await];
    assert_eq!(statuses, [200, 200, 200]);
    assert_eq!(quick(&app).await, 429);
    assert_eq!(app.app().state().rate_limiter().redis_up(), Some(false));
    app.stop().await;
}

async fn auto_block(redis: Option<&str>) {
    let prefix = unique_prefix();
    let tweak = |s: &mut Settings| {
        limited(s, &prefix, redis);
        s.rate_limit.tiers.public.limit = 1;
        s.rate_limit.auto_block.blocks_max = 3;
    };
    let app = TestApp::start_with(Backend::Sqlite, tweak).await.unwrap();
    assert_eq!(get(&app, "/public/organisations").await.status(), 200);
    // Refusals one to four: the fourth is more than three in the window.
    for _ in 0..4 {
        assert_eq!(get(&app, "/public/organisations").await.status(), 429);
    }
    let blocked = get(&app, "/public/checkpoints").await;
    assert_eq!(blocked.status(), 403);
    let retry_after = header(&blocked, "retry-after").unwrap();
    assert!(retry_after > 86_000, "{retry_after}");
    assert_eq!(header(&blocked, "x-ratelimit-remaining"), Some(0));
    assert!(header(&blocked, "x-ratelimit-limit").is_some());
    let reset = header(&blocked, "x-ratelimit-reset").unwrap();
    assert!(reset >= unix_now() + 86_000, "{reset}");
    let body: Value = blocked.json().await.unwrap();
    assert_error(403, &body, 403, "ip_blocked", None);
    // Probes stay reachable.
    assert_eq!(get(&app, "/health").await.status(), 200);
    if let Some(url) = redis {
        // Another server sharing the Redis blocks the address too.
        let other = TestApp::start_with(Backend::Sqlite, tweak).await.unwrap();
        assert_eq!(get(&other, "/public/organisations").await.status(), 403);
        other.stop().await;
        delete_keys(url, &prefix).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_refused_too_often_is_blocked_with_403_in_memory() {
    auto_block(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_refused_too_often_is_blocked_with_403_through_redis() {
    let Some(url) = redis_url() else {
        eprintln!("TEST_REDIS_URL is not set: skipping");
        return;
    };
    auto_block(Some(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_to_local_scrapers_or_with_the_token() {
    let prefix = unique_prefix();
    let app = TestApp::start_with(Backend::Sqlite, |s| limited(s, &prefix, None))
        .await
        .unwrap();
    for _ in 0..4 {
        get(&app, "/public/organisations").await;
    }
    get(&app, "/no/such/route").await;
    // Answers made outside the handlers are counted too (here the body limit's 413).
    let oversized = app
        .client
        .post(app.url("/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    let response = get(&app, "/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="GET",route="/public/organisations",status="200"}"#,
        r#"http_requests_total{method="GET",route="/public/organisations",status="429"}"#,
        r#"http_requests_total{method="GET",route="unmatched",status="429"}"#,
        r#"http_requests_total{method="POST",route="/auth/login",status="413"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/public/organisations",status="200",le="0.5"}"#,
        r#"ratelimit_checked_total{endpoint="/public/organisations",identifier_type="ip"}"#,
        r#"ratelimit_blocked_total{endpoint="/public/organisations",identifier_type="ip",reason="tier"}"#,
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    assert!(!text.contains("/no/such/route"));
    // Relayed through a local proxy: refused without a token.
    let relayed = app
        .client
        .get(app.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), 403);
    app.stop().await;

    let token = "metrics-token-0123456789";
    let app = TestApp::start_with(Backend::Sqlite, |s| {
        s.metrics.bearer_token = Some(Secret::new(token));
    })
    .await
    .unwrap();
    let (status, body) = app.send(app.client.get(app.url("/metrics"))).await;
    assert_error(status, &body, 401, "authentication_error", None);
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("wrong-token-0123456789");
    assert_eq!(app.send(wrong).await.0, 401);
    let right = app.client.get(app.url("/metrics")).bearer_auth(token);
    let response = right.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("http_requests_total")
    );
    app.stop().await;

    let app = TestApp::start_with(Backend::Sqlite, |s| s.metrics.enabled = false)
        .await
        .unwrap();
    assert_eq!(get(&app, "/metrics").await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn bad_rate_limit_settings_are_refused_at_start() {
    let mut settings = Settings::default();
    settings.rate_limit.tiers.public.limit = 0;
    assert!(
        settings
            .validate()
            .unwrap_err()
            .contains("tiers.public.limit")
    );
    let mut settings = Settings::default();
    settings.rate_limit.card_testing.per_fingerprint.window_secs = 0;
    assert!(
        settings
            .validate()
            .unwrap_err()
            .contains("card_testing.per_fingerprint")
    );
    let mut settings = Settings::default();
    settings.http.trusted_proxies = vec!["10.0.0.0/40".into()];
    assert!(settings.validate().unwrap_err().contains("trusted_proxies"));
    let mut settings = Settings::default();
    settings.metrics.bearer_token = Some(Secret::new("short"));
    assert!(settings.validate().is_err());
    let mut settings = Settings::default();
    settings.http.trusted_proxies = vec!["10.0.0.0/8".into(), "192.0.2.7".into()];
    assert!(settings.validate().is_ok());
}

mod card_testing {
    use ampflow_actors::organisations::NewOrganisation;
    use ampflow_standins::stripe::StripeStandIn;

    use super::*;

    const SECRET_KEY: &str = "sk_test_ratelimit";
    const WEBHOOK_SECRET: &str = "whsec_ratelimit";

    fn tier(limit: u64, window_secs: u64) -> Tier {
        Tier {
            limit,
            window_secs,
            fixed: false,
        }
    }

    /// Donations through the Stripe stand-in, with the card-testing limits small and the
    /// loopback peer a trusted proxy, so `X-Forwarded-For` picks the donor's IP.
    async fn start(prefix: &str, global: u64) -> (TestApp, StripeStandIn, String) {
        start_on(Backend::Sqlite, prefix, global).await.unwrap()
    }

    async fn start_on(
        backend: Backend,
        prefix: &str,
        global: u64,
    ) -> Option<(TestApp, StripeStandIn, String)> {
        let stripe = StripeStandIn::start(SECRET_KEY, WEBHOOK_SECRET)
            .await
            .unwrap();
        let base_url = stripe.base_url();
        let app = TestApp::start_with(backend, |s| {
            limited(s, prefix, None);
            s.stripe.secret_key = Some(Secret::new(SECRET_KEY));
            s.stripe.webhook_secrets = vec![Secret::new(WEBHOOK_SECRET)];
            s.stripe.base_url = base_url;
            s.http.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()];
            let card = &mut s.rate_limit.card_testing;
            card.per_ip = tier(4, 60);
            card.per_fingerprint = tier(2, 3600);
            card.per_disposable_domain = tier(3, 3600);
            card.global = tier(global, 60);
        })
        .await?;
        let new = NewOrganisation {
            name: "Clean Water".into(),
            country: "KE".into(),
            status: "verified".into(),
            ..Default::default()
        };
        let org = app
            .app()
            .actors()
            .organisations()
            .create(&new)
            .await
            .unwrap();
        app.app()
            .actors()
            .organisations()
            .add_fund(&org.id, "Wells", None)
            .await
            .unwrap();
        Some((app, stripe, org.id))
    }

    async fn donate(app: &TestApp, token: &str, org: &str, ip: &str, email: &str) -> (u16, Value) {
        let request = app
            .client
            .post(app.url("/donations"))
            .bearer_auth(token)
            .header("x-forwarded-for", ip)
            .json(&json!({
                "organisation_id": org,
                "amount": 500,
                "currency": "EUR",
                "donor_email": email,
            }));
        app.send(request).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_card_testing_limits_hold_on_donations() {
        let prefix = unique_prefix();
        let (app, stripe, org) = start(&prefix, 100).await;
        let token = app.access_token(&Wallet::random()).await;

        // Per payer fingerprint: the same donor (case and +tags do not matter) twice.
        let (status, body) = donate(&app, &token, &org, "198.51.100.1", "a@example.com").await;
        assert_eq!(status, 201, "{body}");
        assert!(body["data"]["client_secret"].as_str().is_some(), "{body}");
        let (status, _) = donate(&app, &token, &org, "198.51.100.2", "A+x@Example.com").await;
        assert_eq!(status, 201);
        let (status, body) = donate(&app, &token, &org, "198.51.100.3", "a@example.com").await;
        assert_error(status, &body, 429, "rate_limit_exceeded", None);
        assert!(
            body["error"]["retry_after"].as_u64().unwrap() > 60,
            "{body}"
        );

        // Per disposable domain: three donors at one, then refused; other domains go on.
        for n in 0..3 {
            let email = format!("d{n}@yopmail.com");
            let ip = format!("198.51.100.{}", 10 + n);
            assert_eq!(donate(&app, &token, &org, &ip, &email).await.0, 201);
        }
        let (status, _) = donate(&app, &token, &org, "198.51.100.20", "d9@yopmail.com").await;
        assert_eq!(status, 429);
        let (status, _) = donate(&app, &token, &org, "198.51.100.20", "d9@example.org").await;
        assert_eq!(status, 201);

        // Per IP: four from one address whoever donates, then refused.
        for n in 1..4 {
            let email = format!("ip{n}@example.net");
            assert_eq!(
                donate(&app, &token, &org, "198.51.100.20", &email).await.0,
                201
            );
        }
        let (status, _) = donate(&app, &token, &org, "198.51.100.20", "ip9@example.net").await;
        assert_eq!(status, 429);

        // Each refusal reached no payment: only the admitted donations made PaymentIntents.
        assert_eq!(stripe.payment_intents().len(), 9);
        let text = get(&app, "/metrics").await.text().await.unwrap();
        for reason in ["card_fingerprint", "email_domain", "card_ip"] {
            let series = format!(
                r#"ratelimit_blocked_total{{endpoint="/donations",identifier_type="user",reason="{reason}"}}"#
            );
            assert!(text.contains(&series), "{series} missing");
        }
        app.stop().await;
    }

    on_both_databases!(unauthenticated_requests_do_not_spend_the_global_donation_budget);

    /// Anonymous or malformed donation requests are refused before the platform-wide and
    /// fingerprint budgets are spent, so they cannot starve a signed-in donor.
    async fn unauthenticated_requests_do_not_spend_the_global_donation_budget(backend: Backend) {
        let prefix = unique_prefix();
        let Some((app, stripe, org)) = start_on(backend, &prefix, 20).await else {
            return;
        };
        for n in 0..25 {
            let request = app
                .client
                .post(app.url("/donations"))
                .header("x-forwarded-for", format!("203.0.113.{}", n + 1))
                .json(&json!({
                    "organisation_id": org,
                    "amount": 500,
                    "currency": "EUR",
                    "donor_email": "victim@example.com",
                }));
            let (status, _) = app.send(request).await;
            assert_eq!(status, 401);
        }
        let token = app.access_token(&Wallet::random()).await;
        // Invalid donations (within the donor's own tier of 20).
        for n in 0..10 {
            let (status, _) = app
                .send(
                    app.client
                        .post(app.url("/donations"))
                        .bearer_auth(&token)
                        .header("x-forwarded-for", format!("203.0.113.{}", n + 100))
                        .json(&json!({"organisation_id": org, "amount": 0, "currency": "EUR", "donor_email": "victim@example.com"})),
                )
                .await;
            assert_eq!(status, 400);
        }
        let (status, body) =
            donate(&app, &token, &org, "198.51.100.50", "victim@example.com").await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(stripe.payment_intents().len(), 1);
        app.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_platform_wide_donation_limit_holds_across_donors_and_addresses() {
        let prefix = unique_prefix();
        let (app, _stripe, org) = start(&prefix, 2).await;
        let token = app.access_token(&Wallet::random()).await;
        assert_eq!(
            donate(&app, &token, &org, "203.0.113.1", "g1@example.com")
                .await
                .0,
            201
        );
        assert_eq!(
            donate(&app, &token, &org, "203.0.113.2", "g2@example.com")
                .await
                .0,
            201
        );
        let (status, body) = donate(&app, &token, &org, "203.0.113.3", "g3@example.com").await;
        assert_error(status, &body, 429, "rate_limit_exceeded", None);
        app.stop().await;
    }
}
