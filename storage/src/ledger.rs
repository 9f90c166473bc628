//! The public ledger: appends in groups under the organisation's head row, reads in order.
//!
//! An append locks the head (`SELECT … FOR UPDATE` on PostgreSQL; on SQLite the one writer
//! connection already serialises writers), links each new entry to the one before, inserts
//! them and moves the head, in one transaction. A unique (organisation, seq) index backs the
//! lock: two writers can never both add entry n. An entry with a dedupe key (what it records,
//! e.g. `donation_received:don_…`) is written once; appending it again answers the stored one.

use std::collections::{BTreeMap, HashMap};

use ampflow_types::UnixMillis;
use ampflow_types::ledger::{
    LedgerEntryContent, LedgerMetadata, ledger_timestamp, running_total_addition,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    TransactionTrait,
};

use crate::entities::{ledger_entries as entries, ledger_heads as heads};
use crate::{Context, LedgerRepo, Result, StorageError, prefixed_id};

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
    pub rule: AmountRule,
}

/// How an entry's amount is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AmountRule {
    /// `amount` as given.
    #[default]
    Exact,
    /// `amount` is minus the donation's refunded total so far (Stripe reports a charge's
    /// `amount_refunded` as a running total, partial refunds included). The entry records only
    /// the part the donation's earlier entries of the same type do not cover yet, read under
    /// the head lock, so totals that arrive twice, concurrently or out of order add up to the
    /// largest one. Nothing is appended when they already cover it; the answer is then the
    /// donation's latest entry of that type. Needs `metadata.donation_id`.
    RunningTotal,
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

impl LedgerRepo {
    /// Appends `new` to the organisation's chain, in order, in one transaction; answers one
    /// record per entry (the stored one for an entry whose dedupe key was already used).
    pub async fn append_ledger_entries(
        &self,
        organisation_id: &str,
        new: &[NewLedgerEntry],
        now: UnixMillis,
    ) -> Result<Vec<LedgerEntryRecord>> {
        append_alone(&self.db, organisation_id, new, now).await
    }

    /// As [`append_ledger_entries`](Self::append_ledger_entries), group-committed with the
    /// appends other organisations make at the same time: see [`write_ledger_groups`].
    pub async fn append_ledger_group(
        &self,
        organisation_id: &str,
        new: Vec<NewLedgerEntry>,
        now: UnixMillis,
    ) -> Result<Vec<LedgerEntryRecord>> {
        let job = LedgerJob {
            organisation_id: organisation_id.to_string(),
            entries: new,
            now,
        };
        self.ledger_batch.submit(job).await?
    }
}

/// One organisation's entries to append.
#[derive(Debug)]
pub(crate) struct LedgerJob {
    organisation_id: String,
    entries: Vec<NewLedgerEntry>,
    now: UnixMillis,
}

/// Appends several organisations' entries in one transaction (group commit across
/// organisations: with many organisations each one's queue is short, so batching per
/// organisation alone would still mean a commit per entry). Heads are locked in organisation
/// order, so two batches (two processes) on PostgreSQL never wait on each other in a cycle.
/// When the transaction fails (one organisation's append refused, a deadlock), it is rolled
/// back and each organisation's entries are appended in a transaction of their own, so one
/// organisation's trouble is reported to its own callers only.
pub(crate) async fn write_ledger_groups(
    db: &DatabaseConnection,
    batch: Vec<LedgerJob>,
) -> Result<Vec<Result<Vec<LedgerEntryRecord>>>> {
    if batch.len() > 1 {
        match append_together(db, &batch).await {
            Ok(answers) => return Ok(answers.into_iter().map(Ok).collect()),
            Err(error) => {
                tracing::debug!(size = batch.len(), %error, "ledger batch failed; one by one")
            }
        }
    }
    let mut answers = Vec::with_capacity(batch.len());
    for job in &batch {
        answers.push(append_alone(db, &job.organisation_id, &job.entries, job.now).await);
    }
    Ok(answers)
}

async fn append_together(
    db: &DatabaseConnection,
    batch: &[LedgerJob],
) -> Result<Vec<Vec<LedgerEntryRecord>>> {
    // One group per organisation, in organisation order (the lock order); an organisation's
    // jobs keep their order within its group.
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, job) in batch.iter().enumerate() {
        groups.entry(&job.organisation_id).or_default().push(i);
    }
    let mut joined: Vec<(&str, Vec<NewLedgerEntry>, UnixMillis)> = Vec::new();
    for (org, jobs) in &groups {
        let entries = jobs
            .iter()
            .flat_map(|i| batch[*i].entries.iter().cloned())
            .collect();
        let now = jobs.iter().map(|i| batch[*i].now).max().unwrap_or_default();
        joined.push((org, entries, now));
    }
    let txn = db.begin().await.context("begin ledger batch")?;
    let groups_in: Vec<(&str, &[NewLedgerEntry], UnixMillis)> = joined
        .iter()
        .map(|(org, entries, now)| (*org, entries.as_slice(), *now))
        .collect();
    let answered = append_in(&txn, &groups_in).await?;
    txn.commit().await.context("commit ledger batch")?;
    // Back to the jobs, each its own slice of its organisation's answers.
    let mut answers = vec![Vec::new(); batch.len()];
    for ((_, jobs), mut records) in groups.into_iter().zip(answered) {
        for i in jobs {
            let rest = records.split_off(batch[i].entries.len().min(records.len()));
            answers[i] = std::mem::replace(&mut records, rest);
        }
    }
    Ok(answers)
}

/// One organisation's entries in a transaction of their own.
async fn append_alone(
    db: &DatabaseConnection,
    organisation_id: &str,
    new: &[NewLedgerEntry],
    now: UnixMillis,
) -> Result<Vec<LedgerEntryRecord>> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let txn = db.begin().await.context("begin ledger append")?;
    let mut answers = append_in(&txn, &[(organisation_id, new, now)]).await?;
    txn.commit().await.context("commit ledger append")?;
    Ok(answers.pop().unwrap_or_default())
}

/// Appends each organisation's entries to its chain inside `txn`, under the head locks, with a
/// fixed number of statements for all of them: create missing heads, lock the heads (in
/// organisation order: `groups` must be sorted by organisation, each once), read the dedupe
/// keys already recorded, insert every new entry, move every head. Answers one list of
/// records per group.
async fn append_in(
    txn: &DatabaseTransaction,
    groups: &[(&str, &[NewLedgerEntry], UnixMillis)],
) -> Result<Vec<Vec<LedgerEntryRecord>>> {
    let groups: Vec<&(&str, &[NewLedgerEntry], UnixMillis)> = groups
        .iter()
        .filter(|(_, new, _)| !new.is_empty())
        .collect();
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let heads_read = lock_heads(txn, &groups).await?;
    let all_new: Vec<NewLedgerEntry> = groups
        .iter()
        .flat_map(|(_, new, _)| new.iter())
        .filter(|e| e.rule == AmountRule::RunningTotal)
        .cloned()
        .collect();
    let mut plan = Plan {
        existing: recorded_by_key(txn, &groups).await?,
        totals: running_totals(txn, &all_new).await?,
        rows: Vec::new(),
        moves: Vec::new(),
    };
    let mut answers = Vec::with_capacity(groups.len());
    for (organisation_id, new, now) in &groups {
        let head = heads_read
            .get(*organisation_id)
            .ok_or_else(|| StorageError::Corrupt(format!("ledger head of {organisation_id}")))?;
        answers.push(plan.group(organisation_id, new, *now, head)?);
    }
    for chunk in plan.rows.chunks(500) {
        entries::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await
            .map_err(|e| match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => {
                    StorageError::Corrupt("ledger: an entry was appended concurrently".into())
                }
                _ => StorageError::Database {
                    step: "insert ledger entries",
                    source: e,
                },
            })?;
    }
    move_heads(txn, &plan.moves).await?;
    Ok(answers)
}

/// Creates the groups' missing heads, then reads them, locked on PostgreSQL (in organisation
/// order, as every appender locks them; SQLite's write transaction is the lock there).
async fn lock_heads(
    txn: &DatabaseTransaction,
    groups: &[&(&str, &[NewLedgerEntry], UnixMillis)],
) -> Result<HashMap<String, heads::Model>> {
    let inserted =
        heads::Entity::insert_many(groups.iter().map(|(org, _, now)| heads::ActiveModel {
            organisation_id: Set(org.to_string()),
            seq: Set(0),
            entry_hash: Set(None),
            updated_at_ms: Set(*now),
        }))
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(heads::Column::OrganisationId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await;
    match inserted {
        Ok(_) | Err(sea_orm::DbErr::RecordNotInserted) => {}
        Err(e) => return Err(e).context("create ledger heads"),
    }
    let mut head_query = heads::Entity::find()
        .filter(heads::Column::OrganisationId.is_in(groups.iter().map(|(org, _, _)| *org)))
        .order_by_asc(heads::Column::OrganisationId);
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        head_query = head_query.lock_exclusive();
    }
    Ok(head_query
        .all(txn)
        .await
        .context("lock ledger heads")?
        .into_iter()
        .map(|h| (h.organisation_id.clone(), h))
        .collect())
}

/// The entries already recorded under the groups' dedupe keys: they answer as they are.
async fn recorded_by_key(
    txn: &DatabaseTransaction,
    groups: &[&(&str, &[NewLedgerEntry], UnixMillis)],
) -> Result<HashMap<String, LedgerEntryRecord>> {
    let keys: Vec<&str> = groups
        .iter()
        .flat_map(|(_, new, _)| new.iter().filter_map(|e| e.dedupe_key.as_deref()))
        .collect();
    let mut existing = HashMap::new();
    if keys.is_empty() {
        return Ok(existing);
    }
    for model in entries::Entity::find()
        .filter(entries::Column::DedupeKey.is_in(keys))
        .all(txn)
        .await
        .context("find recorded ledger entries")?
    {
        if let Some(key) = model.dedupe_key.clone() {
            existing.insert(key, entry_record(model));
        }
    }
    Ok(existing)
}

/// (organisation, seq read, new seq, new hash, now) of a head that moves.
type HeadMove = (String, i64, i64, String, UnixMillis);

/// An append being planned under the head locks: what is recorded already, the running
/// totals as read, and the rows and head moves to write.
struct Plan {
    existing: HashMap<String, LedgerEntryRecord>,
    totals: HashMap<(String, String), RunningTotal>,
    rows: Vec<entries::ActiveModel>,
    moves: Vec<HeadMove>,
}

/// What one new entry comes to: a record that answers it already, or the amount to append.
enum Planned {
    Answered(Box<LedgerEntryRecord>),
    Append(i64),
}

impl Plan {
    /// Chains one organisation's new entries after its `head`; answers their records.
    fn group(
        &mut self,
        organisation_id: &str,
        new: &[NewLedgerEntry],
        now: UnixMillis,
        head: &heads::Model,
    ) -> Result<Vec<LedgerEntryRecord>> {
        let mut seq = head.seq.max(0) as u64;
        let mut prev = head.entry_hash.clone();
        let mut answers = Vec::with_capacity(new.len());
        for entry in new {
            let amount = match self.amount(entry)? {
                Planned::Answered(record) => {
                    answers.push(*record);
                    continue;
                }
                Planned::Append(amount) => amount,
            };
            seq += 1;
            let record = self.row(organisation_id, entry, amount, seq, prev.clone());
            if let Some(key) = &entry.dedupe_key {
                // The same key twice in one batch is recorded once.
                self.existing.insert(key.clone(), record.clone());
            }
            if entry.rule == AmountRule::RunningTotal
                && let Some(total) = self.totals.get_mut(&running_total_key(entry)?)
            {
                total.latest = Some(record.clone());
            }
            prev = Some(record.entry_hash.clone());
            answers.push(record);
        }
        if let Some(hash) = prev.filter(|_| seq as i64 != head.seq) {
            self.moves
                .push((organisation_id.to_string(), head.seq, seq as i64, hash, now));
        }
        Ok(answers)
    }

    /// The amount a new entry appends, or the record that already answers it: its dedupe
    /// key's, or (a running total the entries so far cover) the donation's latest entry of
    /// its type. The running-total rule is `ampflow_types::ledger::running_total_addition`.
    fn amount(&mut self, entry: &NewLedgerEntry) -> Result<Planned> {
        if let Some(found) = entry.dedupe_key.as_ref().and_then(|k| self.existing.get(k)) {
            return Ok(Planned::Answered(Box::new(found.clone())));
        }
        if entry.rule == AmountRule::Exact {
            return Ok(Planned::Append(entry.amount));
        }
        let total = self
            .totals
            .get_mut(&running_total_key(entry)?)
            .ok_or_else(|| StorageError::Corrupt("running total not read".into()))?;
        match running_total_addition(entry.amount, total.recorded) {
            Some(addition) => {
                total.recorded = entry.amount;
                Ok(Planned::Append(addition))
            }
            None => total
                .latest
                .clone()
                .map(|latest| Planned::Answered(Box::new(latest)))
                .ok_or_else(|| {
                    StorageError::Corrupt("a running total of zero has no entry to answer".into())
                }),
        }
    }

    /// The new entry's row (kept for the insert) and its record.
    fn row(
        &mut self,
        organisation_id: &str,
        entry: &NewLedgerEntry,
        amount: i64,
        seq: u64,
        prev: Option<String>,
    ) -> LedgerEntryRecord {
        let content = LedgerEntryContent {
            amount,
            currency: entry.currency.clone(),
            id: prefixed_id("led"),
            metadata: entry.metadata.clone(),
            organisation_id: organisation_id.to_string(),
            prev_entry_hash: prev.clone(),
            timestamp: ledger_timestamp(entry.created_at_ms),
            entry_type: entry.entry_type.clone(),
        };
        let entry_hash = content.entry_hash();
        self.rows.push(entries::ActiveModel {
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
            prev_entry_hash: Set(prev),
            dedupe_key: Set(entry.dedupe_key.clone()),
        });
        LedgerEntryRecord {
            seq,
            content,
            entry_hash,
            created_at_ms: entry.created_at_ms,
        }
    }
}

/// Moves every head in one statement (`UPDATE … FROM (VALUES …)`, which PostgreSQL and SQLite
/// both take), each only from the sequence number read under the lock.
async fn move_heads(txn: &DatabaseTransaction, moves: &[HeadMove]) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let backend = txn.get_database_backend();
    let (list, values) = crate::sql::values_list(
        backend,
        moves.iter().map(|(org, read, seq, hash, now)| {
            [
                org.clone().into(),
                (*read).into(),
                (*seq).into(),
                hash.clone().into(),
                (*now).into(),
            ]
        }),
    );
    let sql = format!(
        "UPDATE ledger_heads SET seq = v.column3, entry_hash = v.column4, \
         updated_at_ms = v.column5 FROM (VALUES {list}) AS v \
         WHERE ledger_heads.organisation_id = v.column1 AND ledger_heads.seq = v.column2"
    );
    let moved = txn
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .await
        .context("move ledger heads")?;
    if moved.rows_affected() != moves.len() as u64 {
        return Err(StorageError::Corrupt(
            "a ledger head moved under a locked append".into(),
        ));
    }
    Ok(())
}

impl LedgerRepo {
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

/// What a donation's entries of one type add up to, and the latest of them.
struct RunningTotal {
    recorded: i64,
    latest: Option<LedgerEntryRecord>,
}

/// (donation id, entry type) of a [`AmountRule::RunningTotal`] entry.
fn running_total_key(entry: &NewLedgerEntry) -> Result<(String, String)> {
    let donation = entry.metadata.donation_id.clone().ok_or_else(|| {
        StorageError::Corrupt(format!(
            "a running-total {} entry without a donation id",
            entry.entry_type
        ))
    })?;
    Ok((donation, entry.entry_type.clone()))
}

/// The recorded totals of the donations whose running-total entries are being appended. Read
/// inside the append's transaction, after the head lock.
async fn running_totals(
    txn: &impl ConnectionTrait,
    new: &[NewLedgerEntry],
) -> Result<HashMap<(String, String), RunningTotal>> {
    let mut totals = HashMap::new();
    for entry in new.iter().filter(|e| e.rule == AmountRule::RunningTotal) {
        let key = running_total_key(entry)?;
        if totals.contains_key(&key) {
            continue;
        }
        let recorded = entries::Entity::find()
            .filter(entries::Column::DonationId.eq(key.0.as_str()))
            .filter(entries::Column::EntryType.eq(key.1.as_str()))
            .order_by_asc(entries::Column::Seq)
            .all(txn)
            .await
            .context("read a donation's running total")?;
        let total = RunningTotal {
            recorded: recorded.iter().map(|m| m.amount).sum(),
            latest: recorded.into_iter().last().map(entry_record),
        };
        totals.insert(key, total);
    }
    Ok(totals)
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
