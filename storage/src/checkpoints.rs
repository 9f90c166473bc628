//! Daily checkpoints: one global RFC 6962 Merkle tree over every organisation's ledger entries,
//! and its signed head at the end of each UTC day.
//!
//! Appends stay per organisation and parallel: an entry gets its place in the global tree (its
//! leaf index) only when a checkpoint is built. A build takes, in `(created_at, id)` order,
//! every entry created before the day's end that has no leaf yet, gives each the next index,
//! stores the perfect subtrees this completes, and writes the signed checkpoint — all in one
//! transaction, so a checkpoint and its leaves appear together or not at all. Two builders
//! cannot both succeed: leaf indexes and checkpoint dates are primary keys.
//!
//! Only perfect subtrees are stored (2n rows for n leaves); any tree head or inclusion proof
//! reads O(log² n) of them, so proofs stay cheap at millions of entries.

use std::collections::{BTreeMap, HashMap};

use ampflow_types::UnixMillis;
use ampflow_types::merkle::{self, Frontier, Hash, NodeId};
use ampflow_types::note::{CheckpointBody, NoteSigner};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};

use crate::entities::{
    checkpoint_keys as keys, checkpoints, ledger_entries as entries, ledger_leaves as leaves,
    merkle_nodes as nodes,
};
use crate::{CheckpointRepo, Context, Result, StorageError};

/// Entries read per query while a checkpoint is built.
const BUILD_PAGE: u64 = 5_000;
/// Rows per insert statement (well under SQLite's bound-parameter limit).
const INSERT_CHUNK: usize = 1_000;
/// Leaf indexes must fit below this (the node id packs `level << 56 | index`).
const LEAF_INDEX_LIMIT: u64 = 1 << 56;

/// A built checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    /// `chk_YYYY-MM-DD`
    pub id: String,
    /// `YYYY-MM-DD` (UTC)
    pub checkpoint_date: String,
    /// The instant the day ended: the checkpoint covers entries created before it.
    pub day_end_ms: UnixMillis,
    pub tree_size: u64,
    pub root_hash: Hash,
    /// Net sum of every covered entry's amount (refunds are negative), all currencies.
    pub total_volume: i64,
    /// The same, per currency.
    pub volume_by_currency: BTreeMap<String, i64>,
    /// The C2SP signed note.
    pub signed_note: String,
    /// The verifier key that signed it.
    pub verifier_key: String,
    pub created_at_ms: UnixMillis,
}

/// What a build needs besides the database.
#[derive(Debug)]
pub struct CheckpointSpec<'a> {
    /// `YYYY-MM-DD`
    pub date: &'a str,
    pub day_end_ms: UnixMillis,
    pub origin: &'a str,
    pub signer: &'a NoteSigner,
    pub now: UnixMillis,
}

/// An inclusion proof read from storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProofRecord {
    pub entry_id: String,
    pub entry_hash: String,
    pub leaf_index: u64,
    pub audit_path: Vec<Hash>,
    pub checkpoint: CheckpointRecord,
}

/// Why no proof can be given.
#[derive(Debug, thiserror::Error)]
pub enum ProofLookupError {
    #[error("no ledger entry has this id")]
    UnknownEntry,
    #[error("the entry is not in a checkpoint yet")]
    NotCheckpointed,
    #[error("no checkpoint has this id")]
    UnknownCheckpoint,
    #[error("the entry is not covered by this checkpoint (it came later)")]
    NotInCheckpoint,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The id under which a perfect node is stored.
fn node_key(id: NodeId) -> i64 {
    ((id.level as i64) << 56) | id.index as i64
}

fn parse_hash(text: &str, what: &str) -> Result<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash)
        .map_err(|_| StorageError::Corrupt(format!("{what} is not a hex SHA-256")))?;
    Ok(hash)
}

fn checkpoint_record(m: checkpoints::Model) -> Result<CheckpointRecord> {
    Ok(CheckpointRecord {
        root_hash: parse_hash(&m.root_hash, &format!("root of {}", m.id))?,
        volume_by_currency: serde_json::from_str(&m.volume_by_currency)
            .map_err(|_| StorageError::Corrupt(format!("volumes of {}", m.id)))?,
        id: m.id,
        checkpoint_date: m.checkpoint_date,
        day_end_ms: m.day_end_ms,
        tree_size: m.tree_size.max(0) as u64,
        total_volume: m.total_volume,
        signed_note: m.signed_note,
        verifier_key: m.verifier_key,
        created_at_ms: m.created_at_ms,
    })
}

/// Reads the given perfect nodes.
pub(crate) async fn read_nodes(
    db: &impl ConnectionTrait,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(INSERT_CHUNK) {
        let by_key: HashMap<i64, NodeId> = chunk.iter().map(|id| (node_key(*id), *id)).collect();
        let rows = nodes::Entity::find()
            .filter(nodes::Column::NodeId.is_in(by_key.keys().copied()))
            .all(db)
            .await
            .context("read merkle nodes")?;
        for row in rows {
            if let Some(id) = by_key.get(&row.node_id) {
                found.insert(*id, parse_hash(&row.hash, "a merkle node")?);
            }
        }
    }
    if let Some(missing) = ids.iter().find(|id| !found.contains_key(id)) {
        return Err(StorageError::Corrupt(format!(
            "merkle node {missing:?} is missing"
        )));
    }
    Ok(found)
}

impl CheckpointRepo {
    /// The newest checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>> {
        latest(&self.reader).await
    }

    pub async fn checkpoint(&self, id: &str) -> Result<Option<CheckpointRecord>> {
        checkpoints::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("read checkpoint")?
            .map(checkpoint_record)
            .transpose()
    }

    /// Checkpoints newest first, dated before `before` (a `YYYY-MM-DD`) when given.
    pub async fn list_checkpoints(
        &self,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<CheckpointRecord>> {
        let mut query = checkpoints::Entity::find();
        if let Some(before) = before {
            query = query.filter(checkpoints::Column::CheckpointDate.lt(before));
        }
        query
            .order_by_desc(checkpoints::Column::CheckpointDate)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list checkpoints")?
            .into_iter()
            .map(checkpoint_record)
            .collect()
    }

    /// The creation time of the oldest entry that is in no checkpoint yet.
    pub async fn oldest_unindexed_entry_ms(&self) -> Result<Option<UnixMillis>> {
        Ok(unindexed(UnixMillis::MAX, None)
            .order_by_asc(entries::Column::CreatedAtMs)
            .order_by_asc(entries::Column::Id)
            .one(&self.reader)
            .await
            .context("find the oldest unindexed entry")?
            .map(|e| e.created_at_ms))
    }

    /// Builds the checkpoint for `spec.date` on top of the newest one (which must be older),
    /// in one transaction. A checkpoint that already exists for the date is answered as is.
    pub async fn build_checkpoint(&self, spec: &CheckpointSpec<'_>) -> Result<CheckpointRecord> {
        let txn = self.db.begin().await.context("begin checkpoint build")?;
        let previous = latest(&txn).await?;
        if let Some(previous) = &previous
            && previous.checkpoint_date.as_str() >= spec.date
        {
            txn.rollback().await.context("roll back checkpoint build")?;
            if previous.checkpoint_date == spec.date {
                return Ok(previous.clone());
            }
            return match self.checkpoint(&format!("chk_{}", spec.date)).await? {
                Some(existing) => Ok(existing),
                None => Err(StorageError::Conflict(format!(
                    "checkpoints are built in date order: {} is after {}",
                    previous.checkpoint_date, spec.date
                ))),
            };
        }
        let start_size = previous.as_ref().map_or(0, |p| p.tree_size);
        let needed = Frontier::needed(start_size);
        let stored = read_nodes(&txn, &needed).await?;
        let mut frontier = Frontier::of(start_size, &mut |id: NodeId| {
            stored.get(&id).copied().unwrap_or_default()
        });
        let mut volumes = Volumes {
            total: previous.as_ref().map_or(0, |p| p.total_volume),
            by_currency: previous
                .as_ref()
                .map(|p| p.volume_by_currency.clone())
                .unwrap_or_default(),
        };
        add_unindexed_leaves(&txn, spec, &mut frontier, &mut volumes).await?;
        let body = CheckpointBody {
            origin: spec.origin.to_string(),
            tree_size: frontier.size(),
            root_hash: frontier.root(),
        };
        let signed_note = spec
            .signer
            .sign(&body.text())
            .map_err(|e| StorageError::Corrupt(format!("sign the checkpoint: {e}")))?;
        let record = CheckpointRecord {
            id: format!("chk_{}", spec.date),
            checkpoint_date: spec.date.to_string(),
            day_end_ms: spec.day_end_ms,
            tree_size: body.tree_size,
            root_hash: body.root_hash,
            total_volume: volumes.total,
            volume_by_currency: volumes.by_currency,
            signed_note,
            verifier_key: spec.signer.verifier().vkey(),
            created_at_ms: spec.now,
        };
        insert_checkpoint(&txn, &record).await?;
        txn.commit().await.context("commit checkpoint build")?;
        Ok(record)
    }

    /// The inclusion proof of entry `entry_id` in checkpoint `checkpoint_id` (the newest when
    /// `None`).
    pub async fn inclusion_proof(
        &self,
        entry_id: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<InclusionProofRecord, ProofLookupError> {
        let entry = entries::Entity::find_by_id(entry_id.to_string())
            .one(&self.reader)
            .await
            .context("read ledger entry")?
            .ok_or(ProofLookupError::UnknownEntry)?;
        let leaf = leaves::Entity::find()
            .filter(leaves::Column::EntryId.eq(entry_id))
            .one(&self.reader)
            .await
            .context("read ledger leaf")?
            .ok_or(ProofLookupError::NotCheckpointed)?;
        let checkpoint = match checkpoint_id {
            Some(id) => self
                .checkpoint(id)
                .await?
                .ok_or(ProofLookupError::UnknownCheckpoint)?,
            None => self
                .latest_checkpoint()
                .await?
                .ok_or(ProofLookupError::NotCheckpointed)?,
        };
        let index = leaf.leaf_index.max(0) as u64;
        if index >= checkpoint.tree_size {
            return Err(ProofLookupError::NotInCheckpoint);
        }
        let stored = read_nodes(
            &self.reader,
            &merkle::needed_nodes(Some(index), checkpoint.tree_size),
        )
        .await?;
        let mut source = |id: NodeId| stored.get(&id).copied().unwrap_or_default();
        if merkle::root(checkpoint.tree_size, &mut source) != checkpoint.root_hash {
            return Err(StorageError::Corrupt(format!(
                "the stored tree does not hash to the head of {}",
                checkpoint.id
            ))
            .into());
        }
        let audit_path = merkle::inclusion_proof(index, checkpoint.tree_size, &mut source)
            .ok_or(ProofLookupError::NotInCheckpoint)?;
        Ok(InclusionProofRecord {
            entry_id: entry.id,
            entry_hash: entry.entry_hash,
            leaf_index: index,
            audit_path,
            checkpoint,
        })
    }

    /// The oldest stored checkpoint signing key (`PRIVATE+KEY+…`): every process picks the
    /// same one.
    pub async fn load_checkpoint_key(&self) -> Result<Option<String>> {
        Ok(keys::Entity::find()
            .order_by_asc(keys::Column::CreatedAtMs)
            .order_by_asc(keys::Column::VerifierKey)
            .one(&self.db)
            .await
            .context("load checkpoint key")?
            .map(|k| k.private_key))
    }

    /// Stores a generated signing key unless a key is stored already, and answers the
    /// private key every process signs with (the stored one, else this one). Two processes
    /// starting at once on an empty database answer the same key.
    pub async fn first_checkpoint_key(
        &self,
        verifier_key: &str,
        private_key: &str,
        now: UnixMillis,
    ) -> Result<String> {
        let txn = crate::keys::begin_key_choice(&self.db).await?;
        let stored = keys::Entity::find()
            .order_by_asc(keys::Column::CreatedAtMs)
            .order_by_asc(keys::Column::VerifierKey)
            .one(&txn)
            .await
            .context("load checkpoint key")?;
        if let Some(stored) = stored {
            txn.commit().await.context("commit key choice")?;
            return Ok(stored.private_key);
        }
        keys::Entity::insert(keys::ActiveModel {
            verifier_key: Set(verifier_key.to_string()),
            private_key: Set(private_key.to_string()),
            created_at_ms: Set(now),
        })
        .exec_without_returning(&txn)
        .await
        .context("insert checkpoint key")?;
        txn.commit().await.context("commit key choice")?;
        Ok(private_key.to_string())
    }
}

async fn latest(db: &impl ConnectionTrait) -> Result<Option<CheckpointRecord>> {
    checkpoints::Entity::find()
        .order_by_desc(checkpoints::Column::CheckpointDate)
        .one(db)
        .await
        .context("read the newest checkpoint")?
        .map(checkpoint_record)
        .transpose()
}

/// Entries created before `before_ms` that have no leaf, after `after` in (created_at, id)
/// order.
fn unindexed(
    before_ms: UnixMillis,
    after: Option<&(UnixMillis, String)>,
) -> sea_orm::Select<entries::Entity> {
    // Scoped here: its `max`/`min` would shadow the integer ones elsewhere in this file.
    use sea_orm::sea_query::ExprTrait;
    let has_leaf = Query::select()
        .expr(Expr::val(1))
        .from(leaves::Entity)
        .and_where(
            Expr::col((leaves::Entity, leaves::Column::EntryId))
                .equals((entries::Entity, entries::Column::Id)),
        )
        .to_owned();
    let mut query = entries::Entity::find()
        .filter(entries::Column::CreatedAtMs.lt(before_ms))
        .filter(Expr::exists(has_leaf).not());
    if let Some((at, id)) = after {
        // The plain bound lets the (created_at_ms, id) index start at the cursor; the OR alone
        // would make every page scan from the oldest entry.
        query = query.filter(entries::Column::CreatedAtMs.gte(*at)).filter(
            Condition::any()
                .add(entries::Column::CreatedAtMs.gt(*at))
                .add(
                    Condition::all()
                        .add(entries::Column::CreatedAtMs.eq(*at))
                        .add(entries::Column::Id.gt(id.as_str())),
                ),
        );
    }
    query
}

async fn insert_checkpoint(txn: &DatabaseTransaction, record: &CheckpointRecord) -> Result<()> {
    checkpoints::Entity::insert(checkpoints::ActiveModel {
        id: Set(record.id.clone()),
        checkpoint_date: Set(record.checkpoint_date.clone()),
        day_end_ms: Set(record.day_end_ms),
        tree_size: Set(record.tree_size as i64),
        root_hash: Set(hex::encode(record.root_hash)),
        total_volume: Set(record.total_volume),
        volume_by_currency: Set(
            serde_json::to_string(&record.volume_by_currency).unwrap_or_else(|_| "{}".into())
        ),
        signed_note: Set(record.signed_note.clone()),
        verifier_key: Set(record.verifier_key.clone()),
        created_at_ms: Set(record.created_at_ms),
    })
    .exec_without_returning(txn)
    .await
    .map_err(|e| concurrent_build(e, "insert checkpoint"))?;
    Ok(())
}

/// Running sums of the covered entries' amounts.
struct Volumes {
    total: i64,
    by_currency: BTreeMap<String, i64>,
}

/// Appends every entry created before the day's end that has no leaf yet, page by page, in
/// (created_at, id) order: its leaf row, the perfect nodes it completes, its amount.
async fn add_unindexed_leaves(
    txn: &DatabaseTransaction,
    spec: &CheckpointSpec<'_>,
    frontier: &mut Frontier,
    volumes: &mut Volumes,
) -> Result<()> {
    let mut after: Option<(UnixMillis, String)> = None;
    loop {
        let page = unindexed(spec.day_end_ms, after.as_ref())
            .order_by_asc(entries::Column::CreatedAtMs)
            .order_by_asc(entries::Column::Id)
            .limit(BUILD_PAGE)
            .all(txn)
            .await
            .context("read entries to checkpoint")?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some((last.created_at_ms, last.id.clone()));
        if frontier.size() + page.len() as u64 >= LEAF_INDEX_LIMIT {
            return Err(StorageError::Corrupt("the ledger tree is full".into()));
        }
        let mut node_rows = Vec::with_capacity(page.len() * 2);
        let mut leaf_rows = Vec::with_capacity(page.len());
        for entry in &page {
            let leaf = merkle::entry_leaf_hash(&entry.entry_hash)
                .ok_or_else(|| StorageError::Corrupt(format!("entry hash of {}", entry.id)))?;
            leaf_rows.push(leaves::ActiveModel {
                leaf_index: Set(frontier.size() as i64),
                entry_id: Set(entry.id.clone()),
                checkpoint_date: Set(spec.date.to_string()),
            });
            frontier.push(leaf, |id, hash| {
                node_rows.push(nodes::ActiveModel {
                    node_id: Set(node_key(id)),
                    hash: Set(hex::encode(hash)),
                });
            });
            volumes.total = volumes.total.saturating_add(entry.amount);
            let volume = volumes
                .by_currency
                .entry(entry.currency.clone())
                .or_insert(0);
            *volume = volume.saturating_add(entry.amount);
        }
        insert_rows(txn, leaf_rows, node_rows).await?;
    }
}

async fn insert_rows(
    txn: &DatabaseTransaction,
    leaf_rows: Vec<leaves::ActiveModel>,
    node_rows: Vec<nodes::ActiveModel>,
) -> Result<()> {
    for chunk in leaf_rows.chunks(INSERT_CHUNK) {
        leaves::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await
            .map_err(|e| concurrent_build(e, "insert ledger leaves"))?;
    }
    for chunk in node_rows.chunks(INSERT_CHUNK) {
        nodes::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await
            .map_err(|e| concurrent_build(e, "insert merkle nodes"))?;
    }
    Ok(())
}

/// A unique violation during a build means another process built concurrently.
fn concurrent_build(e: sea_orm::DbErr, step: &'static str) -> StorageError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            StorageError::Conflict("another process built this checkpoint concurrently".into())
        }
        _ => StorageError::Database { step, source: e },
    }
}
