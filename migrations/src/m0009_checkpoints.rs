//! Daily checkpoints of the public ledger: a global Merkle tree (RFC 6962) over every entry of
//! every organisation. `ledger_leaves` gives each entry its place in the tree, `merkle_nodes`
//! keeps every perfect subtree's hash (so any tree head and inclusion proof is a few reads),
//! `checkpoints` holds the signed tree heads, and `checkpoint_keys` the generated signing key.

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
                    .table("ledger_leaves")
                    // 0, 1, 2, … across all organisations.
                    .col(big_integer("leaf_index").primary_key())
                    .col(string_len("entry_id", 40).unique_key())
                    // The checkpoint that first covered the entry, `YYYY-MM-DD`.
                    .col(string_len("checkpoint_date", 10))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("merkle_nodes")
                    // `level << 56 | index`: the perfect subtree of 2^level leaves from
                    // leaf `index << level`.
                    .col(big_integer("node_id").primary_key())
                    // Lowercase hex SHA-256.
                    .col(string_len("hash", 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("checkpoints")
                    // `chk_YYYY-MM-DD`
                    .col(string_len("id", 20).primary_key())
                    .col(string_len("checkpoint_date", 10).unique_key())
                    .col(big_integer("day_end_ms"))
                    .col(big_integer("tree_size"))
                    // Lowercase hex SHA-256 of the tree head.
                    .col(string_len("root_hash", 64))
                    .col(big_integer("total_volume"))
                    // JSON object: currency → net minor units.
                    .col(text("volume_by_currency"))
                    .col(text("signed_note"))
                    .col(string_len("verifier_key", 400))
                    .col(big_integer("created_at_ms"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("checkpoint_keys")
                    .col(string_len("verifier_key", 400).primary_key())
                    // `PRIVATE+KEY+…` (a secret).
                    .col(text("private_key"))
                    .col(big_integer("created_at_ms"))
                    .to_owned(),
            )
            .await?;
        // Checkpoint builds read unindexed entries in (created_at, id) order.
        index(
            manager,
            "ledger_entries",
            "ledger_entries_global_order",
            &["created_at_ms", "id"],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ledger_entries_global_order")
                    .table("ledger_entries")
                    .to_owned(),
            )
            .await?;
        for table in [
            "checkpoint_keys",
            "checkpoints",
            "merkle_nodes",
            "ledger_leaves",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
