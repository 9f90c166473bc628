//! The seeded whole-system fault campaign (see docs/reliability.md): real `ampflow serve`
//! processes on one database and the campaign's own Redis, anvil behind an RPC proxy the
//! campaign controls, and the Stripe, Veriff and reCAPTCHA stand-ins, all on loopback; a
//! workload and an overlapping fault schedule drawn from one seed; and the invariants checked
//! after a quiet period, each with its counts, ending in PASS or FAIL.

pub mod client;
pub mod clock;
pub mod faults;
pub mod infra;
pub mod invariants;
pub mod proxy;
pub mod rng;
pub mod setup;
pub mod timeline;
pub mod workload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ampflow_standins::recaptcha::RecaptchaStandIn;
use ampflow_standins::stripe::StripeStandIn;
use ampflow_standins::veriff::VeriffStandIn;
use anyhow::Context;
use serde_json::json;

use crate::anvil::Anvil;
use crate::pgdb::{BenchDb, DbKind};
use infra::{Node, RedisServer};
use invariants::Check;
use proxy::{Balancer, RpcFaults, RpcMode};
use rng::stream;
use timeline::Timeline;

/// The queues must be empty this long after the last fault was lifted.
pub const DRAIN_MAX: Duration = Duration::from_secs(120);
/// No node's resident memory may go above this.
pub const MEMORY_MAX_MIB: u64 = 512;

pub struct Config {
    pub seed: u64,
    pub duration: Duration,
    pub nodes: usize,
    pub database: DbKind,
    /// The PostgreSQL server the run's fresh database is made on.
    pub postgres_url: String,
    /// The `ampflow` binary (built with `--features failpoints` for fail points to work).
    pub binary: PathBuf,
    /// Node logs, exports and the timeline go here.
    pub dir: PathBuf,
    pub timeline: PathBuf,
    pub wallets: usize,
    pub donors: usize,
    pub investors: usize,
    pub campaigns: usize,
}

/// Everything the run holds; dropped at the end (or on a panic), which kills every process.
struct Rig {
    _db: BenchDb,
    anvil: Anvil,
    stripe: Arc<StripeStandIn>,
    veriff: Arc<VeriffStandIn>,
    recaptcha: Arc<RecaptchaStandIn>,
    /// One RPC proxy per node, so a fault can follow one node's sends.
    rpc: Vec<Arc<RpcFaults>>,
    redis: Arc<tokio::sync::Mutex<RedisServer>>,
    db_url: String,
    postgres: Option<(String, String)>,
}

/// Runs the campaign; answers whether every invariant held.
pub async fn run(config: &Config) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&config.dir)?;
    let timeline = Arc::new(Timeline::new(true));
    timeline.record(
        "start",
        format!(
            "seed {} for {} s, {} node(s) on {:?}",
            config.seed,
            config.duration.as_secs(),
            config.nodes,
            config.database
        ),
    );
    let rig = start_rig(config).await?;
    let clocks = Arc::new(clock::Clocks::new(&config.dir, config.nodes)?);
    let (env, world) = set_up_world(config, &rig, &clocks, &timeline).await?;

    let addrs = Arc::new(RwLock::new(vec![None; config.nodes]));
    let balancer = Balancer::start(addrs.clone()).await?;
    rig.stripe
        .set_webhook_url(&format!("{}/webhooks/stripe", balancer.url()));
    rig.veriff.set_webhook_base(&balancer.url());
    let nodes = make_nodes(config, &rig, &env, &world, &clocks)?;
    let targets = Arc::new(make_targets(&rig, nodes, &addrs, &clocks, &timeline));
    start_nodes(config, &rig, &targets).await?;

    let schedule = plan_faults(config, &timeline);
    let start = Instant::now();
    let shared = Arc::new(workload::Shared {
        seed: config.seed,
        client: client::Client::new(addrs.clone())?,
        book: Mutex::default(),
        timeline: timeline.clone(),
        stripe: rig.stripe.clone(),
        veriff: rig.veriff.clone(),
        recaptcha: rig.recaptcha.clone(),
        world: world.clone(),
        binary: config.binary.clone(),
        deadline: start + config.duration,
        clocks: clocks.clone(),
    });
    timeline.record("phase", "workload and faults");
    let actors = workload::start(
        &shared,
        &workload::Mix {
            wallets: config.wallets,
            donors: config.donors,
        },
    );
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn(sample_memory(targets.clone(), sampling.clone()));
    let faults_ended = faults_then_quiet(&targets, &rig, schedule, start, actors).await;

    let storage = open_storage(&rig).await?;
    let drain = wait_for_drain(&storage, &shared, &rig, faults_ended).await?;
    timeline.record("phase", format!("checks ({})", drain.counts));
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.await;

    let mut checks = vec![drain];
    checks.extend(check_all(config, &storage, &shared, &world, &rig, &targets).await?);
    let passed = report(config, &timeline, &checks, &shared, &targets, &rig).await;
    stop_nodes(&targets).await;
    let _ = storage.close().await;
    drop(balancer);
    drop(rig);
    Ok(passed)
}

/// The operators' environment and configuration, then the contracts, campaigns, investors,
/// organisations and partner key they set up; answers the environment the nodes start from
/// and the world.
async fn set_up_world(
    config: &Config,
    rig: &Rig,
    clocks: &clock::Clocks,
    timeline: &Timeline,
) -> anyhow::Result<(Vec<(String, String)>, Arc<setup::World>)> {
    let mut env = node_env(rig)?;
    env.push((
        "AMPFLOW_TEST_CLOCK_FILE".into(),
        clocks.operator_file().to_string_lossy().to_string(),
    ));
    // The operator commands reach anvil directly; each node through its own proxy.
    let config_path = setup::write_config(&config.dir, &rig.anvil.url)?;
    env.push((
        "AMPFLOW_CONFIG".into(),
        config_path.to_string_lossy().to_string(),
    ));
    let mut setup_rng = stream(config.seed, "setup", 0);
    let world = Arc::new(
        setup::build(
            &config.binary,
            env.clone(),
            config_path,
            &rig.anvil.url,
            config.investors,
            config.campaigns,
            &mut setup_rng,
        )
        .await
        .context("set up the contracts and organisations")?,
    );
    timeline.record(
        "setup",
        format!(
            "contracts deployed, {} campaigns registered, {} investors funded, organisations {:?}",
            world.campaigns.len(),
            world.investors.len(),
            world.organisations
        ),
    );
    Ok((env, world))
}

/// One node per RPC proxy, not started yet: each with its own configuration (reaching the
/// chain through its proxy), node id and clock file.
fn make_nodes(
    config: &Config,
    rig: &Rig,
    env: &[(String, String)],
    world: &setup::World,
    clocks: &clock::Clocks,
) -> anyhow::Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for (i, proxy) in rig.rpc.iter().enumerate() {
        let own = setup::node_config(&world.config_path, &rig.anvil.url, &proxy.url, i)?;
        let mut node_env: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k != "AMPFLOW_CONFIG")
            .cloned()
            .collect();
        node_env.push(("AMPFLOW_CONFIG".into(), own.to_string_lossy().to_string()));
        // Each node its own id, kept across its restarts: a restarted node takes its own
        // leases back at once, the other node waits for their expiry.
        node_env.push(("AMPFLOW_NODE_ID".into(), format!("chaos-node-{i}")));
        node_env.retain(|(k, _)| k != "AMPFLOW_TEST_CLOCK_FILE");
        node_env.push((
            "AMPFLOW_TEST_CLOCK_FILE".into(),
            clocks.node_file(i).to_string_lossy().to_string(),
        ));
        nodes.push(Node::new(i, &config.binary, node_env, &config.dir));
    }
    Ok(nodes)
}

/// What the faults reach: the nodes, their addresses, Redis, the RPC proxies, anvil, the
/// Stripe stand-in and the database.
fn make_targets(
    rig: &Rig,
    nodes: Vec<Node>,
    addrs: &Arc<RwLock<Vec<Option<std::net::SocketAddr>>>>,
    clocks: &Arc<clock::Clocks>,
    timeline: &Arc<Timeline>,
) -> faults::Targets {
    faults::Targets {
        nodes: Arc::new(tokio::sync::Mutex::new(nodes)),
        addrs: addrs.clone(),
        redis: rig.redis.clone(),
        rpc: rig.rpc.clone(),
        anvil_url: rig.anvil.url.clone(),
        stripe: rig.stripe.clone(),
        postgres: rig.postgres.clone(),
        timeline: timeline.clone(),
        stale_accepted: Default::default(),
        clocks: clocks.clone(),
    }
}

/// Aims the run's clock at midnight, starts every node, and switches anvil to a block a
/// second.
async fn start_nodes(config: &Config, rig: &Rig, targets: &faults::Targets) -> anyhow::Result<()> {
    let clocks = &targets.clocks;
    // The run's midnight UTC about 40 % into the workload (the nodes take a few seconds to
    // start), so the day before it is checkpointed during the run.
    let lead = config.duration.mul_f64(0.4) + Duration::from_secs(3);
    let midnight = clocks.aim_midnight(lead)?;
    targets.timeline.record(
        "clock",
        format!(
            "the run's clock is {:.3} h ahead of the machine's: midnight UTC ({}) in about {} s",
            clocks.base_ms() as f64 / 3_600_000.0,
            chrono::DateTime::from_timestamp_millis(midnight).unwrap_or_default(),
            lead.as_secs()
        ),
    );
    for i in 0..config.nodes {
        targets.start_node(i, None).await;
    }
    // From now on a block a second, so confirmations take time and reorgs have blocks to undo.
    rpc_call(&rig.anvil.url, "evm_setIntervalMining", json!([1])).await?;
    Ok(())
}

/// The fault schedule drawn from the seed, each fault written to the timeline.
fn plan_faults(config: &Config, timeline: &Timeline) -> Vec<faults::Planned> {
    let schedule = faults::plan(
        &mut stream(config.seed, "faults", 0),
        config.duration,
        config.nodes,
        config.database == DbKind::Postgres,
    );
    for planned in &schedule {
        timeline.record(
            "plan",
            format!(
                "at {:>7.3} s for {:>5} ms: {}",
                planned.at.as_secs_f64(),
                planned.hold.as_millis(),
                planned.fault
            ),
        );
    }
    schedule
}

/// Applies the fault schedule from `start`, waits for every actor to stop, then restores
/// everything. Answers when the last fault was lifted.
async fn faults_then_quiet(
    targets: &Arc<faults::Targets>,
    rig: &Rig,
    schedule: Vec<faults::Planned>,
    start: Instant,
    actors: Vec<tokio::task::JoinHandle<()>>,
) -> Instant {
    faults::run(targets.clone(), schedule, start).await;
    let faults_ended = Instant::now();
    for actor in actors {
        let _ = actor.await;
    }
    restore_everything(targets, rig).await;
    targets
        .timeline
        .record("phase", "quiet: waiting for the queues to drain");
    faults_ended
}

/// The run's database, opened for the checks.
async fn open_storage(rig: &Rig) -> anyhow::Result<ampflow_storage::Storage> {
    ampflow_storage::Storage::connect(&ampflow_storage::DatabaseSettings {
        url: rig.db_url.clone(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(10),
        sqlite_sync: ampflow_storage::SqliteSync::Normal,
        group_commit: true,
    })
    .await
    .context("open the database for the checks")
}

/// Waits, a second at a time, until no work is open or [`DRAIN_MAX`] has passed since
/// `faults_ended`; answers the drain check, with what was still open if it failed.
async fn wait_for_drain(
    storage: &ampflow_storage::Storage,
    shared: &workload::Shared,
    rig: &Rig,
    faults_ended: Instant,
) -> anyhow::Result<Check> {
    let signer = format!(
        "{:#x}",
        setup::SIGNER_KEY
            .parse::<alloy::signers::local::PrivateKeySigner>()?
            .address()
    );
    let mut drain = Check::new("queues drained within 120 s of the last fault");
    loop {
        let book = shared
            .book
            .lock()
            .map_err(|_| anyhow::anyhow!("book"))?
            .clone();
        let open = invariants::open_work(storage, &book, &rig.stripe, &signer).await?;
        if open.is_empty() {
            drain.counts = format!("drained in {:.1} s", faults_ended.elapsed().as_secs_f64());
            break;
        }
        if faults_ended.elapsed() > DRAIN_MAX {
            drain.counts = format!("{} items still open", open.len());
            for item in open {
                drain.problem(item);
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(drain)
}

/// Stops every node, each given ten seconds to shut down.
async fn stop_nodes(targets: &faults::Targets) {
    let mut nodes = targets.nodes.lock().await;
    for node in nodes.iter_mut() {
        node.stop(Duration::from_secs(10)).await;
    }
}

async fn start_rig(config: &Config) -> anyhow::Result<Rig> {
    let db = BenchDb::new(config.database, &config.postgres_url)?;
    let postgres = (config.database == DbKind::Postgres).then(|| {
        let name = db
            .url
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_string();
        (config.postgres_url.clone(), name)
    });
    let redis = RedisServer::start().await?;
    let anvil = Anvil::start().await?;
    infra::register(anvil.pid());
    let mut rpc = Vec::new();
    for _ in 0..config.nodes {
        rpc.push(Arc::new(RpcFaults::start(&anvil.url).await?));
    }
    let stripe = Arc::new(
        StripeStandIn::start(setup::STRIPE_SECRET_KEY, setup::STRIPE_WEBHOOK_SECRET).await?,
    );
    // Retries for a minute and a half, so every event outlives the faults.
    stripe.set_retry_delays(&[Duration::from_secs(2); 45]);
    stripe.set_attempt_timeout(Duration::from_secs(5));
    let veriff =
        Arc::new(VeriffStandIn::start(setup::VERIFF_API_KEY, setup::VERIFF_SHARED_SECRET).await?);
    let recaptcha = Arc::new(RecaptchaStandIn::start(setup::RECAPTCHA_SECRET).await?);
    Ok(Rig {
        db_url: db.url.clone(),
        _db: db,
        anvil,
        stripe,
        veriff,
        recaptcha,
        rpc,
        redis: Arc::new(tokio::sync::Mutex::new(redis)),
        postgres,
    })
}

fn node_env(rig: &Rig) -> anyhow::Result<Vec<(String, String)>> {
    let redis_url = rig
        .redis
        .try_lock()
        .map(|r| r.url())
        .map_err(|_| anyhow::anyhow!("redis"))?;
    Ok(vec![
        ("DATABASE_URL".into(), rig.db_url.clone()),
        ("REDIS_URL".into(), redis_url),
        ("CHAOS_SIGNER_KEY".into(), setup::SIGNER_KEY.into()),
        ("CHAOS_OPERATOR_KEY".into(), setup::OPERATOR_KEY.into()),
        (
            "AMPFLOW_STRIPE__SECRET_KEY".into(),
            setup::STRIPE_SECRET_KEY.into(),
        ),
        (
            "AMPFLOW_STRIPE__WEBHOOK_SECRETS".into(),
            format!("[{}]", setup::STRIPE_WEBHOOK_SECRET),
        ),
        ("AMPFLOW_STRIPE__BASE_URL".into(), rig.stripe.base_url()),
        (
            "AMPFLOW_VERIFF__API_KEY".into(),
            setup::VERIFF_API_KEY.into(),
        ),
        (
            "AMPFLOW_VERIFF__SHARED_SECRET".into(),
            setup::VERIFF_SHARED_SECRET.into(),
        ),
        ("AMPFLOW_VERIFF__BASE_URL".into(), rig.veriff.base_url()),
        (
            "AMPFLOW_RECAPTCHA__SECRET".into(),
            setup::RECAPTCHA_SECRET.into(),
        ),
        (
            "AMPFLOW_RECAPTCHA__VERIFY_URL".into(),
            rig.recaptcha.verify_url(),
        ),
    ])
}

async fn rpc_call(url: &str, method: &str, params: serde_json::Value) -> anyhow::Result<()> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let answer: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(answer.get("error").is_none(), "{method}: {answer}");
    Ok(())
}

/// Every node up and running, the RPC link clean, Redis up, webhooks delivered normally.
async fn restore_everything(targets: &faults::Targets, rig: &Rig) {
    for proxy in &rig.rpc {
        proxy.set_mode(RpcMode::Pass);
    }
    {
        let mut redis = rig.redis.lock().await;
        if !redis.is_up() {
            let _ = redis.restart().await;
        }
    }
    for node in 0..rig.rpc.len() {
        let _ = targets.clocks.step(node, 0);
    }
    rig.stripe.set_copies(1);
    rig.stripe.set_delivery_delay(Duration::ZERO);
    if !rig.stripe.held_events().is_empty() {
        rig.stripe
            .release_held(ampflow_standins::stripe::ReleaseOrder::AsRaised);
    }
    let count = targets.nodes.lock().await.len();
    for i in 0..count {
        let (up, paused) = {
            let nodes = targets.nodes.lock().await;
            (nodes[i].is_up(), nodes[i].paused)
        };
        if paused {
            let _ = targets.nodes.lock().await[i].resume();
        }
        if !up {
            targets.start_node(i, None).await;
        }
    }
}

async fn sample_memory(targets: Arc<faults::Targets>, running: Arc<std::sync::atomic::AtomicBool>) {
    while running.load(std::sync::atomic::Ordering::Relaxed) {
        {
            let mut nodes = targets.nodes.lock().await;
            for node in nodes.iter_mut() {
                node.sample_memory();
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every invariant but the drain, in the order they are reported.
async fn check_all(
    config: &Config,
    storage: &ampflow_storage::Storage,
    shared: &workload::Shared,
    world: &setup::World,
    rig: &Rig,
    targets: &faults::Targets,
) -> anyhow::Result<Vec<Check>> {
    let rpc = rig.anvil.url.as_str();
    let book = shared
        .book
        .lock()
        .map_err(|_| anyhow::anyhow!("book"))?
        .clone();
    let mut checks = vec![
        invariants::faucet_paid_once(storage, &book, world, rpc).await?,
        invariants::auto_invest_once(storage, &book, world, rpc).await?,
        invariants::whitelist_settled_once(storage, &book, world, rpc).await?,
        invariants::donations_recorded(storage, &book, world, &rig.stripe).await?,
        invariants::partner_donations_kept(storage, &book).await?,
    ];
    let node = targets
        .addrs
        .read()
        .ok()
        .and_then(|a| a.iter().flatten().next().copied())
        .context("no node is up for the ledger checks")?;
    checks.push(
        invariants::ledgers_verify(
            &config.binary,
            &config.dir,
            world,
            &format!("http://{node}"),
            targets.clocks.midnight_ms(),
        )
        .await?,
    );
    checks.push(replays_check(&book, targets));
    checks.push(answers_check(&shared.client)?);
    checks.push(refusals_check(&shared.client)?);
    checks.push(memory_check(targets).await);
    Ok(checks)
}

/// Replays and stale webhooks refused: no violation found on the spot, and every stale
/// webhook refused with a 4xx.
fn replays_check(book: &workload::Book, targets: &faults::Targets) -> Check {
    let mut replays = Check::new("replays and stale webhooks refused");
    for violation in &book.violations {
        replays.problem(violation.clone());
    }
    let stale = targets
        .stale_accepted
        .load(std::sync::atomic::Ordering::Relaxed);
    if stale > 0 {
        replays.problem(format!(
            "{stale} stale webhooks were not refused with a 4xx"
        ));
    }
    replays.counts = format!(
        "{} on-the-spot violations, {stale} stale webhooks accepted",
        book.violations.len()
    );
    replays
}

/// No node's peak resident memory above [`MEMORY_MAX_MIB`].
async fn memory_check(targets: &faults::Targets) -> Check {
    let mut memory = Check::new("memory under 512 MiB per node");
    let nodes = targets.nodes.lock().await;
    let peaks: Vec<String> = nodes
        .iter()
        .map(|n| format!("node {} {:.0} MiB", n.index, n.peak_rss_kib as f64 / 1024.0))
        .collect();
    for node in nodes.iter() {
        if node.peak_rss_kib > MEMORY_MAX_MIB * 1024 {
            memory.problem(format!(
                "node {} peaked at {} KiB",
                node.index, node.peak_rss_kib
            ));
        }
    }
    memory.counts = format!("peak RSS: {}", peaks.join(", "));
    memory
}

/// No rate-limit refusal: the campaign lifts every tier far above its load and signs in with
/// the right passwords, so a `429 rate_limit_exceeded` is the limiter counting wrong.
fn refusals_check(client: &client::Client) -> anyhow::Result<Check> {
    let answers = client
        .answers
        .lock()
        .map_err(|_| anyhow::anyhow!("answers"))?;
    let mut check = Check::new("no rate-limit refusal under lifted limits");
    let mut refused = 0u64;
    for (op, statuses) in &answers.by_op {
        let count = statuses
            .get("429 rate_limit_exceeded")
            .copied()
            .unwrap_or(0);
        if count > 0 {
            refused += count;
            let sample = answers
                .samples
                .get(&format!("{op} 429 rate_limit_exceeded"))
                .cloned()
                .unwrap_or_default();
            check.problem(format!("{op}: {count} refused ({sample})"));
        }
    }
    check.counts = format!("{refused} refused");
    Ok(check)
}

/// Every answer a 2xx–4xx or a documented 503.
fn answers_check(client: &client::Client) -> anyhow::Result<Check> {
    let answers = client
        .answers
        .lock()
        .map_err(|_| anyhow::anyhow!("answers"))?;
    let mut errors = Check::new("no 5xx but the documented 503s");
    for evidence in &answers.evidence {
        errors.problem(evidence.clone());
    }
    errors.more = (answers.undocumented_5xx as usize).saturating_sub(answers.evidence.len());
    let total: u64 = answers.by_op.values().flat_map(|s| s.values()).sum();
    errors.counts = format!(
        "{total} answers, {} documented 503s, {} other 5xx, {} calls unanswered",
        answers.documented_503,
        answers.undocumented_5xx,
        answers.unanswered.values().sum::<u64>()
    );
    Ok(errors)
}

/// Prints the report (what the workload did, the proxies' and nodes' counts, each invariant
/// and the verdict with how to replay the run) and writes the timeline; answers whether
/// every invariant held.
async fn report(
    config: &Config,
    timeline: &Timeline,
    checks: &[Check],
    shared: &workload::Shared,
    targets: &faults::Targets,
    rig: &Rig,
) -> bool {
    let passed = checks.iter().all(Check::passed);
    let mut text = workload_summary(shared);
    text.push_str(&proxies_summary(rig));
    text.push_str(&nodes_summary(targets).await);
    text.push_str(&checks_summary(checks));
    let verdict = if passed { "PASS" } else { "FAIL" };
    text.push_str(&verdict_line(config, verdict));
    println!("\n{text}");
    timeline.record("verdict", verdict);
    let header = format!("chaos campaign, seed {}\n{text}\ntimeline:", config.seed);
    if let Err(e) = timeline.write(&config.timeline, &header) {
        eprintln!("could not write the timeline: {e:#}");
    } else {
        println!("timeline: {}", config.timeline.display());
    }
    passed
}

/// What the product acknowledged, and its answers by operation and status.
fn workload_summary(shared: &workload::Shared) -> String {
    let (book_summary, answers_summary) = {
        let book = shared.book.lock();
        let answers = shared.client.answers.lock();
        (
            book.map(|b| {
                format!(
                    "workload: {} faucet, {} whitelisting, {} auto-invest tasks, {} donations, {} partner donations acknowledged; {} key rotations, {} ledger reads, {} exports, {} checkpoint runs ({} failed)",
                    b.faucet.len(),
                    b.whitelist.len(),
                    b.tasks.len(),
                    b.donations.len(),
                    b.partner.len(),
                    b.key_rotations,
                    b.ledger_reads,
                    b.exports,
                    b.checkpoint_runs,
                    b.checkpoint_failures.len()
                )
            })
            .unwrap_or_default(),
            answers
                .map(|a| {
                    let ops = a.by_op.iter().map(|(op, statuses)| format!("  {op} {statuses:?}"));
                    let samples = a.samples.iter().map(|(k, v)| format!("  first {k}: {v}"));
                    ops.chain(samples).collect::<Vec<_>>().join("\n")
                })
                .unwrap_or_default(),
        )
    };
    format!("{book_summary}\nanswers:\n{answers_summary}\n")
}

/// A line per node's RPC proxy: what it forwarded, refused and injected.
fn proxies_summary(rig: &Rig) -> String {
    let mut text = String::new();
    for (i, proxy) in rig.rpc.iter().enumerate() {
        let counts = &proxy.counts;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        text.push_str(&format!(
            "node {i}'s RPC proxy: {} forwarded, {} refused, {} errors injected, {} answers lost\n",
            load(&counts.forwarded),
            load(&counts.refused),
            load(&counts.errors_injected),
            load(&counts.answers_lost),
        ));
    }
    text
}

/// A line per node: its starts, its log, and the errors it logged most.
async fn nodes_summary(targets: &faults::Targets) -> String {
    let mut text = String::new();
    for node in targets.nodes.lock().await.iter() {
        let errors = node.errors.lock().map(|e| e.clone()).unwrap_or_default();
        let mut top: Vec<_> = errors.into_iter().collect();
        top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        let top: Vec<String> = top
            .iter()
            .take(8)
            .map(|(m, n)| format!("{n} x \"{}\"", m.chars().take(160).collect::<String>()))
            .collect();
        text.push_str(&format!(
            "node {}: {} start(s), log {}; errors logged: {}\n",
            node.index,
            node.starts,
            node.log_path().display(),
            if top.is_empty() {
                "none".into()
            } else {
                top.join("; ")
            }
        ));
    }
    text
}

/// Each invariant, PASS or FAIL with its counts and problems.
fn checks_summary(checks: &[Check]) -> String {
    let mut text = String::from("\ninvariants:\n");
    for check in checks {
        text.push_str(&format!(
            "  {} {:<48} {}\n",
            if check.passed() { "PASS" } else { "FAIL" },
            check.name,
            check.counts
        ));
        for problem in &check.problems {
            text.push_str(&format!("         - {problem}\n"));
        }
        if check.more > 0 {
            text.push_str(&format!("         - … and {} more\n", check.more));
        }
    }
    text
}

/// The verdict, with the options that replay the run.
fn verdict_line(config: &Config, verdict: &str) -> String {
    format!(
        "\n{verdict} seed {} ({} s, {} node(s), {:?}); replay: --seed {} --seconds {} --nodes {} --database {}\n",
        config.seed,
        config.duration.as_secs(),
        config.nodes,
        config.database,
        config.seed,
        config.duration.as_secs(),
        config.nodes,
        match config.database {
            DbKind::Postgres => "postgres",
            DbKind::Sqlite => "sqlite",
        }
    )
}
