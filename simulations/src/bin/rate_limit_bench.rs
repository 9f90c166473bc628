//! Rate-limit benchmark: the cost of a check. The real server answers a cheap, non-exempt
//! endpoint (`GET /.well-known/jwks.json`, served from memory) four times in the same run, on
//! loopback: with rate limiting off (the baseline), with limits in Redis as configured by
//! default (budget leased for large limits, `rate_limit.redis_lease_fraction` 0.1), with limits
//! in Redis checked on every request (leasing off: one Lua script per request) and with limits
//! in memory. For each it measures the latency of one client sending one request after another
//! (the added latency, without queueing) and the throughput of many concurrent clients, and for
//! the Redis modes the script calls Redis ran per request (`INFO commandstats`); then it times
//! the limiter's check alone against Redis. The limit (`--limit`, per minute) is set so high
//! that nothing is refused: the work measured is the check, not a 429.
//!
//!     cargo run --release -p ampflow-simulations --bin rate_limit_bench -- \
//!         --redis-url redis://127.0.0.1:6379/ --clients 32 --seconds 5

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ampflow_http::config::{Secret, Settings};
use ampflow_http::rate_limit::{Check, Limit, Rule, Tier};
use ampflow_http::{StartOptions, start};
use ampflow_simulations::client::Connection;
use ampflow_simulations::stats::Latencies;
use anyhow::{Context, bail};
use clap::Parser;
use hyper::{Method, StatusCode};

#[derive(Parser, Debug)]
struct Args {
    /// Concurrent clients in the throughput phases.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The Redis to measure against (loopback only); without it, the Redis phases are skipped.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Worker threads of the server runtime (the load generator gets the same number).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The public tier's limit per minute (the benchmark's requests share one IP).
    #[arg(long, default_value_t = 1_000_000_000)]
    limit: u64,
}

const PATH: &str = "/.well-known/jwks.json";
const TARGET_ADDED_P50_MS: f64 = 0.3;
const TARGET_RATIO: f64 = 0.80;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Off,
    /// Redis with the default leasing.
    Redis,
    /// Redis, one script per request.
    RedisEach,
    Memory,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Redis => "redis",
            Mode::RedisEach => "redis-each",
            Mode::Memory => "memory",
        }
    }

    fn redis(self) -> bool {
        matches!(self, Mode::Redis | Mode::RedisEach)
    }
}

struct Figures {
    latency: Latencies,
    rps: f64,
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    if let Some(url) = &args.redis_url {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string));
        if !matches!(host.as_deref(), Some("127.0.0.1" | "localhost" | "[::1]")) {
            bail!("the benchmark only uses a loopback Redis");
        }
    }
    let prefix = format!("bench:{}:", rand::random::<u64>());
    println!(
        "rate_limit_bench clients={} seconds={} threads={} limit={}/min redis={} key prefix={prefix}",
        args.clients,
        args.seconds,
        args.threads,
        args.limit,
        if args.redis_url.is_some() {
            "yes"
        } else {
            "no (Redis phases skipped)"
        },
    );
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let folder = tempfile::tempdir()?;
    let duration = Duration::from_secs(args.seconds);

    let mut modes = vec![Mode::Off];
    if args.redis_url.is_some() {
        modes.extend([Mode::Redis, Mode::RedisEach]);
    }
    modes.push(Mode::Memory);
    let mut results = Vec::new();
    for mode in modes {
        // Each mode counts under keys of its own, so one mode's counts do not use up the next
        // one's budget.
        let mode_prefix = format!("{prefix}{}:", mode.label());
        let settings = settings(mode, &args, &mode_prefix, folder.path())?;
        let app = server_rt
            .block_on(start(settings, StartOptions::default()))
            .context("start ampflow")?;
        let scripts_before = match (&args.redis_url, mode.redis()) {
            (Some(url), true) => Some(client_rt.block_on(script_calls(url))?),
            _ => None,
        };
        let (latency, sent) = client_rt.block_on(sequential(app.addr, duration))?;
        let (rps, sent_concurrently) =
            client_rt.block_on(concurrent(app.addr, args.clients, duration))?;
        if let (Some(before), Some(url)) = (scripts_before, &args.redis_url) {
            let calls = client_rt.block_on(script_calls(url))? - before;
            println!(
                "{}: {calls} Redis script calls for {} requests ({:.4} per request)",
                mode.label(),
                sent + sent_concurrently,
                calls as f64 / (sent + sent_concurrently).max(1) as f64
            );
        }
        if mode.redis() {
            let mut check =
                server_rt.block_on(time_checks(&app, &mode_prefix, duration, args.limit))?;
            println!(
                "{}: limiter check alone, one after another: p50 {:.3} ms  p99 {:.3} ms  ({} checks)",
                mode.label(),
                check.percentile_ms(50.0),
                check.percentile_ms(99.0),
                check.len()
            );
            if app.state().rate_limiter().redis_up() != Some(true) {
                bail!("Redis was marked down during the run: the figures are not Redis's");
            }
        }
        server_rt.block_on(app.shutdown());
        results.push((mode, Figures { latency, rps }));
    }
    if let Some(url) = &args.redis_url {
        client_rt.block_on(delete_keys(url, &prefix))?;
    }
    report(&mut results);
    Ok(())
}

fn settings(
    mode: Mode,
    args: &Args,
    prefix: &str,
    folder: &std::path::Path,
) -> anyhow::Result<Settings> {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        ..Settings::default()
    };
    settings.database.url = Secret::new(format!(
        "sqlite://{}?mode=rwc",
        folder.join(format!("{mode:?}.db")).display()
    ));
    settings.rate_limit.enabled = mode != Mode::Off;
    // Every client is on one loopback address: the connection cap must not be what limits.
    settings.http.connections_per_ip_max = settings.http.connections_max;
    settings.rate_limit.key_prefix = prefix.to_string();
    settings.rate_limit.tiers.public = Tier {
        limit: args.limit,
        window_secs: 60,
        fixed: false,
    };
    if mode.redis() {
        settings.redis_url = args.redis_url.clone().map(Secret::new);
    }
    if mode == Mode::RedisEach {
        settings.rate_limit.redis_lease_fraction = 0.0;
    }
    Ok(settings)
}

/// One client, one request after another: latency without queueing, and the requests sent.
async fn sequential(addr: SocketAddr, duration: Duration) -> anyhow::Result<(Latencies, u64)> {
    let mut connection = Connection::open(addr).await?;
    let mut latencies = Latencies::default();
    // Warm-up: connections, the script cache in Redis, allocator.
    const WARM_UP: u64 = 200;
    for _ in 0..WARM_UP {
        connection.request(Method::GET, PATH, None, None).await?;
    }
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let started = Instant::now();
        let (status, _) = connection.request(Method::GET, PATH, None, None).await?;
        latencies.record(started.elapsed());
        if status != StatusCode::OK {
            bail!("{PATH} answered {status}");
        }
    }
    let sent = WARM_UP + latencies.len() as u64;
    Ok((latencies, sent))
}

/// `clients` connections, each sending requests in a loop until the deadline: requests/s, and
/// the requests sent.
async fn concurrent(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(f64, u64)> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(async move {
                let mut connection = Connection::open(addr).await?;
                let mut count = 0usize;
                while Instant::now() < deadline {
                    let (status, _) = connection.request(Method::GET, PATH, None, None).await?;
                    if status != StatusCode::OK {
                        bail!("{PATH} answered {status}");
                    }
                    count += 1;
                }
                anyhow::Ok(count)
            })
        })
        .collect();
    let mut total = 0usize;
    for task in tasks {
        total += task.await??;
    }
    Ok((total as f64 / started.elapsed().as_secs_f64(), total as u64))
}

/// The limiter's check alone, against Redis: one rule plus the auto-block keys, as a request
/// to a public endpoint makes.
async fn time_checks(
    app: &ampflow_http::RunningApp,
    prefix: &str,
    duration: Duration,
    limit: u64,
) -> anyhow::Result<Latencies> {
    let rules = [Rule {
        key: format!("{prefix}ratelimit:ip:192.0.2.1:GET:/bench:60"),
        limit: Limit {
            limit,
            window_ms: 60_000,
            fixed: false,
        },
        reason: "tier",
    }];
    let mut latencies = Latencies::default();
    let deadline = Instant::now() + duration.min(Duration::from_secs(3));
    while Instant::now() < deadline {
        let check = Check {
            rules: &rules,
            auto_block: Some(ampflow_http::rate_limit::AutoBlock {
                block_key: format!("{prefix}ratelimit:block:192.0.2.1"),
                count_key: format!("{prefix}ratelimit:blocks:192.0.2.1"),
                blocks_max: 50,
                window_ms: 60_000,
                duration_ms: 86_400_000,
            }),
        };
        let started = Instant::now();
        app.state().rate_limiter().check(&check).await;
        latencies.record(started.elapsed());
    }
    Ok(latencies)
}

/// How many script calls (`EVALSHA` and `EVAL`) the Redis has run since it started.
async fn script_calls(url: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(url).context("REDIS_URL")?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

async fn delete_keys(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url).context("REDIS_URL")?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await?;
    }
    Ok(())
}

fn report(results: &mut [(Mode, Figures)]) {
    let off_p50 = results
        .iter_mut()
        .find(|(m, _)| *m == Mode::Off)
        .map(|(_, f)| f.latency.percentile_ms(50.0))
        .unwrap_or(0.0);
    let off_rps = results
        .iter()
        .find(|(m, _)| *m == Mode::Off)
        .map(|(_, f)| f.rps)
        .unwrap_or(1.0);
    println!("mode         p50 ms   p99 ms   added p50 ms   req/s      vs off");
    let mut verdicts = Vec::new();
    for (mode, figures) in results.iter_mut() {
        let p50 = figures.latency.percentile_ms(50.0);
        let p99 = figures.latency.percentile_ms(99.0);
        let added = p50 - off_p50;
        let ratio = figures.rps / off_rps;
        println!(
            "{:<11} {p50:>7.3}  {p99:>7.3}  {added:>12.3}  {:>9.0}  {:>6.1} %",
            mode.label(),
            figures.rps,
            ratio * 100.0
        );
        if mode.redis() {
            verdicts.push(format!(
                "{}: added p50 {} (target < {TARGET_ADDED_P50_MS} ms), throughput {} (target >= {:.0} % of off)",
                mode.label(),
                if added < TARGET_ADDED_P50_MS { "met" } else { "MISSED" },
                if ratio >= TARGET_RATIO { "met" } else { "MISSED" },
                TARGET_RATIO * 100.0
            ));
        }
    }
    for verdict in verdicts {
        println!("targets: {verdict}");
    }
}
