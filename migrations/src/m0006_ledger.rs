//! The public ledger: each organisation's hash-chained entries, and its head (the last entry's
//! sequence number and hash), which appends lock so the chain never forks.

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
                    .table("ledger_entries")
                    // `led_<32 hex>`
                    .col(string_len("id", 40).primary_key())
                    .col(string_len("organisation_id", 40))
                    // 1, 2, 3, … per organisation.
                    .col(big_integer("seq"))
                    .col(string_len("entry_type", 32))
                    .col(big_integer("amount"))
                    .col(string_len("currency", 3))
                    .col(string_len_null("donation_id", 40))
                    .col(string_len_null("donor_name", 200))
                    .col(string_len_null("stripe_payment_intent_id", 255))
                    .col(big_integer("created_at_ms"))
                    .col(string_len("entry_hash", 71))
                    .col(string_len_null("prev_entry_hash", 71))
                    // What the entry records, e.g. `donation_received:don_…`: recorded once.
                    .col(string_len_null("dedupe_key", 200).unique_key())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ledger_entries_seq")
                    .table("ledger_entries")
                    .col("organisation_id")
                    .col("seq")
                    .unique()
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ledger_entries",
            "ledger_entries_time",
            &["organisation_id", "created_at_ms"],
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table("ledger_heads")
                    .col(string_len("organisation_id", 40).primary_key())
                    .col(big_integer("seq"))
                    .col(string_len_null("entry_hash", 71))
                    .col(big_integer("updated_at_ms"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["ledger_heads", "ledger_entries"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
