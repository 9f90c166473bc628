//! The one keyset page query: every list ordered by (a time, then the id) reads its page
//! after the last row shown ([`Keyset`]).

pub use ampflow_types::Keyset;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};

/// Which way a list runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    NewestFirst,
    OldestFirst,
}

/// `query` ordered by (`at`, `id`) in `order`, from after `cursor`, at most `limit` rows.
pub(crate) fn page<E: EntityTrait>(
    query: Select<E>,
    (at, id): (E::Column, E::Column),
    order: Order,
    cursor: Option<&Keyset>,
    limit: u64,
) -> Select<E> {
    let mut query = query;
    if let Some(cursor) = cursor {
        let (at_beyond, id_beyond) = match order {
            Order::NewestFirst => (at.lt(cursor.at_ms), id.lt(cursor.id.as_str())),
            Order::OldestFirst => (at.gt(cursor.at_ms), id.gt(cursor.id.as_str())),
        };
        query = query.filter(
            Condition::any()
                .add(at_beyond)
                .add(Condition::all().add(at.eq(cursor.at_ms)).add(id_beyond)),
        );
    }
    let query = match order {
        Order::NewestFirst => query.order_by_desc(at).order_by_desc(id),
        Order::OldestFirst => query.order_by_asc(at).order_by_asc(id),
    };
    query.limit(limit)
}
