//! The platform's registry of trusted contracts, per chain: the campaigns auto-invest may invest
//! in and the issuers whitelisting may approve wallets on. Operators change it (the CLI); the
//! HTTP front and the executors only read it. It is the source of truth every process shares;
//! the contracts keep their own registry, which the operator keeps in step with this one.
//!
//! Also the gas the platform spent on a chain recently, for the per-chain gas budget: it is
//! read from the transaction intents, so it survives restarts and every process sees the same.

use std::collections::HashSet;

use crate::typed::{chain_column, read_address, read_chain};
use ampflow_types::{ChainId, TrustedKind, UnixMillis, WalletAddress};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::{trusted_contracts, tx_intents};
use crate::{Context, Result, StorageError, TrustedRepo};

/// Rows one insert writes at most (SQLite allows 32,766 bound values; each row has four).
const INSERT_CHUNK_ROWS: usize = 1_000;

/// One contract in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedContract {
    pub chain_id: ChainId,
    pub kind: TrustedKind,
    pub address: WalletAddress,
    pub added_at_ms: UnixMillis,
}

impl TrustedRepo {
    /// Adds `addresses` to the chain's registry; answers how many were not in it yet.
    pub async fn add_trusted_contracts(
        &self,
        chain_id: ChainId,
        kind: TrustedKind,
        addresses: &[WalletAddress],
        now: UnixMillis,
    ) -> Result<u64> {
        let mut added = 0;
        for chunk in addresses.chunks(INSERT_CHUNK_ROWS) {
            let rows = chunk.iter().map(|address| trusted_contracts::ActiveModel {
                chain_id: Set(chain_column(chain_id)),
                kind: Set(kind.as_str().to_string()),
                address: Set(address.to_string()),
                added_at_ms: Set(now),
            });
            let inserted = trusted_contracts::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        trusted_contracts::Column::ChainId,
                        trusted_contracts::Column::Kind,
                        trusted_contracts::Column::Address,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await;
            match inserted {
                Ok(rows) => added += rows,
                Err(sea_orm::DbErr::RecordNotInserted) => {}
                Err(e) => return Err(e).context("add trusted contracts"),
            }
        }
        Ok(added)
    }

    /// Removes a contract from the chain's registry; false if it was not in it.
    pub async fn remove_trusted_contract(
        &self,
        chain_id: ChainId,
        kind: TrustedKind,
        address: &WalletAddress,
    ) -> Result<bool> {
        let deleted = trusted_contracts::Entity::delete_many()
            .filter(trusted_contracts::Column::ChainId.eq(chain_column(chain_id)))
            .filter(trusted_contracts::Column::Kind.eq(kind.as_str()))
            .filter(trusted_contracts::Column::Address.eq(address.to_string()))
            .exec(&self.db)
            .await
            .context("remove trusted contract")?;
        Ok(deleted.rows_affected > 0)
    }

    /// Which of `addresses` are in the chain's registry, in one query.
    pub async fn trusted_among(
        &self,
        chain_id: ChainId,
        kind: TrustedKind,
        addresses: &[WalletAddress],
    ) -> Result<HashSet<WalletAddress>> {
        if addresses.is_empty() {
            return Ok(HashSet::new());
        }
        let found: Vec<String> = trusted_contracts::Entity::find()
            .select_only()
            .column(trusted_contracts::Column::Address)
            .filter(trusted_contracts::Column::ChainId.eq(chain_column(chain_id)))
            .filter(trusted_contracts::Column::Kind.eq(kind.as_str()))
            .filter(
                trusted_contracts::Column::Address.is_in(addresses.iter().map(|a| a.to_string())),
            )
            .into_tuple()
            .all(&self.reader)
            .await
            .context("find trusted contracts")?;
        found.iter().map(|a| read_address(a)).collect()
    }

    /// The chain's registry of one kind, oldest first (at most `limit`).
    pub async fn trusted_contracts(
        &self,
        chain_id: ChainId,
        kind: TrustedKind,
        limit: u64,
    ) -> Result<Vec<TrustedContract>> {
        trusted_contracts::Entity::find()
            .filter(trusted_contracts::Column::ChainId.eq(chain_column(chain_id)))
            .filter(trusted_contracts::Column::Kind.eq(kind.as_str()))
            .order_by_asc(trusted_contracts::Column::AddedAtMs)
            .order_by_asc(trusted_contracts::Column::Address)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list trusted contracts")?
            .into_iter()
            .map(|m| {
                Ok(TrustedContract {
                    chain_id: read_chain(m.chain_id)?,
                    kind: TrustedKind::parse(&m.kind).ok_or_else(|| {
                        StorageError::Corrupt(format!("trusted contract kind {:?}", m.kind))
                    })?,
                    address: read_address(&m.address)?,
                    added_at_ms: m.added_at_ms,
                })
            })
            .collect()
    }

    /// The gas of the chain's transactions sent since `since`: what was used, for those with a
    /// receipt, and the gas limit (the most they can use) for those still in flight. Intents
    /// never signed (waiting, or refused by the gas estimate) cost nothing.
    pub async fn gas_sent_since(&self, chain_id: ChainId, since: UnixMillis) -> Result<u64> {
        let total: Option<Option<i64>> = tx_intents::Entity::find()
            .select_only()
            .column_as(
                // SUM of a BIGINT is NUMERIC on PostgreSQL: cast back.
                Expr::cust("CAST(SUM(COALESCE(gas_used, gas_limit, 0)) AS BIGINT)"),
                "gas",
            )
            .filter(tx_intents::Column::ChainId.eq(chain_column(chain_id)))
            .filter(tx_intents::Column::SentAtMs.gte(since))
            .into_tuple()
            .one(&self.reader)
            .await
            .context("sum recent gas")?;
        Ok(total.flatten().map_or(0, |gas| gas.max(0) as u64))
    }
}
