//! Inclusion proofs of many entries at once: an organisation's entries, a page at a time, all
//! against one checkpoint. The perfect nodes every proof of the page needs are read together.

use std::collections::{BTreeSet, HashMap};

use ampflow_types::merkle::{self, NodeId};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::checkpoints::read_nodes;
use crate::entities::{ledger_entries as entries, ledger_leaves as leaves};
use crate::{
    CheckpointRecord, CheckpointRepo, Context, InclusionProofRecord, ProofLookupError, Result,
    StorageError,
};

/// A page of an organisation's proofs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPage {
    pub checkpoint: CheckpointRecord,
    /// One per entry of the page that the checkpoint covers, in chain order.
    pub proofs: Vec<InclusionProofRecord>,
    /// The sequence number of the page's last entry, when more entries follow.
    pub next_after_seq: Option<u64>,
}

impl CheckpointRepo {
    /// Proofs of the organisation's entries after `after_seq` (at most `limit` entries) in
    /// checkpoint `checkpoint_id` (the newest when `None`). Entries the checkpoint does not
    /// cover (newer ones) have no proof.
    pub async fn organisation_proofs(
        &self,
        organisation_id: &str,
        checkpoint_id: Option<&str>,
        after_seq: u64,
        limit: u64,
    ) -> Result<ProofPage, ProofLookupError> {
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
        let mut page = entries::Entity::find()
            .filter(entries::Column::OrganisationId.eq(organisation_id))
            .filter(entries::Column::Seq.gt(after_seq as i64))
            .order_by_asc(entries::Column::Seq)
            .limit(limit + 1)
            .all(&self.reader)
            .await
            .context("read entries to prove")?;
        let more = page.len() as u64 > limit;
        page.truncate(limit as usize);
        let next_after_seq = more
            .then(|| page.last().map(|e| e.seq.max(0) as u64))
            .flatten();
        let index_of = leaf_indexes(&self.reader, &page).await?;
        let size = checkpoint.tree_size;
        let covered: Vec<(&entries::Model, u64)> = page
            .iter()
            .filter_map(|e| index_of.get(&e.id).map(|i| (e, *i)))
            .filter(|(_, i)| *i < size)
            .collect();
        let mut needed: BTreeSet<NodeId> = merkle::needed_nodes(None, size).into_iter().collect();
        for (_, index) in &covered {
            needed.extend(merkle::needed_nodes(Some(*index), size));
        }
        let needed: Vec<NodeId> = needed.into_iter().collect();
        let stored = read_nodes(&self.reader, &needed).await?;
        let mut source = |id: NodeId| stored.get(&id).copied().unwrap_or_default();
        if merkle::root(size, &mut source) != checkpoint.root_hash {
            return Err(StorageError::Corrupt(format!(
                "the stored tree does not hash to the head of {}",
                checkpoint.id
            ))
            .into());
        }
        let mut proofs = Vec::with_capacity(covered.len());
        for (entry, index) in covered {
            let audit_path = merkle::inclusion_proof(index, size, &mut source)
                .ok_or(ProofLookupError::NotInCheckpoint)?;
            proofs.push(InclusionProofRecord {
                entry_id: entry.id.clone(),
                entry_hash: entry.entry_hash.clone(),
                leaf_index: index,
                audit_path,
                checkpoint: checkpoint.clone(),
            });
        }
        Ok(ProofPage {
            checkpoint,
            proofs,
            next_after_seq,
        })
    }
}

/// The leaf index of each of these entries that has one, by entry id (a thousand ids a query).
async fn leaf_indexes(
    reader: &sea_orm::DatabaseConnection,
    page: &[entries::Model],
) -> Result<HashMap<String, u64>> {
    let ids: Vec<String> = page.iter().map(|e| e.id.clone()).collect();
    let mut index_of: HashMap<String, u64> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(1_000) {
        for leaf in leaves::Entity::find()
            .filter(leaves::Column::EntryId.is_in(chunk.iter().cloned()))
            .all(reader)
            .await
            .context("read ledger leaves")?
        {
            index_of.insert(leaf.entry_id, leaf.leaf_index.max(0) as u64);
        }
    }
    Ok(index_of)
}
