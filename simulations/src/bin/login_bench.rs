//! Login benchmark: N concurrent wallets run `/authorize` → sign → `/authorize/jwt` →
//! `GET /user` against the real server (SQLite by default, on loopback), then hammer
//! `GET /user` with valid tokens, then the same clients hit a bare hyper handler that answers
//! 200, measured in the same run on the same cores. Prints logins per second, p50/p99 latency
//! and the ratio against bare hyper.
//!
//!     cargo run --release -p ampflow-simulations --bin login_bench -- --clients 64 --seconds 10

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use ampflow_http::config::{Secret, Settings};
use ampflow_http::{StartOptions, start};
use ampflow_simulations::client::Connection;
use ampflow_simulations::flows::wallet;
use ampflow_simulations::stats::Latencies;
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::SeedableRng;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// Concurrent virtual wallets.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seed for the wallets' keys (printed, so a run can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// Database to run on; a fresh SQLite file in a temporary folder by default.
    #[arg(long)]
    database_url: Option<String>,
    /// Worker threads of the server runtime (the load generator gets the same number).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Every login uses a new wallet (a first login: the user is created). By default each
    /// client is one wallet that logs in again and again.
    #[arg(long)]
    fresh_wallets: bool,
    /// Run one phase only (for profiling): logins, user or bare.
    #[arg(long)]
    phase: Option<String>,
}

const TARGET_LOGINS_PER_SEC: f64 = 1500.0;
const TARGET_P99_MS: f64 = 50.0;
const TARGET_USER_VS_BARE: f64 = 0.40;

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    println!(
        "login_bench seed={seed} clients={} seconds={} threads={} wallets={}",
        args.clients,
        args.seconds,
        args.threads,
        if args.fresh_wallets {
            "a new one per login"
        } else {
            "one per client, logging in repeatedly"
        }
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
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        ..Settings::default()
    };
    // Load from one loopback address: the rate limiter (measured by rate_limit_bench) is off,
    // and the per-address connection cap is the total one, so any client count fits.
    settings.rate_limit.enabled = false;
    settings.http.connections_per_ip_max = settings.http.connections_max;
    settings.database.url = Secret::new(args.database_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            folder.path().join("bench.db").display()
        )
    }));
    let app = server_rt
        .block_on(start(settings, StartOptions::default()))
        .context("start ampflow")?;
    let bare_addr = server_rt.block_on(start_bare_hyper())?;
    let duration = Duration::from_secs(args.seconds);

    let wanted = |phase: &str| args.phase.as_deref().is_none_or(|p| p == phase);
    let logins = if wanted("logins") {
        client_rt.block_on(run_logins(
            app.addr,
            args.clients,
            duration,
            seed,
            args.fresh_wallets,
        ))?
    } else {
        LoginFigures {
            per_sec: 0.0,
            login_latency: Latencies::default(),
            request_latency: Latencies::default(),
            errors: 0,
        }
    };
    let user_rps = if wanted("user") {
        client_rt.block_on(run_get_user(app.addr, args.clients, duration, seed))?
    } else {
        0.0
    };
    let bare_rps = if wanted("bare") {
        client_rt.block_on(run_bare(bare_addr, args.clients, duration))?
    } else {
        1.0
    };
    server_rt.block_on(app.shutdown());

    let LoginFigures {
        per_sec,
        mut login_latency,
        mut request_latency,
        errors,
    } = logins;
    let ratio = user_rps / bare_rps;
    println!(
        "full logins:      {per_sec:>10.0} /s   (target >= {TARGET_LOGINS_PER_SEC:.0})  errors={errors}"
    );
    println!(
        "login latency:    p50 {:>7.2} ms   p99 {:>7.2} ms",
        login_latency.percentile_ms(50.0),
        login_latency.percentile_ms(99.0)
    );
    println!(
        "request latency:  p50 {:>7.2} ms   p99 {:>7.2} ms   (target p99 < {TARGET_P99_MS:.0} ms)",
        request_latency.percentile_ms(50.0),
        request_latency.percentile_ms(99.0)
    );
    println!("GET /user:        {user_rps:>10.0} /s");
    println!("bare hyper 200:   {bare_rps:>10.0} /s");
    println!(
        "GET /user / bare: {:>10.1} %   (target >= {:.0} %)",
        ratio * 100.0,
        TARGET_USER_VS_BARE * 100.0
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "targets: logins {}, p99 {}, ratio {}",
        verdict(per_sec >= TARGET_LOGINS_PER_SEC),
        verdict(request_latency.percentile_ms(99.0) < TARGET_P99_MS),
        verdict(ratio >= TARGET_USER_VS_BARE)
    );
    Ok(())
}

struct LoginFigures {
    per_sec: f64,
    login_latency: Latencies,
    request_latency: Latencies,
    errors: usize,
}

async fn login(
    connection: &mut Connection,
    signer: &PrivateKeySigner,
    requests: &mut Latencies,
) -> anyhow::Result<String> {
    let address = format!("{:#x}", signer.address());
    let started = Instant::now();
    let (status, body) = connection
        .request(
            Method::POST,
            "/authorize",
            Some(json!({"address": address}).to_string()),
            None,
        )
        .await?;
    requests.record(started.elapsed());
    if status != StatusCode::OK {
        bail!("/authorize answered {status}");
    }
    let payload: Value = serde_json::from_slice(&body)?;
    let message = payload["payload"].as_str().context("payload")?;
    let signature = signer.sign_message_sync(message.as_bytes())?;
    let signed = format!("0x{}", hex(&signature.as_bytes()));
    let started = Instant::now();
    let (status, body) = connection
        .request(
            Method::POST,
            "/authorize/jwt",
            Some(json!({"address": address, "signed_payload": signed}).to_string()),
            None,
        )
        .await?;
    requests.record(started.elapsed());
    if status != StatusCode::OK {
        bail!("/authorize/jwt answered {status}");
    }
    let tokens: Value = serde_json::from_slice(&body)?;
    Ok(tokens["access_token"]
        .as_str()
        .context("access_token")?
        .to_string())
}

async fn run_logins(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    seed: u64,
    fresh_wallets: bool,
) -> anyhow::Result<LoginFigures> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(i as u64));
                let mut connection = Connection::open(addr).await?;
                let (mut logins, mut requests, mut count, mut errors) =
                    (Latencies::default(), Latencies::default(), 0usize, 0usize);
                let mut signer = wallet(&mut rng);
                while Instant::now() < deadline {
                    if fresh_wallets {
                        signer = wallet(&mut rng);
                    }
                    let begun = Instant::now();
                    let outcome = async {
                        let token = login(&mut connection, &signer, &mut requests).await?;
                        let t = Instant::now();
                        let (status, _) = connection
                            .request(Method::GET, "/user", None, Some(&token))
                            .await?;
                        requests.record(t.elapsed());
                        if status != StatusCode::OK {
                            bail!("GET /user answered {status}");
                        }
                        anyhow::Ok(())
                    }
                    .await;
                    match outcome {
                        Ok(()) => {
                            logins.record(begun.elapsed());
                            count += 1;
                        }
                        Err(error) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("login error: {error:#}");
                            }
                            connection = Connection::open(addr).await?;
                        }
                    }
                }
                anyhow::Ok((count, errors, logins, requests))
            })
        })
        .collect();
    let mut figures = LoginFigures {
        per_sec: 0.0,
        login_latency: Latencies::default(),
        request_latency: Latencies::default(),
        errors: 0,
    };
    let mut total = 0;
    for task in tasks {
        let (count, errors, logins, requests) = task.await??;
        total += count;
        figures.errors += errors;
        figures.login_latency.merge(logins);
        figures.request_latency.merge(requests);
    }
    figures.per_sec = total as f64 / started.elapsed().as_secs_f64();
    Ok(figures)
}

async fn run_get_user(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<f64> {
    let mut tokens = Vec::with_capacity(clients);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut connection = Connection::open(addr).await?;
    for _ in 0..clients {
        tokens.push(
            login(
                &mut connection,
                &wallet(&mut rng),
                &mut Latencies::default(),
            )
            .await?,
        );
    }
    let tokens = Arc::new(tokens);
    hammer(addr, clients, duration, move |i| {
        (Method::GET, "/user", Some(tokens[i].clone()))
    })
    .await
}

async fn run_bare(addr: SocketAddr, clients: usize, duration: Duration) -> anyhow::Result<f64> {
    hammer(addr, clients, duration, |_| (Method::GET, "/", None)).await
}

/// Each client sends its request in a loop until the deadline; answers requests per second.
async fn hammer<F>(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    request: F,
) -> anyhow::Result<f64>
where
    F: Fn(usize) -> (Method, &'static str, Option<String>) + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut connection = Connection::open(addr).await?;
                let (method, path, token) = request(i);
                let mut count = 0usize;
                while Instant::now() < deadline {
                    let (status, _) = connection
                        .request(method.clone(), path, None, token.as_deref())
                        .await?;
                    if status != StatusCode::OK {
                        bail!("{path} answered {status}");
                    }
                    count += 1;
                }
                anyhow::Ok(count)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// The baseline: hyper answering 200 with no routing, middleware or work.
async fn start_bare_hyper() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
