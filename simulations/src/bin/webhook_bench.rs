//! Stripe webhook ingestion (issue 5), against the real server in process on a loopback port:
//! N `payment_intent.succeeded` events (Stripe's JSON, signed with Stripe's `Stripe-Signature`
//! scheme) from S concurrent senders, for donations spread over O organisations, on
//! PostgreSQL and on SQLite. Each delivery is answered 200 only once its donation's move and
//! its ledger entry are durable, so events/s is the rate of durable ledger entries.
//!
//! Two runs per database, each on a fresh database and a fresh server:
//! - **group commit**: the product as configured by default: the donation moves (with their
//!   event ids) of the deliveries that arrive together are written in one transaction, and
//!   each organisation's `LedgerActor` hands every entry waiting for it to storage, which
//!   appends the groups of all organisations that arrive together in one transaction;
//! - **naive**: the same server with `database.group_commit = false` and
//!   `actors.ledger_batch_max = 1`, so each event's move and each ledger entry is a
//!   transaction of its own (for the entry: lock the head, insert, move the head, commit), as
//!   a writer without group commit would.
//!
//! The donations (pending, with their PaymentIntent ids) are written through storage before
//! the clock starts. After each run the benchmark checks that every donation succeeded, that
//! there is exactly one `donation_received` entry per event, and that every organisation's
//! chain verifies (`ampflow_types::ledger::verify_export`).
//!
//!     cargo run --release -p ampflow-simulations --bin webhook_bench
//!
//! Needs `psql` and a PostgreSQL server on loopback for the PostgreSQL runs (a fresh database
//! is created for each run and dropped after).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ampflow_http::config::{Secret, Settings};
use ampflow_http::{RunningApp, StartOptions, start};
use ampflow_simulations::client::Connection;
use ampflow_simulations::logs::{self, LogCounts};
use ampflow_simulations::pgdb::{BenchDb, DbKind, drop_on_ctrl_c};
use ampflow_simulations::procfs::load_average;
use ampflow_simulations::stats::Latencies;
use ampflow_standins::stripe::{
    Event, PaymentIntent, PaymentIntentStatus, signature_header, unix_now,
};
use ampflow_storage::{
    DonationRecord, DonationSource, DonationStatus, LedgerRange, OrganisationRecord,
    OrganisationStatus, Storage, prefixed_id,
};
use ampflow_types::ledger::{ExportEntry, LedgerExport, verify_export};
use anyhow::{Context, ensure};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug)]
struct Args {
    /// Events (one per donation) in the group-commit run.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events in the naive run (the same number by default).
    #[arg(long)]
    baseline_events: Option<usize>,
    /// Concurrent senders, each on its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Organisations the donations are spread over (round robin).
    #[arg(long, default_value_t = 100)]
    organisations: usize,
    /// A PostgreSQL server on loopback (any database on it); a fresh database is created for
    /// each run and dropped after.
    #[arg(long, default_value = "postgres://root@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Which databases to run on.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "postgres,sqlite"
    )]
    databases: Vec<DbKind>,
    /// Which runs: group commit, naive, or both (the ratio needs both).
    #[arg(long, value_enum, default_value = "both")]
    mode: ModeArg,
    /// Worker threads of the server runtime (the load generator gets the same number).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The server's database pool size (`database.max_connections`, 16 by default).
    #[arg(long)]
    max_connections: Option<u32>,
    /// Seed for amounts and ids order (printed, so a run can be replayed).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Grouped,
    Naive,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Grouped,
    Naive,
}

/// Targets from the issue.
const TARGET_RATIO: f64 = 3.0;
const TARGET_EVENTS_PER_SEC_POSTGRES: f64 = 3_000.0;
const SECRET_KEY: &str = "sk_test_webhook_bench";
const WEBHOOK_SECRET: &str = "whsec_webhook_bench";
/// Writers used to create the donations before a run (setup, not measured).
const SETUP_CONCURRENCY: usize = 16;
/// Ledger entries read per page while verifying.
const VERIFY_PAGE: u64 = 10_000;

struct Runtimes {
    server: tokio::runtime::Runtime,
    client: tokio::runtime::Runtime,
}

struct RunResult {
    events: usize,
    elapsed: Duration,
    latency: Latencies,
    load_before: String,
    load_after: String,
}

impl RunResult {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    let logs = logs::init();
    println!(
        "webhook_bench seed={seed} events={} senders={} organisations={} threads={} (server and \
         load generator in one process, {} tokio workers each; {} cores)",
        args.events,
        args.senders,
        args.organisations,
        args.threads,
        args.threads,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    ensure!(args.organisations > 0 && args.senders > 0, "nothing to run");
    let rt = Runtimes {
        server: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?,
        client: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?,
    };
    rt.client.spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            drop_on_ctrl_c();
            std::process::exit(130);
        }
    });
    let modes = match args.mode {
        ModeArg::Grouped => vec![Mode::Grouped],
        ModeArg::Naive => vec![Mode::Naive],
        ModeArg::Both => vec![Mode::Grouped, Mode::Naive],
    };
    let mut verdicts = Vec::new();
    for &kind in &args.databases {
        let mut results: HashMap<&'static str, RunResult> = HashMap::new();
        for &mode in &modes {
            let events = match mode {
                Mode::Grouped => args.events,
                Mode::Naive => args.baseline_events.unwrap_or(args.events),
            };
            println!();
            println!(
                "=== {} · {} · {events} events (load average {}) ===",
                kind.name(),
                mode_label(mode),
                load_average()
            );
            let result = run_once(&args, &rt, &logs, kind, mode, events, seed)?;
            let mut latency = result.latency.clone();
            println!(
                "{:<11} {:<13} {:>9.0} events/s  ({} events in {:.2} s)  ack p50 {:>7.1} ms  \
                 p99 {:>7.1} ms  load {} -> {}",
                kind.name(),
                mode_label(mode),
                result.events_per_sec(),
                result.events,
                result.elapsed.as_secs_f64(),
                latency.percentile_ms(50.0),
                latency.percentile_ms(99.0),
                result.load_before,
                result.load_after,
            );
            results.insert(mode_label(mode), result);
        }
        if let (Some(grouped), Some(naive)) = (
            results.get(mode_label(Mode::Grouped)),
            results.get(mode_label(Mode::Naive)),
        ) {
            let ratio = grouped.events_per_sec() / naive.events_per_sec();
            println!(
                "{}: group commit / naive = {ratio:.2}× (target {TARGET_RATIO}×)",
                kind.name()
            );
            verdicts.push((
                format!("{}: group commit ≥ 3× naive", kind.name()),
                format!("{ratio:.2}×"),
                ratio >= TARGET_RATIO,
            ));
        }
        if kind == DbKind::Postgres
            && let Some(grouped) = results.get(mode_label(Mode::Grouped))
        {
            let rate = grouped.events_per_sec();
            verdicts.push((
                "PostgreSQL: ≥ 3,000 events/s".to_string(),
                format!("{rate:.0} events/s"),
                rate >= TARGET_EVENTS_PER_SEC_POSTGRES,
            ));
        }
    }
    println!();
    println!(
        "=== targets (seed {seed}, load average {}) ===",
        load_average()
    );
    for (what, figure, met) in &verdicts {
        println!(
            "{what:<40} {figure:<18} {}",
            if *met { "met" } else { "MISSED" }
        );
    }
    Ok(())
}

fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Grouped => "group commit",
        Mode::Naive => "naive",
    }
}

fn run_once(
    args: &Args,
    rt: &Runtimes,
    logs: &LogCounts,
    kind: DbKind,
    mode: Mode,
    events: usize,
    seed: u64,
) -> anyhow::Result<RunResult> {
    let db = BenchDb::new(kind, &args.postgres_url)?;
    println!("{}", db.label);
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        ..Settings::default()
    };
    // Load from one loopback address: the rate limiter (measured by rate_limit_bench) is off,
    // and the per-address connection cap is the total one, so any client count fits.
    settings.rate_limit.enabled = false;
    settings.http.connections_per_ip_max = settings.http.connections_max;
    settings.database.url = Secret::new(db.url.clone());
    if let Some(pool) = args.max_connections {
        settings.database.max_connections = pool;
    }
    settings.stripe.secret_key = Some(Secret::new(SECRET_KEY.to_string()));
    settings.stripe.webhook_secrets = vec![Secret::new(WEBHOOK_SECRET.to_string())];
    // Never called: the donations already have their PaymentIntents.
    settings.stripe.base_url = "http://127.0.0.1:9".into();
    (
        settings.actors.ledger_batch_max,
        settings.database.group_commit,
    ) = match mode {
        Mode::Grouped => (Settings::default().actors.ledger_batch_max, true),
        Mode::Naive => (1, false),
    };
    logs.take();
    let app: RunningApp = rt
        .server
        .block_on(start(settings, StartOptions::default()))
        .context("start ampflow")?;
    let outcome = (|| {
        let storage = app.storage().clone();
        let setup_started = Instant::now();
        let donations =
            rt.server
                .block_on(create_donations(&storage, args.organisations, events, seed))?;
        let bodies: Vec<Bytes> = donations.iter().map(succeeded_event_body).collect();
        println!(
            "setup: {} organisations, {events} pending donations in {:.1} s",
            args.organisations,
            setup_started.elapsed().as_secs_f64()
        );
        let load_before = load_average();
        let (elapsed, latency) =
            rt.client
                .block_on(send_all(app.addr, Arc::new(bodies), args.senders))?;
        let load_after = load_average();
        let verify_started = Instant::now();
        rt.server
            .block_on(verify(&storage, &donations, args.organisations))?;
        println!(
            "verified in {:.1} s: every donation succeeded, one donation_received entry per \
             event, {} chains verify",
            verify_started.elapsed().as_secs_f64(),
            args.organisations.min(events)
        );
        anyhow::Ok(RunResult {
            events,
            elapsed,
            latency,
            load_before,
            load_after,
        })
    })();
    rt.server.block_on(app.shutdown());
    let seen = logs.take();
    if !seen.is_empty() {
        println!(
            "server warnings/errors: {}",
            logs::LogCounts::summary(&seen)
        );
    }
    drop(db);
    outcome
}

/// Organisations, then one pending donation per event (round robin over them), each with its
/// PaymentIntent id, as `POST /donations` leaves them once Stripe answered.
async fn create_donations(
    storage: &Storage,
    organisations: usize,
    events: usize,
    seed: u64,
) -> anyhow::Result<Vec<DonationRecord>> {
    let now = unix_ms();
    let mut org_ids = Vec::with_capacity(organisations);
    for i in 0..organisations {
        let org = OrganisationRecord {
            id: prefixed_id("org"),
            name: format!("Bench organisation {i}"),
            country: "DE".into(),
            status: OrganisationStatus::Verified,
            description: None,
            website: None,
            logo_url: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        storage.organisations().insert_organisation(&org).await?;
        org_ids.push(org.id);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let donations: Vec<DonationRecord> = (0..events)
        .map(|i| DonationRecord {
            id: prefixed_id("don"),
            organisation_id: org_ids[i % organisations].clone(),
            fund_id: None,
            wallet_address: Some(ampflow_types::WalletAddress::from_alloy(
                alloy::primitives::Address::left_padding_from(&(i % 1000 + 1).to_be_bytes()),
            )),
            amount: rng.random_range(100..=100_000),
            currency: "EUR".into(),
            donor_email: format!("donor{i}@example.org"),
            donor_name: Some(format!("Donor {i}")),
            status: DonationStatus::Pending,
            stripe_payment_intent_id: Some(format!("pi_{:024x}", rng.random::<u128>() >> 32)),
            failure_reason: None,
            created_at_ms: now,
            updated_at_ms: now,
            version: 0,
            source: DonationSource::Stripe,
        })
        .collect();
    futures::stream::iter(donations.iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(SETUP_CONCURRENCY, |d| async move {
            storage
                .donations()
                .insert_donation(d)
                .await
                .context("insert donation")
        })
        .await?;
    Ok(donations)
}

/// The `payment_intent.succeeded` event Stripe sends for the donation's PaymentIntent, as
/// bytes (pretty-printed, as Stripe sends them).
fn succeeded_event_body(donation: &DonationRecord) -> Bytes {
    let id = donation
        .stripe_payment_intent_id
        .clone()
        .unwrap_or_default();
    let created = unix_now();
    let intent = PaymentIntent {
        client_secret: format!("{id}_secret_{}", &donation.id[4..20]),
        id,
        amount: donation.amount,
        currency: donation.currency.to_lowercase(),
        status: PaymentIntentStatus::Succeeded,
        metadata: BTreeMap::from([("donation_id".to_string(), donation.id.clone())]),
        description: Some("Donation".into()),
        receipt_email: Some(donation.donor_email.clone()),
        automatic_payment_methods: Some(true),
        payment_method: Some(prefixed_id("pm")),
        latest_charge: Some(prefixed_id("ch")),
        last_payment_error: None,
        livemode: false,
        created,
        canceled_at: None,
        cancellation_reason: None,
    };
    let event = Event::new(
        "payment_intent.succeeded",
        intent.to_json(),
        false,
        Some(&prefixed_id("req")),
        Some(&donation.id),
    );
    Bytes::from(event.body())
}

/// Posts every body once, from `senders` connections taking the next body as they finish one;
/// each is signed just before it is sent. Answers the wall time from the first send to the
/// last 200 and every delivery's latency.
async fn send_all(
    addr: std::net::SocketAddr,
    bodies: Arc<Vec<Bytes>>,
    senders: usize,
) -> anyhow::Result<(Duration, Latencies)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let bodies = bodies.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut connection = Connection::open(addr).await?;
                let mut latency = Latencies::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        break;
                    };
                    let signature = signature_header(WEBHOOK_SECRET, unix_now(), body);
                    let sent = Instant::now();
                    let (status, answer) = connection
                        .post_with_headers(
                            "/webhooks/stripe",
                            body.clone(),
                            &[("stripe-signature", &signature)],
                        )
                        .await?;
                    latency.record(sent.elapsed());
                    ensure!(
                        status == hyper::StatusCode::OK,
                        "event {i} answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
                anyhow::Ok(latency)
            })
        })
        .collect();
    let mut latency = Latencies::default();
    for task in tasks {
        latency.merge(task.await.context("sender task")??);
    }
    Ok((started.elapsed(), latency))
}

/// Every donation succeeded, each has exactly one `donation_received` entry, nothing else is
/// in the ledgers, and every organisation's chain verifies.
async fn verify(
    storage: &Storage,
    donations: &[DonationRecord],
    organisations: usize,
) -> anyhow::Result<()> {
    let org_ids: Vec<String> = {
        let mut ids: Vec<String> = donations
            .iter()
            .map(|d| d.organisation_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    ensure!(
        org_ids.len() == organisations.min(donations.len()),
        "donations span {} organisations",
        org_ids.len()
    );
    let mut entries_per_donation: HashMap<String, usize> = HashMap::new();
    let mut total = 0usize;
    for org in &org_ids {
        let mut entries = Vec::new();
        let mut after_seq = 0;
        loop {
            let page = storage
                .ledger()
                .ledger_entries(
                    org,
                    LedgerRange {
                        after_seq,
                        ..LedgerRange::default()
                    },
                    VERIFY_PAGE,
                )
                .await?;
            let Some(last) = page.last() else { break };
            after_seq = last.seq;
            entries.extend(page);
        }
        for (i, entry) in entries.iter().enumerate() {
            ensure!(
                entry.seq == i as u64 + 1,
                "ledger of {org}: entry {i} has seq {}",
                entry.seq
            );
            ensure!(
                entry.content.entry_type == "donation_received",
                "ledger of {org}: unexpected entry type {}",
                entry.content.entry_type
            );
            let donation = entry
                .content
                .metadata
                .donation_id
                .clone()
                .context("entry without a donation id")?;
            *entries_per_donation.entry(donation).or_default() += 1;
        }
        total += entries.len();
        let export = LedgerExport {
            downloaded_at: String::new(),
            organisation_id: org.clone(),
            entry_count: entries.len() as u64,
            entries: entries
                .into_iter()
                .map(|e| ExportEntry::new(e.content, e.entry_hash))
                .collect(),
        };
        let count = verify_export(&export).with_context(|| format!("chain of {org}"))?;
        let (head_seq, _) = storage.ledger().ledger_head(org).await?;
        ensure!(
            head_seq == count,
            "ledger head of {org} says {head_seq}, chain has {count}"
        );
    }
    ensure!(
        total == donations.len(),
        "{total} ledger entries for {} events",
        donations.len()
    );
    for d in donations {
        let n = entries_per_donation.get(&d.id).copied().unwrap_or(0);
        ensure!(n == 1, "donation {} has {n} ledger entries", d.id);
    }
    let statuses: Vec<DonationStatus> = futures::stream::iter(donations)
        .map(|d| async move {
            storage
                .donations()
                .donation(&d.id)
                .await?
                .map(|r| r.status)
                .context("donation vanished")
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    let not_succeeded = statuses
        .iter()
        .filter(|s| **s != DonationStatus::Succeeded)
        .count();
    ensure!(
        not_succeeded == 0,
        "{not_succeeded} donations did not succeed"
    );
    Ok(())
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
