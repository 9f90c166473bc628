//! The fault schedule: drawn in full from the seed before the run starts (so it does not
//! depend on timing), then applied at its offsets. Faults of different kinds overlap freely;
//! two faults on the same resource (a node, the RPC link, Redis, webhook delivery) never do,
//! so each one's end restores what it changed.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ampflow_standins::stripe::{ReleaseOrder, StripeStandIn, unix_now};
use rand::Rng;
use serde_json::Value;
use tokio::sync::Mutex;

use super::infra::{Node, RedisServer};
use super::proxy::{RpcFaults, RpcMode};
use super::rng::Stream;
use super::setup::REORG_DEPTH_MAX;
use super::timeline::Timeline;

/// Fail points a restarted node may be given (the product's names). The supervised
/// background tasks panic a couple of times each, under their restart cap, so the work must
/// complete through their restarts. A request whose storage or ledger batch a panic abandons
/// is answered 503 `storage_unavailable` or `service_unavailable`, and the client retries it.
pub const FAIL_POINTS: &[&str] = &[
    "stripe_webhook_after_move=10%delay(1500)",
    "stripe_webhook_after_move=5%panic",
    "storage_batch_panic=2*panic",
    "ledger_writer_panic=2*panic",
    "batcher_panic=2*panic",
    "tx_sender_panic=2*panic",
    "executor_panic=2*panic",
    "checkpoint_job_panic=1*panic",
    "sweeper_panic=1*panic",
    "janitor_panic=1*panic",
    "orphan_sweeper_panic=1*panic",
    "redis_probe_panic=1*panic",
];
/// A clock step is at most this far, either way: beyond the 3 s lease TTLs (so a node
/// stepped ahead takes the other's leases early, one stepped back renews its own into the
/// past), within the webhook tolerance and the partner's Date skew.
const CLOCK_STEP_MAX_MS: i64 = 10_000;
/// How far past the webhook tolerance a stale delivery is signed.
const STALE_BY_SECS: i64 = 400;

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// SIGKILL; restarted after the hold, with these fail points if any.
    KillNode {
        node: usize,
        failpoints: Option<String>,
    },
    /// SIGKILL as soon as the node has sent a transaction (between the send and its receipt),
    /// if it sends one within the hold; restarted a second later.
    KillAfterSend {
        node: usize,
    },
    /// SIGSTOP for the hold (longer than the lease TTLs), then SIGCONT.
    PauseNode {
        node: usize,
    },
    /// The RPC link of one node (`Some`) or of every node (`None`).
    Rpc {
        node: Option<usize>,
        mode: RpcMode,
    },
    /// One node's clock stepped this far from the others' for the hold, then stepped back.
    ClockStep {
        node: usize,
        step_ms: i64,
    },
    /// anvil_snapshot, wait for `depth` blocks, anvil_revert: those blocks are gone.
    Reorg {
        depth: u64,
    },
    KillRedis,
    /// pg_terminate_backend on every connection of the run's database.
    TerminatePostgres,
    /// Each Stripe event raised during the hold is delivered this many times.
    WebhookCopies {
        copies: usize,
    },
    /// Events raised during the hold are held, then released newest first.
    WebhookReorder,
    /// Events raised during the hold wait this long before their first attempt.
    WebhookDelay {
        delay_ms: u64,
    },
    /// The newest event is sent once more signed past the tolerance (must be refused), and
    /// redelivered properly after the hold.
    WebhookStale,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillNode {
                node,
                failpoints: None,
            } => write!(f, "SIGKILL node {node}"),
            Fault::KillNode {
                node,
                failpoints: Some(fp),
            } => {
                write!(f, "SIGKILL node {node} (restart with FAILPOINTS={fp})")
            }
            Fault::KillAfterSend { node } => {
                write!(f, "SIGKILL node {node} between a send and its receipt")
            }
            Fault::PauseNode { node } => write!(f, "SIGSTOP node {node}"),
            Fault::Rpc { node, mode } => {
                match mode {
                    RpcMode::Cut => write!(f, "RPC cut")?,
                    RpcMode::Slow { delay_ms } => write!(f, "RPC slow ({delay_ms} ms a call)")?,
                    RpcMode::Errors { percent } => write!(f, "RPC errors ({percent} % of calls)")?,
                    RpcMode::Pass => write!(f, "RPC restored")?,
                }
                match node {
                    Some(node) => write!(f, " for node {node} only"),
                    None => write!(f, " for every node"),
                }
            }
            Fault::ClockStep { node, step_ms } => {
                write!(f, "node {node}'s clock stepped {step_ms:+} ms")
            }
            Fault::Reorg { depth } => write!(f, "reorg of {depth} block(s)"),
            Fault::KillRedis => write!(f, "SIGKILL Redis"),
            Fault::TerminatePostgres => write!(f, "pg_terminate_backend on the nodes' connections"),
            Fault::WebhookCopies { copies } => {
                write!(f, "Stripe webhooks delivered {copies} times")
            }
            Fault::WebhookReorder => write!(f, "Stripe webhooks held, then released in reverse"),
            Fault::WebhookDelay { delay_ms } => write!(f, "Stripe webhooks delayed {delay_ms} ms"),
            Fault::WebhookStale => write!(f, "a Stripe webhook replayed past the tolerance"),
        }
    }
}

/// A fault, when it starts and how long it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub at: Duration,
    pub hold: Duration,
    pub fault: Fault,
}

/// Which resource a fault holds (faults on one resource never overlap).
fn resource(fault: &Fault) -> String {
    match fault {
        Fault::KillNode { node, .. }
        | Fault::KillAfterSend { node }
        | Fault::PauseNode { node } => format!("node{node}"),
        Fault::Rpc { .. } | Fault::Reorg { .. } => "chain".into(),
        Fault::ClockStep { node, .. } => format!("clock{node}"),
        Fault::KillRedis => "redis".into(),
        Fault::TerminatePostgres => "postgres".into(),
        Fault::WebhookCopies { .. }
        | Fault::WebhookReorder
        | Fault::WebhookDelay { .. }
        | Fault::WebhookStale => "webhooks".into(),
    }
}

/// Draws the schedule for a run of `duration` with `nodes` nodes: a fault every 1–4 s from
/// the 3rd second, none starting in the last 5 seconds, each held 0.5–8 s.
pub fn plan(rng: &mut Stream, duration: Duration, nodes: usize, postgres: bool) -> Vec<Planned> {
    let mut planned: Vec<Planned> = Vec::new();
    let end = duration.saturating_sub(Duration::from_secs(5));
    let mut at = Duration::from_secs(3);
    while at < end {
        let fault = draw(rng, nodes, postgres);
        let hold = match &fault {
            Fault::PauseNode { .. } => Duration::from_millis(rng.random_range(4_000..9_000)),
            Fault::KillNode { .. } => Duration::from_millis(rng.random_range(300..5_000)),
            Fault::KillAfterSend { .. } => Duration::from_millis(rng.random_range(2_000..10_000)),
            Fault::Reorg { .. } | Fault::TerminatePostgres => Duration::ZERO,
            _ => Duration::from_millis(rng.random_range(1_000..8_000)),
        };
        let busy = planned.iter().any(|p| {
            resource(&p.fault) == resource(&fault) && p.at + p.hold + Duration::from_secs(1) > at
        });
        if !busy {
            planned.push(Planned { at, hold, fault });
        }
        at += Duration::from_millis(rng.random_range(1_000..4_000));
    }
    planned
}

fn draw(rng: &mut Stream, nodes: usize, postgres: bool) -> Fault {
    let node = rng.random_range(0..nodes.max(1));
    loop {
        let fault = match rng.random_range(0..16) {
            0 | 1 => Fault::KillNode {
                node,
                failpoints: rng
                    .random_bool(0.3)
                    .then(|| FAIL_POINTS[rng.random_range(0..FAIL_POINTS.len())].to_string()),
            },
            2 => Fault::PauseNode { node },
            3 => Fault::Rpc {
                node: one_link(rng, nodes, node),
                mode: RpcMode::Cut,
            },
            4 => Fault::Rpc {
                node: one_link(rng, nodes, node),
                mode: RpcMode::Slow {
                    delay_ms: rng.random_range(200..2_000),
                },
            },
            5 => Fault::Rpc {
                node: one_link(rng, nodes, node),
                mode: RpcMode::Errors {
                    percent: rng.random_range(10..60),
                },
            },
            14 | 15 => Fault::ClockStep {
                node,
                step_ms: rng.random_range(500..CLOCK_STEP_MAX_MS)
                    * if rng.random_bool(0.5) { 1 } else { -1 },
            },
            6 => Fault::Reorg {
                depth: rng.random_range(1..=REORG_DEPTH_MAX),
            },
            7 => Fault::KillRedis,
            8 => Fault::TerminatePostgres,
            9 => Fault::WebhookCopies {
                copies: rng.random_range(2..4),
            },
            10 => Fault::WebhookReorder,
            12 => Fault::KillAfterSend { node },
            11 => Fault::WebhookDelay {
                delay_ms: rng.random_range(500..5_000),
            },
            _ => Fault::WebhookStale,
        };
        if fault == Fault::TerminatePostgres && !postgres {
            continue;
        }
        return fault;
    }
}

/// Which node's RPC link a fault hits: one node's 40 % of the time when there are several,
/// else every node's (`None`).
fn one_link(rng: &mut Stream, nodes: usize, node: usize) -> Option<usize> {
    (nodes > 1 && rng.random_bool(0.4)).then_some(node)
}

/// What the faults act on.
pub struct Targets {
    pub nodes: Arc<Mutex<Vec<Node>>>,
    pub addrs: Arc<RwLock<Vec<Option<SocketAddr>>>>,
    pub redis: Arc<Mutex<RedisServer>>,
    /// One per node.
    pub rpc: Vec<Arc<RpcFaults>>,
    pub anvil_url: String,
    pub stripe: Arc<StripeStandIn>,
    /// The admin URL and the database's name, on PostgreSQL.
    pub postgres: Option<(String, String)>,
    pub timeline: Arc<Timeline>,
    /// Stale webhooks that were not refused with a 4xx.
    pub stale_accepted: AtomicU64,
    pub clocks: Arc<super::clock::Clocks>,
}

impl Targets {
    pub async fn publish_addrs(&self) {
        let nodes = self.nodes.lock().await;
        if let Ok(mut addrs) = self.addrs.write() {
            *addrs = nodes.iter().map(|n| n.addr).collect();
        }
    }

    /// Starts node `index` (retrying while it fails to start, e.g. while the database refuses).
    pub async fn start_node(&self, index: usize, failpoints: Option<&str>) {
        for attempt in 1..=20 {
            let started = {
                let mut nodes = self.nodes.lock().await;
                nodes[index].start(failpoints).await
            };
            match started {
                Ok(addr) => {
                    self.timeline
                        .record("node", format!("node {index} listening on {addr}"));
                    self.publish_addrs().await;
                    return;
                }
                Err(e) => {
                    self.timeline.record(
                        "node",
                        format!("node {index} start {attempt} failed: {e:#}"),
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Applies `schedule`, from `start`; answers when the last fault has been lifted.
pub async fn run(targets: Arc<Targets>, schedule: Vec<Planned>, start: Instant) {
    let mut handles = Vec::new();
    for planned in schedule {
        let targets = targets.clone();
        handles.push(tokio::spawn(async move {
            tokio::time::sleep_until((start + planned.at).into()).await;
            apply(&targets, &planned).await;
        }));
    }
    for handle in handles {
        let _ = handle.await;
    }
}

/// Applies one planned fault: records it, makes the change, holds it, and undoes it (or, for a
/// kill, restarts the node). (Long because it is one `match` over every fault kind: each arm
/// is its own short apply-hold-restore sequence, and reading them side by side shows that
/// every fault lifts what it changed.)
async fn apply(targets: &Targets, planned: &Planned) {
    let timeline = &targets.timeline;
    timeline.record(
        "fault",
        format!("{} (hold {} ms)", planned.fault, planned.hold.as_millis()),
    );
    match &planned.fault {
        Fault::KillNode { node, failpoints } => {
            targets.nodes.lock().await[*node].kill();
            targets.publish_addrs().await;
            tokio::time::sleep(planned.hold).await;
            targets.start_node(*node, failpoints.as_deref()).await;
        }
        Fault::PauseNode { node } => {
            let paused = targets.nodes.lock().await[*node].pause();
            if let Err(e) = paused {
                timeline.record("fault", format!("not paused: {e:#}"));
                return;
            }
            tokio::time::sleep(planned.hold).await;
            let _ = targets.nodes.lock().await[*node].resume();
            timeline.record("restore", format!("SIGCONT node {node}"));
        }
        Fault::Rpc { node, mode } => {
            let links = || {
                targets
                    .rpc
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| node.is_none_or(|n| n == *i))
                    .map(|(_, p)| p)
            };
            links().for_each(|p| p.set_mode(*mode));
            tokio::time::sleep(planned.hold).await;
            links().for_each(|p| p.set_mode(RpcMode::Pass));
            timeline.record("restore", "RPC restored");
        }
        Fault::ClockStep { node, step_ms } => {
            if let Err(e) = targets.clocks.step(*node, *step_ms) {
                timeline.record("fault", format!("clock not stepped: {e:#}"));
                return;
            }
            tokio::time::sleep(planned.hold).await;
            let back = targets.clocks.step(*node, 0);
            timeline.record(
                "restore",
                format!("node {node}'s clock stepped back: {back:?}"),
            );
        }
        Fault::KillAfterSend { node } => {
            let sent = targets.rpc[*node].sends.notified();
            if tokio::time::timeout(planned.hold, sent).await.is_err() {
                timeline.record(
                    "fault",
                    format!("node {node} sent no transaction; not killed"),
                );
                return;
            }
            targets.nodes.lock().await[*node].kill();
            timeline.record(
                "fault",
                format!("SIGKILL node {node} right after it sent a transaction"),
            );
            targets.publish_addrs().await;
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            targets.start_node(*node, None).await;
        }
        Fault::Reorg { depth } => reorg(targets, *depth).await,
        Fault::KillRedis => {
            targets.redis.lock().await.kill();
            tokio::time::sleep(planned.hold).await;
            let restarted = targets.redis.lock().await.restart().await;
            timeline.record("restore", format!("Redis restarted: {restarted:?}"));
        }
        Fault::TerminatePostgres => {
            if let Some((admin, name)) = &targets.postgres {
                let sql = format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                );
                let (admin, sql) = (admin.clone(), sql);
                let done =
                    tokio::task::spawn_blocking(move || crate::pgdb::psql(&admin, &sql)).await;
                timeline.record("fault", format!("terminated: {done:?}"));
            }
        }
        Fault::WebhookCopies { copies } => {
            targets.stripe.set_copies(*copies);
            tokio::time::sleep(planned.hold).await;
            targets.stripe.set_copies(1);
            timeline.record("restore", "Stripe webhooks delivered once");
        }
        Fault::WebhookReorder => {
            targets.stripe.hold_deliveries();
            tokio::time::sleep(planned.hold).await;
            let released = targets.stripe.release_held(ReleaseOrder::Reversed);
            timeline.record(
                "restore",
                format!("released {released} held Stripe events, newest first"),
            );
        }
        Fault::WebhookDelay { delay_ms } => {
            targets
                .stripe
                .set_delivery_delay(Duration::from_millis(*delay_ms));
            tokio::time::sleep(planned.hold).await;
            targets.stripe.set_delivery_delay(Duration::ZERO);
            timeline.record("restore", "Stripe webhooks without delay");
        }
        Fault::WebhookStale => stale_webhook(targets, planned.hold).await,
    }
}

/// Replays the newest Stripe event signed past the tolerance: it must be refused with 400
/// (the answer is recorded); the event is then redelivered properly.
async fn stale_webhook(targets: &Targets, hold: Duration) {
    let Some(event) = targets.stripe.events().pop() else {
        return;
    };
    let signed_at = unix_now() - 300 - STALE_BY_SECS;
    let status = targets.stripe.send_event_signed_at(&event, signed_at).await;
    targets.timeline.record(
        "fault",
        format!(
            "stale {} ({}) answered {status:?}",
            event.id, event.event_type
        ),
    );
    if matches!(status, Ok(s) if (200..300).contains(&s) || s >= 500) {
        targets.timeline.record(
            "VIOLATION",
            format!("a webhook signed {STALE_BY_SECS} s past the tolerance answered {status:?}"),
        );
        targets.stale_accepted.fetch_add(1, Ordering::Relaxed);
    }
    tokio::time::sleep(hold).await;
    let redelivered = targets.stripe.redeliver(&event.id);
    targets.timeline.record(
        "restore",
        format!("redelivered {}: {redelivered}", event.id),
    );
}

/// A reorg on anvil: a snapshot, `depth` blocks mined on top, then a revert to the snapshot;
/// the chain then grows past the old head with other blocks. What was mined in those blocks is
/// gone (anvil does not put it back in the pool): the product must notice and send again.
async fn reorg(targets: &Targets, depth: u64) {
    let client = reqwest::Client::new();
    let call = |method: &'static str, params: Value| {
        let client = client.clone();
        let url = targets.anvil_url.clone();
        async move {
            let body =
                serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
            let answer: Value = client.post(url).json(&body).send().await?.json().await?;
            anyhow::Ok(answer["result"].clone())
        }
    };
    let block = |v: &Value| {
        u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0)
    };
    let Ok(snapshot) = call("evm_snapshot", serde_json::json!([])).await else {
        return;
    };
    let Ok(base) = call("eth_blockNumber", serde_json::json!([]))
        .await
        .map(|v| block(&v))
    else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        match call("eth_blockNumber", serde_json::json!([]))
            .await
            .map(|v| block(&v))
        {
            Ok(head) if head >= base + depth => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let before = call("eth_blockNumber", serde_json::json!([]))
        .await
        .map(|v| block(&v))
        .unwrap_or(0);
    let reverted = call("evm_revert", serde_json::json!([snapshot])).await;
    targets.timeline.record(
        "fault",
        format!(
            "reverted blocks {}..={before} to {base}: {reverted:?}",
            base + 1
        ),
    );
}
