//! Auto-invest benchmarks (issue 4), against the real server in process and a real anvil node,
//! all on loopback. Three phases, chosen with `--phase`:
//!
//! - **drain**: W wallets × C campaigns (1,000 × 10), each wallet funded, whitelisted and
//!   approving every campaign; every wallet signs in once and queues one task per campaign
//!   through `POST /auto_invest/31337/{campaign}`; the executor drains them. Prints the wall
//!   time, the transactions used and the gas per task against a baseline of one
//!   `investFor([record])` transaction per task sent directly (same node, same key, same
//!   campaigns). Checks that every task was invested exactly once, in storage and on chain.
//! - **http**: 64 signed-in clients hammer `POST /auto_invest/…` (new tasks and merges) for N
//!   seconds on PostgreSQL and on SQLite, with the executor parked and live, and a bare hyper
//!   handler as the baseline. Prints requests/s and latency.
//! - **memory**: 100,000 pending tasks in storage, the executor ticking over them; prints the
//!   process's resident memory and the live actors.
//!
//!     cargo run --release -p ampflow-simulations --bin auto_invest_bench -- --phase drain
//!
//! Needs anvil from npm (`scripts/install-evm-tools anvil`) and, for PostgreSQL, `psql` and a
//! server on loopback (a fresh database is created for each run and dropped after).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use ampflow_chain::contracts::{Campaign, InvestService, Issuer, TestStablecoin};
use ampflow_chain::deploy::{DeployedContracts, FaucetFunding, deploy_platform};
use ampflow_chain::tx::{TxSettings, UnsignedTx, sign};
use ampflow_chain::{AutoInvestSettings, ChainSettings};
use ampflow_http::config::{Secret, Settings};
use ampflow_http::{RunningApp, StartOptions, start};
use ampflow_simulations::anvil::{Anvil, CHAIN_ID, DEV_KEY_0};
use ampflow_simulations::client::Connection;
use ampflow_simulations::flows::{bounded, login, wallet};
use ampflow_simulations::logs::{self, LogCounts};
use ampflow_simulations::pgdb::{BenchDb, DbKind, drop_on_ctrl_c};
use ampflow_simulations::procfs::{Memory, load_average, memory};
use ampflow_simulations::rpc_proxy::RpcProxy;
use ampflow_simulations::stats::Latencies;
use ampflow_storage::{
    AutoInvestStatus, AutoInvestSubmit, AutoInvestTask, Keyset, Storage, SubmitOutcome, TaskFilter,
    TxIntentRecord, TxIntentStatus,
};
use ampflow_types::{TokenAmount, WalletAddress};
use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use hyper::{Method, StatusCode};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// Which phase to run; `all` runs memory (first, so its RSS is not inflated by the
    /// others), then drain, then http.
    #[arg(long, value_enum, default_value = "all")]
    phase: Phase,
    /// Seed for keys, amounts and orders (printed, so a run can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads of the server runtime (the load generator gets the same number).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Requests in flight at once for sign-ins and for the drain's POSTs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// drain and memory: count the server's JSON-RPC calls to anvil, and the time they take,
    /// through a proxy on loopback (one more hop per call; for analysis, not for the headline
    /// figures).
    #[arg(long)]
    rpc_stats: bool,
    /// drain and memory: the database. A fresh SQLite file by default; a `postgres://` URL
    /// names a server on loopback where a fresh database is created (and dropped after).
    #[arg(long)]
    database_url: Option<String>,

    // ----- drain -----
    /// drain: wallets, each queuing one task per campaign.
    #[arg(long, default_value_t = 1000)]
    wallets: usize,
    /// drain, memory: campaigns (the platform's own plus new ones, all trusting the
    /// InvestService).
    #[arg(long, default_value_t = 10)]
    campaigns: usize,
    /// drain: the executor's `batch_size` (records per getStatus call and per investFor).
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// drain: the executor's `gas_limit_per_batch` (a batch estimated above it is split);
    /// 10,000,000 by default.
    #[arg(long)]
    gas_limit_per_batch: Option<u64>,
    /// drain: the executor's `tick_interval_ms`.
    #[arg(long, default_value_t = 200)]
    tick_interval_ms: u64,
    /// drain: the executor's `tasks_per_tick`.
    #[arg(long, default_value_t = 1000)]
    tasks_per_tick: usize,
    /// drain: the chain's `tx.poll_interval_ms` (how often the sender looks for receipts).
    #[arg(long, default_value_t = 200)]
    poll_interval_ms: u64,
    /// drain: tasks in the baseline (one investFor transaction each, fresh ready wallets).
    #[arg(long, default_value_t = 200)]
    baseline_tasks: usize,
    /// drain: trace one full server transaction and one baseline transaction (anvil's
    /// callTracer) and print the gas used inside each call, per record.
    #[arg(long)]
    trace_gas: bool,
    /// drain: give up (and fail) if the tasks are not all finished this long after the first
    /// POST.
    #[arg(long, default_value_t = 300)]
    deadline_secs: u64,

    // ----- http -----
    /// http: a PostgreSQL server on loopback (any database on it); a fresh database is
    /// created for each run and dropped after.
    #[arg(long, default_value = "postgres://root@127.0.0.1:5432/test")]
    postgres_url: String,
    /// http: which databases to run on.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "postgres,sqlite"
    )]
    http_databases: Vec<DbKind>,
    /// http: with the executor parked (another holder has its lease: queueing alone), live
    /// (woken by new tasks, looking at them on anvil), or both.
    #[arg(long, value_enum, default_value = "both")]
    http_executor: ExecutorMode,
    /// http: concurrent clients, each a signed-in wallet on its own connection.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// http: length of each measured run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// http: share of requests for a new campaign (a new task); the rest repeat one of the
    /// client's campaigns (a merge).
    #[arg(long, default_value_t = 0.5)]
    new_ratio: f64,
    /// http: the server's database pool size (`database.max_connections`, 16 by default).
    #[arg(long)]
    max_connections: Option<u32>,
    /// http: skip the bare-hyper baseline.
    #[arg(long)]
    no_bare: bool,

    // ----- memory -----
    /// memory: pending tasks to create.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// memory: create them straight through storage (no actors, as if they were queued
    /// earlier) or through HTTP (an actor per task while requests arrive).
    #[arg(long, value_enum, default_value = "storage")]
    memory_via: MemoryVia,
    /// memory: create the tasks this many times over (new wallets each time), each wave
    /// watched as long as `--memory-watch-secs`: with a short `--idle-timeout-ms`, a second
    /// wave tells whether the first wave's memory was freed and reused, or lost.
    #[arg(long, default_value_t = 1)]
    memory_waves: usize,
    /// memory: how long to watch the executor tick over the tasks after they exist.
    #[arg(long, default_value_t = 20)]
    memory_watch_secs: u64,
    /// memory: the executor's `tick_interval_ms` (its `tasks_per_tick` is `--tasks-per-tick`).
    #[arg(long, default_value_t = 1000)]
    memory_tick_interval_ms: u64,
    /// memory: the actors' `idle_timeout_ms` (an actor not called for this long is retired).
    #[arg(long, default_value_t = 120_000)]
    idle_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Drain,
    Http,
    Memory,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExecutorMode {
    Parked,
    Live,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MemoryVia {
    Storage,
    Http,
}

/// One stablecoin (6 decimals).
const USDC: u64 = 1_000_000;
/// Targets from the issue.
const TARGET_GAS_RATIO: f64 = 0.30;
const TARGET_RPS: f64 = 3_000.0;
/// 300 MB, read strictly as 300 × 10^6 bytes (286.1 MiB).
const TARGET_RSS_BYTES: f64 = 300e6;
const PURPOSE: &str = "auto_invest";

/// The anvil node of the running phase, and the database to drop, for the Ctrl-C handler
/// (which ends the process without unwinding, so no guard runs).
static ANVIL_PID: AtomicU32 = AtomicU32::new(0);

struct Runtimes {
    server: tokio::runtime::Runtime,
    client: tokio::runtime::Runtime,
}

/// A target and whether the run met it.
struct Verdict {
    what: String,
    figure: String,
    met: bool,
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    let logs = logs::init();
    println!(
        "auto_invest_bench seed={seed} phase={:?} threads={} (server and load generator in one \
         process, {} tokio workers each; {} cores)",
        args.phase,
        args.threads,
        args.threads,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let rss_at_start = memory();
    let runtimes = Runtimes {
        server: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?,
        client: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?,
    };
    runtimes.client.spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            let pid = ANVIL_PID.load(Ordering::SeqCst);
            if pid != 0 {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            drop_on_ctrl_c();
            std::process::exit(130);
        }
    });

    let phases = match args.phase {
        Phase::All => vec![Phase::Memory, Phase::Drain, Phase::Http],
        one => vec![one],
    };
    let mut verdicts = Vec::new();
    for phase in phases {
        let started = Instant::now();
        println!();
        println!("=== phase {phase:?} (load average {}) ===", load_average());
        let mut phase_verdicts = match phase {
            Phase::Drain => drain::run(&args, seed, &runtimes, &logs)?,
            Phase::Http => http::run(&args, seed, &runtimes, &logs)?,
            Phase::Memory => mem::run(&args, seed, &runtimes, &logs, rss_at_start)?,
            Phase::All => Vec::new(),
        };
        println!(
            "phase {phase:?} took {:.1} s in all (load average now {})",
            started.elapsed().as_secs_f64(),
            load_average()
        );
        verdicts.append(&mut phase_verdicts);
    }
    println!();
    println!("=== targets (seed {seed}) ===");
    for v in &verdicts {
        println!("{:<58} {:<28} {}", v.what, v.figure, verdict(v.met));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shared pieces: anvil, the platform, the database, the server.

/// Starts anvil and registers it for the Ctrl-C handler.
fn start_anvil(rt: &Runtimes) -> anyhow::Result<Anvil> {
    let anvil = rt.client.block_on(Anvil::start())?;
    ANVIL_PID.store(anvil.pid(), Ordering::SeqCst);
    Ok(anvil)
}

fn stop_anvil(anvil: Anvil) {
    ANVIL_PID.store(0, Ordering::SeqCst);
    drop(anvil);
}

/// The platform, owned by dev key 0 (also the server's signer, so investFor's caller check
/// takes the owner's path for the server and for the baseline alike), and `campaigns`
/// campaigns on its stablecoin and issuer, each trusting the InvestService and registered on
/// it (the server's database learns them through [`trust_campaigns`]).
async fn deploy(
    url: &str,
    owner: &PrivateKeySigner,
    campaigns: usize,
) -> anyhow::Result<(DeployedContracts, Vec<Address>)> {
    let contracts = deploy_platform(
        url,
        owner.clone(),
        FaucetFunding {
            reward_wei: U256::from(1u64),
            balance_threshold_wei: U256::from(1u64),
            initial_balance_wei: U256::ZERO,
        },
    )
    .await
    .context("deploy the platform")?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(owner.clone()))
        .connect_http(url.parse()?);
    let mut list = vec![contracts.campaign];
    while list.len() < campaigns {
        let campaign = ampflow_chain::deploy::deploy_campaign(&provider, &contracts)
            .await
            .context("deploy a campaign")?;
        InvestService::new(contracts.invest_service, &provider)
            .setCampaignStatus(campaign, true)
            .send()
            .await?
            .get_receipt()
            .await?;
        list.push(campaign);
    }
    Ok((contracts, list))
}

/// Records campaigns in the server's registry of trusted campaigns (the database's half; the
/// contract's is written by [`deploy`]), as `ampflow chain campaign add` would.
fn trust_campaigns(rt: &Runtimes, app: &RunningApp, campaigns: &[Address]) -> anyhow::Result<()> {
    rt.server
        .block_on(app.actors().trusted().record(
            CHAIN_ID,
            ampflow_types::TrustedKind::Campaign,
            campaigns,
        ))
        .context("trust the campaigns")?;
    Ok(())
}

/// The server's settings: loopback, the database, one chain (anvil) with the contracts and
/// auto-invest as given. reCAPTCHA and Veriff stay off; no faucet.
fn server_settings(
    database_url: &str,
    rpc_url: &str,
    contracts: &DeployedContracts,
    auto_invest: AutoInvestSettings,
    poll_interval_ms: u64,
) -> anyhow::Result<Settings> {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        ..Settings::default()
    };
    // Load from one loopback address: the rate limiter (measured by rate_limit_bench) is off,
    // and the per-address connection cap is the total one, so any client count fits.
    settings.rate_limit.enabled = false;
    settings.http.connections_per_ip_max = settings.http.connections_max;
    settings.database.url = Secret::new(database_url.to_string());
    settings.chains = vec![ChainSettings {
        chain_id: CHAIN_ID,
        name: "anvil".into(),
        rpc_url: rpc_url.to_string(),
        contracts: Some(contracts.clone()),
        auto_invest: Some(auto_invest),
        tx: TxSettings {
            poll_interval_ms,
            ..TxSettings::default()
        },
        ..ChainSettings::default()
    }];
    Ok(settings)
}

fn start_server(
    rt: &Runtimes,
    settings: Settings,
    signer: &PrivateKeySigner,
) -> anyhow::Result<RunningApp> {
    rt.server
        .block_on(start(
            settings,
            StartOptions {
                chain_signers: HashMap::from([(CHAIN_ID, signer.clone())]),
                // The real SystemClock.
                ..StartOptions::default()
            },
        ))
        .context("start ampflow")
}

/// The RPC URL the server is given: anvil's, or a counting proxy's in front of it.
fn server_rpc(
    args: &Args,
    rt: &Runtimes,
    anvil: &Anvil,
) -> anyhow::Result<(String, Option<RpcProxy>)> {
    if !args.rpc_stats {
        return Ok((anvil.url.clone(), None));
    }
    let proxy = rt.client.block_on(RpcProxy::start(&anvil.url))?;
    Ok((proxy.url.clone(), Some(proxy)))
}

fn print_rpc_stats(proxy: &Option<RpcProxy>) {
    if let Some(proxy) = proxy {
        println!(
            "server's RPC calls:     {}",
            RpcProxy::summary(&proxy.take())
        );
    }
}

/// Signs every wallet in (bounded concurrency); answers the access tokens in order.
fn sign_in_all(
    rt: &Runtimes,
    addr: SocketAddr,
    keys: Arc<Vec<PrivateKeySigner>>,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let n = keys.len();
    rt.client
        .block_on(bounded(addr, n, concurrency, move |mut connection, i| {
            let keys = keys.clone();
            async move {
                let token = login(&mut connection, &keys[i]).await?;
                anyhow::Ok((connection, token))
            }
        }))
}

fn random_address(rng: &mut impl RngCore) -> Address {
    let mut bytes = [0u8; 20];
    rng.fill_bytes(&mut bytes);
    Address::from(bytes)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Live tokio tasks on the server's runtime: every actor is one, plus connections, senders,
/// the executor and the chores.
fn server_tasks(rt: &Runtimes) -> usize {
    rt.server.metrics().num_alive_tasks()
}

async fn receipt(provider: &impl Provider, hash: B256) -> anyhow::Result<TransactionReceipt> {
    for _ in 0..500 {
        if let Some(receipt) = provider.get_transaction_receipt(hash).await? {
            return Ok(receipt);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("no receipt for {hash:#x}")
}

async fn set_balances(
    provider: &impl Provider,
    addresses: &[Address],
    balance: U256,
) -> anyhow::Result<()> {
    futures::stream::iter(addresses)
        .map(|address| async move {
            provider
                .raw_request::<_, Value>("anvil_setBalance".into(), (*address, balance))
                .await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 1: drain W × C tasks.

mod drain {
    use super::*;
    use alloy::eips::{BlockId, BlockNumberOrTag};

    /// A wallet the setup prepares: its stablecoin, whitelisted on the issuer, and its
    /// allowances.
    struct Investor {
        key: PrivateKeySigner,
        mint: U256,
        approvals: Vec<(Address, U256)>,
    }

    /// One planned task.
    #[derive(Clone)]
    struct Task {
        wallet: usize,
        campaign: usize,
        amount: U256,
    }

    /// anvil's block gas limit while the setup's transactions are mined (thousands per
    /// block); put back afterwards.
    const SETUP_BLOCK_GAS: u64 = 4_000_000_000;
    /// Setup transactions sent and mined at a time.
    const SETUP_CHUNK: usize = 1000;
    /// Gas money per wallet for its approvals.
    const WALLET_WEI: u64 = 1_000_000_000_000_000_000;

    pub fn run(
        args: &Args,
        seed: u64,
        rt: &Runtimes,
        logs: &LogCounts,
    ) -> anyhow::Result<Vec<Verdict>> {
        ensure!(args.wallets > 0 && args.campaigns > 0, "nothing to drain");
        ensure!(
            args.baseline_tasks > 0,
            "--baseline-tasks must be at least 1"
        );
        let anvil = start_anvil(rt)?;
        let outcome = run_on(args, seed, rt, logs, &anvil);
        stop_anvil(anvil);
        outcome
    }

    fn run_on(
        args: &Args,
        seed: u64,
        rt: &Runtimes,
        logs: &LogCounts,
        anvil: &Anvil,
    ) -> anyhow::Result<Vec<Verdict>> {
        let url = anvil.url.clone();
        let owner: PrivateKeySigner = DEV_KEY_0.parse()?;
        let (w, c) = (args.wallets, args.campaigns);
        println!(
            "drain: {w} wallets x {c} campaigns = {} tasks; batch_size={} tick_interval_ms={} \
             tasks_per_tick={} tx.poll_interval_ms={} baseline_tasks={} (other auto_invest \
             settings at their defaults)",
            w * c,
            args.batch_size,
            args.tick_interval_ms,
            args.tasks_per_tick,
            args.poll_interval_ms,
            args.baseline_tasks
        );

        // The plan: keys, amounts (1 to 1,000 stablecoins), the POST order.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let keys: Vec<PrivateKeySigner> = (0..w).map(|_| wallet(&mut rng)).collect();
        let mut tasks = Vec::with_capacity(w * c);
        for wallet in 0..w {
            for campaign in 0..c {
                tasks.push(Task {
                    wallet,
                    campaign,
                    amount: U256::from(USDC * rng.random_range(1..=1000u64)),
                });
            }
        }
        let baseline_keys: Vec<PrivateKeySigner> =
            (0..args.baseline_tasks).map(|_| wallet(&mut rng)).collect();
        let baseline: Vec<Task> = (0..args.baseline_tasks)
            .map(|b| Task {
                wallet: b,
                campaign: b % c,
                amount: U256::from(USDC * rng.random_range(1..=1000u64)),
            })
            .collect();
        let mut order: Vec<usize> = (0..tasks.len()).collect();
        order.shuffle(&mut rng);

        // Setup (not measured): contracts, then every wallet funded, whitelisted and
        // approving, mined many transactions to a block.
        let setup_started = Instant::now();
        let (contracts, campaigns) = rt.client.block_on(deploy(&url, &owner, c))?;
        let deployed = setup_started.elapsed();
        // Each wallet holds twice what it invests in all, and allows each campaign twice its
        // task's amount: the investments take balance and allowance from non-zero to non-zero,
        // as for an investor who keeps some of both.
        let mut investors: Vec<Investor> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let own = &tasks[i * c..(i + 1) * c];
                Investor {
                    key: key.clone(),
                    mint: own.iter().map(|t| t.amount).sum::<U256>() * U256::from(2u64),
                    approvals: own
                        .iter()
                        .map(|t| (campaigns[t.campaign], t.amount * U256::from(2u64)))
                        .collect(),
                }
            })
            .collect();
        investors.extend(baseline.iter().map(|t| Investor {
            key: baseline_keys[t.wallet].clone(),
            mint: t.amount * U256::from(2u64),
            approvals: vec![(campaigns[t.campaign], t.amount * U256::from(2u64))],
        }));
        let (setup_txs, setup_blocks) = rt
            .client
            .block_on(prepare(&url, &owner, &contracts, &investors))?;
        let setup = setup_started.elapsed();
        println!(
            "setup (not measured): {:.1} s — contracts and {} campaigns {:.1} s, then {} wallets \
             funded, whitelisted and approving: {setup_txs} transactions in {setup_blocks} blocks",
            setup.as_secs_f64(),
            campaigns.len(),
            deployed.as_secs_f64(),
            investors.len()
        );

        // The server.
        let db = BenchDb::from_arg(args.database_url.as_deref())?;
        let defaults = AutoInvestSettings::default();
        let auto_invest = AutoInvestSettings {
            batch_size: args.batch_size,
            tick_interval_ms: args.tick_interval_ms,
            tasks_per_tick: args.tasks_per_tick,
            gas_limit_per_batch: args
                .gas_limit_per_batch
                .unwrap_or(defaults.gas_limit_per_batch),
            ..defaults
        };
        let (rpc_url, proxy) = server_rpc(args, rt, anvil)?;
        let settings = server_settings(
            &db.url,
            &rpc_url,
            &contracts,
            auto_invest.clone(),
            args.poll_interval_ms,
        )?;
        let nonce_before = rt.client.block_on(nonce_of(&url, owner.address()))?;
        logs.take();
        let app = start_server(rt, settings, &owner)?;
        trust_campaigns(rt, &app, &campaigns)?;
        let storage = app.storage().clone();

        let keys = Arc::new(keys);
        let started = Instant::now();
        let tokens = Arc::new(sign_in_all(rt, app.addr, keys.clone(), args.concurrency)?);
        let logins = started.elapsed();

        // Every task through HTTP, in a random order, 64 in flight; the drain starts with the
        // first POST.
        let requests: Arc<Vec<(usize, String, String)>> = Arc::new(
            order
                .iter()
                .map(|&t| {
                    let task = &tasks[t];
                    (
                        task.wallet,
                        format!("/auto_invest/{CHAIN_ID}/{:#x}", campaigns[task.campaign]),
                        json!({"amount": task.amount.to_string()}).to_string(),
                    )
                })
                .collect(),
        );
        let first_post = Instant::now();
        let first_post_ms = unix_ms();
        let posted = rt.client.block_on(bounded(
            app.addr,
            requests.len(),
            args.concurrency,
            move |mut connection, i| {
                let (requests, tokens) = (requests.clone(), tokens.clone());
                async move {
                    let (wallet, path, body) = &requests[i];
                    let t = Instant::now();
                    let (status, answer) = connection
                        .request(
                            Method::POST,
                            path,
                            Some(body.clone()),
                            Some(&tokens[*wallet]),
                        )
                        .await?;
                    let took = t.elapsed();
                    if status != StatusCode::OK {
                        bail!(
                            "POST {path} answered {status}: {}",
                            String::from_utf8_lossy(&answer)
                        );
                    }
                    let answer: Value = serde_json::from_slice(&answer)?;
                    ensure!(
                        answer["status"] == "pending",
                        "a new task is not pending: {answer}"
                    );
                    let id = answer["id"].as_str().context("task id")?.to_string();
                    anyhow::Ok((connection, (id, took)))
                }
            },
        ))?;
        let posts = first_post.elapsed();
        let mut post_latency = Latencies::default();
        let mut ids = vec![String::new(); tasks.len()];
        for (i, (id, took)) in posted.into_iter().enumerate() {
            post_latency.record(took);
            ids[order[i]] = id;
        }

        let deadline = first_post + Duration::from_secs(args.deadline_secs);
        let finished = rt.server.block_on(wait_drained(&storage, &ids, deadline))?;
        let drain_seen = first_post.elapsed();
        let intents = rt.server.block_on(
            storage
                .chain()
                .tx_intents_for_purpose(PURPOSE, intent_limit(tasks.len())),
        )?;
        rt.server.block_on(app.shutdown());
        let log = logs.take();
        let db_label = db.label.clone();
        drop(db);

        // Storage: every task succeeded with its whole amount.
        let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
        let mut last_finished = 0;
        let mut task_latency = Latencies::default();
        let mut attempts_used = 0u32;
        for (task, record) in tasks.iter().zip(&finished) {
            *statuses.entry(record.status.as_str()).or_default() += 1;
            ensure!(
                record.wallet.as_alloy() == keys[task.wallet].address()
                    && record.campaign.as_alloy() == campaigns[task.campaign],
                "task {} is for another wallet or campaign",
                record.id
            );
            attempts_used = attempts_used.max(record.attempts);
            if record.status != AutoInvestStatus::Success {
                continue;
            }
            ensure!(
                record.amount == task.amount.to_string()
                    && record.invested_amount == Some(record.amount),
                "task {} invested {:?} of {}",
                record.id,
                record.invested_amount,
                record.amount
            );
            let done = record.finished_at_ms.context("success without a time")?;
            last_finished = last_finished.max(done);
            task_latency.record(Duration::from_millis(
                done.saturating_sub(record.created_at_ms).max(0) as u64,
            ));
        }
        ensure!(
            statuses.get("success") == Some(&tasks.len()),
            "not every task succeeded: {statuses:?}"
        );
        let drain =
            Duration::from_millis(last_finished.saturating_sub(first_post_ms).max(0) as u64);

        // The chain: transactions, gas, one InvestFor success per task, the campaigns' totals
        // and the wallets' balances; then the baseline.
        let chain = rt.client.block_on(check_chain(
            &url,
            &owner,
            &contracts,
            &campaigns,
            &keys,
            &investors,
            &tasks,
            &intents,
            nonce_before,
        ))?;
        let started = Instant::now();
        let (baseline_gas, baseline_hashes) = rt.client.block_on(send_baseline(
            &url,
            &owner,
            &contracts,
            &campaigns,
            &baseline_keys,
            &baseline,
        ))?;
        let baseline_send = started.elapsed();

        // Figures.
        let n = tasks.len() as f64;
        let per_task = chain.gas as f64 / n;
        let baseline_per_task = baseline_gas as f64 / baseline.len() as f64;
        let ratio = per_task / baseline_per_task;
        let sizes: Vec<usize> = chain.txs.iter().map(|t| t.records).collect();
        let full = sizes.iter().filter(|s| **s >= args.batch_size).count();
        let mut stages = IntentStages::default();
        for intent in &intents {
            stages.add(intent);
        }
        println!("--- drain results (seed {seed}) ---");
        println!(
            "tasks:                  {} ({} wallets x {} campaigns), all success with their whole \
             amount, each exactly one InvestFor success on chain; campaigns' totalFundsRaised and \
             wallets' stablecoin balances match; most attempts used by a task: {attempts_used}",
            tasks.len(),
            w,
            c
        );
        println!("database:               {db_label}");
        println!(
            "batch size:             {} (gas_limit_per_batch {})",
            args.batch_size, auto_invest.gas_limit_per_batch
        );
        println!(
            "transactions used:      {} (executor nonce delta; {} intents {:?}; {} receipts)",
            chain.nonce_delta,
            intents.len(),
            intent_statuses(&intents),
            chain.txs.len()
        );
        println!(
            "tasks per tx:           {:.2} (min {}, max {}, {} of {} full; sizes {})",
            n / chain.txs.len().max(1) as f64,
            sizes.iter().min().copied().unwrap_or(0),
            sizes.iter().max().copied().unwrap_or(0),
            full,
            sizes.len(),
            size_histogram(&sizes)
        );
        if chain.refused > 0 {
            println!(
                "refused records:        {} ({:?})",
                chain.refused, chain.refusals
            );
        }
        println!("total gas:              {}", chain.gas);
        println!("gas per task:           {per_task:.0}");
        println!(
            "baseline gas per task:  {baseline_per_task:.0} (one investFor([record]) transaction \
             per task, {} tasks, {} gas, same key and campaigns, fresh ready wallets)",
            baseline.len(),
            baseline_gas
        );
        if let Some((fixed, per_record)) = fit(&chain.txs) {
            println!(
                "server tx gas fit:      {fixed:.0} + {per_record:.0} per record (least squares \
                 over its transactions); the per-record part alone is {:.1} % of the baseline",
                per_record / baseline_per_task * 100.0
            );
        }
        println!(
            "ratio:                  {:.1} % of the baseline (target <= {:.0} %: {})",
            ratio * 100.0,
            TARGET_GAS_RATIO * 100.0,
            verdict(ratio <= TARGET_GAS_RATIO)
        );
        println!(
            "sign-ins:               {w} in {:.2} s (not part of the drain)",
            logins.as_secs_f64()
        );
        println!(
            "POSTs:                  all {} accepted in {:.2} s ({:.0}/s); latency p50 {:.1} ms, \
             p99 {:.1} ms",
            tasks.len(),
            posts.as_secs_f64(),
            n / posts.as_secs_f64().max(0.001),
            post_latency.percentile_ms(50.0),
            post_latency.percentile_ms(99.0)
        );
        println!(
            "drain wall time:        {:.2} s from the first POST to the last task's success \
             ({:.2} s until the poll saw it); {:.0} tasks/s",
            drain.as_secs_f64(),
            drain_seen.as_secs_f64(),
            n / drain.as_secs_f64().max(0.001)
        );
        println!(
            "task queued to success: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            task_latency.percentile_ms(50.0),
            task_latency.percentile_ms(99.0),
            task_latency.percentile_ms(100.0)
        );
        stages.print();
        println!(
            "baseline sent in:       {:.2} s (sequential, after the server stopped)",
            baseline_send.as_secs_f64()
        );
        println!("server log:             {}", LogCounts::summary(&log));
        print_rpc_stats(&proxy);
        if args.trace_gas {
            // A typical full batch: the median gas among the largest (the first batches on
            // each campaign also pay its totals' first writes).
            let largest = chain.txs.iter().map(|t| t.records).max().unwrap_or(0);
            let mut full: Vec<&ServerTx> =
                chain.txs.iter().filter(|t| t.records == largest).collect();
            full.sort_by_key(|t| t.gas);
            let full = full.get(full.len() / 2).context("no server transaction")?;
            let single = *baseline_hashes.first().context("no baseline transaction")?;
            rt.client
                .block_on(print_gas_by_call(&url, (full.hash, full.records), single))?;
        }
        Ok(vec![Verdict {
            what: format!(
                "drain: gas per task <= 30 % of one tx per task (batch {})",
                args.batch_size
            ),
            figure: format!("{:.1} %", ratio * 100.0),
            met: ratio <= TARGET_GAS_RATIO,
        }])
    }

    async fn nonce_of(url: &str, address: Address) -> anyhow::Result<u64> {
        let provider = ProviderBuilder::new().connect_http(url.parse()?);
        Ok(provider.get_transaction_count(address).await?)
    }

    /// Mints, whitelists and approves for every investor: all the transactions signed offline,
    /// sent with automine off and a huge block gas limit, and mined a thousand to a block.
    /// Answers the transactions and the blocks used; fails if any transaction failed.
    async fn prepare(
        url: &str,
        owner: &PrivateKeySigner,
        contracts: &DeployedContracts,
        investors: &[Investor],
    ) -> anyhow::Result<(usize, u64)> {
        let provider = ProviderBuilder::new().connect_http(url.parse()?);
        let gas_limit_before = provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await?
            .context("latest block")?
            .header
            .gas_limit;
        let max_fee = provider.get_gas_price().await? * 4 + 2_000_000_000;
        let tip = 1_000_000_000u128;
        let addresses: Vec<Address> = investors.iter().map(|i| i.key.address()).collect();
        set_balances(&provider, &addresses, U256::from(WALLET_WEI)).await?;

        let stablecoin = TestStablecoin::new(contracts.stablecoin, &provider);
        let issuer = Issuer::new(contracts.issuer, &provider);
        let unsigned = |nonce, to, data: &Bytes, gas_limit| UnsignedTx {
            chain_id: CHAIN_ID.get(),
            nonce,
            to,
            data: data.clone(),
            value: U256::ZERO,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
        };
        let mut raw = Vec::new();
        let mut owner_nonce = provider.get_transaction_count(owner.address()).await?;
        for investor in investors {
            let address = investor.key.address();
            let mint = stablecoin.mint(address, investor.mint);
            raw.push(
                sign(
                    owner,
                    &unsigned(owner_nonce, contracts.stablecoin, mint.calldata(), 150_000),
                )?
                .0,
            );
            let approve_wallet = issuer.approveWallet(address);
            raw.push(
                sign(
                    owner,
                    &unsigned(
                        owner_nonce + 1,
                        contracts.issuer,
                        approve_wallet.calldata(),
                        150_000,
                    ),
                )?
                .0,
            );
            owner_nonce += 2;
            for (nonce, (campaign, allowance)) in investor.approvals.iter().enumerate() {
                let approve = stablecoin.approve(*campaign, *allowance);
                raw.push(
                    sign(
                        &investor.key,
                        &unsigned(
                            nonce as u64,
                            contracts.stablecoin,
                            approve.calldata(),
                            150_000,
                        ),
                    )?
                    .0,
                );
            }
        }

        let _: Value = provider
            .raw_request(
                "anvil_setBlockGasLimit".into(),
                (U256::from(SETUP_BLOCK_GAS),),
            )
            .await?;
        let _: () = provider
            .raw_request("evm_setAutomine".into(), (false,))
            .await?;
        let first = provider.get_block_number().await?;
        // anvil builds a block in time that grows faster than the pool: a thousand
        // transactions at a time, mined before the next thousand are sent. The list keeps each
        // sender's nonces in order, so a chunk never waits for a later one.
        let outcome = async {
            for chunk in raw.chunks(SETUP_CHUNK) {
                futures::stream::iter(chunk)
                    .map(|tx| {
                        let provider = &provider;
                        async move { provider.send_raw_transaction(tx).await.map(|_| ()) }
                    })
                    .buffer_unordered(32)
                    .try_collect::<Vec<()>>()
                    .await?;
                let mut mined = 0;
                loop {
                    let _: Value = provider.raw_request("evm_mine".into(), ()).await?;
                    mined += 1;
                    let status: Value = provider.raw_request("txpool_status".into(), ()).await?;
                    if quantity(&status["pending"]) + quantity(&status["queued"]) == 0 {
                        break;
                    }
                    ensure!(
                        mined < 100,
                        "the setup's transactions do not get mined: {status}"
                    );
                }
            }
            anyhow::Ok(())
        }
        .await;
        // Back to normal whatever happened.
        let _: () = provider
            .raw_request("evm_setAutomine".into(), (true,))
            .await?;
        let _: Value = provider
            .raw_request(
                "anvil_setBlockGasLimit".into(),
                (U256::from(gas_limit_before),),
            )
            .await?;
        outcome?;
        let last = provider.get_block_number().await?;
        let (mut receipts, mut failed) = (0usize, 0usize);
        for block in first + 1..=last {
            let block_receipts = provider
                .get_block_receipts(BlockId::number(block))
                .await?
                .unwrap_or_default();
            receipts += block_receipts.len();
            failed += block_receipts.iter().filter(|r| !r.status()).count();
        }
        ensure!(
            receipts >= raw.len() && failed == 0,
            "setup: {receipts} receipts for {} transactions, {failed} failed",
            raw.len()
        );
        Ok((raw.len(), last - first))
    }

    /// A JSON quantity: "0x1f" or 31.
    fn quantity(value: &Value) -> u64 {
        match value {
            Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or(0),
            Value::Number(n) => n.as_u64().unwrap_or(0),
            _ => 0,
        }
    }

    /// Records in an intent's `investFor` calldata.
    fn records_in(intent: &TxIntentRecord) -> anyhow::Result<usize> {
        let data = alloy::hex::decode(&intent.calldata)?;
        Ok(InvestService::investForCall::abi_decode(&data)
            .context("decode an investFor intent's calldata")?
            .investments
            .len())
    }

    /// Enough rows for every intent of the run, retries and splits included.
    fn intent_limit(tasks: usize) -> u64 {
        tasks as u64 * 2 + 100
    }

    fn intent_statuses(intents: &[TxIntentRecord]) -> BTreeMap<&str, usize> {
        intents.iter().fold(BTreeMap::new(), |mut m, i| {
            *m.entry(i.status.as_str()).or_default() += 1;
            m
        })
    }

    /// "50 x 180, 23 x 1, …": how many transactions carried how many records.
    fn size_histogram(sizes: &[usize]) -> String {
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for s in sizes {
            *counts.entry(*s).or_default() += 1;
        }
        let mut by_size: Vec<_> = counts.into_iter().collect();
        by_size.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        let shown: Vec<String> = by_size
            .iter()
            .take(8)
            .map(|(size, n)| format!("{size} x {n}"))
            .collect();
        let rest = by_size.len().saturating_sub(8);
        if rest > 0 {
            format!("{}, and {rest} other sizes", shown.join(", "))
        } else {
            shown.join(", ")
        }
    }

    /// Waits until every task is finished. Confirmed intents settle their tasks in the same
    /// storage transaction, so one cheap query a round follows the queue; the tasks are read
    /// one by one (by id) only once the confirmed intents carry them all.
    async fn wait_drained(
        storage: &Storage,
        ids: &[String],
        deadline: Instant,
    ) -> anyhow::Result<Vec<AutoInvestTask>> {
        loop {
            let intents = storage
                .chain()
                .tx_intents_for_purpose(PURPOSE, intent_limit(ids.len()))
                .await?;
            let mut by_status: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            for intent in &intents {
                let entry = by_status.entry(intent.status.as_str()).or_default();
                entry.0 += 1;
                entry.1 += records_in(intent)?;
            }
            let settled = by_status
                .get(TxIntentStatus::Confirmed.as_str())
                .map_or(0, |s| s.1);
            if settled >= ids.len() {
                let tasks = read_tasks(storage, ids).await?;
                if tasks.iter().all(|t| !t.status.is_open()) {
                    return Ok(tasks);
                }
            }
            if Instant::now() >= deadline {
                let tasks = read_tasks(storage, ids).await?;
                let statuses = tasks
                    .iter()
                    .fold(BTreeMap::<&str, usize>::new(), |mut m, t| {
                        *m.entry(t.status.as_str()).or_default() += 1;
                        m
                    });
                bail!(
                    "the tasks were not drained in time: tasks by status {statuses:?}; intents \
                     by status (intents, records) {by_status:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn read_tasks(storage: &Storage, ids: &[String]) -> anyhow::Result<Vec<AutoInvestTask>> {
        futures::stream::iter(ids)
            .map(|id| async move {
                storage
                    .auto_invest()
                    .auto_invest_task(id)
                    .await?
                    .with_context(|| format!("task {id} is gone"))
            })
            .buffered(16)
            .try_collect()
            .await
    }

    /// One of the server's transactions, from its receipt.
    struct ServerTx {
        records: usize,
        gas: u64,
        hash: B256,
    }

    struct ChainFigures {
        nonce_delta: u64,
        txs: Vec<ServerTx>,
        gas: u64,
        refused: usize,
        refusals: BTreeMap<String, usize>,
    }

    /// The `InvestFor` events of a receipt, from the InvestService.
    fn invest_events(
        receipt: &TransactionReceipt,
        service: Address,
    ) -> Vec<InvestService::InvestFor> {
        receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == service)
            .filter_map(|log| log.log_decode::<InvestService::InvestFor>().ok())
            .map(|log| log.inner.data)
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    async fn check_chain(
        url: &str,
        owner: &PrivateKeySigner,
        contracts: &DeployedContracts,
        campaigns: &[Address],
        keys: &[PrivateKeySigner],
        investors: &[Investor],
        tasks: &[Task],
        intents: &[TxIntentRecord],
        nonce_before: u64,
    ) -> anyhow::Result<ChainFigures> {
        let provider = ProviderBuilder::new().connect_http(url.parse()?);
        let nonce_delta = provider.get_transaction_count(owner.address()).await? - nonce_before;
        let mut txs = Vec::new();
        let mut gas = 0;
        let (mut refused, mut refusals) = (0, BTreeMap::<String, usize>::new());
        // (investor, campaign) → (successes, invested).
        let mut successes: HashMap<(Address, Address), (usize, U256)> = HashMap::new();
        for intent in intents {
            let hashes = intent.tx_hash.iter().chain(intent.replaced_hashes.iter());
            for hash in hashes {
                let Some(receipt) = provider.get_transaction_receipt(hash.parse()?).await? else {
                    continue;
                };
                let events = invest_events(&receipt, contracts.invest_service);
                for event in &events {
                    if event.success {
                        let entry = successes
                            .entry((event.investor, event.campaign))
                            .or_default();
                        entry.0 += 1;
                        entry.1 += event.invested;
                    } else {
                        refused += 1;
                        *refusals.entry(event.reason.clone()).or_default() += 1;
                    }
                }
                gas += receipt.gas_used;
                txs.push(ServerTx {
                    records: events.len(),
                    gas: receipt.gas_used,
                    hash: receipt.transaction_hash,
                });
                break;
            }
        }
        ensure!(
            txs.len() as u64 == nonce_delta,
            "{} receipts for {nonce_delta} transactions sent: the executor sent something it did \
             not record",
            txs.len()
        );
        let mut raised = vec![U256::ZERO; campaigns.len()];
        let mut spent = vec![U256::ZERO; keys.len()];
        for task in tasks {
            let key = (keys[task.wallet].address(), campaigns[task.campaign]);
            let (count, invested) = successes.remove(&key).unwrap_or_default();
            ensure!(
                count == 1 && invested == task.amount,
                "{key:?}: {count} successful investments of {invested} in all, expected one of {}",
                task.amount
            );
            raised[task.campaign] += task.amount;
            spent[task.wallet] += task.amount;
        }
        ensure!(
            successes.is_empty(),
            "{} investments on chain for no task",
            successes.len()
        );
        for (campaign, expected) in campaigns.iter().zip(&raised) {
            let total = Campaign::new(*campaign, &provider)
                .totalFundsRaised()
                .call()
                .await?;
            ensure!(
                total == *expected,
                "campaign {campaign:#x} raised {total}, expected {expected}"
            );
        }
        let stablecoin = TestStablecoin::new(contracts.stablecoin, &provider);
        let stablecoin = &stablecoin;
        let wrong: Vec<(Address, U256, U256)> =
            futures::stream::iter(keys.iter().zip(&spent).zip(investors))
                .map(|((key, spent), investor)| async move {
                    let balance = stablecoin.balanceOf(key.address()).call().await?;
                    anyhow::Ok((key.address(), balance, investor.mint - *spent))
                })
                .buffer_unordered(16)
                .try_filter(|(_, balance, expected)| futures::future::ready(balance != expected))
                .try_collect()
                .await?;
        ensure!(
            wrong.is_empty(),
            "{} wallets hold the wrong stablecoin balance, e.g. {:?}",
            wrong.len(),
            wrong.first()
        );
        Ok(ChainFigures {
            nonce_delta,
            txs,
            gas,
            refused,
            refusals,
        })
    }

    /// The baseline: one `investFor([record])` per task, from the owner key (the server's
    /// signer), sent directly once the server has stopped. Answers the gas used in all, and
    /// the transactions.
    async fn send_baseline(
        url: &str,
        owner: &PrivateKeySigner,
        contracts: &DeployedContracts,
        campaigns: &[Address],
        keys: &[PrivateKeySigner],
        baseline: &[Task],
    ) -> anyhow::Result<(u64, Vec<B256>)> {
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(owner.clone()))
            .connect_http(url.parse()?);
        let service = InvestService::new(contracts.invest_service, &provider);
        // anvil mines each transaction as it arrives: send them all, then read the receipts.
        let mut hashes = Vec::with_capacity(baseline.len());
        for task in baseline {
            let record = InvestService::InvestmentRecord {
                investor: keys[task.wallet].address(),
                campaign: campaigns[task.campaign],
                amount: task.amount,
            };
            hashes.push(*service.investFor(vec![record]).send().await?.tx_hash());
        }
        let mut gas = 0;
        for (hash, task) in hashes.iter().zip(baseline) {
            let receipt = receipt(&provider, *hash).await?;
            ensure!(receipt.status(), "a baseline transaction reverted");
            let events = invest_events(&receipt, contracts.invest_service);
            ensure!(
                events.len() == 1 && events[0].success && events[0].invested == task.amount,
                "a baseline investment did not go through: {:?}",
                events.first().map(|e| (&e.reason, e.invested))
            );
            gas += receipt.gas_used;
        }
        Ok((gas, hashes))
    }

    /// Gas used inside each call of a transaction (excluding the calls it makes in turn), by
    /// call path, from anvil's callTracer; the top level (`investFor`) includes the intrinsic
    /// 21,000, the calldata and every access cost its CALLs and STATICCALLs pay. Answers the
    /// transaction's gas and (path → (calls, gas)).
    async fn gas_by_call(
        url: &str,
        hash: B256,
    ) -> anyhow::Result<(u64, BTreeMap<String, (usize, u64)>)> {
        let provider = ProviderBuilder::new().connect_http(url.parse()?);
        let trace: Value = provider
            .raw_request(
                "debug_traceTransaction".into(),
                (hash, json!({"tracer": "callTracer"})),
            )
            .await?;
        let mut by_call = BTreeMap::new();
        walk(&trace, "investFor", &mut by_call);
        Ok((quantity(&trace["gasUsed"]), by_call))
    }

    fn walk(frame: &Value, path: &str, out: &mut BTreeMap<String, (usize, u64)>) {
        let children = frame["calls"].as_array().cloned().unwrap_or_default();
        let nested: u64 = children.iter().map(|c| quantity(&c["gasUsed"])).sum();
        let entry = out.entry(path.to_string()).or_default();
        entry.0 += 1;
        entry.1 += quantity(&frame["gasUsed"]).saturating_sub(nested);
        for child in &children {
            let name = function_name(child["input"].as_str().unwrap_or_default());
            walk(child, &format!("{path} > {name}"), out);
        }
    }

    fn function_name(input: &str) -> String {
        let selector = input.get(..10).unwrap_or(input);
        let known: [([u8; 4], &str); 7] = [
            (
                Campaign::investForBeneficiaryCall::SELECTOR,
                "investForBeneficiary",
            ),
            (Campaign::stablecoinCall::SELECTOR, "stablecoin()"),
            (Campaign::issuerCall::SELECTOR, "issuer()"),
            (TestStablecoin::balanceOfCall::SELECTOR, "balanceOf"),
            (TestStablecoin::allowanceCall::SELECTOR, "allowance"),
            (TestStablecoin::transferFromCall::SELECTOR, "transferFrom"),
            (Issuer::isWalletApprovedCall::SELECTOR, "isWalletApproved"),
        ];
        known
            .iter()
            .find(|(s, _)| alloy::hex::encode_prefixed(s) == selector)
            .map_or_else(|| selector.to_string(), |(_, name)| name.to_string())
    }

    /// Gas per record inside each call, for a server batch and a one-record baseline
    /// transaction side by side.
    async fn print_gas_by_call(
        url: &str,
        (batch, records): (B256, usize),
        single: B256,
    ) -> anyhow::Result<()> {
        let (batch_gas, batch_calls) = gas_by_call(url, batch).await?;
        let (single_gas, single_calls) = gas_by_call(url, single).await?;
        let records = records.max(1) as f64;
        println!(
            "gas by call, per record (inside each call, without its own calls; investFor's own \
             share holds the intrinsic 21,000, calldata, the loop, the InvestFor event and the \
             access costs of every call it makes):"
        );
        println!(
            "  {:<58} {:>16} {:>16}",
            "call",
            format!("batch of {records}"),
            "baseline (1)"
        );
        let mut paths: Vec<&String> = batch_calls.keys().chain(single_calls.keys()).collect();
        paths.sort();
        paths.dedup();
        for path in paths {
            let b = batch_calls.get(path).map_or(0, |v| v.1) as f64 / records;
            let s = single_calls.get(path).map_or(0, |v| v.1) as f64;
            println!("  {path:<58} {b:>16.0} {s:>16.0}");
        }
        println!(
            "  {:<58} {:>16.0} {:>16.0}",
            "total",
            batch_gas as f64 / records,
            single_gas as f64
        );
        Ok(())
    }

    /// Least squares gas = fixed + per_record × records, when the sizes vary.
    fn fit(txs: &[ServerTx]) -> Option<(f64, f64)> {
        let n = txs.len() as f64;
        if txs.len() < 2 {
            return None;
        }
        let mean_x = txs.iter().map(|t| t.records as f64).sum::<f64>() / n;
        let mean_y = txs.iter().map(|t| t.gas as f64).sum::<f64>() / n;
        let sxx: f64 = txs
            .iter()
            .map(|t| (t.records as f64 - mean_x).powi(2))
            .sum();
        if sxx < 1e-9 {
            return None;
        }
        let sxy: f64 = txs
            .iter()
            .map(|t| (t.records as f64 - mean_x) * (t.gas as f64 - mean_y))
            .sum();
        let slope = sxy / sxx;
        Some((mean_y - slope * mean_x, slope))
    }

    /// Where an intent's time went: claimed → signed and sent → settled.
    #[derive(Default)]
    struct IntentStages {
        to_sent: Latencies,
        to_settled: Latencies,
    }

    impl IntentStages {
        fn add(&mut self, intent: &TxIntentRecord) {
            if let Some(sent) = intent.sent_at_ms {
                self.to_sent.record(Duration::from_millis(
                    sent.saturating_sub(intent.created_at_ms).max(0) as u64,
                ));
                if intent.status == TxIntentStatus::Confirmed {
                    self.to_settled.record(Duration::from_millis(
                        intent.updated_at_ms.saturating_sub(sent).max(0) as u64,
                    ));
                }
            }
        }

        fn print(&mut self) {
            println!(
                "batch claimed to sent:  p50 {:.0} ms, p99 {:.0} ms; sent to settled: p50 {:.0} \
                 ms, p99 {:.0} ms, max {:.0} ms",
                self.to_sent.percentile_ms(50.0),
                self.to_sent.percentile_ms(99.0),
                self.to_settled.percentile_ms(50.0),
                self.to_settled.percentile_ms(99.0),
                self.to_settled.percentile_ms(100.0)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 2: HTTP queueing throughput.

mod http {
    use std::convert::Infallible;

    use super::*;
    use http_body_util::Full;
    use hyper::Response;
    use hyper_util::rt::TokioIo;

    /// The executor's lease (see docs/architecture.md, "Auto-invest").
    const EXECUTOR_LEASE: &str = "auto_invest:31337";
    /// A tick interval long enough that only new tasks wake the executor.
    const TICK_MS: u64 = 3_600_000;
    /// The per-wallet cap for these runs: each client queues hundreds of tasks.
    const MAX_OPEN: u64 = 1_000_000;
    /// The campaigns new tasks go to: random addresses in the registry of trusted campaigns
    /// (its database half only; nothing is deployed there, so the live executor's `getStatus`
    /// finds them not registered on chain). Each client walks the pool from its own place, so
    /// its first this many new tasks are each for a campaign it has no task for; after that
    /// it only merges.
    const CAMPAIGN_POOL: usize = 512;

    struct Run {
        label: String,
        elapsed: Duration,
        ok: usize,
        created: usize,
        merged: usize,
        errors: BTreeMap<String, usize>,
        latency: Latencies,
        log: BTreeMap<(String, String), usize>,
    }

    impl Run {
        fn rps(&self) -> f64 {
            self.ok as f64 / self.elapsed.as_secs_f64().max(0.001)
        }
    }

    pub fn run(
        args: &Args,
        seed: u64,
        rt: &Runtimes,
        logs: &LogCounts,
    ) -> anyhow::Result<Vec<Verdict>> {
        ensure!(args.clients > 0, "--clients must be at least 1");
        ensure!(
            (0.0..=1.0).contains(&args.new_ratio),
            "--new-ratio is a share between 0 and 1"
        );
        let anvil = start_anvil(rt)?;
        let outcome = run_on(args, seed, rt, logs, &anvil);
        stop_anvil(anvil);
        outcome
    }

    fn run_on(
        args: &Args,
        seed: u64,
        rt: &Runtimes,
        logs: &LogCounts,
        anvil: &Anvil,
    ) -> anyhow::Result<Vec<Verdict>> {
        let owner: PrivateKeySigner = DEV_KEY_0.parse()?;
        let (contracts, _) = rt.client.block_on(deploy(&anvil.url, &owner, 1))?;
        println!(
            "http: {} clients, each a signed-in wallet on its own keep-alive connection, POST \
             /auto_invest/{CHAIN_ID}/{{campaign}} for {} s per run; {:.0} % of the requests for \
             a new campaign (a new task; from a pool of {CAMPAIGN_POOL} random addresses in the \
             registry of trusted campaigns), the rest repeat one of the client's campaigns (a \
             merge). auto_invest: tick_interval_ms={TICK_MS} (only new tasks wake \
             the executor), max_open_per_wallet={MAX_OPEN} (raised from 100: each client queues \
             hundreds), the rest at defaults; database pool {} connections.",
            args.clients,
            args.seconds,
            args.new_ratio * 100.0,
            args.max_connections
                .unwrap_or(Settings::default().database.max_connections)
        );
        let modes: &[ExecutorMode] = match args.http_executor {
            ExecutorMode::Both => &[ExecutorMode::Parked, ExecutorMode::Live],
            ExecutorMode::Parked => &[ExecutorMode::Parked],
            ExecutorMode::Live => &[ExecutorMode::Live],
        };
        let mut runs = Vec::new();
        for (k, kind) in args.http_databases.iter().enumerate() {
            for (m, mode) in modes.iter().enumerate() {
                let run_seed = seed.wrapping_add((k * 16 + m) as u64 * 1_000_003);
                let run = run_once(
                    args, run_seed, rt, logs, anvil, &contracts, &owner, *kind, *mode,
                )?;
                print_run(&run);
                runs.push(run);
            }
        }
        let bare = if args.no_bare {
            None
        } else {
            let addr = rt.server.block_on(start_bare_hyper())?;
            let (count, elapsed) = rt.client.block_on(hammer_bare(
                addr,
                args.clients,
                Duration::from_secs(args.seconds),
            ))?;
            let rps = count as f64 / elapsed.as_secs_f64();
            println!(
                "bare hyper:  {rps:.0} req/s (GET answered 200 by hyper with no routing or work, \
                 same clients, same runtimes)"
            );
            Some(rps)
        };

        println!("--- http results (seed {seed}) ---");
        println!(
            "{:<44} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7}",
            "run", "req/s", "p50 ms", "p99 ms", "created", "merged", "errors"
        );
        let mut verdicts = Vec::new();
        for run in &mut runs {
            let errors: usize = run.errors.values().sum();
            println!(
                "{:<44} {:>9.0} {:>9.2} {:>9.2} {:>8} {:>8} {:>7}{}",
                run.label,
                run.rps(),
                run.latency.percentile_ms(50.0),
                run.latency.percentile_ms(99.0),
                run.created,
                run.merged,
                errors,
                bare.map_or(String::new(), |b| format!(
                    "   {:.1} % of bare hyper",
                    run.rps() / b * 100.0
                ))
            );
            if run.label.starts_with("PostgreSQL") {
                verdicts.push(Verdict {
                    what: format!("http: >= 3,000 req/s, {}", run.label),
                    figure: format!("{:.0} req/s", run.rps()),
                    met: run.rps() >= TARGET_RPS,
                });
            }
        }
        for run in &runs {
            if !run.errors.is_empty() {
                println!("errors in {}: {:?}", run.label, run.errors);
            }
            println!(
                "server log in {}: {}",
                run.label,
                LogCounts::summary(&run.log)
            );
        }
        println!(
            "target >= {TARGET_RPS:.0} req/s on PostgreSQL with {} clients: {}",
            args.clients,
            verdict(verdicts.iter().all(|v| v.met))
        );
        Ok(verdicts)
    }

    fn print_run(run: &Run) {
        let mut latency = run.latency.clone();
        println!(
            "{}: {:.0} req/s ({} answered 200 in {:.2} s: {} new tasks, {} merges), p50 {:.2} ms, \
             p99 {:.2} ms, errors {:?}",
            run.label,
            run.rps(),
            run.ok,
            run.elapsed.as_secs_f64(),
            run.created,
            run.merged,
            latency.percentile_ms(50.0),
            latency.percentile_ms(99.0),
            run.errors
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn run_once(
        args: &Args,
        seed: u64,
        rt: &Runtimes,
        logs: &LogCounts,
        anvil: &Anvil,
        contracts: &DeployedContracts,
        owner: &PrivateKeySigner,
        kind: DbKind,
        mode: ExecutorMode,
    ) -> anyhow::Result<Run> {
        let db = BenchDb::new(kind, &args.postgres_url)?;
        let label = format!(
            "{}, executor {}",
            kind.name(),
            match mode {
                ExecutorMode::Parked => "parked",
                _ => "live",
            }
        );
        let auto_invest = AutoInvestSettings {
            tick_interval_ms: TICK_MS,
            max_open_per_wallet: MAX_OPEN,
            ..AutoInvestSettings::default()
        };
        let mut settings = server_settings(&db.url, &anvil.url, contracts, auto_invest, 1000)?;
        if let Some(pool) = args.max_connections {
            settings.database.max_connections = pool;
        }
        if mode == ExecutorMode::Parked {
            // Another holder has the executor's lease for the whole run: the executor wakes,
            // fails to take it and goes back to sleep, so the run measures queueing alone.
            rt.server.block_on(async {
                let storage = ampflow_http::app::open_storage(&settings).await?;
                let now = unix_ms();
                let taken = storage
                    .leases()
                    .acquire_lease(
                        EXECUTOR_LEASE,
                        &ampflow_storage::LeaseHolder::one_off(),
                        now,
                        now + TICK_MS as i64,
                    )
                    .await?
                    .is_held();
                ensure!(taken, "could not take the executor's lease");
                storage.close().await?;
                anyhow::Ok(())
            })?;
        }
        logs.take();
        let app = start_server(rt, settings, owner)?;
        let outcome = (|| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let pool: Vec<Address> = (0..CAMPAIGN_POOL)
                .map(|_| random_address(&mut rng))
                .collect();
            trust_campaigns(rt, &app, &pool)?;
            let keys: Arc<Vec<PrivateKeySigner>> =
                Arc::new((0..args.clients).map(|_| wallet(&mut rng)).collect());
            let tokens = sign_in_all(rt, app.addr, keys.clone(), args.concurrency)?;
            let (clients, elapsed) = rt.client.block_on(hammer(
                app.addr,
                tokens,
                Arc::new(pool),
                Duration::from_secs(args.seconds),
                args.new_ratio,
                seed,
            ))?;
            // Every new campaign that was answered 200 is one open task; merges made none.
            let storage = app.storage().clone();
            for (key, client) in keys.iter().zip(&clients) {
                let open = rt.server.block_on(count_open(&storage, key.address()))?;
                ensure!(
                    open == client.created,
                    "wallet {:#x} has {open} open tasks, {} were created",
                    key.address(),
                    client.created
                );
            }
            let mut run = Run {
                label: label.clone(),
                elapsed,
                ok: 0,
                created: 0,
                merged: 0,
                errors: BTreeMap::new(),
                latency: Latencies::default(),
                log: BTreeMap::new(),
            };
            for client in clients {
                run.ok += client.created + client.merged;
                run.created += client.created;
                run.merged += client.merged;
                for (error, n) in client.errors {
                    *run.errors.entry(error).or_default() += n;
                }
                run.latency.merge(client.latency);
            }
            anyhow::Ok(run)
        })();
        rt.server.block_on(app.shutdown());
        let mut run = outcome?;
        run.log = logs.take();
        drop(db);
        Ok(run)
    }

    /// The wallet's open tasks, page by page.
    async fn count_open(storage: &Storage, wallet: Address) -> anyhow::Result<usize> {
        let wallet = WalletAddress::from_alloy(wallet);
        let mut cursor: Option<Keyset> = None;
        let mut count = 0;
        loop {
            let page = storage
                .auto_invest()
                .list_auto_invests(
                    CHAIN_ID,
                    TaskFilter::Wallet(wallet),
                    true,
                    cursor.as_ref(),
                    100,
                )
                .await?;
            count += page.len();
            match page.last() {
                Some(last) if page.len() == 100 => {
                    cursor = Some(Keyset {
                        at_ms: last.created_at_ms,
                        id: last.id.clone(),
                    });
                }
                _ => return Ok(count),
            }
        }
    }

    #[derive(Default)]
    struct Client {
        created: usize,
        merged: usize,
        errors: BTreeMap<String, usize>,
        latency: Latencies,
    }

    /// Each client posts in a loop until the deadline: a new campaign (the next of the pool,
    /// from the client's own starting place) with probability `new_ratio`, otherwise one of
    /// its earlier campaigns again.
    async fn hammer(
        addr: SocketAddr,
        tokens: Vec<String>,
        pool: Arc<Vec<Address>>,
        duration: Duration,
        new_ratio: f64,
        seed: u64,
    ) -> anyhow::Result<(Vec<Client>, Duration)> {
        let started = Instant::now();
        let deadline = started + duration;
        let tasks: Vec<_> = tokens
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut rng =
                        rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(7 + i as u64));
                    let start = rng.random_range(0..pool.len());
                    let mut connection = Connection::open(addr).await?;
                    let mut campaigns: Vec<String> = Vec::new();
                    let mut client = Client::default();
                    while Instant::now() < deadline {
                        let new = campaigns.len() < pool.len()
                            && (campaigns.is_empty() || rng.random_bool(new_ratio));
                        let path = if new {
                            let campaign = pool[(start + campaigns.len()) % pool.len()];
                            format!("/auto_invest/{CHAIN_ID}/{campaign:#x}")
                        } else {
                            campaigns[rng.random_range(0..campaigns.len())].clone()
                        };
                        let body = format!(
                            "{{\"amount\":\"{}\"}}",
                            rng.random_range(1..=1_000_000_000u64)
                        );
                        let t = Instant::now();
                        match connection
                            .request(Method::POST, &path, Some(body), Some(&token))
                            .await
                        {
                            Ok((status, answer)) => {
                                client.latency.record(t.elapsed());
                                if status == StatusCode::OK {
                                    if new {
                                        client.created += 1;
                                        campaigns.push(path);
                                    } else {
                                        client.merged += 1;
                                    }
                                } else {
                                    let code = serde_json::from_slice::<Value>(&answer)
                                        .ok()
                                        .and_then(|v| {
                                            v["error"]["code"].as_str().map(str::to_string)
                                        })
                                        .unwrap_or_default();
                                    *client
                                        .errors
                                        .entry(format!("{status} {code}"))
                                        .or_default() += 1;
                                }
                            }
                            Err(error) => {
                                *client
                                    .errors
                                    .entry(format!("transport: {error}"))
                                    .or_default() += 1;
                                connection = Connection::open(addr).await?;
                            }
                        }
                    }
                    anyhow::Ok(client)
                })
            })
            .collect();
        let mut clients = Vec::with_capacity(tasks.len());
        for task in tasks {
            clients.push(task.await??);
        }
        Ok((clients, started.elapsed()))
    }

    /// Same clients against bare hyper: answers the requests answered and the time taken.
    async fn hammer_bare(
        addr: SocketAddr,
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<(usize, Duration)> {
        let started = Instant::now();
        let deadline = started + duration;
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                tokio::spawn(async move {
                    let mut connection = Connection::open(addr).await?;
                    let mut count = 0usize;
                    while Instant::now() < deadline {
                        let (status, _) = connection.request(Method::GET, "/", None, None).await?;
                        ensure!(status == StatusCode::OK, "bare hyper answered {status}");
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
        Ok((total, started.elapsed()))
    }

    /// hyper answering 200 with no routing, middleware or work.
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
                        Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from_static(
                            b"ok",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(addr)
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 3: memory with many pending tasks.

mod mem {
    use super::*;

    /// A week, the default task timeout.
    const TIMEOUT_MS: i64 = 7 * 24 * 3600 * 1000;

    pub fn run(
        args: &Args,
        seed: u64,
        rt: &Runtimes,
        logs: &LogCounts,
        at_start: Memory,
    ) -> anyhow::Result<Vec<Verdict>> {
        ensure!(args.tasks > 0 && args.campaigns > 0, "nothing to create");
        let anvil = start_anvil(rt)?;
        let outcome = run_on(args, seed, rt, logs, &anvil, at_start);
        stop_anvil(anvil);
        outcome
    }

    fn run_on(
        args: &Args,
        seed: u64,
        rt: &Runtimes,
        logs: &LogCounts,
        anvil: &Anvil,
        at_start: Memory,
    ) -> anyhow::Result<Vec<Verdict>> {
        let owner: PrivateKeySigner = DEV_KEY_0.parse()?;
        let c = args.campaigns;
        let n = args.tasks;
        let wallets = n.div_ceil(c);
        let (contracts, campaigns) = rt.client.block_on(deploy(&anvil.url, &owner, c))?;
        let db = BenchDb::from_arg(args.database_url.as_deref())?;
        let auto_invest = AutoInvestSettings {
            tick_interval_ms: args.memory_tick_interval_ms,
            tasks_per_tick: args.tasks_per_tick,
            max_open_per_wallet: AutoInvestSettings::default()
                .max_open_per_wallet
                .max(c as u64),
            ..AutoInvestSettings::default()
        };
        println!(
            "memory: {n} pending tasks ({wallets} wallets x {c} campaigns, none whitelisted, so \
             they stay pending), created through {:?}; database {}; executor tick_interval_ms={} \
             tasks_per_tick={} batch_size={} recheck_interval_ms={}; actors idle_timeout_ms={}",
            args.memory_via,
            db.label,
            auto_invest.tick_interval_ms,
            auto_invest.tasks_per_tick,
            auto_invest.batch_size,
            auto_invest.recheck_interval_ms,
            args.idle_timeout_ms
        );
        let (rpc_url, proxy) = server_rpc(args, rt, anvil)?;
        let mut settings = server_settings(&db.url, &rpc_url, &contracts, auto_invest, 1000)?;
        settings.actors.idle_timeout_ms = args.idle_timeout_ms;
        let before_server = memory();
        logs.take();
        let app = start_server(rt, settings, &owner)?;
        trust_campaigns(rt, &app, &campaigns)?;
        let after_start = memory();

        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let campaigns = Arc::new(campaigns);
        let mut waves: Vec<Wave> = Vec::new();
        let outcome = (|| {
            let mut sample = None;
            for wave in 1..=args.memory_waves.max(1) {
                let started = Instant::now();
                let addresses = create_wave(args, rt, &app, &mut rng, campaigns.clone(), wallets)?;
                let insert = started.elapsed();
                let after_insert = memory();
                let tasks_after_insert = server_tasks(rt);
                let wallet_actors_after_insert = app.actors().wallets().live_count();
                let task_actors_after_insert = app.actors().auto_invest().live_actors();
                println!(
                    "wave {wave}: {n} tasks created in {:.1} s ({:.0}/s); RSS now {:.1} MiB; \
                     server runtime tasks {}; wallet actors {}; auto-invest actors {}",
                    insert.as_secs_f64(),
                    n as f64 / insert.as_secs_f64(),
                    after_insert.rss_mib(),
                    tasks_after_insert,
                    wallet_actors_after_insert,
                    task_actors_after_insert
                );
                // The executor ticks over them: watch the memory.
                let mut max_rss = after_insert;
                let mut last = after_insert;
                let mut tasks_alive = tasks_after_insert;
                for second in 1..=args.memory_watch_secs {
                    std::thread::sleep(Duration::from_secs(1));
                    last = memory();
                    tasks_alive = server_tasks(rt);
                    if last.rss_kib > max_rss.rss_kib {
                        max_rss = last;
                    }
                    if second % 5 == 0 || second == args.memory_watch_secs {
                        println!(
                            "  +{second:>3} s: RSS {:.1} MiB, server runtime tasks {}, wallet \
                             actors {}, auto-invest actors {}",
                            last.rss_mib(),
                            tasks_alive,
                            app.actors().wallets().live_count(),
                            app.actors().auto_invest().live_actors()
                        );
                    }
                }
                waves.push(Wave {
                    after_insert,
                    max_rss,
                    last,
                    tasks_after_insert,
                    tasks_alive,
                    wallet_actors_after_insert,
                    task_actors_after_insert,
                });
                sample.get_or_insert(addresses);
            }
            // The executor looked at them: a sample carries the reason they wait.
            let addresses = sample.context("no wave ran")?;
            let storage = app.storage().clone();
            rt.server.block_on(sample_reasons(
                &storage,
                &addresses[..addresses.len().min(200)],
            ))
        })();
        let wallet_actors = app.actors().wallets().live_count();
        let task_actors = app.actors().auto_invest().live_actors();
        rt.server.block_on(app.shutdown());
        let (sampled, with_reason, reasons) = outcome?;
        let log = logs.take();
        drop(db);
        let peak = memory();
        let first = waves.first().context("no wave ran")?;

        println!("--- memory results (seed {seed}) ---");
        println!(
            "pending tasks:          {n} ({} of {sampled} sampled carry the executor's reason \
             after {} s: {reasons:?})",
            with_reason, args.memory_watch_secs
        );
        println!(
            "RSS (whole process: the server runs in process, with the load generator, anvil's \
             client and the bench's own data; anvil itself is another process):"
        );
        println!("  at process start:     {:.1} MiB", at_start.rss_mib());
        println!("  before the server:    {:.1} MiB", before_server.rss_mib());
        println!("  server started:       {:.1} MiB", after_start.rss_mib());
        println!(
            "  tasks created:        {:.1} MiB",
            first.after_insert.rss_mib()
        );
        println!(
            "  while ticking:        max {:.1} MiB, last {:.1} MiB (over {} s)",
            first.max_rss.rss_mib(),
            first.last.rss_mib(),
            args.memory_watch_secs
        );
        for (i, wave) in waves.iter().enumerate().skip(1) {
            println!(
                "  wave {} ({} pending):  created {:.1} MiB, max {:.1} MiB, last {:.1} MiB",
                i + 1,
                n * (i + 1),
                wave.after_insert.rss_mib(),
                wave.max_rss.rss_mib(),
                wave.last.rss_mib()
            );
        }
        println!(
            "  peak (VmHWM):         {:.1} MiB (any moment of the run, creation included)",
            peak.peak_mib()
        );
        println!(
            "  server's share:       {:.1} MiB over what the process held before the server",
            first.max_rss.rss_mib() - before_server.rss_mib()
        );
        println!(
            "live actors:            wallet actors {wallet_actors} at the end ({} after the first \
             wave); auto-invest actors {task_actors} at the end ({} after the first wave); live \
             tokio tasks on the server runtime (one per actor, plus connections, senders, the \
             executor, chores): {} after the first wave, {} at its end",
            first.wallet_actors_after_insert,
            first.task_actors_after_insert,
            first.tasks_after_insert,
            first.tasks_alive
        );
        println!("server log:             {}", LogCounts::summary(&log));
        print_rpc_stats(&proxy);
        let max_mib = first.max_rss.rss_mib().max(first.after_insert.rss_mib());
        let max_mb = max_mib * 1024.0 * 1024.0 / 1e6;
        let met = max_mb * 1e6 <= TARGET_RSS_BYTES;
        println!(
            "target RSS <= 300 MB (300 x 10^6 bytes) with {n} pending tasks: {max_mib:.1} MiB = \
             {max_mb:.1} MB, {}",
            verdict(met)
        );
        Ok(vec![Verdict {
            what: format!(
                "memory: RSS <= 300 MB, {n} pending (via {:?})",
                args.memory_via
            ),
            figure: format!("{max_mib:.1} MiB ({max_mb:.0} MB)"),
            met,
        }])
    }

    /// What one wave of creation left.
    struct Wave {
        after_insert: Memory,
        max_rss: Memory,
        last: Memory,
        tasks_after_insert: usize,
        tasks_alive: usize,
        wallet_actors_after_insert: usize,
        task_actors_after_insert: usize,
    }

    /// Creates `--tasks` pending tasks for new wallets: task i is wallet i / C, campaign i % C.
    /// Answers the wallets.
    fn create_wave(
        args: &Args,
        rt: &Runtimes,
        app: &RunningApp,
        rng: &mut rand::rngs::StdRng,
        campaigns: Arc<Vec<Address>>,
        wallets: usize,
    ) -> anyhow::Result<Arc<Vec<Address>>> {
        let (n, c) = (args.tasks, campaigns.len());
        let amounts: Arc<Vec<u64>> = Arc::new(
            (0..n)
                .map(|_| USDC * rng.random_range(1..=1000u64))
                .collect(),
        );
        match args.memory_via {
            MemoryVia::Storage => {
                let addresses: Arc<Vec<Address>> =
                    Arc::new((0..wallets).map(|_| random_address(rng)).collect());
                let storage = app.storage().clone();
                rt.server.block_on(insert_through_storage(
                    storage,
                    addresses.clone(),
                    campaigns,
                    amounts,
                ))?;
                Ok(addresses)
            }
            MemoryVia::Http => {
                let started = Instant::now();
                let keys: Arc<Vec<PrivateKeySigner>> =
                    Arc::new((0..wallets).map(|_| wallet(rng)).collect());
                let tokens = Arc::new(sign_in_all(rt, app.addr, keys.clone(), args.concurrency)?);
                println!(
                    "signed in {wallets} wallets in {:.1} s; RSS now {:.1} MiB; server runtime \
                     tasks {}; wallet actors {}",
                    started.elapsed().as_secs_f64(),
                    memory().rss_mib(),
                    server_tasks(rt),
                    app.actors().wallets().live_count()
                );
                rt.client.block_on(bounded(
                    app.addr,
                    n,
                    args.concurrency,
                    move |mut connection, i| {
                        let (tokens, campaigns, amounts) =
                            (tokens.clone(), campaigns.clone(), amounts.clone());
                        async move {
                            let path = format!("/auto_invest/{CHAIN_ID}/{:#x}", campaigns[i % c]);
                            let body = format!("{{\"amount\":\"{}\"}}", amounts[i]);
                            let (status, answer) = connection
                                .request(Method::POST, &path, Some(body), Some(&tokens[i / c]))
                                .await?;
                            ensure!(
                                status == StatusCode::OK,
                                "POST {path} answered {status}: {}",
                                String::from_utf8_lossy(&answer)
                            );
                            anyhow::Ok((connection, ()))
                        }
                    },
                ))?;
                Ok(Arc::new(
                    keys.iter().map(PrivateKeySigner::address).collect(),
                ))
            }
        }
    }

    /// Task i: wallet i / C, campaign i % C; 16 at once.
    async fn insert_through_storage(
        storage: Storage,
        wallets: Arc<Vec<Address>>,
        campaigns: Arc<Vec<Address>>,
        amounts: Arc<Vec<u64>>,
    ) -> anyhow::Result<()> {
        let c = campaigns.len();
        futures::stream::iter(0..amounts.len())
            .map(|i| {
                let (storage, wallets, campaigns, amounts) = (
                    storage.clone(),
                    wallets.clone(),
                    campaigns.clone(),
                    amounts.clone(),
                );
                async move {
                    let now = unix_ms();
                    let outcome = storage
                        .auto_invest()
                        .submit_auto_invest(&AutoInvestSubmit {
                            chain_id: CHAIN_ID,
                            wallet: WalletAddress::from_alloy(wallets[i / c]),
                            campaign: WalletAddress::from_alloy(campaigns[i % c]),
                            amount: TokenAmount::from(u128::from(amounts[i])),
                            now,
                            expires_at_ms: now + TIMEOUT_MS,
                            max_open_per_wallet: c as u64,
                        })
                        .await?;
                    ensure!(
                        matches!(outcome, SubmitOutcome::Created(_)),
                        "task {i} was not created: {outcome:?}"
                    );
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// The open tasks of some wallets: how many, how many with a reason, and the reasons.
    async fn sample_reasons(
        storage: &Storage,
        wallets: &[Address],
    ) -> anyhow::Result<(usize, usize, BTreeMap<String, usize>)> {
        let (mut sampled, mut with_reason) = (0, 0);
        let mut reasons = BTreeMap::new();
        for wallet in wallets {
            let tasks = storage
                .auto_invest()
                .list_auto_invests(
                    CHAIN_ID,
                    TaskFilter::Wallet(WalletAddress::from_alloy(*wallet)),
                    true,
                    None,
                    100,
                )
                .await?;
            for task in tasks {
                ensure!(
                    task.status == AutoInvestStatus::Pending,
                    "task {} is {}",
                    task.id,
                    task.status.as_str()
                );
                sampled += 1;
                if let Some(reason) = task.reason {
                    with_reason += 1;
                    *reasons.entry(reason).or_default() += 1;
                }
            }
        }
        Ok((sampled, with_reason, reasons))
    }
}
