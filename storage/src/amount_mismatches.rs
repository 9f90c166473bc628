//! Signed Stripe events that were not applied because their PaymentIntent's amount or currency
//! differs from the donation's (`stripe_amount_mismatches`): an audit trail, one row per event
//! id, so Stripe's redeliveries add nothing.

use ampflow_types::UnixMillis;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::stripe_amount_mismatches as mismatches;
use crate::{Context, DonationRepo, Result};

/// Longest currency text kept (ISO 4217 codes have 3 letters; anything longer is cut here).
const CURRENCY_LENGTH_MAX: usize = 16;

/// One event whose amount did not match its donation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountMismatchRecord {
    pub event_id: String,
    pub event_type: String,
    pub donation_id: String,
    pub payment_intent_id: String,
    /// The donation's amount (minor units) and currency.
    pub expected_amount: i64,
    pub expected_currency: String,
    /// What the event's PaymentIntent says.
    pub received_amount: i64,
    pub received_currency: String,
    pub received_at_ms: UnixMillis,
}

impl DonationRepo {
    /// Records the mismatch unless its event was recorded before: true when this call wrote
    /// the row, false for a redelivery.
    pub async fn record_amount_mismatch(&self, record: &AmountMismatchRecord) -> Result<bool> {
        let row = mismatches::ActiveModel {
            event_id: Set(record.event_id.clone()),
            event_type: Set(record.event_type.clone()),
            donation_id: Set(record.donation_id.clone()),
            payment_intent_id: Set(record.payment_intent_id.clone()),
            expected_amount: Set(record.expected_amount),
            expected_currency: Set(bounded(&record.expected_currency)),
            received_amount: Set(record.received_amount),
            received_currency: Set(bounded(&record.received_currency)),
            received_at_ms: Set(record.received_at_ms),
        };
        let inserted = mismatches::Entity::insert(row)
            .on_conflict(
                OnConflict::column(mismatches::Column::EventId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await;
        match inserted {
            Ok(rows) => Ok(rows == 1),
            Err(sea_orm::DbErr::RecordNotInserted) => Ok(false),
            Err(e) => Err(e).context("record amount mismatch"),
        }
    }

    /// The mismatches recorded for a donation, oldest first (at most `limit`).
    pub async fn amount_mismatches(
        &self,
        donation_id: &str,
        limit: u64,
    ) -> Result<Vec<AmountMismatchRecord>> {
        Ok(mismatches::Entity::find()
            .filter(mismatches::Column::DonationId.eq(donation_id))
            .order_by_asc(mismatches::Column::ReceivedAtMs)
            .order_by_asc(mismatches::Column::EventId)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list amount mismatches")?
            .into_iter()
            .map(|m| AmountMismatchRecord {
                event_id: m.event_id,
                event_type: m.event_type,
                donation_id: m.donation_id,
                payment_intent_id: m.payment_intent_id,
                expected_amount: m.expected_amount,
                expected_currency: m.expected_currency,
                received_amount: m.received_amount,
                received_currency: m.received_currency,
                received_at_ms: m.received_at_ms,
            })
            .collect())
    }
}

fn bounded(currency: &str) -> String {
    currency.chars().take(CURRENCY_LENGTH_MAX).collect()
}
