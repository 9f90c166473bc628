//! Auto-invest tasks: at most one open task per (chain, wallet, campaign), merged while it is
//! pending, claimed into an `investFor` transaction intent by the chain's executor, and settled
//! from the transaction's per-record events — always by conditional updates, so the HTTP side
//! (merge, cancel) and the executor never both win, whichever process they run in.

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

use crate::chain::{finalize_intent, insert_intent};
use crate::current_tx::{WithIntentHash, with_intent_hash};
use crate::entities::{auto_invest_open_counts as counts, auto_invest_tasks as tasks};
use crate::keyset::{Keyset, Order};
use crate::typed::{chain_column, read_address, read_amount, read_chain, read_optional};
use crate::{
    AutoInvestRepo, Context, NewTxIntent, Result, RetryPolicy, StorageError, TxFinal,
    TxIntentRecord,
};
use ampflow_types::{AfterFailure, ChainId, TokenAmount, UnixMillis, WalletAddress};

pub use ampflow_types::auto_invest::{
    AutoInvestStatus, AutoInvestSubmit, AutoInvestTask, SubmitDecision, decide_submit,
};

const OPEN: [&str; 2] = ["pending", "in_process"];
const FINISHED: [&str; 4] = ["success", "failed", "expired", "cancelled"];

/// What a submit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Created(AutoInvestTask),
    /// The pending task took the new amount and its expiry restarted.
    Merged(AutoInvestTask),
    /// The triple's task is in a transaction: nothing changed.
    InProcess(AutoInvestTask),
    /// The wallet has this many open tasks on the chain already.
    TooMany(u64),
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled(AutoInvestTask),
    InProcess(AutoInvestTask),
    NotFound,
}

/// Which tasks a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFilter {
    Wallet(WalletAddress),
    Campaign(WalletAddress),
}

/// A pending task the executor looked at and found not ready (or not investable now).
#[derive(Debug, Clone)]
pub struct Deferral {
    pub id: String,
    pub version: i64,
    pub reason: String,
    pub next_check_at_ms: UnixMillis,
}

/// What an `InvestFor` event said about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvestOutcome {
    pub success: bool,
    pub invested: TokenAmount,
    pub reason: Option<String>,
    /// For a refusal: whether the task may be tried again (the wallet was not ready at
    /// execution, which `getStatus` checks again first). False when the campaign itself
    /// refused: the task then fails at once, since another attempt would pay again for the
    /// same refusal.
    pub retry: bool,
}

pub fn auto_invest_open_key(
    chain_id: ChainId,
    wallet: &WalletAddress,
    campaign: &WalletAddress,
) -> String {
    format!("{chain_id}:{wallet}:{campaign}")
}

/// How many times a submit retries when a concurrent change won the race.
const SUBMIT_RACES_MAX: usize = 5;

impl AutoInvestRepo {
    /// The triple's open task, read from the writer (a decision follows).
    pub async fn open_auto_invest(
        &self,
        chain_id: ChainId,
        wallet: &WalletAddress,
        campaign: &WalletAddress,
    ) -> Result<Option<AutoInvestTask>> {
        find_open(&self.db, &auto_invest_open_key(chain_id, wallet, campaign)).await
    }

    /// How many tasks the wallet has open (pending or in process) on the chain: the number
    /// the per-wallet cap is checked against.
    pub async fn open_auto_invest_count(
        &self,
        chain_id: ChainId,
        wallet: &WalletAddress,
    ) -> Result<u64> {
        let key = (chain_column(chain_id), wallet.to_string());
        Ok(open_counts(&self.reader, [&key])
            .await?
            .get(&key)
            .copied()
            .unwrap_or(0))
    }

    pub async fn auto_invest_task(&self, id: &str) -> Result<Option<AutoInvestTask>> {
        with_intent_hash(
            tasks::Entity::find_by_id(id.to_string()),
            tasks::Column::TxIntentId,
        )
        .one(&self.reader)
        .await
        .context("find auto-invest")?
        .map(shown_task)
        .transpose()
    }

    /// Queues a task for the triple, or merges into its pending one (new amount, expiry
    /// restarted, checked again at once). A task in process is left alone.
    ///
    /// Submits arriving together are written together (group commit, see [`write_submits`]):
    /// the answer comes once the batch is committed.
    pub async fn submit_auto_invest(&self, submit: &AutoInvestSubmit) -> Result<SubmitOutcome> {
        self.submit_batch.submit(submit.clone()).await
    }
}

/// Queues or merges one submit on its own, each step a statement of its own that retries when
/// a concurrent change won the race: the path for a lone submit and for a batch that met one.
async fn submit_one(db: &DatabaseConnection, submit: &AutoInvestSubmit) -> Result<SubmitOutcome> {
    let key = auto_invest_open_key(submit.chain_id, &submit.wallet, &submit.campaign);
    for _ in 0..SUBMIT_RACES_MAX {
        let open = find_open(db, &key).await?;
        let wallet = (chain_column(submit.chain_id), submit.wallet.to_string());
        let count = match open {
            Some(_) => 0,
            None => open_counts(db, [&wallet])
                .await?
                .get(&wallet)
                .copied()
                .unwrap_or(0),
        };
        match (decide_submit(open.as_ref(), count, submit), open) {
            (SubmitDecision::InProcess, Some(task)) => {
                return Ok(SubmitOutcome::InProcess(task));
            }
            (SubmitDecision::Merge(after), Some(before)) => {
                if write_merge(db, &after, before.version).await? {
                    return Ok(SubmitOutcome::Merged(after));
                }
                // Claimed or changed meanwhile: look again.
            }
            (SubmitDecision::TooMany, _) => return Ok(SubmitOutcome::TooMany(count)),
            (SubmitDecision::Create(task), _) => {
                let txn = db.begin().await.context("begin auto-invest submit")?;
                let inserted = tasks::Entity::insert(task_row(&task, Some(key.clone())))
                    .exec_without_returning(&txn)
                    .await;
                match inserted {
                    Ok(_) => {
                        adjust_open_counts(&txn, &BTreeMap::from([(wallet, 1)])).await?;
                        txn.commit().await.context("commit auto-invest submit")?;
                        return Ok(SubmitOutcome::Created(task));
                    }
                    Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    }
                    Err(e) => return Err(e).context("insert auto-invest"),
                }
            }
            // Only decided with a task.
            (SubmitDecision::InProcess | SubmitDecision::Merge(_), None) => {}
        }
    }
    Err(StorageError::Corrupt(format!(
        "auto-invest {key} kept changing under a submit"
    )))
}

/// Writes a merge decided against the task at `read_version`: false (nothing written) when
/// the task was claimed or changed since.
async fn write_merge(
    db: &impl ConnectionTrait,
    task: &AutoInvestTask,
    read_version: i64,
) -> Result<bool> {
    let updated = tasks::Entity::update_many()
        .col_expr(tasks::Column::Amount, Expr::value(task.amount.to_string()))
        .col_expr(tasks::Column::Version, Expr::value(task.version))
        .col_expr(tasks::Column::ExpiresAtMs, Expr::value(task.expires_at_ms))
        .col_expr(
            tasks::Column::NextCheckAtMs,
            Expr::value(task.next_check_at_ms),
        )
        .col_expr(tasks::Column::UpdatedAtMs, Expr::value(task.updated_at_ms))
        .filter(tasks::Column::Id.eq(task.id.as_str()))
        .filter(tasks::Column::Status.eq("pending"))
        .filter(tasks::Column::Version.eq(read_version))
        .exec(db)
        .await
        .context("merge auto-invest")?;
    Ok(updated.rows_affected == 1)
}

async fn find_open(db: &impl ConnectionTrait, key: &str) -> Result<Option<AutoInvestTask>> {
    tasks::Entity::find()
        .filter(tasks::Column::OpenKey.eq(key))
        .one(db)
        .await
        .context("find open auto-invest")?
        .map(task_record)
        .transpose()
}

/// Why a batch of submits gave way to one-by-one submits.
enum BatchError {
    /// A concurrent change (another process, the executor) won a race with the batch.
    Raced,
    Storage(StorageError),
}

impl From<StorageError> for BatchError {
    fn from(error: StorageError) -> Self {
        Self::Storage(error)
    }
}

/// Writes a batch of submits (group commit): one transaction reads the triples' open tasks
/// and the wallets' open counts in two statements, decides every submit in order as
/// [`submit_one`] would, then inserts the new tasks in one statement and applies each merge
/// (a conditional update on the version read). One commit, so one WAL flush, serves the batch.
///
/// When a concurrent change won a race (a task claimed or inserted by someone else since the
/// read) or a statement failed (a deadlock with another writer, say), the transaction is
/// rolled back and the batch is written one submit at a time, which resolves each race as a
/// lone submit does and reports any error that persists.
pub(crate) async fn write_submits(
    db: &DatabaseConnection,
    batch: Vec<AutoInvestSubmit>,
) -> Result<Vec<SubmitOutcome>> {
    if batch.len() > 1 {
        match write_submits_together(db, &batch).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(BatchError::Raced) => {
                tracing::debug!(size = batch.len(), "auto-invest batch raced; one by one");
            }
            // A deadlock or serialization failure with another writer (or anything else the
            // lone path would meet again and report): roll back, then one by one.
            Err(BatchError::Storage(error)) => {
                tracing::debug!(size = batch.len(), %error, "auto-invest batch failed; one by one");
            }
        }
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for submit in &batch {
        outcomes.push(submit_one(db, submit).await?);
    }
    Ok(outcomes)
}

async fn write_submits_together(
    db: &DatabaseConnection,
    batch: &[AutoInvestSubmit],
) -> std::result::Result<Vec<SubmitOutcome>, BatchError> {
    let keys: Vec<String> = batch
        .iter()
        .map(|s| auto_invest_open_key(s.chain_id, &s.wallet, &s.campaign))
        .collect();
    // Immediate on SQLite: the transaction reads, then writes, and a deferred one could not
    // upgrade to a writer once another connection (another process) had written meanwhile.
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
        .context("begin auto-invest batch")?;
    let open = open_tasks(&txn, &keys).await?;
    // Open counts of the wallets that may get a new task.
    let needs_count: Vec<(i64, String)> = batch
        .iter()
        .zip(&keys)
        .filter(|(_, key)| !open.contains_key(*key))
        .map(|(s, _)| (chain_column(s.chain_id), s.wallet.to_string()))
        .collect();
    let mut decided = Decided {
        counts: open_counts(&txn, &needs_count).await?,
        open,
        ..Decided::default()
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for (submit, key) in batch.iter().zip(&keys) {
        outcomes.push(decided.decide(submit, key)?);
    }
    decided.write(&txn).await?;
    txn.commit().await.context("commit auto-invest batch")?;
    Ok(outcomes)
}

/// The triples' open tasks, as they stand now, by open key.
async fn open_tasks(
    txn: &DatabaseTransaction,
    keys: &[String],
) -> Result<HashMap<String, AutoInvestTask>> {
    let mut open = HashMap::new();
    for row in tasks::Entity::find()
        .filter(tasks::Column::OpenKey.is_in(keys.iter().cloned()))
        .all(txn)
        .await
        .context("find open auto-invests")?
    {
        let task = task_record(row)?;
        open.insert(
            auto_invest_open_key(task.chain_id, &task.wallet, &task.campaign),
            task,
        );
    }
    Ok(open)
}

/// A batch's submits decided in order, each against the state the earlier ones left: the
/// open tasks (read, then as decided), the wallets' open counts, and what to write.
#[derive(Default)]
struct Decided {
    open: HashMap<String, AutoInvestTask>,
    counts: HashMap<(i64, String), u64>,
    /// Tasks opened per wallet, for the counts.
    opened: BTreeMap<(i64, String), i64>,
    /// Keys of the new tasks.
    created: Vec<String>,
    /// Keys of the merged tasks, with the version read from storage.
    merged: HashMap<String, i64>,
}

impl Decided {
    fn decide(
        &mut self,
        submit: &AutoInvestSubmit,
        key: &String,
    ) -> std::result::Result<SubmitOutcome, BatchError> {
        let wallet = (chain_column(submit.chain_id), submit.wallet.to_string());
        let count = self.counts.get(&wallet).copied().unwrap_or(0);
        let open = self.open.get(key);
        Ok(match (decide_submit(open, count, submit), open) {
            (SubmitDecision::InProcess, Some(task)) => SubmitOutcome::InProcess(task.clone()),
            (SubmitDecision::Merge(after), Some(before)) => {
                if !self.created.contains(key) {
                    self.merged.entry(key.clone()).or_insert(before.version);
                }
                self.open.insert(key.clone(), after.clone());
                SubmitOutcome::Merged(after)
            }
            (SubmitDecision::TooMany, _) => SubmitOutcome::TooMany(count),
            (SubmitDecision::Create(task), _) => {
                *self.counts.entry(wallet.clone()).or_default() += 1;
                *self.opened.entry(wallet).or_default() += 1;
                self.open.insert(key.clone(), task.clone());
                self.created.push(key.clone());
                SubmitOutcome::Created(task)
            }
            // Only decided with a task.
            (SubmitDecision::InProcess | SubmitDecision::Merge(_), None) => {
                return Err(BatchError::Storage(StorageError::Corrupt(format!(
                    "auto-invest {key}: a decision about a task with none"
                ))));
            }
        })
    }

    /// Inserts the new tasks in one statement, applies each merge as an update conditional
    /// on the version read, then moves the counts. `Raced` when another writer won meanwhile.
    async fn write(&self, txn: &DatabaseTransaction) -> std::result::Result<(), BatchError> {
        if !self.created.is_empty() {
            let rows = self
                .created
                .iter()
                .map(|key| task_row(&self.open[key], Some(key.clone())));
            match tasks::Entity::insert_many(rows)
                .exec_without_returning(txn)
                .await
            {
                Ok(_) => {}
                Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    return Err(BatchError::Raced);
                }
                Err(source) => {
                    return Err(BatchError::Storage(StorageError::Database {
                        step: "insert auto-invests",
                        source,
                    }));
                }
            }
        }
        // In id order, as every multi-row writer locks them.
        let mut merged: Vec<(&AutoInvestTask, i64)> = self
            .merged
            .iter()
            .map(|(key, version)| (&self.open[key], *version))
            .collect();
        merged.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        for (task, version_read) in merged {
            if !write_merge(txn, task, version_read).await? {
                return Err(BatchError::Raced);
            }
        }
        // Last, in wallet order, as every writer of the counts does.
        adjust_open_counts(txn, &self.opened).await?;
        Ok(())
    }
}

impl AutoInvestRepo {
    /// Cancels the triple's pending task.
    pub async fn cancel_auto_invest(
        &self,
        chain_id: ChainId,
        wallet: &WalletAddress,
        campaign: &WalletAddress,
        now: UnixMillis,
    ) -> Result<CancelOutcome> {
        for _ in 0..SUBMIT_RACES_MAX {
            let Some(task) = self.open_auto_invest(chain_id, wallet, campaign).await? else {
                return Ok(CancelOutcome::NotFound);
            };
            if task.status == AutoInvestStatus::InProcess {
                return Ok(CancelOutcome::InProcess(task));
            }
            let txn = self.db.begin().await.context("begin auto-invest cancel")?;
            let updated = finish(tasks::Entity::update_many(), "cancelled", now)
                .col_expr(tasks::Column::UpdatedAtMs, Expr::value(now))
                .filter(tasks::Column::Id.eq(task.id.as_str()))
                .filter(tasks::Column::Status.eq("pending"))
                .exec(&txn)
                .await
                .context("cancel auto-invest")?;
            if updated.rows_affected == 1 {
                let wallet = (chain_column(task.chain_id), task.wallet.to_string());
                adjust_open_counts(&txn, &BTreeMap::from([(wallet, -1)])).await?;
                txn.commit().await.context("commit auto-invest cancel")?;
                return Ok(CancelOutcome::Cancelled(AutoInvestTask {
                    status: AutoInvestStatus::Cancelled,
                    updated_at_ms: now,
                    finished_at_ms: Some(now),
                    ..task
                }));
            }
        }
        Err(StorageError::Corrupt(
            "an auto-invest kept changing under a cancel".into(),
        ))
    }

    /// Tasks on the chain for a wallet or a campaign, open or finished, newest first, after
    /// `cursor`.
    pub async fn list_auto_invests(
        &self,
        chain_id: ChainId,
        filter: TaskFilter,
        open: bool,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<AutoInvestTask>> {
        let query = tasks::Entity::find()
            .filter(tasks::Column::ChainId.eq(chain_column(chain_id)))
            .filter(match filter {
                TaskFilter::Wallet(wallet) => tasks::Column::Wallet.eq(wallet.to_string()),
                TaskFilter::Campaign(campaign) => tasks::Column::Campaign.eq(campaign.to_string()),
            })
            .filter(if open {
                tasks::Column::Status.is_in(OPEN)
            } else {
                tasks::Column::Status.is_in(FINISHED)
            });
        let query = crate::keyset::page(
            query,
            (tasks::Column::CreatedAtMs, tasks::Column::Id),
            Order::NewestFirst,
            cursor,
            limit,
        );
        with_intent_hash(query, tasks::Column::TxIntentId)
            .all(&self.reader)
            .await
            .context("list auto-invests")?
            .into_iter()
            .map(shown_task)
            .collect()
    }

    // ----- the executor -----

    /// Expires up to `limit` pending tasks of the chain whose expiry has passed; answers how
    /// many.
    pub async fn expire_auto_invests(
        &self,
        chain_id: ChainId,
        now: UnixMillis,
        limit: u64,
    ) -> Result<u64> {
        let mut found: Vec<(String, String)> = tasks::Entity::find()
            .select_only()
            .column(tasks::Column::Id)
            .column(tasks::Column::Wallet)
            .filter(tasks::Column::ChainId.eq(chain_column(chain_id)))
            .filter(tasks::Column::Status.eq("pending"))
            .filter(tasks::Column::ExpiresAtMs.lte(now))
            .limit(limit)
            .into_tuple()
            .all(&self.reader)
            .await
            .context("find expired auto-invests")?;
        if found.is_empty() {
            return Ok(0);
        }
        found.sort(); // id order, as every multi-row writer locks them
        let txn = self.db.begin().await.context("begin auto-invest expiry")?;
        let mut closed: BTreeMap<(i64, String), i64> = BTreeMap::new();
        let mut expired = 0;
        for (id, wallet) in found {
            // Merged meanwhile (its clock restarted) or claimed: left as it is.
            let updated = finish(tasks::Entity::update_many(), "expired", now)
                .col_expr(tasks::Column::UpdatedAtMs, Expr::value(now))
                .filter(tasks::Column::Id.eq(id))
                .filter(tasks::Column::Status.eq("pending"))
                .filter(tasks::Column::ExpiresAtMs.lte(now))
                .exec(&txn)
                .await
                .context("expire auto-invest")?;
            if updated.rows_affected == 1 {
                expired += 1;
                *closed.entry((chain_column(chain_id), wallet)).or_default() -= 1;
            }
        }
        adjust_open_counts(&txn, &closed).await?;
        txn.commit().await.context("commit auto-invest expiry")?;
        Ok(expired)
    }

    /// Up to `limit` pending tasks of the chain due for a look, the longest-waiting first.
    pub async fn due_auto_invests(
        &self,
        chain_id: ChainId,
        now: UnixMillis,
        limit: u64,
    ) -> Result<Vec<AutoInvestTask>> {
        tasks::Entity::find()
            .filter(tasks::Column::ChainId.eq(chain_column(chain_id)))
            .filter(tasks::Column::Status.eq("pending"))
            .filter(tasks::Column::NextCheckAtMs.lte(now))
            .order_by_asc(tasks::Column::NextCheckAtMs)
            .order_by_asc(tasks::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list due auto-invests")?
            .into_iter()
            .map(task_record)
            .collect()
    }

    /// Records why pending tasks were not invested, and when to look again (tasks merged
    /// meanwhile are left as they are).
    pub async fn defer_auto_invests(&self, deferrals: &[Deferral], now: UnixMillis) -> Result<()> {
        if deferrals.is_empty() {
            return Ok(());
        }
        // Rows are locked in id order by every multi-row writer (defer, claim, settle, a batch
        // of submits), so two of them on PostgreSQL never wait on each other in a cycle.
        let mut deferrals: Vec<&Deferral> = deferrals.iter().collect();
        deferrals.sort_by(|a, b| a.id.cmp(&b.id));
        let txn = self.db.begin().await.context("begin defer")?;
        for d in deferrals {
            tasks::Entity::update_many()
                .col_expr(tasks::Column::Reason, Expr::value(d.reason.clone()))
                .col_expr(
                    tasks::Column::NextCheckAtMs,
                    Expr::value(d.next_check_at_ms),
                )
                .col_expr(tasks::Column::UpdatedAtMs, Expr::value(now))
                .filter(tasks::Column::Id.eq(d.id.as_str()))
                .filter(tasks::Column::Status.eq("pending"))
                .filter(tasks::Column::Version.eq(d.version))
                .exec(&txn)
                .await
                .context("defer auto-invest")?;
        }
        txn.commit().await.context("commit defer")
    }

    /// Inserts `intent` and moves the tasks (id, version) into it, in one transaction. `None`
    /// (and nothing written) if any task was merged, cancelled or claimed meanwhile.
    pub async fn claim_auto_invests(
        &self,
        claimed: &[(String, i64)],
        intent: NewTxIntent,
        now: UnixMillis,
    ) -> Result<Option<TxIntentRecord>> {
        let mut claimed: Vec<&(String, i64)> = claimed.iter().collect();
        claimed.sort(); // id order, as every multi-row writer locks them
        let txn = self.db.begin().await.context("begin auto-invest claim")?;
        let record = insert_intent(&txn, intent, now).await?;
        for (id, version) in claimed {
            let updated = tasks::Entity::update_many()
                .col_expr(tasks::Column::Status, Expr::value("in_process"))
                .col_expr(tasks::Column::TxIntentId, Expr::value(record.id.clone()))
                .col_expr(tasks::Column::UpdatedAtMs, Expr::value(now))
                .filter(tasks::Column::Id.eq(id.as_str()))
                .filter(tasks::Column::Status.eq("pending"))
                .filter(tasks::Column::Version.eq(*version))
                .exec(&txn)
                .await
                .context("claim auto-invest")?;
            if updated.rows_affected != 1 {
                txn.rollback()
                    .await
                    .context("roll back auto-invest claim")?;
                return Ok(None);
            }
        }
        txn.commit().await.context("commit auto-invest claim")?;
        Ok(Some(record))
    }

    /// Ends the intent and settles its tasks, in one transaction. On a confirmed transaction
    /// each task takes its record's outcome from `outcomes` (keyed by wallet and campaign): a
    /// success completes it with the amount invested; a refusal sends it back to pending with
    /// the reason, or fails it once it has used its attempts (at once when the refusal is not
    /// to be retried). A failed transaction counts as a failed attempt for every task in it;
    /// one that reverted on chain fails them at once. False (and nothing written) if the intent
    /// was already final.
    pub async fn settle_auto_invests(
        &self,
        intent_id: &str,
        outcome: &TxFinal,
        outcomes: &HashMap<(WalletAddress, WalletAddress), InvestOutcome>,
        retry: RetryPolicy,
        now: UnixMillis,
    ) -> Result<bool> {
        let txn = self.db.begin().await.context("begin auto-invest settle")?;
        if !finalize_intent(&txn, intent_id, outcome, now).await? {
            txn.rollback()
                .await
                .context("roll back auto-invest settle")?;
            return Ok(false);
        }
        let rows = tasks::Entity::find()
            .filter(tasks::Column::TxIntentId.eq(intent_id))
            .filter(tasks::Column::Status.eq("in_process"))
            .order_by_asc(tasks::Column::Id) // updated in id order, as every writer does
            .all(&txn)
            .await
            .context("list tasks of intent")?;
        let mut closed: BTreeMap<(i64, String), i64> = BTreeMap::new();
        for row in rows {
            let key = (read_address(&row.wallet)?, read_address(&row.campaign)?);
            let attempts = row.attempts.max(0) as u32;
            let (tx_hash, failure, retryable) = match outcome {
                TxFinal::Confirmed { tx_hash, .. } => match outcomes.get(&key) {
                    Some(o) if o.success => {
                        if settle_success(&txn, &row.id, tx_hash, &o.invested, now).await? {
                            *closed.entry((row.chain_id, row.wallet)).or_default() -= 1;
                        }
                        continue;
                    }
                    Some(o) => (
                        Some(tx_hash.clone()),
                        o.reason
                            .clone()
                            .unwrap_or_else(|| "the investment was refused".into()),
                        o.retry,
                    ),
                    None => (
                        Some(tx_hash.clone()),
                        "the transaction emitted no InvestFor event for this task".into(),
                        true,
                    ),
                },
                TxFinal::Failed {
                    reason, tx_hash, ..
                } => (
                    tx_hash.clone(),
                    format!("the transaction failed: {reason}"),
                    !outcome.reverted_on_chain(),
                ),
            };
            let after = retry.after_failure(attempts + 1, &failure, retryable, now);
            if settle_failure(&txn, &row.id, attempts + 1, tx_hash, after, now).await? {
                *closed.entry((row.chain_id, row.wallet)).or_default() -= 1;
            }
        }
        adjust_open_counts(&txn, &closed).await?;
        txn.commit().await.context("commit auto-invest settle")?;
        Ok(true)
    }
}

/// Records a failed attempt of a task in process (its count, the transaction it was in) and
/// what it led to; true when the task gave up (it is no longer open).
async fn settle_failure(
    txn: &DatabaseTransaction,
    id: &str,
    attempts: u32,
    tx_hash: Option<String>,
    after: AfterFailure,
    now: UnixMillis,
) -> Result<bool> {
    let gives_up = matches!(after, AfterFailure::GiveUp { .. });
    let update = tasks::Entity::update_many()
        .col_expr(tasks::Column::Attempts, Expr::value(attempts as i32))
        .col_expr(tasks::Column::TxHash, Expr::value(tx_hash))
        .col_expr(tasks::Column::UpdatedAtMs, Expr::value(now))
        .filter(tasks::Column::Id.eq(id))
        .filter(tasks::Column::Status.eq("in_process"));
    let updated = after_failure(update, after, now)
        .exec(txn)
        .await
        .context("settle auto-invest")?;
    Ok(gives_up && updated.rows_affected == 1)
}

/// Writes what a failed attempt led to: back to pending behind the backoff, or failed.
fn after_failure(
    update: sea_orm::UpdateMany<tasks::Entity>,
    after: AfterFailure,
    now: UnixMillis,
) -> sea_orm::UpdateMany<tasks::Entity> {
    match after {
        AfterFailure::GiveUp { reason } => {
            finish(update, "failed", now).col_expr(tasks::Column::Reason, Expr::value(reason))
        }
        AfterFailure::Retry { at_ms, reason } => update
            .col_expr(tasks::Column::Status, Expr::value("pending"))
            .col_expr(tasks::Column::TxIntentId, Expr::value(None::<String>))
            .col_expr(tasks::Column::NextCheckAtMs, Expr::value(at_ms))
            .col_expr(tasks::Column::Reason, Expr::value(reason)),
    }
}

/// Completes the task; false if it was not in process.
async fn settle_success(
    db: &impl ConnectionTrait,
    id: &str,
    tx_hash: &str,
    invested: &TokenAmount,
    now: UnixMillis,
) -> Result<bool> {
    let updated = finish(tasks::Entity::update_many(), "success", now)
        .col_expr(tasks::Column::UpdatedAtMs, Expr::value(now))
        .col_expr(
            tasks::Column::InvestedAmount,
            Expr::value(invested.to_string()),
        )
        .col_expr(tasks::Column::TxHash, Expr::value(tx_hash))
        .col_expr(tasks::Column::Reason, Expr::value(None::<String>))
        .filter(tasks::Column::Id.eq(id))
        .filter(tasks::Column::Status.eq("in_process"))
        .exec(db)
        .await
        .context("complete auto-invest")?;
    Ok(updated.rows_affected == 1)
}

/// The open-task counts of these (chain, wallet) pairs; a wallet without a row has none.
async fn open_counts<'a>(
    db: &impl ConnectionTrait,
    wallets: impl IntoIterator<Item = &'a (i64, String)>,
) -> Result<HashMap<(i64, String), u64>> {
    let wallets: Vec<&(i64, String)> = wallets.into_iter().collect();
    if wallets.is_empty() {
        return Ok(HashMap::new());
    }
    let chains: std::collections::HashSet<i64> = wallets.iter().map(|w| w.0).collect();
    let addresses: std::collections::HashSet<&str> = wallets.iter().map(|w| w.1.as_str()).collect();
    Ok(counts::Entity::find()
        .filter(counts::Column::ChainId.is_in(chains))
        .filter(counts::Column::Wallet.is_in(addresses))
        .all(db)
        .await
        .context("read open auto-invest counts")?
        .into_iter()
        .map(|row| ((row.chain_id, row.wallet), row.open_tasks.max(0) as u64))
        .collect())
}

/// Adds `deltas` to the wallets' open-task counts in one statement, in (chain, wallet) order:
/// every writer of the counts changes them last in its transaction and in this order, so two
/// writers on PostgreSQL never wait on each other in a cycle.
async fn adjust_open_counts(
    db: &impl ConnectionTrait,
    deltas: &BTreeMap<(i64, String), i64>,
) -> Result<()> {
    let rows: Vec<counts::ActiveModel> = deltas
        .iter()
        .filter(|(_, delta)| **delta != 0)
        .map(|((chain_id, wallet), delta)| counts::ActiveModel {
            chain_id: Set(*chain_id),
            wallet: Set(wallet.clone()),
            open_tasks: Set(*delta),
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    counts::Entity::insert_many(rows)
        .on_conflict(
            sea_orm::sea_query::OnConflict::columns([
                counts::Column::ChainId,
                counts::Column::Wallet,
            ])
            .value(
                counts::Column::OpenTasks,
                Expr::cust("auto_invest_open_counts.open_tasks + excluded.open_tasks"),
            )
            .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .context("count open auto-invests")?;
    Ok(())
}

/// Sets a final status: the triple is open for a new task afterwards. (The caller sets
/// `updated_at_ms`: PostgreSQL refuses a column assigned twice.)
fn finish(
    update: sea_orm::UpdateMany<tasks::Entity>,
    status: &'static str,
    now: UnixMillis,
) -> sea_orm::UpdateMany<tasks::Entity> {
    update
        .col_expr(tasks::Column::Status, Expr::value(status))
        .col_expr(tasks::Column::OpenKey, Expr::value(None::<String>))
        .col_expr(tasks::Column::FinishedAtMs, Expr::value(now))
}

fn task_row(task: &AutoInvestTask, open_key: Option<String>) -> tasks::ActiveModel {
    tasks::ActiveModel {
        id: Set(task.id.clone()),
        chain_id: Set(chain_column(task.chain_id)),
        wallet: Set(task.wallet.to_string()),
        campaign: Set(task.campaign.to_string()),
        amount: Set(task.amount.to_string()),
        invested_amount: Set(task.invested_amount.map(|a| a.to_string())),
        status: Set(task.status.as_str().into()),
        open_key: Set(open_key),
        version: Set(task.version),
        attempts: Set(task.attempts as i32),
        next_check_at_ms: Set(task.next_check_at_ms),
        expires_at_ms: Set(task.expires_at_ms),
        tx_intent_id: Set(task.tx_intent_id.clone()),
        tx_hash: Set(task.tx_hash.clone()),
        reason: Set(task.reason.clone()),
        created_at_ms: Set(task.created_at_ms),
        updated_at_ms: Set(task.updated_at_ms),
        finished_at_ms: Set(task.finished_at_ms),
    }
}

/// A task as the API shows it: while it is in process, `tx_hash` is the current one of its
/// intent (see [`crate::current_tx`]).
fn shown_task(joined: WithIntentHash<tasks::Model>) -> Result<AutoInvestTask> {
    let tx_hash = joined.shown(joined.row.status == "in_process", &joined.row.tx_hash);
    Ok(AutoInvestTask {
        tx_hash,
        ..task_record(joined.row)?
    })
}

fn task_record(m: tasks::Model) -> Result<AutoInvestTask> {
    let status = AutoInvestStatus::parse(&m.status)
        .ok_or_else(|| StorageError::Corrupt(format!("auto-invest status {}", m.status)))?;
    Ok(AutoInvestTask {
        id: m.id,
        chain_id: read_chain(m.chain_id)?,
        wallet: read_address(&m.wallet)?,
        campaign: read_address(&m.campaign)?,
        amount: read_amount(&m.amount)?,
        invested_amount: read_optional(m.invested_amount, read_amount)?,
        status,
        version: m.version,
        attempts: m.attempts.max(0) as u32,
        next_check_at_ms: m.next_check_at_ms,
        expires_at_ms: m.expires_at_ms,
        tx_intent_id: m.tx_intent_id,
        tx_hash: m.tx_hash,
        reason: m.reason,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
        finished_at_ms: m.finished_at_ms,
    })
}
