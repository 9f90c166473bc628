//! The chain a wallet session was proven on: set when the login was an EIP-1271 contract-wallet
//! signature checked on one chain (control of an address on one chain says nothing about the
//! same address on another), null for an EOA signature, which holds on every chain.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("sessions")
                    .add_column(big_integer_null("chain_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("sessions")
                    .drop_column("chain_id")
                    .to_owned(),
            )
            .await
    }
}
