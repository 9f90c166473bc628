//! Donations: written when a donor asks to give, then moved through their states by the
//! donation's actor. Every move is a conditional update on the version (and the state) the
//! actor read, so two processes never both move one donation.

use std::collections::HashSet;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqliteTransactionMode, TransactionOptions,
    TransactionTrait, sea_query::Expr,
};

use crate::entities::donations::{self, Column as C};
use crate::entities::stripe_events;
use crate::keyset::{Keyset, Order};
use crate::{Context, DonationRepo, Result, StorageError};
use ampflow_types::{UnixMillis, WalletAddress};

/// How a donation is paid: through a Stripe PaymentIntent, or collected by a partner on its
/// own site (seed 003) and settled by the partner, with no PaymentIntent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DonationSource {
    Stripe,
    Partner,
}

impl DonationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Partner => "partner",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Stripe, Self::Partner]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Where a donation stands. `Pending` until Stripe reports the payment; `Refunded` only after
/// `Succeeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DonationStatus {
    Pending,
    Succeeded,
    Failed,
    Cancelled,
    Refunded,
}

impl DonationStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DonationRecord {
    /// `don_<32 hex>`
    pub id: String,
    pub organisation_id: String,
    pub fund_id: Option<String>,
    /// The donor's wallet; `None` for a partner's donation (the partner, not a wallet, may
    /// read it). Stored as an empty string then.
    pub wallet_address: Option<WalletAddress>,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    pub donor_email: String,
    pub donor_name: Option<String>,
    pub status: DonationStatus,
    pub stripe_payment_intent_id: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    /// Bumped by every update.
    pub version: i64,
    pub source: DonationSource,
}

impl DonationRepo {
    pub async fn insert_donation(&self, d: &DonationRecord) -> Result<()> {
        donations::Entity::insert(donation_model(d))
            .exec_without_returning(&self.db)
            .await
            .context("insert donation")?;
        Ok(())
    }

    /// Reads through the writer, so an actor (re)loading its donation sees the latest commit.
    /// Reads that arrive together are answered by one query.
    pub async fn donation(&self, id: &str) -> Result<Option<DonationRecord>> {
        self.donation_reads.submit(id.to_string()).await
    }

    /// The wallet's donations, newest first, after `cursor`.
    pub async fn list_donations(
        &self,
        wallet_address: &WalletAddress,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<DonationRecord>> {
        self.list_donations_where(
            C::WalletAddress.eq(wallet_address.to_string()),
            cursor,
            limit,
        )
        .await
    }

    /// The organisation's donations, newest first, after `cursor`.
    pub async fn list_organisation_donations(
        &self,
        organisation_id: &str,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<DonationRecord>> {
        self.list_donations_where(C::OrganisationId.eq(organisation_id), cursor, limit)
            .await
    }

    async fn list_donations_where(
        &self,
        owner: sea_orm::sea_query::SimpleExpr,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<DonationRecord>> {
        let query = donations::Entity::find().filter(owner);
        crate::keyset::page(
            query,
            (C::CreatedAtMs, C::Id),
            Order::NewestFirst,
            cursor,
            limit,
        )
        .all(&self.reader)
        .await
        .context("list donations")?
        .into_iter()
        .map(donation_record)
        .collect()
    }

    /// Pending donations without a PaymentIntent created before `created_before`, oldest
    /// first: the process stopped between storing one and recording Stripe's answer.
    pub async fn donations_without_payment_intent(
        &self,
        created_before: UnixMillis,
        limit: u64,
    ) -> Result<Vec<DonationRecord>> {
        donations::Entity::find()
            .filter(C::Status.eq(DonationStatus::Pending.as_str()))
            // A partner's donation never has one: the partner collects the money.
            .filter(C::Source.eq(DonationSource::Stripe.as_str()))
            .filter(C::StripePaymentIntentId.is_null())
            .filter(C::CreatedAtMs.lt(created_before))
            .order_by_asc(C::CreatedAtMs)
            .order_by_asc(C::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .context("find donations without a PaymentIntent")?
            .into_iter()
            .map(donation_record)
            .collect()
    }

    /// Writes `next` over the stored donation if it still has status `from` and version
    /// `next.version - 1`; false when another writer got there first.
    pub async fn update_donation(
        &self,
        from: DonationStatus,
        next: &DonationRecord,
    ) -> Result<bool> {
        write_donation(&self.db, from, next).await
    }
}

pub(crate) fn donation_model(d: &DonationRecord) -> donations::ActiveModel {
    donations::ActiveModel {
        id: Set(d.id.clone()),
        organisation_id: Set(d.organisation_id.clone()),
        fund_id: Set(d.fund_id.clone()),
        wallet_address: Set(d.wallet_address.map_or_else(String::new, |w| w.to_string())),
        amount: Set(d.amount),
        currency: Set(d.currency.clone()),
        donor_email: Set(d.donor_email.clone()),
        donor_name: Set(d.donor_name.clone()),
        status: Set(d.status.as_str().into()),
        stripe_payment_intent_id: Set(d.stripe_payment_intent_id.clone()),
        failure_reason: Set(d.failure_reason.clone()),
        created_at_ms: Set(d.created_at_ms),
        updated_at_ms: Set(d.updated_at_ms),
        version: Set(d.version),
        source: Set(d.source.as_str().into()),
    }
}

async fn write_donation(
    db: &impl ConnectionTrait,
    from: DonationStatus,
    next: &DonationRecord,
) -> Result<bool> {
    {
        let result = donations::Entity::update_many()
            .col_expr(C::Status, Expr::value(next.status.as_str()))
            .col_expr(
                C::StripePaymentIntentId,
                Expr::value(next.stripe_payment_intent_id.clone()),
            )
            .col_expr(C::FailureReason, Expr::value(next.failure_reason.clone()))
            .col_expr(C::UpdatedAtMs, Expr::value(next.updated_at_ms))
            .col_expr(C::Version, Expr::value(next.version))
            .filter(C::Id.eq(next.id.as_str()))
            .filter(C::Status.eq(from.as_str()))
            .filter(C::Version.eq(next.version - 1))
            .exec(db)
            .await
            .context("update donation")?;
        Ok(result.rows_affected == 1)
    }
}

/// A Stripe webhook event, recorded once applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEventRecord {
    /// `evt_…`
    pub id: String,
    pub event_type: String,
    pub donation_id: Option<String>,
    pub received_at_ms: UnixMillis,
}

/// What recording an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventWrite {
    /// The event and the change are stored.
    Applied,
    /// The event id was recorded before: nothing was written.
    Duplicate,
    /// The donation was changed by another writer: nothing was written.
    Conflict,
}

impl DonationRepo {
    /// The donation paid by this PaymentIntent, if any.
    pub async fn donation_by_payment_intent(
        &self,
        payment_intent_id: &str,
    ) -> Result<Option<DonationRecord>> {
        donations::Entity::find()
            .filter(C::StripePaymentIntentId.eq(payment_intent_id))
            .one(&self.db)
            .await
            .context("find donation by PaymentIntent")?
            .map(donation_record)
            .transpose()
    }

    /// In one transaction: records `event` and, when given, writes the donation change (as
    /// [`update_donation`](Self::update_donation) does). A recorded event id writes nothing,
    /// so an event redelivered after its change committed changes nothing again.
    ///
    /// Events that arrive together are group-committed: see [`write_stripe_events`].
    pub async fn record_stripe_event(
        &self,
        event: &StripeEventRecord,
        change: Option<(DonationStatus, &DonationRecord)>,
    ) -> Result<EventWrite> {
        let job = EventJob {
            event: event.clone(),
            change: change.map(|(from, next)| (from, next.clone())),
        };
        self.event_batch.submit(job).await
    }
}

/// The donations with `ids`, in order (`None` for an unknown id), in one query.
pub(crate) async fn read_donations(
    db: &DatabaseConnection,
    ids: Vec<String>,
) -> Result<Vec<Option<DonationRecord>>> {
    let unique: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut found = std::collections::HashMap::with_capacity(unique.len());
    for row in donations::Entity::find()
        .filter(C::Id.is_in(unique))
        .all(db)
        .await
        .context("find donations")?
    {
        let record = donation_record(row)?;
        found.insert(record.id.clone(), record);
    }
    Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
}

/// One event to record, with the donation change it makes.
#[derive(Debug)]
pub(crate) struct EventJob {
    event: StripeEventRecord,
    change: Option<(DonationStatus, DonationRecord)>,
}

/// Records a batch of events and their donation changes (group commit): one transaction reads
/// which event ids are recorded already, applies each new event's change (a conditional update,
/// as a lone event does), inserts the new events in one statement, and commits once. An event
/// recorded before is a duplicate; a change another writer beat is a conflict; neither writes
/// anything. When a concurrent writer recorded one of the events meanwhile (the insert stores
/// fewer rows than expected) or a statement fails, the batch is rolled back and written one
/// event at a time.
pub(crate) async fn write_stripe_events(
    db: &DatabaseConnection,
    batch: Vec<EventJob>,
) -> Result<Vec<EventWrite>> {
    if batch.len() > 1 {
        match write_events_together(db, &batch).await {
            Ok(Some(outcomes)) => return Ok(outcomes),
            Ok(None) => tracing::debug!(size = batch.len(), "stripe event batch raced; one by one"),
            Err(error) => {
                tracing::debug!(size = batch.len(), %error, "stripe event batch failed; one by one")
            }
        }
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in &batch {
        let change = job.change.as_ref().map(|(from, next)| (*from, next));
        outcomes.push(record_one(db, &job.event, change).await?);
    }
    Ok(outcomes)
}

/// The batch in one transaction; `None` (and nothing written) when a concurrent writer raced it.
async fn write_events_together(
    db: &DatabaseConnection,
    batch: &[EventJob],
) -> Result<Option<Vec<EventWrite>>> {
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
        .context("begin stripe event batch")?;
    let mut recorded: HashSet<String> = stripe_events::Entity::find()
        .select_only()
        .column(stripe_events::Column::Id)
        .filter(stripe_events::Column::Id.is_in(batch.iter().map(|j| j.event.id.as_str())))
        .into_tuple()
        .all(&txn)
        .await
        .context("find recorded stripe events")?
        .into_iter()
        .collect();
    // Which jobs are new: an event recorded before (or twice in this batch) is a duplicate.
    let mut outcomes = vec![EventWrite::Duplicate; batch.len()];
    let mut fresh: Vec<usize> = Vec::with_capacity(batch.len());
    for (i, job) in batch.iter().enumerate() {
        if recorded.insert(job.event.id.clone()) {
            fresh.push(i);
        }
    }
    let changes: Vec<(DonationStatus, &DonationRecord)> = fresh
        .iter()
        .filter_map(|&i| batch[i].change.as_ref().map(|(from, next)| (*from, next)))
        .collect();
    let Some(moved) = move_donations(&txn, &changes).await? else {
        txn.rollback()
            .await
            .context("roll back stripe event batch")?;
        return Ok(None);
    };
    let mut rows = Vec::with_capacity(fresh.len());
    for i in fresh {
        let job = &batch[i];
        if let Some((_, next)) = &job.change
            && !moved.contains(next.id.as_str())
        {
            outcomes[i] = EventWrite::Conflict;
            continue;
        }
        rows.push(event_model(&job.event));
        outcomes[i] = EventWrite::Applied;
    }
    if !insert_events(&txn, rows).await? {
        txn.rollback()
            .await
            .context("roll back stripe event batch")?;
        return Ok(None);
    }
    txn.commit().await.context("commit stripe event batch")?;
    Ok(Some(outcomes))
}

/// Records the events in one statement; false when another writer recorded one of them
/// since the batch read (the batch is then written again one by one).
async fn insert_events(
    txn: &sea_orm::DatabaseTransaction,
    rows: Vec<stripe_events::ActiveModel>,
) -> Result<bool> {
    if rows.is_empty() {
        return Ok(true);
    }
    let expected = rows.len() as u64;
    let inserted = stripe_events::Entity::insert_many(rows)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(stripe_events::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await;
    match inserted {
        Ok(n) => Ok(n == expected),
        Err(sea_orm::DbErr::RecordNotInserted) => Ok(false),
        Err(e) => Err(e).context("record stripe events"),
    }
}

/// Applies every change as [`write_donation`] does (each only from the state and version it
/// was read at) in a fixed number of statements: on PostgreSQL the rows are locked first, in id
/// order, so two batches never wait on each other in a cycle (SQLite's write transaction
/// already excludes other writers); then one `UPDATE … FROM (VALUES …) … RETURNING id` moves
/// them. Answers the ids moved; `None` when one donation appears twice (the caller then
/// writes one event at a time).
async fn move_donations(
    txn: &sea_orm::DatabaseTransaction,
    changes: &[(DonationStatus, &DonationRecord)],
) -> Result<Option<HashSet<String>>> {
    if changes.is_empty() {
        return Ok(Some(HashSet::new()));
    }
    let ids: HashSet<&str> = changes.iter().map(|(_, next)| next.id.as_str()).collect();
    if ids.len() != changes.len() {
        return Ok(None);
    }
    let backend = txn.get_database_backend();
    if backend == DatabaseBackend::Postgres {
        let mut sorted: Vec<&str> = ids.iter().copied().collect();
        sorted.sort_unstable();
        donations::Entity::find()
            .select_only()
            .column(C::Id)
            .filter(C::Id.is_in(sorted))
            .order_by_asc(C::Id)
            .lock_exclusive()
            .into_tuple::<String>()
            .all(txn)
            .await
            .context("lock donations")?;
    }
    let (list, values) = crate::sql::values_list(
        backend,
        changes.iter().map(|(from, d)| {
            [
                d.id.clone().into(),
                from.as_str().into(),
                d.status.as_str().into(),
                d.stripe_payment_intent_id.clone().into(),
                d.failure_reason.clone().into(),
                d.updated_at_ms.into(),
                d.version.into(),
            ]
        }),
    );
    // VALUES columns are column1…column7 on both databases.
    let sql = format!(
        "UPDATE donations SET status = v.column3, stripe_payment_intent_id = v.column4, \
         failure_reason = v.column5, updated_at_ms = v.column6, version = v.column7 \
         FROM (VALUES {list}) AS v \
         WHERE donations.id = v.column1 AND donations.status = v.column2 \
         AND donations.version = v.column7 - 1 RETURNING donations.id"
    );
    let moved = txn
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .await
        .context("move donations")?;
    moved
        .iter()
        .map(|row| {
            row.try_get::<String>("", "id")
                .context("read a moved donation's id")
        })
        .collect::<Result<HashSet<String>>>()
        .map(Some)
}

fn event_model(event: &StripeEventRecord) -> stripe_events::ActiveModel {
    stripe_events::ActiveModel {
        id: Set(event.id.clone()),
        event_type: Set(event.event_type.clone()),
        donation_id: Set(event.donation_id.clone()),
        received_at_ms: Set(event.received_at_ms),
    }
}

/// One event in a transaction of its own. Like a batch, it changes the donation before it
/// inserts the event id: every writer takes the donation's row lock first, so two writers
/// (two processes) never wait on each other in a cycle.
async fn record_one(
    db: &DatabaseConnection,
    event: &StripeEventRecord,
    change: Option<(DonationStatus, &DonationRecord)>,
) -> Result<EventWrite> {
    let recorded = stripe_events::Entity::find_by_id(event.id.clone())
        .one(db)
        .await
        .context("find recorded stripe event")?;
    if recorded.is_some() {
        return Ok(EventWrite::Duplicate);
    }
    let txn = db.begin().await.context("begin stripe event")?;
    if let Some((from, next)) = change
        && !write_donation(&txn, from, next).await?
    {
        txn.rollback().await.context("roll back stripe event")?;
        return Ok(EventWrite::Conflict);
    }
    let inserted = stripe_events::Entity::insert(event_model(event))
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(stripe_events::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await;
    match inserted {
        // Recorded by another writer since the read: undo the change.
        Ok(0) | Err(sea_orm::DbErr::RecordNotInserted) => {
            txn.rollback().await.context("roll back stripe event")?;
            return Ok(EventWrite::Duplicate);
        }
        Ok(_) => {}
        Err(e) => return Err(e).context("record stripe event"),
    }
    txn.commit().await.context("commit stripe event")?;
    Ok(EventWrite::Applied)
}

fn donation_record(m: donations::Model) -> Result<DonationRecord> {
    let status = DonationStatus::parse(&m.status)
        .ok_or_else(|| StorageError::Corrupt(format!("donation {}: status {}", m.id, m.status)))?;
    let source = DonationSource::parse(&m.source)
        .ok_or_else(|| StorageError::Corrupt(format!("donation {}: source {}", m.id, m.source)))?;
    Ok(DonationRecord {
        source,
        id: m.id,
        organisation_id: m.organisation_id,
        fund_id: m.fund_id,
        wallet_address: match m.wallet_address.as_str() {
            "" => None,
            stored => Some(crate::typed::read_address(stored)?),
        },
        amount: m.amount,
        currency: m.currency,
        donor_email: m.donor_email,
        donor_name: m.donor_name,
        status,
        stripe_payment_intent_id: m.stripe_payment_intent_id,
        failure_reason: m.failure_reason,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
        version: m.version,
    })
}
