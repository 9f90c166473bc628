//! The public ledger: appends in groups under the organisation's head row, reads in order.
//!
//! An append locks the head (`SELECT … FOR UPDATE` on PostgreSQL; on SQLite the one writer
//! connection already serialises writers), links each new entry to the one before, inserts
//! them and moves the head, in one transaction. A unique (organisation, seq) index backs the
//! lock: two writers can never both add entry n. An entry with a dedupe key (what it records,
//! e.g. `donation_received:don_…`) is written once; appending it again answers the stored one.

use std::collections::HashMap;

use ampflow_types::UnixMillis;
use ampflow_types::ledger::{LedgerEntryContent, LedgerMetadata, ledger_timestamp};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};

use crate::entities::{ledger_entries as entries, ledger_heads as heads};
use crate::{Context, Result, Storage, StorageError, prefixed_id};

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLedgerEntry {
    pub entry_type: String,
    pub amount: i64,
    pub currency: String,
    pub metadata: LedgerMetadata,
    pub created_at_ms: UnixMillis,
    /// What the entry records; an entry with a key already in the ledger is not appended.
    pub dedupe_key: Option<String>,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntryRecord {
    /// 1, 2, 3, … within the organisation.
    pub seq: u64,
    pub content: LedgerEntryContent,
    pub entry_hash: String,
    pub created_at_ms: UnixMillis,
}

/// Which entries a ledger read returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerRange {
    /// Entries after this sequence number.
    pub after_seq: u64,
    /// Entries created at or after this instant.
    pub from_ms: Option<UnixMillis>,
    /// Entries created before this instant.
    pub until_ms: Option<UnixMillis>,
}

impl Storage {
    /// Appends `new` to the organisation's chain, in order, in one transaction; answers one
    /// record per entry (the stored one for an entry whose dedupe key was already used).
    pub async fn append_ledger_entries(
        &self,
        organisation_id: &str,
        new: &[NewLedgerEntry],
        now: UnixMillis,
    ) -> Result<Vec<LedgerEntryRecord>> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.db.begin().await.context("begin ledger append")?;
        let inserted = heads::Entity::insert(heads::ActiveModel {
            organisation_id: Set(organisation_id.to_string()),
            seq: Set(0),
            entry_hash: Set(None),
            updated_at_ms: Set(now),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(heads::Column::OrganisationId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await;
        match inserted {
            Ok(_) | Err(sea_orm::DbErr::RecordNotInserted) => {}
            Err(e) => return Err(e).context("create ledger head"),
        }
        let mut head_query = heads::Entity::find_by_id(organisation_id.to_string());
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            head_query = head_query.lock_exclusive();
        }
        let head = head_query
            .one(&txn)
            .await
            .context("lock ledger head")?
            .ok_or_else(|| StorageError::Corrupt(format!("ledger head of {organisation_id}")))?;

        // Entries already recorded answer as they are.
        let keys: Vec<&str> = new.iter().filter_map(|e| e.dedupe_key.as_deref()).collect();
        let mut existing: HashMap<String, LedgerEntryRecord> = HashMap::new();
        if !keys.is_empty() {
            for model in entries::Entity::find()
                .filter(entries::Column::DedupeKey.is_in(keys))
                .all(&txn)
                .await
                .context("find recorded ledger entries")?
            {
                if let Some(key) = model.dedupe_key.clone() {
                    existing.insert(key, entry_record(model));
                }
            }
        }

        let mut seq = head.seq.max(0) as u64;
        let mut prev = head.entry_hash.clone();
        let mut rows = Vec::new();
        let mut answers = Vec::with_capacity(new.len());
        for entry in new {
            if let Some(found) = entry.dedupe_key.as_ref().and_then(|k| existing.get(k)) {
                answers.push(found.clone());
                continue;
            }
            seq += 1;
            let content = LedgerEntryContent {
                amount: entry.amount,
                currency: entry.currency.clone(),
                id: prefixed_id("led"),
                metadata: entry.metadata.clone(),
                organisation_id: organisation_id.to_string(),
                prev_entry_hash: prev.clone(),
                timestamp: ledger_timestamp(entry.created_at_ms),
                entry_type: entry.entry_type.clone(),
            };
            let entry_hash = content.entry_hash();
            rows.push(entries::ActiveModel {
                id: Set(content.id.clone()),
                organisation_id: Set(organisation_id.to_string()),
                seq: Set(seq as i64),
                entry_type: Set(content.entry_type.clone()),
                amount: Set(content.amount),
                currency: Set(content.currency.clone()),
                donation_id: Set(content.metadata.donation_id.clone()),
                donor_name: Set(content.metadata.donor_name.clone()),
                stripe_payment_intent_id: Set(content.metadata.stripe_payment_intent_id.clone()),
                created_at_ms: Set(entry.created_at_ms),
                entry_hash: Set(entry_hash.clone()),
                prev_entry_hash: Set(prev.clone()),
                dedupe_key: Set(entry.dedupe_key.clone()),
            });
            let record = LedgerEntryRecord {
                seq,
                content,
                entry_hash: entry_hash.clone(),
                created_at_ms: entry.created_at_ms,
            };
            if let Some(key) = &entry.dedupe_key {
                // The same key twice in one batch is recorded once.
                existing.insert(key.clone(), record.clone());
            }
            answers.push(record);
            prev = Some(entry_hash);
        }
        if !rows.is_empty() {
            for chunk in rows.chunks(500) {
                entries::Entity::insert_many(chunk.to_vec())
                    .exec_without_returning(&txn)
                    .await
                    .map_err(|e| match e.sql_err() {
                        Some(SqlErr::UniqueConstraintViolation(_)) => {
                            StorageError::Corrupt(format!(
                                "ledger of {organisation_id}: an entry was appended concurrently"
                            ))
                        }
                        _ => StorageError::Database {
                            step: "insert ledger entries",
                            source: e,
                        },
                    })?;
            }
            let moved = heads::Entity::update_many()
                .col_expr(
                    heads::Column::Seq,
                    sea_orm::sea_query::Expr::value(seq as i64),
                )
                .col_expr(
                    heads::Column::EntryHash,
                    sea_orm::sea_query::Expr::value(prev),
                )
                .col_expr(
                    heads::Column::UpdatedAtMs,
                    sea_orm::sea_query::Expr::value(now),
                )
                .filter(heads::Column::OrganisationId.eq(organisation_id))
                .filter(heads::Column::Seq.eq(head.seq))
                .exec(&txn)
                .await
                .context("move ledger head")?;
            if moved.rows_affected != 1 {
                txn.rollback().await.context("roll back ledger append")?;
                return Err(StorageError::Corrupt(format!(
                    "ledger head of {organisation_id} moved under a locked append"
                )));
            }
        }
        txn.commit().await.context("commit ledger append")?;
        Ok(answers)
    }

    /// The organisation's entries in chain order, within `range`, at most `limit`.
    pub async fn ledger_entries(
        &self,
        organisation_id: &str,
        range: LedgerRange,
        limit: u64,
    ) -> Result<Vec<LedgerEntryRecord>> {
        let mut query = entries::Entity::find()
            .filter(entries::Column::OrganisationId.eq(organisation_id))
            .filter(entries::Column::Seq.gt(range.after_seq as i64));
        if let Some(from) = range.from_ms {
            query = query.filter(entries::Column::CreatedAtMs.gte(from));
        }
        if let Some(until) = range.until_ms {
            query = query.filter(entries::Column::CreatedAtMs.lt(until));
        }
        Ok(query
            .order_by_asc(entries::Column::Seq)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("read ledger entries")?
            .into_iter()
            .map(entry_record)
            .collect())
    }

    /// The organisation's entry count and last hash.
    pub async fn ledger_head(&self, organisation_id: &str) -> Result<(u64, Option<String>)> {
        Ok(heads::Entity::find_by_id(organisation_id.to_string())
            .one(&self.reader)
            .await
            .context("read ledger head")?
            .map(|h| (h.seq.max(0) as u64, h.entry_hash))
            .unwrap_or((0, None)))
    }
}

fn entry_record(m: entries::Model) -> LedgerEntryRecord {
    LedgerEntryRecord {
        seq: m.seq.max(0) as u64,
        content: LedgerEntryContent {
            amount: m.amount,
            currency: m.currency,
            id: m.id,
            metadata: LedgerMetadata {
                donation_id: m.donation_id,
                donor_name: m.donor_name,
                stripe_payment_intent_id: m.stripe_payment_intent_id,
            },
            organisation_id: m.organisation_id,
            prev_entry_hash: m.prev_entry_hash,
            timestamp: ledger_timestamp(m.created_at_ms),
            entry_type: m.entry_type,
        },
        entry_hash: m.entry_hash,
        created_at_ms: m.created_at_ms,
    }
}
