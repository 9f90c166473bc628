//! The ledger entries of a donation, found by donation id: a partial refund records only what
//! the donation's earlier refund entries do not cover yet, which the append reads under the
//! organisation's head lock.

use sea_orm_migration::prelude::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        index(
            manager,
            "ledger_entries",
            "ledger_entries_donation",
            &["donation_id", "entry_type"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ledger_entries_donation")
                    .table("ledger_entries")
                    .to_owned(),
            )
            .await
    }
}
