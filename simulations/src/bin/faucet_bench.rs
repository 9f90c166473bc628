//! Faucet benchmark (issue 3): N fresh wallets each sign in and ask the faucet for funds, all
//! at once, against the real server and a real anvil node on loopback. Every request must be
//! paid exactly once (each wallet's balance is checked on chain). Prints the transactions the
//! server used, gas per payout, and the ratio against a baseline of one transaction per payout
//! (`Faucet.faucet([wallet])` sent directly, measured in the same run on the same node), and
//! the wall time to drain the queue.
//!
//!     cargo run --release -p ampflow-simulations --bin faucet_bench -- --wallets 1000 --batch-size 10
//!
//! Needs anvil from npm (`scripts/install-evm-tools anvil`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use ampflow_chain::contracts::Faucet;
use ampflow_chain::deploy::{DeployedContracts, FaucetFunding, deploy_platform};
use ampflow_chain::tx::TxSettings;
use ampflow_chain::{ChainSettings, FaucetSettings};
use ampflow_http::config::{Secret, Settings};
use ampflow_http::{RunningApp, StartOptions, start};
use ampflow_simulations::anvil::{Anvil, CHAIN_ID, DEV_KEY_0};
use ampflow_simulations::flows::{bounded, login, wallet};
use ampflow_simulations::stats::Latencies;
use ampflow_storage::{Storage, TxIntentRecord, TxIntentStatus};
use anyhow::{Context, bail, ensure};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use hyper::{Method, StatusCode};
use rand::{RngCore, SeedableRng};
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Parser, Debug)]
struct Args {
    /// Fresh wallets, each signing in and asking the faucet once.
    #[arg(long, default_value_t = 1000)]
    wallets: usize,
    /// The faucet's `batch_size`: payouts per transaction at most.
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// The faucet's `max_wait_ms`: the longest a request waits for its batch to fill.
    #[arg(long, default_value_t = 2000)]
    max_wait_ms: u64,
    /// The chain's `tx.poll_interval_ms`: how often the sender looks for receipts.
    #[arg(long, default_value_t = 200)]
    poll_interval_ms: u64,
    /// Payouts in the baseline (one transaction each); the number of wallets by default.
    #[arg(long)]
    baseline_payouts: Option<usize>,
    /// Requests in flight at once, for the logins and for the faucet requests.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Give every wallet (the server's and the baseline's) 1 wei first, so no payout creates
    /// an account: shows what the batching itself saves.
    #[arg(long)]
    prefunded: bool,
    /// Seed for the wallets' keys (printed, so a run can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// Database to run on; a fresh SQLite file in a temporary folder by default.
    #[arg(long)]
    database_url: Option<String>,
    /// Worker threads of the server runtime (the load generator gets the same number).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Give up (and fail) if the queue is not drained this long after the first request.
    #[arg(long, default_value_t = 300)]
    deadline_secs: u64,
}

/// 0.01 ETH per payout; the faucet pays wallets below this balance.
const REWARD_WEI: u128 = 10_000_000_000_000_000;
const PREFUND_WEI: u64 = 1;
const TARGET_RATIO: f64 = 0.35;
const PURPOSE: &str = "faucet";

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    let logs = init_logs();
    let baseline_payouts = args.baseline_payouts.unwrap_or(args.wallets);
    ensure!(args.wallets > 0, "--wallets must be at least 1");
    ensure!(
        baseline_payouts > 0,
        "--baseline-payouts must be at least 1"
    );
    println!(
        "faucet_bench seed={seed} wallets={} batch_size={} max_wait_ms={} poll_interval_ms={} \
         baseline_payouts={baseline_payouts} concurrency={} threads={} prefunded={}",
        args.wallets,
        args.batch_size,
        args.max_wait_ms,
        args.poll_interval_ms,
        args.concurrency,
        args.threads,
        args.prefunded
    );

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;

    let anvil = client_rt.block_on(Anvil::start())?;
    // The guard kills anvil on return and on panic; a Ctrl-C ends the process without
    // unwinding, so it kills the node itself.
    let pid = anvil.pid();
    client_rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            std::process::exit(130);
        }
    });
    let outcome = run(
        &args,
        seed,
        baseline_payouts,
        &anvil,
        &server_rt,
        &client_rt,
    );
    drop(anvil);
    let figures = outcome?;
    figures.print(&args, seed, &logs);
    Ok(())
}

/// Counts the server's warnings and errors (they are printed to stderr as they happen).
#[derive(Default)]
struct LogCounts {
    warnings: AtomicUsize,
    errors: AtomicUsize,
}

struct CountLayer(Arc<LogCounts>);

impl<S: tracing::Subscriber> Layer<S> for CountLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        match *event.metadata().level() {
            tracing::Level::ERROR => self.0.errors.fetch_add(1, Ordering::Relaxed),
            tracing::Level::WARN => self.0.warnings.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

fn init_logs() -> Arc<LogCounts> {
    let counts = Arc::new(LogCounts::default());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(CountLayer(counts.clone()).with_filter(tracing_subscriber::filter::LevelFilter::WARN))
        .try_init();
    counts
}

struct Figures {
    server_txs: u64,
    intents: Vec<(TxIntentRecord, usize)>,
    paid_hashes: usize,
    server_gas: u64,
    server_payouts: usize,
    baseline_gas: u64,
    baseline_payouts: usize,
    transfer_gas: u64,
    logins: Duration,
    posts: Duration,
    post_latency: Latencies,
    drain: Duration,
    drain_seen: Duration,
    pay_latency: Latencies,
    baseline_send: Duration,
}

fn run(
    args: &Args,
    seed: u64,
    baseline_payouts: usize,
    anvil: &Anvil,
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Figures> {
    let url = anvil.url.clone();
    let owner: PrivateKeySigner = DEV_KEY_0.parse()?;
    let reward = U256::from(REWARD_WEI);

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let wallets: Vec<PrivateKeySigner> = (0..args.wallets).map(|_| wallet(&mut rng)).collect();
    let baseline_wallets: Vec<Address> = (0..baseline_payouts)
        .map(|_| wallet(&mut rng).address())
        .collect();
    let expected_balance = if args.prefunded {
        reward + U256::from(PREFUND_WEI)
    } else {
        reward
    };

    // The platform, and a faucet funded for both phases.
    let contracts = client_rt.block_on(async {
        let contracts = deploy_platform(
            &url,
            owner.clone(),
            FaucetFunding {
                reward_wei: reward,
                balance_threshold_wei: reward,
                initial_balance_wei: reward * U256::from(args.wallets + baseline_payouts + 10),
            },
        )
        .await
        .context("deploy the platform")?;
        if args.prefunded {
            let all: Vec<Address> = wallets
                .iter()
                .map(PrivateKeySigner::address)
                .chain(baseline_wallets.iter().copied())
                .collect();
            let provider = ProviderBuilder::new().connect_http(url.parse()?);
            set_balances(&provider, &all, U256::from(PREFUND_WEI)).await?;
        }
        anyhow::Ok(contracts)
    })?;
    println!(
        "anvil on {url}; faucet {:#x}; reward {REWARD_WEI} wei",
        contracts.faucet
    );

    let folder = tempfile::tempdir()?;
    let settings = settings(args, &url, &contracts, &folder)?;
    let nonce_before = client_rt.block_on(nonce_of(&url, owner.address()))?;
    let app = server_rt
        .block_on(start(
            settings,
            StartOptions {
                chain_signers: HashMap::from([(CHAIN_ID, owner.clone())]),
                // The real SystemClock.
                ..StartOptions::default()
            },
        ))
        .context("start ampflow")?;

    // Sign-ins first: not part of the drain.
    let wallets = Arc::new(wallets);
    let started = Instant::now();
    let tokens = client_rt.block_on(bounded(app.addr, args.wallets, args.concurrency, {
        let wallets = wallets.clone();
        move |mut connection, i| {
            let wallets = wallets.clone();
            async move {
                let token = login(&mut connection, &wallets[i]).await?;
                anyhow::Ok((connection, token))
            }
        }
    }))?;
    let logins = started.elapsed();

    // Every wallet asks at once (bounded concurrency); the drain starts with the first ask.
    let tokens = Arc::new(tokens);
    let first_post = Instant::now();
    let first_post_ms = unix_ms();
    let asked = client_rt.block_on(bounded(app.addr, args.wallets, args.concurrency, {
        let tokens = tokens.clone();
        move |mut connection, i| {
            let tokens = tokens.clone();
            async move {
                let t = Instant::now();
                let (status, body) = connection
                    .request(
                        Method::POST,
                        &format!("/faucet/{CHAIN_ID}"),
                        Some(json!({"re_captcha_token": null}).to_string()),
                        Some(&tokens[i]),
                    )
                    .await?;
                let took = t.elapsed();
                if status != StatusCode::ACCEPTED {
                    bail!(
                        "POST /faucet answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                let body: Value = serde_json::from_slice(&body)?;
                let id = body["id"].as_str().context("request id")?.to_string();
                anyhow::Ok((connection, (id, took)))
            }
        }
    }))?;
    let posts = first_post.elapsed();
    let mut post_latency = Latencies::default();
    let ids: Vec<String> = asked
        .into_iter()
        .map(|(id, took)| {
            post_latency.record(took);
            id
        })
        .collect();

    let storage = app.storage().clone();
    let deadline = first_post + Duration::from_secs(args.deadline_secs);
    server_rt.block_on(wait_drained(&storage, args.wallets, deadline))?;
    let drain_seen = first_post.elapsed();

    // Exactly once: every request paid the reward, in storage and on chain.
    let (last_settled_ms, pay_latency, paid_hashes) = server_rt.block_on(check_requests(
        &storage,
        &ids,
        &wallets,
        &REWARD_WEI.to_string(),
    ))?;
    let drain = Duration::from_millis(last_settled_ms.saturating_sub(first_post_ms).max(0) as u64);
    let intents = server_rt.block_on(
        storage
            .chain()
            .tx_intents_for_purpose(PURPOSE, intent_limit(args.wallets)),
    )?;
    let intents = intents
        .into_iter()
        .map(|i| {
            let n = wallets_in(&i)?;
            anyhow::Ok((i, n))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    shutdown(server_rt, app);

    let addresses: Vec<Address> = wallets.iter().map(PrivateKeySigner::address).collect();
    let figures = client_rt.block_on(async {
        check_balances(&url, &addresses, expected_balance).await?;
        let server_txs = nonce_of(&url, owner.address()).await? - nonce_before;
        let (mut server_gas, mut server_payouts) = (0u64, 0usize);
        let provider = ProviderBuilder::new().connect_http(url.parse()?);
        for (intent, _) in &intents {
            let Some(hash) = &intent.tx_hash else {
                continue;
            };
            let receipt = receipt(&provider, hash.parse()?).await?;
            let paid = count_events(&receipt, Faucet::FaucetPaid::SIGNATURE_HASH);
            ensure!(
                receipt.status() || paid == 0,
                "a reverted transaction paid someone"
            );
            server_gas += receipt.gas_used;
            server_payouts += paid;
        }
        ensure!(
            server_payouts == args.wallets,
            "FaucetPaid events: {server_payouts}, expected {}",
            args.wallets
        );

        // The server has stopped: the baseline is sent by the same key (the faucet's owner),
        // so both take the same path through the contract's caller check.
        let started = Instant::now();
        let (baseline_gas, transfer_gas) =
            baseline(&url, &owner, &contracts, &baseline_wallets).await?;
        let baseline_send = started.elapsed();
        check_balances(&url, &baseline_wallets, expected_balance).await?;
        anyhow::Ok(Figures {
            server_txs,
            intents,
            paid_hashes,
            server_gas,
            server_payouts,
            baseline_gas,
            baseline_payouts,
            transfer_gas,
            logins,
            posts,
            post_latency,
            drain,
            drain_seen,
            pay_latency,
            baseline_send,
        })
    })?;
    drop(folder);
    Ok(figures)
}

fn settings(
    args: &Args,
    rpc_url: &str,
    contracts: &DeployedContracts,
    folder: &tempfile::TempDir,
) -> anyhow::Result<Settings> {
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
    // reCAPTCHA stays off (no secret). Every request comes from loopback: no per-IP limit.
    settings.chains = vec![ChainSettings {
        chain_id: CHAIN_ID,
        name: "anvil".into(),
        rpc_url: rpc_url.to_string(),
        contracts: Some(contracts.clone()),
        faucet: Some(FaucetSettings {
            batch_size: args.batch_size,
            max_wait_ms: args.max_wait_ms,
            per_ip_max: 0,
            ..FaucetSettings::default()
        }),
        tx: TxSettings {
            poll_interval_ms: args.poll_interval_ms,
            ..TxSettings::default()
        },
        ..ChainSettings::default()
    }];
    Ok(settings)
}

fn shutdown(server_rt: &tokio::runtime::Runtime, app: RunningApp) {
    server_rt.block_on(app.shutdown());
}

/// The wallets a faucet intent pays, from its calldata.
fn wallets_in(intent: &TxIntentRecord) -> anyhow::Result<usize> {
    let data = alloy::hex::decode(&intent.calldata)?;
    Ok(Faucet::faucetCall::abi_decode(&data)
        .context("decode a faucet intent's calldata")?
        .wallets
        .len())
}

/// Waits until confirmed faucet transactions carry `wanted` requests. An intent is confirmed
/// in the same storage transaction that settles its requests, so one cheap query a round
/// follows the whole queue.
async fn wait_drained(storage: &Storage, wanted: usize, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let intents = storage
            .chain()
            .tx_intents_for_purpose(PURPOSE, intent_limit(wanted))
            .await?;
        let mut by_status: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for intent in &intents {
            let entry = by_status.entry(intent.status.as_str()).or_default();
            entry.0 += 1;
            entry.1 += wallets_in(intent)?;
        }
        let settled = by_status
            .get(TxIntentStatus::Confirmed.as_str())
            .map_or(0, |c| c.1);
        if settled >= wanted {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the faucet queue was not drained in time: {settled} of {wanted} requests in \
                 confirmed transactions; intents by status (intents, requests): {by_status:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every request is paid the reward. Answers the last settlement time (Unix ms), each
/// request's time from creation to payment, and the distinct transactions that paid them.
async fn check_requests(
    storage: &Storage,
    ids: &[String],
    wallets: &[PrivateKeySigner],
    reward: &str,
) -> anyhow::Result<(i64, Latencies, usize)> {
    let mut last_settled = 0;
    let mut latencies = Latencies::default();
    let mut hashes = HashSet::new();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for (id, wallet) in ids.iter().zip(wallets) {
        let request = storage
            .chain()
            .faucet_request(id)
            .await?
            .with_context(|| format!("request {id} is gone"))?;
        *statuses.entry(request.status.to_string()).or_default() += 1;
        if request.status != ampflow_storage::RequestStatus::Paid {
            continue;
        }
        ensure!(
            request.address.as_alloy() == wallet.address(),
            "request {id} is for another wallet"
        );
        ensure!(
            request.amount_wei.map(|a| a.to_string()).as_deref() == Some(reward),
            "request {id} paid {:?}",
            request.amount_wei
        );
        let settled = request.settled_at_ms.context("paid without a time")?;
        last_settled = last_settled.max(settled);
        latencies.record(Duration::from_millis(
            settled.saturating_sub(request.created_at_ms).max(0) as u64,
        ));
        hashes.insert(request.tx_hash.context("paid without a transaction")?);
    }
    ensure!(
        statuses.get("paid") == Some(&ids.len()),
        "not every request is paid: {statuses:?}"
    );
    Ok((last_settled, latencies, hashes.len()))
}

async fn nonce_of(url: &str, address: Address) -> anyhow::Result<u64> {
    let provider = ProviderBuilder::new().connect_http(url.parse()?);
    Ok(provider.get_transaction_count(address).await?)
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

/// Each wallet holds exactly `expected` wei: paid once, never twice.
async fn check_balances(url: &str, addresses: &[Address], expected: U256) -> anyhow::Result<()> {
    let provider = ProviderBuilder::new().connect_http(url.parse()?);
    let provider = &provider;
    let wrong: Vec<(Address, U256)> = futures::stream::iter(addresses)
        .map(|address| async move { anyhow::Ok((*address, provider.get_balance(*address).await?)) })
        .buffer_unordered(16)
        .try_filter(|(_, balance)| futures::future::ready(*balance != expected))
        .try_collect()
        .await?;
    ensure!(
        wrong.is_empty(),
        "{} of {} wallets do not hold exactly {expected} wei, e.g. {:?}",
        wrong.len(),
        addresses.len(),
        wrong.first()
    );
    Ok(())
}

async fn receipt(provider: &impl Provider, hash: B256) -> anyhow::Result<TransactionReceipt> {
    for _ in 0..200 {
        if let Some(receipt) = provider.get_transaction_receipt(hash).await? {
            return Ok(receipt);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("no receipt for {hash:#x}")
}

fn count_events(receipt: &TransactionReceipt, topic: B256) -> usize {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| log.topics().first() == Some(&topic))
        .count()
}

/// The baseline: one `faucet([wallet])` transaction per payout, sent directly through alloy
/// once the server has stopped, then a plain ETH transfer for reference. Answers the baseline's total gas
/// and the transfer's gas.
async fn baseline(
    url: &str,
    key: &PrivateKeySigner,
    contracts: &DeployedContracts,
    wallets: &[Address],
) -> anyhow::Result<(u64, u64)> {
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(key.clone()))
        .connect_http(url.parse()?);
    let faucet = Faucet::new(contracts.faucet, &provider);
    // anvil mines each transaction as it arrives: send them all, then read the receipts.
    let mut hashes = Vec::with_capacity(wallets.len());
    for wallet in wallets {
        hashes.push(*faucet.faucet(vec![*wallet]).send().await?.tx_hash());
    }
    let mut gas = 0;
    for hash in hashes {
        let receipt = receipt(&provider, hash).await?;
        ensure!(receipt.status(), "a baseline payout reverted");
        ensure!(
            count_events(&receipt, Faucet::FaucetPaid::SIGNATURE_HASH) == 1,
            "a baseline transaction did not pay"
        );
        gas += receipt.gas_used;
    }
    let mut rng = rand::rng();
    let mut fresh = [0u8; 20];
    rng.fill_bytes(&mut fresh);
    let transfer = TransactionRequest::default()
        .with_to(Address::from(fresh))
        .with_value(U256::from(1));
    let hash = *provider.send_transaction(transfer).await?.tx_hash();
    let transfer_gas = receipt(&provider, hash).await?.gas_used;
    Ok((gas, transfer_gas))
}

/// Enough rows for every faucet intent of the run, retries included.
fn intent_limit(wallets: usize) -> u64 {
    wallets as u64 * 4 + 100
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Figures {
    fn print(mut self, args: &Args, seed: u64, logs: &LogCounts) {
        let sizes: Vec<usize> = self.intents.iter().map(|(_, n)| *n).collect();
        let by_status =
            self.intents
                .iter()
                .fold(BTreeMap::<&str, usize>::new(), |mut m, (i, _)| {
                    *m.entry(i.status.as_str()).or_default() += 1;
                    m
                });
        let full = sizes.iter().filter(|n| **n >= args.batch_size).count();
        let per_payout = self.server_gas as f64 / self.server_payouts as f64;
        let baseline_per_payout = self.baseline_gas as f64 / self.baseline_payouts as f64;
        let ratio = per_payout / baseline_per_payout;
        let drain_s = self.drain.as_secs_f64();

        println!("--- faucet_bench results (seed {seed}) ---");
        println!(
            "wallets:                {} ({} paid, each balance checked on chain: exactly one reward{})",
            args.wallets,
            self.server_payouts,
            if args.prefunded { " + 1 wei" } else { "" }
        );
        println!("batch size:             {}", args.batch_size);
        println!(
            "transactions used:      {} (signer nonce delta; {} faucet intents {:?}, {} distinct tx hashes among paid requests)",
            self.server_txs,
            self.intents.len(),
            by_status,
            self.paid_hashes
        );
        println!(
            "payouts per tx:         {:.2} (min {}, max {}, {} of {} full)",
            self.server_payouts as f64 / self.server_txs.max(1) as f64,
            sizes.iter().min().copied().unwrap_or(0),
            sizes.iter().max().copied().unwrap_or(0),
            full,
            sizes.len()
        );
        println!("total gas:              {}", self.server_gas);
        println!("gas per payout:         {per_payout:.0}");
        println!(
            "baseline gas per payout:{baseline_per_payout:>7.0} (one faucet([wallet]) transaction per payout, {} payouts, {} gas)",
            self.baseline_payouts, self.baseline_gas
        );
        println!(
            "plain ETH transfer:     {} gas (reference)",
            self.transfer_gas
        );
        println!(
            "ratio:                  {:.1} % of the baseline (target <= {:.0} %: {})",
            ratio * 100.0,
            TARGET_RATIO * 100.0,
            if ratio <= TARGET_RATIO {
                "met"
            } else {
                "MISSED"
            }
        );
        println!(
            "sign-ins:               {} in {:.2} s (not part of the drain)",
            args.wallets,
            self.logins.as_secs_f64()
        );
        println!(
            "faucet POSTs:           all accepted in {:.2} s; latency p50 {:.1} ms, p99 {:.1} ms",
            self.posts.as_secs_f64(),
            self.post_latency.percentile_ms(50.0),
            self.post_latency.percentile_ms(99.0)
        );
        println!(
            "drain wall time:        {drain_s:.2} s from the first POST to the last payout settled \
             ({:.2} s until the poll saw it); {:.0} payouts/s",
            self.drain_seen.as_secs_f64(),
            self.server_payouts as f64 / drain_s.max(0.001)
        );
        println!(
            "request to paid:        p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            self.pay_latency.percentile_ms(50.0),
            self.pay_latency.percentile_ms(99.0),
            self.pay_latency.percentile_ms(100.0)
        );
        println!(
            "baseline sent in:       {:.2} s (sequential, same key, after the server stopped)",
            self.baseline_send.as_secs_f64()
        );
        println!(
            "server log:             {} warnings, {} errors (printed above on stderr)",
            logs.warnings.load(Ordering::Relaxed),
            logs.errors.load(Ordering::Relaxed)
        );
    }
}
