//! Each wallet's number of open (pending or in-process) auto-invest tasks per chain, kept in
//! the same transaction as every change that opens or finishes a task, so the per-wallet cap
//! is checked with one indexed read instead of counting the wallet's tasks.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("auto_invest_open_counts")
                    .col(big_integer("chain_id"))
                    .col(string_len("wallet", 42))
                    .col(big_integer("open_tasks"))
                    .primary_key(Index::create().col("chain_id").col("wallet"))
                    .to_owned(),
            )
            .await?;
        // The tasks open before this migration.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO auto_invest_open_counts (chain_id, wallet, open_tasks) \
                 SELECT chain_id, wallet, COUNT(*) FROM auto_invest_tasks \
                 WHERE open_key IS NOT NULL GROUP BY chain_id, wallet",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("auto_invest_open_counts").to_owned())
            .await
    }
}
