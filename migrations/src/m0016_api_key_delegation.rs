//! What an issuer key may delegate (issue 14): a key holding `tokens:issue` mints tokens only
//! within the delegation its creator named, by policy, by target key, or both. Keys made
//! before this migration have neither, so their issuers delegate nothing until a `keys:admin`
//! names what they may.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns this migration adds, one `ALTER TABLE` each (SQLite takes one change per
/// statement).
const COLUMNS: [&str; 2] = [
    // Space-separated policies the issuer may put in a token's scope (never `keys:admin` or
    // `tokens:issue`); null: not restricted by policy.
    "delegable_policies",
    // Space-separated ids of the organisation's keys the issuer may mint for; null: not
    // restricted by key.
    "delegable_keys",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table("api_keys")
                        .add_column(text_null(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table("api_keys")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
