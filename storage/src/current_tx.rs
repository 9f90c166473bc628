//! The transaction hash a queued request shows (faucet requests, whitelisting requests,
//! auto-invest tasks).
//!
//! While a request rides in a transaction intent (`submitted`, or `in_process` for a task), its
//! hash is the intent's: recorded before the first broadcast and replaced by each fee bump, so
//! it is read from the intent (one `LEFT JOIN` on its primary key) instead of being copied into
//! every request the intent carries. It is null until the intent is signed. Once the request is
//! settled it keeps its own copy, written in the transaction that settled it (the mined hash,
//! which may be an earlier one than the last replacement); a request sent back to pending
//! after a failed attempt keeps that attempt's hash until it is claimed again.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DbErr, EntityTrait, FromQueryResult, JoinType, QueryResult, QuerySelect, Select,
    SelectModel, Selector,
};

use crate::entities::tx_intents;

/// The alias the intent's hash is selected under.
const INTENT_TX_HASH: &str = "intent_tx_hash";

/// A request row and the current hash of the intent it points at, if any.
pub(crate) struct WithIntentHash<M> {
    pub row: M,
    pub intent_tx_hash: Option<String>,
}

impl<M: FromQueryResult> FromQueryResult for WithIntentHash<M> {
    fn from_query_result(result: &QueryResult, prefix: &str) -> Result<Self, DbErr> {
        Ok(Self {
            row: M::from_query_result(result, prefix)?,
            intent_tx_hash: result.try_get(prefix, INTENT_TX_HASH)?,
        })
    }
}

impl<M> WithIntentHash<M> {
    /// The hash to show: the intent's while `riding` (the request is in the intent's
    /// transaction), else the row's own.
    pub fn shown(&self, riding: bool, own: &Option<String>) -> Option<String> {
        if riding {
            self.intent_tx_hash.clone()
        } else {
            own.clone()
        }
    }
}

/// `select` with the current hash of the intent named by `intent_id` joined in.
pub(crate) fn with_intent_hash<E: EntityTrait>(
    select: Select<E>,
    intent_id: E::Column,
) -> Selector<SelectModel<WithIntentHash<E::Model>>>
where
    E::Column: ColumnTrait,
{
    let relation = E::belongs_to(tx_intents::Entity)
        .from(intent_id)
        .to(tx_intents::Column::Id)
        .into();
    select
        .join(JoinType::LeftJoin, relation)
        .column_as(
            Expr::col((tx_intents::Entity, tx_intents::Column::TxHash)),
            INTENT_TX_HASH,
        )
        .into_model::<WithIntentHash<E::Model>>()
}
