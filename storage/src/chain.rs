//! On-chain work: transaction intents, and the request queues (faucet payouts, whitelisting)
//! whose items are batched into them.
//!
//! The exactly-once rules live here, as conditional updates:
//! - an intent is inserted with a unique business key before anything is signed;
//! - a signed transaction is recorded (nonce, raw bytes, hash) before it is broadcast, so a
//!   restart rebroadcasts the same bytes and never signs a second transaction for the intent;
//! - claiming requests into an intent and inserting the intent is one transaction, and so is
//!   settling the intent and its requests: a request is never in two open intents, and an
//!   outcome is applied once.

use std::collections::HashMap;

use crate::typed::{chain_column, read_address, read_amount, read_chain, read_optional};
pub use ampflow_types::RetryPolicy;
use ampflow_types::{AfterFailure, ChainId, TokenAmount, UnixMillis, WalletAddress};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr, TransactionTrait, TryIntoModel,
};

use crate::current_tx::{WithIntentHash, with_intent_hash};
use crate::entities::{faucet_requests, tx_intents, whitelist_requests};
use crate::{ChainRepo, Context, Result, StorageError};

/// Where an intent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxIntentStatus {
    /// Written down, not signed yet.
    Queued,
    /// Signed and broadcast (perhaps several times, or replaced with a higher fee).
    Sent,
    Confirmed,
    Failed,
}

impl TxIntentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
        }
    }

    fn parse(value: &str) -> Result<Self> {
        Ok(match value {
            "queued" => Self::Queued,
            "sent" => Self::Sent,
            "confirmed" => Self::Confirmed,
            "failed" => Self::Failed,
            other => return Err(StorageError::Corrupt(format!("tx intent status {other:?}"))),
        })
    }
}

/// A transaction to send, before it has an id.
#[derive(Debug, Clone)]
pub struct NewTxIntent {
    pub idempotency_key: String,
    pub purpose: String,
    pub chain_id: ChainId,
    pub signer: WalletAddress,
    pub to: WalletAddress,
    /// `0x…` hex.
    pub calldata: String,
    pub value_wei: TokenAmount,
    pub gas_limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxIntentRecord {
    pub id: String,
    pub idempotency_key: String,
    pub purpose: String,
    pub chain_id: ChainId,
    pub signer: WalletAddress,
    pub to: WalletAddress,
    pub calldata: String,
    pub value_wei: TokenAmount,
    pub gas_limit: Option<u64>,
    pub status: TxIntentStatus,
    pub nonce: Option<u64>,
    pub raw_tx: Option<String>,
    pub tx_hash: Option<String>,
    /// Hashes the intent was sent under before fee bumps, oldest first. Any of them may be
    /// the one that is mined.
    pub replaced_hashes: Vec<String>,
    pub max_fee_per_gas: Option<u128>,
    pub max_priority_fee_per_gas: Option<u128>,
    pub send_attempts: u32,
    pub sent_at_ms: Option<UnixMillis>,
    pub block_number: Option<u64>,
    pub gas_used: Option<u64>,
    pub failure: Option<String>,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
}

/// A signed transaction, as recorded before it is broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub nonce: u64,
    pub raw_tx: String,
    pub tx_hash: String,
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

/// How an intent ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxFinal {
    Confirmed {
        tx_hash: String,
        block_number: u64,
        gas_used: u64,
    },
    /// Reverted on chain (with the receipt's figures), or could not be sent at all.
    Failed {
        reason: String,
        tx_hash: Option<String>,
        block_number: Option<u64>,
        gas_used: Option<u64>,
    },
}

impl TxFinal {
    /// Mined and reverted: the gas is spent. The work it carried is not tried again: the gas
    /// estimate said the call would succeed and the chain refused it, which is the called
    /// contract's doing, and another attempt would pay again. (A failure without a block was
    /// never mined: refused by the estimate, or its nonce went to another transaction; it
    /// cost nothing, and its work is retried after a backoff.)
    pub fn reverted_on_chain(&self) -> bool {
        matches!(
            self,
            Self::Failed {
                block_number: Some(_),
                ..
            }
        )
    }
}

/// The request queues batched into transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkKind {
    Faucet,
    Whitelist,
}

/// One batch's scope: the chain, and for whitelisting the issuer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkGroup {
    pub chain_id: ChainId,
    pub issuer: Option<WalletAddress>,
}

/// A request waiting to be batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub id: String,
    pub address: WalletAddress,
    pub attempts: u32,
    /// When it became due: its creation, or the end of its retry backoff.
    pub due_at_ms: UnixMillis,
}

/// Where a faucet or whitelisting request stands: pending → submitted (in a transaction) →
/// paid | skipped (faucet) | confirmed (whitelisting), or failed; back to pending after a
/// failed attempt with attempts left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    Pending,
    Submitted,
    Paid,
    Skipped,
    Confirmed,
    Failed,
}

impl RequestStatus {
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Submitted,
        Self::Paid,
        Self::Skipped,
        Self::Confirmed,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Submitted => "submitted",
            Self::Paid => "paid",
            Self::Skipped => "skipped",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Pending or submitted: the request is still being worked on.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Submitted)
    }

    /// A stored status; an unknown one is corruption.
    fn read(text: &str) -> Result<Self> {
        Self::parse(text).ok_or_else(|| StorageError::Corrupt(format!("request status {text}")))
    }
}

impl std::fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status a settled request ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettledStatus {
    /// The faucet paid the wallet.
    Paid,
    /// The faucet declined to pay (the event says why).
    Skipped,
    /// The whitelisting went through.
    Confirmed,
    Failed,
}

impl SettledStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Skipped => "skipped",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
        }
    }
}

/// What the transaction's events say about one request, by wallet address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSettlement {
    pub status: SettledStatus,
    pub reason: Option<String>,
    pub amount_wei: Option<TokenAmount>,
}

/// A faucet request, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaucetRequestRecord {
    pub id: String,
    pub chain_id: ChainId,
    pub address: WalletAddress,
    pub client_ip: String,
    /// Pending, submitted, paid, skipped or failed.
    pub status: RequestStatus,
    pub attempts: u32,
    pub tx_hash: Option<String>,
    pub amount_wei: Option<TokenAmount>,
    pub reason: Option<String>,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    pub settled_at_ms: Option<UnixMillis>,
}

/// A whitelisting request, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhitelistRequestRecord {
    pub id: String,
    pub chain_id: ChainId,
    pub issuer: WalletAddress,
    pub address: WalletAddress,
    /// Pending, submitted, confirmed or failed.
    pub status: RequestStatus,
    pub attempts: u32,
    pub tx_hash: Option<String>,
    pub reason: Option<String>,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    pub settled_at_ms: Option<UnixMillis>,
}

/// The answer to a new request: the one created, or the one already open for the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened<T> {
    Created(T),
    AlreadyOpen(T),
}

const OPEN_STATUSES: [&str; 2] = ["pending", "submitted"];

impl ChainRepo {
    // ----- transaction intents -----

    /// Writes an intent down. A second intent with the same idempotency key is not written:
    /// the first one is returned.
    pub async fn insert_tx_intent(
        &self,
        intent: NewTxIntent,
        now: UnixMillis,
    ) -> Result<TxIntentRecord> {
        let key = intent.idempotency_key.clone();
        match insert_intent(&self.db, intent, now).await {
            Ok(record) => Ok(record),
            Err(StorageError::Database { source, .. })
                if matches!(source.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
            {
                self.tx_intent_by_key(&key)
                    .await?
                    .ok_or_else(|| StorageError::Corrupt(format!("intent {key} vanished")))
            }
            Err(other) => Err(other),
        }
    }

    pub async fn tx_intent(&self, id: &str) -> Result<Option<TxIntentRecord>> {
        tx_intents::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find tx intent")?
            .map(intent_record)
            .transpose()
    }

    pub async fn tx_intent_by_key(&self, key: &str) -> Result<Option<TxIntentRecord>> {
        tx_intents::Entity::find()
            .filter(tx_intents::Column::IdempotencyKey.eq(key))
            .one(&self.reader)
            .await
            .context("find tx intent by key")?
            .map(intent_record)
            .transpose()
    }

    /// The intents of one signer that are not final yet, oldest first.
    pub async fn open_tx_intents(
        &self,
        chain_id: ChainId,
        signer: &WalletAddress,
        limit: u64,
    ) -> Result<Vec<TxIntentRecord>> {
        tx_intents::Entity::find()
            .filter(tx_intents::Column::ChainId.eq(chain_column(chain_id)))
            .filter(tx_intents::Column::Signer.eq(signer.to_string()))
            .filter(tx_intents::Column::Status.is_in(["queued", "sent"]))
            .order_by_asc(tx_intents::Column::CreatedAtMs)
            .order_by_asc(tx_intents::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list open tx intents")?
            .into_iter()
            .map(intent_record)
            .collect()
    }

    /// The (chain, signer) pairs with open intents, so their senders start after a restart.
    pub async fn signers_with_open_intents(&self) -> Result<Vec<(ChainId, WalletAddress)>> {
        let rows: Vec<(i64, String)> = tx_intents::Entity::find()
            .select_only()
            .column(tx_intents::Column::ChainId)
            .column(tx_intents::Column::Signer)
            .filter(tx_intents::Column::Status.is_in(["queued", "sent"]))
            .distinct()
            .into_tuple()
            .all(&self.reader)
            .await
            .context("list signers with open intents")?;
        rows.into_iter()
            .map(|(c, s)| Ok((read_chain(c)?, read_address(&s)?)))
            .collect()
    }

    /// Every intent of one purpose, newest first (operations and tests).
    pub async fn tx_intents_for_purpose(
        &self,
        purpose: &str,
        limit: u64,
    ) -> Result<Vec<TxIntentRecord>> {
        tx_intents::Entity::find()
            .filter(tx_intents::Column::Purpose.eq(purpose))
            .order_by_desc(tx_intents::Column::CreatedAtMs)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list tx intents")?
            .into_iter()
            .map(intent_record)
            .collect()
    }

    /// The highest nonce a still-open intent of this signer was signed with.
    pub async fn highest_open_nonce(
        &self,
        chain_id: ChainId,
        signer: &WalletAddress,
    ) -> Result<Option<u64>> {
        let nonce: Option<Option<i64>> = tx_intents::Entity::find()
            .select_only()
            .column_as(tx_intents::Column::Nonce.max(), "nonce")
            .filter(tx_intents::Column::ChainId.eq(chain_column(chain_id)))
            .filter(tx_intents::Column::Signer.eq(signer.to_string()))
            .filter(tx_intents::Column::Status.eq("sent"))
            .into_tuple()
            .one(&self.reader)
            .await
            .context("highest open nonce")?;
        Ok(nonce.flatten().map(|n| n as u64))
    }

    /// Records the first signed transaction of a queued intent. False if the intent was no
    /// longer queued (another sender got there first): nothing must be broadcast then.
    pub async fn record_signed_tx(&self, id: &str, tx: &SignedTx, now: UnixMillis) -> Result<bool> {
        let result = signed_update(tx, now)
            .col_expr(tx_intents::Column::Status, Expr::value("sent"))
            .filter(tx_intents::Column::Id.eq(id))
            .filter(tx_intents::Column::Status.eq("queued"))
            .exec(&self.db)
            .await
            .context("record signed tx")?;
        Ok(result.rows_affected == 1)
    }

    /// Records a fee-bumped replacement of the transaction sent as `previous_hash`. False if
    /// the intent moved on meanwhile.
    pub async fn record_replacement_tx(
        &self,
        intent: &TxIntentRecord,
        tx: &SignedTx,
        now: UnixMillis,
    ) -> Result<bool> {
        let Some(previous) = intent.tx_hash.clone() else {
            return Ok(false);
        };
        let mut replaced = intent.replaced_hashes.clone();
        replaced.push(previous.clone());
        let replaced = serde_json::to_string(&replaced)
            .map_err(|e| StorageError::Corrupt(format!("replaced hashes: {e}")))?;
        let result = signed_update(tx, now)
            .col_expr(tx_intents::Column::ReplacedHashes, Expr::value(replaced))
            .filter(tx_intents::Column::Id.eq(intent.id.as_str()))
            .filter(tx_intents::Column::Status.eq("sent"))
            .filter(tx_intents::Column::TxHash.eq(previous))
            .exec(&self.db)
            .await
            .context("record replacement tx")?;
        Ok(result.rows_affected == 1)
    }

    /// Ends an intent that has no requests behind it. False if it was already final.
    pub async fn finalize_tx_intent(
        &self,
        id: &str,
        outcome: &TxFinal,
        now: UnixMillis,
    ) -> Result<bool> {
        finalize_intent(&self.db, id, outcome, now).await
    }

    // ----- request queues -----

    /// Up to `limit` requests of the group that are due, the longest-waiting first.
    pub async fn due_work(
        &self,
        kind: WorkKind,
        group: &WorkGroup,
        now: UnixMillis,
        limit: u64,
    ) -> Result<Vec<WorkItem>> {
        match kind {
            WorkKind::Faucet => {
                due::<faucet_requests::Entity>(&self.reader, group, now, limit).await
            }
            WorkKind::Whitelist => {
                due::<whitelist_requests::Entity>(&self.reader, group, now, limit).await
            }
        }
    }

    /// When the next pending request of the group becomes due, if any is pending.
    pub async fn next_work_due_at(
        &self,
        kind: WorkKind,
        group: &WorkGroup,
    ) -> Result<Option<UnixMillis>> {
        match kind {
            WorkKind::Faucet => next_due::<faucet_requests::Entity>(&self.reader, group).await,
            WorkKind::Whitelist => {
                next_due::<whitelist_requests::Entity>(&self.reader, group).await
            }
        }
    }

    /// The groups with requests still open (pending or submitted).
    pub async fn open_work_groups(&self, kind: WorkKind) -> Result<Vec<WorkGroup>> {
        Ok(match kind {
            WorkKind::Faucet => {
                let rows: Vec<i64> = faucet_requests::Entity::find()
                    .select_only()
                    .column(faucet_requests::Column::ChainId)
                    .filter(faucet_requests::Column::Status.is_in(OPEN_STATUSES))
                    .distinct()
                    .into_tuple()
                    .all(&self.reader)
                    .await
                    .context("list open faucet chains")?;
                rows.into_iter()
                    .map(|chain_id| {
                        Ok(WorkGroup {
                            chain_id: read_chain(chain_id)?,
                            issuer: None,
                        })
                    })
                    .collect::<Result<_>>()?
            }
            WorkKind::Whitelist => {
                let rows: Vec<(i64, String)> = whitelist_requests::Entity::find()
                    .select_only()
                    .column(whitelist_requests::Column::ChainId)
                    .column(whitelist_requests::Column::Issuer)
                    .filter(whitelist_requests::Column::Status.is_in(OPEN_STATUSES))
                    .distinct()
                    .into_tuple()
                    .all(&self.reader)
                    .await
                    .context("list open whitelisting issuers")?;
                rows.into_iter()
                    .map(|(chain_id, issuer)| {
                        Ok(WorkGroup {
                            chain_id: read_chain(chain_id)?,
                            issuer: Some(read_address(&issuer)?),
                        })
                    })
                    .collect::<Result<_>>()?
            }
        })
    }

    /// Inserts `intent` and moves the `items` into it, in one transaction. `None` (and nothing
    /// written) if any item was no longer pending, e.g. another process claimed it.
    pub async fn claim_work(
        &self,
        kind: WorkKind,
        items: &[WorkItem],
        intent: NewTxIntent,
        now: UnixMillis,
    ) -> Result<Option<TxIntentRecord>> {
        let txn = self.db.begin().await.context("begin claim")?;
        let record = insert_intent(&txn, intent, now).await?;
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        let claimed = match kind {
            WorkKind::Faucet => claim::<faucet_requests::Entity>(&txn, &ids, &record.id, now).await,
            WorkKind::Whitelist => {
                claim::<whitelist_requests::Entity>(&txn, &ids, &record.id, now).await
            }
        }?;
        if claimed != ids.len() as u64 {
            txn.rollback().await.context("roll back claim")?;
            return Ok(None);
        }
        txn.commit().await.context("commit claim")?;
        Ok(Some(record))
    }

    /// Ends the intent and settles every request it carried, in one transaction. On a
    /// confirmed transaction each request takes its outcome from `items` (by address); on a
    /// failed one each goes back to pending with a backoff, or is marked failed once it has
    /// used its attempts, or at once when the transaction reverted on chain
    /// ([`TxFinal::reverted_on_chain`]). False (and nothing written) if the intent was already
    /// final.
    pub async fn settle_work(
        &self,
        kind: WorkKind,
        intent_id: &str,
        outcome: &TxFinal,
        items: &HashMap<WalletAddress, ItemSettlement>,
        retry: RetryPolicy,
        now: UnixMillis,
    ) -> Result<bool> {
        let txn = self.db.begin().await.context("begin settle")?;
        if !finalize_intent(&txn, intent_id, outcome, now).await? {
            txn.rollback().await.context("roll back settle")?;
            return Ok(false);
        }
        match kind {
            WorkKind::Faucet => {
                settle::<faucet_requests::Entity>(&txn, intent_id, outcome, items, retry, now).await
            }
            WorkKind::Whitelist => {
                settle::<whitelist_requests::Entity>(&txn, intent_id, outcome, items, retry, now)
                    .await
            }
        }?;
        txn.commit().await.context("commit settle")?;
        Ok(true)
    }

    /// Fails pending requests at once with `reason` (their target is no longer trusted, so
    /// they are never sent); answers how many were still pending.
    pub async fn fail_work(
        &self,
        kind: WorkKind,
        items: &[WorkItem],
        reason: &str,
        now: UnixMillis,
    ) -> Result<u64> {
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        match kind {
            WorkKind::Faucet => fail::<faucet_requests::Entity>(&self.db, &ids, reason, now).await,
            WorkKind::Whitelist => {
                fail::<whitelist_requests::Entity>(&self.db, &ids, reason, now).await
            }
        }
    }

    // ----- faucet requests -----

    /// Inserts a pending faucet request, unless the wallet already has one open on the chain
    /// (then that one is returned) or its client address is at `limit` (then the creation
    /// times of the address's recent requests are returned, newest first). The count and the
    /// insert run in one transaction that holds the address's lock (a transaction-scoped
    /// advisory lock on PostgreSQL, the database's write lock on SQLite), so requests from one
    /// address, for any wallet and in any process, never pass the limit together.
    pub async fn open_faucet_request_within(
        &self,
        record: &FaucetRequestRecord,
        limit: Option<IpLimit>,
    ) -> Result<std::result::Result<Opened<FaucetRequestRecord>, Vec<UnixMillis>>> {
        let Some(limit) = limit else {
            return self.open_faucet_request(record).await.map(Ok);
        };
        let txn = self.db.begin().await.context("begin faucet request")?;
        let lock = match txn.get_database_backend() {
            sea_orm::DbBackend::Postgres => sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                [format!("faucet_ip:{}:{}", record.chain_id, record.client_ip).into()],
            ),
            backend => {
                sea_orm::Statement::from_string(backend, "DELETE FROM faucet_requests WHERE 1 = 0")
            }
        };
        txn.execute_raw(lock)
            .await
            .context("lock the faucet's client address")?;
        let recent = recent_from_ip(
            &txn,
            record.chain_id,
            &record.client_ip,
            limit.since,
            limit.max,
        )
        .await?;
        if recent.len() as u64 >= limit.max {
            txn.rollback().await.context("roll back faucet request")?;
            return Ok(Err(recent));
        }
        let inserted = faucet_requests::Entity::insert(faucet_row(record))
            .exec_without_returning(&txn)
            .await;
        if inserted.is_ok() {
            txn.commit().await.context("commit faucet request")?;
        } else {
            txn.rollback().await.context("roll back faucet request")?;
        }
        let created = FaucetRequestRecord {
            status: RequestStatus::Pending,
            attempts: 0,
            ..record.clone()
        };
        let open = self.find_open_faucet_request(record.chain_id, &record.address);
        created_or_open(inserted, created, open, "faucet request")
            .await
            .map(Ok)
    }

    /// Inserts a pending faucet request, unless the wallet already has one open on the chain:
    /// then that one is returned.
    async fn open_faucet_request(
        &self,
        record: &FaucetRequestRecord,
    ) -> Result<Opened<FaucetRequestRecord>> {
        let inserted = faucet_requests::Entity::insert(faucet_row(record))
            .exec_without_returning(&self.db)
            .await;
        let created = FaucetRequestRecord {
            status: RequestStatus::Pending,
            attempts: 0,
            ..record.clone()
        };
        let open = self.find_open_faucet_request(record.chain_id, &record.address);
        created_or_open(inserted, created, open, "faucet request").await
    }

    /// The wallet's open (pending or submitted) request on the chain.
    pub async fn find_open_faucet_request(
        &self,
        chain_id: ChainId,
        address: &WalletAddress,
    ) -> Result<Option<FaucetRequestRecord>> {
        with_intent_hash(
            faucet_requests::Entity::find()
                .filter(faucet_requests::Column::OpenKey.eq(faucet_open_key(chain_id, address))),
            faucet_requests::Column::TxIntentId,
        )
        .one(&self.reader)
        .await
        .context("find open faucet request")?
        .map(faucet_record)
        .transpose()
    }

    pub async fn faucet_request(&self, id: &str) -> Result<Option<FaucetRequestRecord>> {
        with_intent_hash(
            faucet_requests::Entity::find_by_id(id.to_string()),
            faucet_requests::Column::TxIntentId,
        )
        .one(&self.reader)
        .await
        .context("find faucet request")?
        .map(faucet_record)
        .transpose()
    }

    /// When the wallet was last paid on the chain.
    pub async fn last_faucet_payout_at(
        &self,
        chain_id: ChainId,
        address: &WalletAddress,
    ) -> Result<Option<UnixMillis>> {
        let at: Option<Option<i64>> = faucet_requests::Entity::find()
            .select_only()
            .column_as(faucet_requests::Column::SettledAtMs.max(), "at")
            .filter(faucet_requests::Column::ChainId.eq(chain_column(chain_id)))
            .filter(faucet_requests::Column::Address.eq(address.to_string()))
            .filter(faucet_requests::Column::Status.eq("paid"))
            .into_tuple()
            .one(&self.reader)
            .await
            .context("last faucet payout")?;
        Ok(at.flatten())
    }

    // ----- whitelisting requests -----

    /// Inserts a pending whitelisting request, unless one is already open for the same
    /// (chain, issuer, wallet): then that one is returned.
    pub async fn open_whitelist_request(
        &self,
        record: &WhitelistRequestRecord,
    ) -> Result<Opened<WhitelistRequestRecord>> {
        let open_key = format!("{}:{}:{}", record.chain_id, record.issuer, record.address);
        let row = whitelist_requests::ActiveModel {
            id: Set(record.id.clone()),
            chain_id: Set(chain_column(record.chain_id)),
            issuer: Set(record.issuer.to_string()),
            address: Set(record.address.to_string()),
            status: Set("pending".into()),
            open_key: Set(Some(open_key.clone())),
            attempts: Set(0),
            next_attempt_at_ms: Set(record.created_at_ms),
            tx_intent_id: Set(None),
            tx_hash: Set(None),
            reason: Set(None),
            created_at_ms: Set(record.created_at_ms),
            updated_at_ms: Set(record.created_at_ms),
            settled_at_ms: Set(None),
        };
        let inserted = whitelist_requests::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await;
        let created = WhitelistRequestRecord {
            status: RequestStatus::Pending,
            attempts: 0,
            ..record.clone()
        };
        let open = self.find_open_whitelist_request(&open_key);
        created_or_open(inserted, created, open, "whitelist request").await
    }

    async fn find_open_whitelist_request(
        &self,
        open_key: &str,
    ) -> Result<Option<WhitelistRequestRecord>> {
        with_intent_hash(
            whitelist_requests::Entity::find()
                .filter(whitelist_requests::Column::OpenKey.eq(open_key)),
            whitelist_requests::Column::TxIntentId,
        )
        .one(&self.reader)
        .await
        .context("find open whitelist request")?
        .map(whitelist_record)
        .transpose()
    }

    /// A wallet's whitelisting requests, newest first.
    pub async fn whitelist_requests_for(
        &self,
        address: &WalletAddress,
        limit: u64,
    ) -> Result<Vec<WhitelistRequestRecord>> {
        with_intent_hash(
            whitelist_requests::Entity::find()
                .filter(whitelist_requests::Column::Address.eq(address.to_string()))
                .order_by_desc(whitelist_requests::Column::CreatedAtMs)
                .order_by_desc(whitelist_requests::Column::Id)
                .limit(limit),
            whitelist_requests::Column::TxIntentId,
        )
        .all(&self.reader)
        .await
        .context("list whitelist requests")?
        .into_iter()
        .map(whitelist_record)
        .collect()
    }
}

/// `<chain>:<address>`: a faucet request's key while it is open.
fn faucet_open_key(chain_id: ChainId, address: &WalletAddress) -> String {
    format!("{chain_id}:{address}")
}

/// The answer to an insert guarded by a unique `open_key`: the created record, or, when the
/// key is taken, the request that holds it.
/// The per-address limit a faucet request is opened within: at most `max` requests since
/// `since`.
#[derive(Debug, Clone, Copy)]
pub struct IpLimit {
    pub since: UnixMillis,
    pub max: u64,
}

fn faucet_row(record: &FaucetRequestRecord) -> faucet_requests::ActiveModel {
    faucet_requests::ActiveModel {
        id: Set(record.id.clone()),
        chain_id: Set(chain_column(record.chain_id)),
        address: Set(record.address.to_string()),
        client_ip: Set(record.client_ip.clone()),
        status: Set("pending".into()),
        open_key: Set(Some(faucet_open_key(record.chain_id, &record.address))),
        attempts: Set(0),
        next_attempt_at_ms: Set(record.created_at_ms),
        tx_intent_id: Set(None),
        tx_hash: Set(None),
        amount_wei: Set(None),
        reason: Set(None),
        created_at_ms: Set(record.created_at_ms),
        updated_at_ms: Set(record.created_at_ms),
        settled_at_ms: Set(None),
    }
}

/// Creation times of the newest (at most `limit`) requests from one IP on the chain since
/// `since`, newest first.
async fn recent_from_ip(
    db: &impl ConnectionTrait,
    chain_id: ChainId,
    client_ip: &str,
    since: UnixMillis,
    limit: u64,
) -> Result<Vec<UnixMillis>> {
    faucet_requests::Entity::find()
        .select_only()
        .column(faucet_requests::Column::CreatedAtMs)
        .filter(faucet_requests::Column::ChainId.eq(chain_column(chain_id)))
        .filter(faucet_requests::Column::ClientIp.eq(client_ip))
        .filter(faucet_requests::Column::CreatedAtMs.gte(since))
        .order_by_desc(faucet_requests::Column::CreatedAtMs)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
        .context("recent faucet requests from ip")
}

async fn created_or_open<T>(
    inserted: std::result::Result<u64, sea_orm::DbErr>,
    created: T,
    open: impl std::future::Future<Output = Result<Option<T>>>,
    what: &'static str,
) -> Result<Opened<T>> {
    match inserted {
        Ok(_) => Ok(Opened::Created(created)),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => open
            .await?
            .map(Opened::AlreadyOpen)
            .ok_or_else(|| StorageError::Corrupt(format!("the open {what} vanished"))),
        Err(e) => Err(e).context("insert request"),
    }
}

pub(crate) async fn insert_intent(
    db: &impl ConnectionTrait,
    intent: NewTxIntent,
    now: UnixMillis,
) -> Result<TxIntentRecord> {
    let row = tx_intents::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        idempotency_key: Set(intent.idempotency_key),
        purpose: Set(intent.purpose),
        chain_id: Set(chain_column(intent.chain_id)),
        signer: Set(intent.signer.to_string()),
        to_address: Set(intent.to.to_string()),
        calldata: Set(intent.calldata),
        value_wei: Set(intent.value_wei.to_string()),
        gas_limit: Set(intent.gas_limit.map(|g| g as i64)),
        status: Set("queued".into()),
        nonce: Set(None),
        raw_tx: Set(None),
        tx_hash: Set(None),
        replaced_hashes: Set("[]".into()),
        max_fee_per_gas: Set(None),
        max_priority_fee_per_gas: Set(None),
        send_attempts: Set(0),
        sent_at_ms: Set(None),
        block_number: Set(None),
        gas_used: Set(None),
        failure: Set(None),
        created_at_ms: Set(now),
        updated_at_ms: Set(now),
    };
    let model = row
        .clone()
        .try_into_model()
        .map_err(|e| StorageError::Corrupt(format!("intent row: {e}")))?;
    tx_intents::Entity::insert(row)
        .exec_without_returning(db)
        .await
        .context("insert tx intent")?;
    intent_record(model)
}

fn signed_update(tx: &SignedTx, now: UnixMillis) -> sea_orm::UpdateMany<tx_intents::Entity> {
    tx_intents::Entity::update_many()
        .col_expr(tx_intents::Column::Nonce, Expr::value(tx.nonce as i64))
        .col_expr(tx_intents::Column::RawTx, Expr::value(tx.raw_tx.clone()))
        .col_expr(tx_intents::Column::TxHash, Expr::value(tx.tx_hash.clone()))
        .col_expr(
            tx_intents::Column::GasLimit,
            Expr::value(tx.gas_limit as i64),
        )
        .col_expr(
            tx_intents::Column::MaxFeePerGas,
            Expr::value(tx.max_fee_per_gas.to_string()),
        )
        .col_expr(
            tx_intents::Column::MaxPriorityFeePerGas,
            Expr::value(tx.max_priority_fee_per_gas.to_string()),
        )
        .col_expr(
            tx_intents::Column::SendAttempts,
            incremented(tx_intents::Column::SendAttempts),
        )
        .col_expr(tx_intents::Column::SentAtMs, Expr::value(now))
        .col_expr(tx_intents::Column::UpdatedAtMs, Expr::value(now))
}

pub(crate) async fn finalize_intent(
    db: &impl ConnectionTrait,
    id: &str,
    outcome: &TxFinal,
    now: UnixMillis,
) -> Result<bool> {
    let (status, tx_hash, block, gas, failure) = match outcome {
        TxFinal::Confirmed {
            tx_hash,
            block_number,
            gas_used,
        } => (
            "confirmed",
            Some(tx_hash.clone()),
            Some(*block_number as i64),
            Some(*gas_used as i64),
            None,
        ),
        TxFinal::Failed {
            reason,
            tx_hash,
            block_number,
            gas_used,
        } => (
            "failed",
            tx_hash.clone(),
            block_number.map(|b| b as i64),
            gas_used.map(|g| g as i64),
            Some(reason.clone()),
        ),
    };
    let mut update = tx_intents::Entity::update_many()
        .col_expr(tx_intents::Column::Status, Expr::value(status))
        .col_expr(tx_intents::Column::BlockNumber, Expr::value(block))
        .col_expr(tx_intents::Column::GasUsed, Expr::value(gas))
        .col_expr(tx_intents::Column::Failure, Expr::value(failure))
        .col_expr(tx_intents::Column::UpdatedAtMs, Expr::value(now));
    if let Some(hash) = tx_hash {
        // The mined transaction may be an earlier one than the last replacement.
        update = update.col_expr(tx_intents::Column::TxHash, Expr::value(hash));
    }
    let result = update
        .filter(tx_intents::Column::Id.eq(id))
        .filter(tx_intents::Column::Status.is_in(["queued", "sent"]))
        .exec(db)
        .await
        .context("finalize tx intent")?;
    Ok(result.rows_affected == 1)
}

fn intent_record(m: tx_intents::Model) -> Result<TxIntentRecord> {
    let number = |value: Option<String>, what: &str| -> Result<Option<u128>> {
        value
            .map(|v| {
                v.parse::<u128>()
                    .map_err(|e| StorageError::Corrupt(format!("intent {what}: {e}")))
            })
            .transpose()
    };
    Ok(TxIntentRecord {
        status: TxIntentStatus::parse(&m.status)?,
        replaced_hashes: serde_json::from_str(&m.replaced_hashes)
            .map_err(|e| StorageError::Corrupt(format!("replaced hashes: {e}")))?,
        max_fee_per_gas: number(m.max_fee_per_gas, "max fee")?,
        max_priority_fee_per_gas: number(m.max_priority_fee_per_gas, "priority fee")?,
        id: m.id,
        idempotency_key: m.idempotency_key,
        purpose: m.purpose,
        chain_id: read_chain(m.chain_id)?,
        signer: read_address(&m.signer)?,
        to: read_address(&m.to_address)?,
        calldata: m.calldata,
        value_wei: read_amount(&m.value_wei)?,
        gas_limit: m.gas_limit.map(|g| g as u64),
        nonce: m.nonce.map(|n| n as u64),
        raw_tx: m.raw_tx,
        tx_hash: m.tx_hash,
        send_attempts: m.send_attempts.max(0) as u32,
        sent_at_ms: m.sent_at_ms,
        block_number: m.block_number.map(|b| b as u64),
        gas_used: m.gas_used.map(|g| g as u64),
        failure: m.failure,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
    })
}

/// A request's row as the API shows it; `tx_hash` is the current one of its intent while it
/// is submitted (see [`crate::current_tx`]).
fn faucet_record(joined: WithIntentHash<faucet_requests::Model>) -> Result<FaucetRequestRecord> {
    let tx_hash = joined.shown(joined.row.status == "submitted", &joined.row.tx_hash);
    let m = joined.row;
    Ok(FaucetRequestRecord {
        id: m.id,
        chain_id: read_chain(m.chain_id)?,
        address: read_address(&m.address)?,
        client_ip: m.client_ip,
        status: RequestStatus::read(&m.status)?,
        attempts: m.attempts.max(0) as u32,
        tx_hash,
        amount_wei: read_optional(m.amount_wei, read_amount)?,
        reason: m.reason,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
        settled_at_ms: m.settled_at_ms,
    })
}

fn whitelist_record(
    joined: WithIntentHash<whitelist_requests::Model>,
) -> Result<WhitelistRequestRecord> {
    let tx_hash = joined.shown(joined.row.status == "submitted", &joined.row.tx_hash);
    let m = joined.row;
    Ok(WhitelistRequestRecord {
        id: m.id,
        chain_id: read_chain(m.chain_id)?,
        issuer: read_address(&m.issuer)?,
        address: read_address(&m.address)?,
        status: RequestStatus::read(&m.status)?,
        attempts: m.attempts.max(0) as u32,
        tx_hash,
        reason: m.reason,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
        settled_at_ms: m.settled_at_ms,
    })
}

/// The columns both request queues share, so one implementation serves both.
#[derive(Clone, Copy)]
enum WorkColumn {
    Id,
    ChainId,
    Address,
    Status,
    OpenKey,
    Attempts,
    NextAttemptAtMs,
    TxIntentId,
    TxHash,
    Reason,
    CreatedAtMs,
    UpdatedAtMs,
    SettledAtMs,
}

trait WorkEntity: EntityTrait {
    fn col(column: WorkColumn) -> Self::Column;
    /// The issuer column, for queues batched per issuer.
    fn issuer() -> Option<Self::Column>;
    /// The paid-amount column, for queues that pay.
    fn amount() -> Option<Self::Column>;
}

macro_rules! work_entity {
    ($entity:ident, issuer: $issuer:expr, amount: $amount:expr) => {
        impl WorkEntity for $entity::Entity {
            fn col(column: WorkColumn) -> Self::Column {
                use $entity::Column as C;
                match column {
                    WorkColumn::Id => C::Id,
                    WorkColumn::ChainId => C::ChainId,
                    WorkColumn::Address => C::Address,
                    WorkColumn::Status => C::Status,
                    WorkColumn::OpenKey => C::OpenKey,
                    WorkColumn::Attempts => C::Attempts,
                    WorkColumn::NextAttemptAtMs => C::NextAttemptAtMs,
                    WorkColumn::TxIntentId => C::TxIntentId,
                    WorkColumn::TxHash => C::TxHash,
                    WorkColumn::Reason => C::Reason,
                    WorkColumn::CreatedAtMs => C::CreatedAtMs,
                    WorkColumn::UpdatedAtMs => C::UpdatedAtMs,
                    WorkColumn::SettledAtMs => C::SettledAtMs,
                }
            }
            fn issuer() -> Option<Self::Column> {
                $issuer
            }
            fn amount() -> Option<Self::Column> {
                $amount
            }
        }
    };
}

work_entity!(faucet_requests, issuer: None, amount: Some(faucet_requests::Column::AmountWei));
work_entity!(whitelist_requests, issuer: Some(whitelist_requests::Column::Issuer), amount: None);

fn in_group<E: WorkEntity>(query: sea_orm::Select<E>, group: &WorkGroup) -> sea_orm::Select<E> {
    let query = query.filter(E::col(WorkColumn::ChainId).eq(chain_column(group.chain_id)));
    match (E::issuer(), &group.issuer) {
        (Some(column), Some(issuer)) => query.filter(column.eq(issuer.to_string())),
        _ => query,
    }
}

async fn due<E: WorkEntity>(
    db: &impl ConnectionTrait,
    group: &WorkGroup,
    now: UnixMillis,
    limit: u64,
) -> Result<Vec<WorkItem>> {
    let rows: Vec<(String, String, i32, i64, i64)> = in_group(E::find(), group)
        .select_only()
        .column(E::col(WorkColumn::Id))
        .column(E::col(WorkColumn::Address))
        .column(E::col(WorkColumn::Attempts))
        .column(E::col(WorkColumn::CreatedAtMs))
        .column(E::col(WorkColumn::NextAttemptAtMs))
        .filter(E::col(WorkColumn::Status).eq("pending"))
        .filter(E::col(WorkColumn::NextAttemptAtMs).lte(now))
        .order_by_asc(E::col(WorkColumn::NextAttemptAtMs))
        .order_by_asc(E::col(WorkColumn::Id))
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
        .context("list due requests")?;
    rows.into_iter()
        .map(|(id, address, attempts, created, next)| {
            Ok(WorkItem {
                id,
                address: read_address(&address)?,
                attempts: attempts.max(0) as u32,
                due_at_ms: created.max(next),
            })
        })
        .collect()
}

async fn next_due<E: WorkEntity>(
    db: &impl ConnectionTrait,
    group: &WorkGroup,
) -> Result<Option<UnixMillis>> {
    let at: Option<Option<i64>> = in_group(E::find(), group)
        .select_only()
        .column_as(E::col(WorkColumn::NextAttemptAtMs).min(), "at")
        .filter(E::col(WorkColumn::Status).eq("pending"))
        .into_tuple()
        .one(db)
        .await
        .context("next due request")?;
    Ok(at.flatten())
}

async fn claim<E: WorkEntity>(
    db: &impl ConnectionTrait,
    ids: &[String],
    intent_id: &str,
    now: UnixMillis,
) -> Result<u64> {
    let result = E::update_many()
        .col_expr(E::col(WorkColumn::Status), Expr::value("submitted"))
        .col_expr(E::col(WorkColumn::TxIntentId), Expr::value(intent_id))
        .col_expr(
            E::col(WorkColumn::Attempts),
            incremented(E::col(WorkColumn::Attempts)),
        )
        .col_expr(E::col(WorkColumn::UpdatedAtMs), Expr::value(now))
        .filter(E::col(WorkColumn::Id).is_in(ids.iter().map(String::as_str)))
        .filter(E::col(WorkColumn::Status).eq("pending"))
        .exec(db)
        .await
        .context("claim requests")?;
    Ok(result.rows_affected)
}

async fn settle<E: WorkEntity>(
    db: &impl ConnectionTrait,
    intent_id: &str,
    outcome: &TxFinal,
    items: &HashMap<WalletAddress, ItemSettlement>,
    retry: RetryPolicy,
    now: UnixMillis,
) -> Result<()> {
    let rows: Vec<(String, String, i32)> = E::find()
        .select_only()
        .column(E::col(WorkColumn::Id))
        .column(E::col(WorkColumn::Address))
        .column(E::col(WorkColumn::Attempts))
        .filter(E::col(WorkColumn::TxIntentId).eq(intent_id))
        .filter(E::col(WorkColumn::Status).eq("submitted"))
        .into_tuple()
        .all(db)
        .await
        .context("list requests of intent")?;
    for (id, address, attempts) in rows {
        let attempts = attempts.max(0) as u32;
        let update = E::update_many()
            .col_expr(E::col(WorkColumn::UpdatedAtMs), Expr::value(now))
            .filter(E::col(WorkColumn::Id).eq(id.as_str()))
            .filter(E::col(WorkColumn::Status).eq("submitted"));
        let update = match outcome {
            TxFinal::Confirmed { tx_hash, .. } => {
                let settled =
                    items
                        .get(&read_address(&address)?)
                        .cloned()
                        .unwrap_or(ItemSettlement {
                            status: SettledStatus::Failed,
                            reason: Some("the transaction emitted no event for this wallet".into()),
                            amount_wei: None,
                        });
                let mut update =
                    settled_update(update, settled.status, settled.reason, Some(tx_hash), now);
                if let (Some(column), Some(amount)) = (E::amount(), settled.amount_wei) {
                    update = update.col_expr(column, Expr::value(amount.to_string()));
                }
                update
            }
            TxFinal::Failed {
                reason, tx_hash, ..
            } => match retry.after_failure(attempts, reason, !outcome.reverted_on_chain(), now) {
                AfterFailure::GiveUp { reason } => settled_update(
                    update,
                    SettledStatus::Failed,
                    Some(reason),
                    tx_hash.as_ref(),
                    now,
                ),
                AfterFailure::Retry { at_ms, reason } => update
                    .col_expr(E::col(WorkColumn::Status), Expr::value("pending"))
                    .col_expr(E::col(WorkColumn::NextAttemptAtMs), Expr::value(at_ms))
                    .col_expr(E::col(WorkColumn::TxIntentId), Expr::value(None::<String>))
                    .col_expr(E::col(WorkColumn::TxHash), Expr::value(tx_hash.clone()))
                    .col_expr(E::col(WorkColumn::Reason), Expr::value(reason)),
            },
        };
        update.exec(db).await.context("settle request")?;
    }
    Ok(())
}

async fn fail<E: WorkEntity>(
    db: &impl ConnectionTrait,
    ids: &[&str],
    reason: &str,
    now: UnixMillis,
) -> Result<u64> {
    let update = E::update_many()
        .col_expr(E::col(WorkColumn::UpdatedAtMs), Expr::value(now))
        .filter(E::col(WorkColumn::Id).is_in(ids.iter().copied()))
        .filter(E::col(WorkColumn::Status).eq("pending"));
    let result = settled_update(
        update,
        SettledStatus::Failed,
        Some(reason.to_string()),
        None,
        now,
    )
    .exec(db)
    .await
    .context("fail requests")?;
    Ok(result.rows_affected)
}

fn settled_update<E: WorkEntity>(
    update: sea_orm::UpdateMany<E>,
    status: SettledStatus,
    reason: Option<String>,
    tx_hash: Option<&String>,
    now: UnixMillis,
) -> sea_orm::UpdateMany<E> {
    update
        .col_expr(E::col(WorkColumn::Status), Expr::value(status.as_str()))
        .col_expr(E::col(WorkColumn::OpenKey), Expr::value(None::<String>))
        .col_expr(E::col(WorkColumn::Reason), Expr::value(reason))
        .col_expr(E::col(WorkColumn::TxHash), Expr::value(tx_hash.cloned()))
        .col_expr(E::col(WorkColumn::SettledAtMs), Expr::value(now))
}

/// `column + 1`.
fn incremented(column: impl sea_orm::sea_query::IntoColumnRef) -> Expr {
    sea_orm::sea_query::ExprTrait::add(Expr::col(column), 1)
}
