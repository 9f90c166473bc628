//! Leases (`leases`): one holder at a time for a piece of background work — a chain's
//! auto-invest executor, a (chain, signer)'s transaction sender, the checkpoint builder. A
//! lease is renewed by its holder and taken over by anyone once it has expired.
//!
//! Holders are runs of nodes (`nodes`): a node is an `ampflow serve` process with a stable id
//! (`node.id`), and each start of it is a new incarnation, counted here. A run holds leases as
//! `<node id>#<incarnation>`, so a restarted node recognises the leases of its own previous
//! run (same id, lower incarnation) and takes them back at once, while another node's leases
//! are taken only once they expire. That is safe only if a previous run is really gone, so two
//! live processes must never share a node id; a run that finds its lease held by a later run
//! of its own node says so ([`LeaseState::HeldByLaterRun`]). Holders that are not a node's
//! run (one-off commands) never take anything back early.

use ampflow_types::UnixMillis;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect, SqlErr,
};

use crate::entities::{leases, nodes};
use crate::{Context, LeaseRepo, Result, StorageError};

/// Longest node id (the lease holder column has room for it, `#` and any incarnation).
pub const NODE_ID_LENGTH_MAX: usize = 40;
/// Attempts at counting a start when another start of the same id races it.
const NODE_START_RACES_MAX: usize = 5;

/// Checks a node id: 1 to 40 letters, digits, `.`, `_` or `-`.
pub fn check_node_id(id: &str) -> std::result::Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > NODE_ID_LENGTH_MAX || !id.chars().all(allowed) {
        return Err(format!(
            "a node id is 1 to {NODE_ID_LENGTH_MAX} letters, digits, '.', '_' or '-', not {id:?}"
        ));
    }
    Ok(())
}

/// Who holds a lease: a run of a node, or a one-off holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The node and its incarnation, for a node's run.
    run: Option<(String, i64)>,
    /// As stored in `leases.holder`.
    text: String,
}

impl LeaseHolder {
    /// The holder for run `incarnation` of node `node_id`.
    fn run(node_id: &str, incarnation: i64) -> Self {
        Self {
            run: Some((node_id.to_string(), incarnation)),
            text: format!("{node_id}#{incarnation}"),
        }
    }

    /// A holder that is no node's run (a one-off command, a test): its leases are taken over
    /// only once they expire, and it takes nothing back early.
    pub fn one_off() -> Self {
        Self {
            run: None,
            text: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// As stored in `leases.holder`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The node id, for a node's run.
    pub fn node_id(&self) -> Option<&str> {
        self.run.as_ref().map(|(id, _)| id.as_str())
    }

    /// The incarnation, for a node's run.
    pub fn incarnation(&self) -> Option<i64> {
        self.run.as_ref().map(|(_, incarnation)| *incarnation)
    }

    /// Which run of the same node `stored` (a `leases.holder`) is, relative to this one.
    fn compare_run(&self, stored: &str) -> Option<std::cmp::Ordering> {
        let (node_id, incarnation) = self.run.as_ref()?;
        let (other_node, other_incarnation) = stored.rsplit_once('#')?;
        let other_incarnation: i64 = other_incarnation.parse().ok()?;
        (other_node == node_id).then(|| other_incarnation.cmp(incarnation))
    }
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A node's start, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStart {
    /// The holder this run takes leases as.
    pub holder: LeaseHolder,
    /// The previous run, if the node ran before: (host name, pid, started at).
    pub previous: Option<(String, i64, UnixMillis)>,
}

/// What asking for a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The caller holds it now: taken, renewed, or taken back from a previous run of its node.
    Held,
    /// Another holder has it until it expires.
    Busy,
    /// A later run of the caller's own node holds it: two live processes share a node id (or
    /// this one was frozen while its node was started again). The caller must not work.
    HeldByLaterRun,
}

impl LeaseState {
    pub fn is_held(self) -> bool {
        self == Self::Held
    }
}

impl LeaseRepo {
    /// Counts a new start of node `node_id` and answers the holder the run takes leases as.
    pub async fn start_node(
        &self,
        node_id: &str,
        hostname: &str,
        pid: u32,
        now: UnixMillis,
    ) -> Result<NodeStart> {
        check_node_id(node_id).map_err(StorageError::Conflict)?;
        for _ in 0..NODE_START_RACES_MAX {
            let found = nodes::Entity::find_by_id(node_id.to_string())
                .one(&self.db)
                .await
                .context("read node")?;
            let Some(found) = found else {
                let inserted = nodes::Entity::insert(nodes::ActiveModel {
                    node_id: Set(node_id.to_string()),
                    incarnation: Set(1),
                    started_at_ms: Set(now),
                    hostname: Set(hostname.to_string()),
                    pid: Set(i64::from(pid)),
                })
                .exec_without_returning(&self.db)
                .await;
                match inserted {
                    Ok(_) => {
                        return Ok(NodeStart {
                            holder: LeaseHolder::run(node_id, 1),
                            previous: None,
                        });
                    }
                    Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                        continue;
                    }
                    Err(e) => return Err(e).context("record node"),
                }
            };
            let incarnation = found.incarnation + 1;
            let counted = nodes::Entity::update_many()
                .col_expr(nodes::Column::Incarnation, Expr::value(incarnation))
                .col_expr(nodes::Column::StartedAtMs, Expr::value(now))
                .col_expr(nodes::Column::Hostname, Expr::value(hostname))
                .col_expr(nodes::Column::Pid, Expr::value(i64::from(pid)))
                .filter(nodes::Column::NodeId.eq(node_id))
                .filter(nodes::Column::Incarnation.eq(found.incarnation))
                .exec(&self.db)
                .await
                .context("count node start")?;
            if counted.rows_affected == 1 {
                return Ok(NodeStart {
                    holder: LeaseHolder::run(node_id, incarnation),
                    previous: Some((found.hostname, found.pid, found.started_at_ms)),
                });
            }
        }
        Err(StorageError::Conflict(format!(
            "node {node_id} kept being started by another process at the same time"
        )))
    }

    /// Takes or renews the lease `name` for `holder` until `until`. A lease held by another
    /// node (or a one-off holder) is taken only once it has expired; one held by an earlier
    /// run of the holder's own node is taken back at once.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &LeaseHolder,
        now: UnixMillis,
        until: UnixMillis,
    ) -> Result<LeaseState> {
        let renewed = leases::Entity::update_many()
            .col_expr(leases::Column::Holder, Expr::value(holder.as_str()))
            .col_expr(leases::Column::ExpiresAtMs, Expr::value(until))
            .filter(leases::Column::Name.eq(name))
            .filter(
                Condition::any()
                    .add(leases::Column::Holder.eq(holder.as_str()))
                    .add(leases::Column::ExpiresAtMs.lte(now)),
            )
            .exec(&self.db)
            .await
            .context("renew lease")?;
        if renewed.rows_affected == 1 {
            return Ok(LeaseState::Held);
        }
        let current: Option<String> = leases::Entity::find_by_id(name.to_string())
            .select_only()
            .column(leases::Column::Holder)
            .into_tuple()
            .one(&self.db)
            .await
            .context("read lease")?;
        let Some(current) = current else {
            return self.insert_lease(name, holder, until).await;
        };
        match holder.compare_run(&current) {
            Some(std::cmp::Ordering::Less) => {
                // An earlier run of this node: it is gone (two live processes never share a
                // node id), so its lease is taken back now rather than after its expiry. The
                // update is conditional on the holder read, so a third party wins cleanly.
                let taken = leases::Entity::update_many()
                    .col_expr(leases::Column::Holder, Expr::value(holder.as_str()))
                    .col_expr(leases::Column::ExpiresAtMs, Expr::value(until))
                    .filter(leases::Column::Name.eq(name))
                    .filter(leases::Column::Holder.eq(current.as_str()))
                    .exec(&self.db)
                    .await
                    .context("take back lease")?;
                if taken.rows_affected == 1 {
                    tracing::info!(lease = name, from = %current, to = %holder, "took back this node's lease from its previous run");
                    return Ok(LeaseState::Held);
                }
                Ok(LeaseState::Busy)
            }
            Some(std::cmp::Ordering::Greater) => Ok(LeaseState::HeldByLaterRun),
            _ => Ok(LeaseState::Busy),
        }
    }

    async fn insert_lease(
        &self,
        name: &str,
        holder: &LeaseHolder,
        until: UnixMillis,
    ) -> Result<LeaseState> {
        let inserted = leases::Entity::insert(leases::ActiveModel {
            name: Set(name.to_string()),
            holder: Set(holder.as_str().to_string()),
            expires_at_ms: Set(until),
        })
        .exec_without_returning(&self.db)
        .await;
        match inserted {
            Ok(_) => Ok(LeaseState::Held),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(LeaseState::Busy)
            }
            Err(e) => Err(e).context("take lease"),
        }
    }

    /// Gives the lease up, if `holder` holds it.
    pub async fn release_lease(&self, name: &str, holder: &LeaseHolder) -> Result<()> {
        leases::Entity::delete_many()
            .filter(leases::Column::Name.eq(name))
            .filter(leases::Column::Holder.eq(holder.as_str()))
            .exec(&self.db)
            .await
            .context("release lease")?;
        Ok(())
    }

    /// The lease's holder and expiry, if anyone holds it (operations and tests).
    pub async fn lease(&self, name: &str) -> Result<Option<(String, UnixMillis)>> {
        leases::Entity::find_by_id(name.to_string())
            .select_only()
            .column(leases::Column::Holder)
            .column(leases::Column::ExpiresAtMs)
            .into_tuple()
            .one(&self.reader)
            .await
            .context("read lease")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_recognises_its_own_node_earlier_and_later_runs() {
        let run = LeaseHolder::run("node-a", 5);
        assert_eq!(run.as_str(), "node-a#5");
        assert_eq!(run.compare_run("node-a#4"), Some(std::cmp::Ordering::Less));
        assert_eq!(
            run.compare_run("node-a#6"),
            Some(std::cmp::Ordering::Greater)
        );
        assert_eq!(run.compare_run("node-a#5"), Some(std::cmp::Ordering::Equal));
        assert_eq!(run.compare_run("node-b#4"), None);
        assert_eq!(run.compare_run("node-a"), None);
        assert_eq!(run.compare_run("node-a#x"), None);
        // A one-off holder, and the random ids of runs before node ids existed.
        assert_eq!(
            run.compare_run("0b0e4a57-5b0c-4f39-9a43-6d1f8b1c2e3d"),
            None
        );
        assert_eq!(LeaseHolder::one_off().compare_run("node-a#4"), None);
    }

    #[test]
    fn node_ids_are_short_and_plain() {
        assert!(check_node_id("eu-1.node_02").is_ok());
        assert!(check_node_id("").is_err());
        assert!(check_node_id("a#1").is_err());
        assert!(check_node_id("with space").is_err());
        assert!(check_node_id(&"x".repeat(41)).is_err());
        assert!(check_node_id(&"x".repeat(40)).is_ok());
    }
}
