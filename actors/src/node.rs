//! This process as a node: its stable id (`node.id`, resolved by the front from the
//! configuration or a file beside its data) and this run's incarnation, counted in storage.
//! The background work's leases are held as `<node id>#<incarnation>`, so a node restarted
//! after a crash takes its previous run's leases back at once instead of waiting for them to
//! expire (see `ampflow_storage::LeaseHolder`). Touches: storage (`nodes`), `/proc` to warn
//! about a previous run that may still be alive.

use ampflow_storage::{LeaseHolder, NodeStart, Storage, StorageError};
use ampflow_types::Clock;

/// Registers this run of node `node_id` (or, without one, a one-off holder whose leases are
/// only ever taken over once they expire) and answers the holder its leases are taken as.
pub(crate) async fn start_run(
    storage: &Storage,
    clock: &dyn Clock,
    node_id: Option<&str>,
) -> Result<LeaseHolder, StorageError> {
    let Some(node_id) = node_id else {
        let holder = LeaseHolder::one_off();
        tracing::info!(holder = %holder, "no node id: this run's leases wait for their expiry after a restart");
        return Ok(holder);
    };
    let hostname = hostname();
    let pid = std::process::id();
    let NodeStart { holder, previous } = storage
        .leases()
        .start_node(node_id, &hostname, pid, clock.now_ms())
        .await?;
    match previous {
        Some((previous_host, previous_pid, started_at_ms)) => {
            tracing::info!(node = node_id, holder = %holder, previous_host = %previous_host, previous_pid, previous_started_at_ms = started_at_ms, "node started again: it takes its previous run's leases back at once");
            if previous_host == hostname && may_be_this_program(previous_pid, pid) {
                tracing::warn!(
                    node = node_id,
                    previous_pid,
                    "the previous run of this node id may still be running on this host (process {previous_pid} runs this program): two processes must never share a node id (node.id); stop one, or give each its own"
                );
            }
        }
        None => tracing::info!(node = node_id, holder = %holder, "node started for the first time"),
    }
    Ok(holder)
}

/// The host's name, for operators reading `nodes`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether process `pid` (not this one) is alive and runs the same executable as this one:
/// a cheap sign that a previous run of this node was not a crash. A reused pid runs another
/// program, so it does not count.
fn may_be_this_program(pid: i64, own: u32) -> bool {
    if pid <= 0 || pid == i64::from(own) {
        return false;
    }
    let (Ok(theirs), Ok(ours)) = (
        std::fs::read_link(format!("/proc/{pid}/exe")),
        std::env::current_exe(),
    ) else {
        return false;
    };
    theirs == ours
}
