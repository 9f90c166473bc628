//! The platform's registry of trusted contracts (issue 14): per chain, the campaigns auto-invest
//! may invest in and the issuers whitelisting may approve wallets on. The platform spends gas
//! only on these, never on an address a user names or a contract vouches for itself. Also an
//! index for the per-chain gas budget, which sums the gas of the intents sent in the last hour.

use sea_orm_migration::{prelude::*, schema::*};

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("trusted_contracts")
                    .col(big_integer("chain_id"))
                    // campaign | issuer
                    .col(string_len("kind", 16))
                    // Lowercase `0x…`.
                    .col(string_len("address", 42))
                    .col(big_integer("added_at_ms"))
                    .primary_key(Index::create().col("chain_id").col("kind").col("address"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "tx_intents",
            "tx_intents_sent_at",
            &["chain_id", "sent_at_ms"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("tx_intents_sent_at")
                    .table("tx_intents")
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table("trusted_contracts").to_owned())
            .await
    }
}
