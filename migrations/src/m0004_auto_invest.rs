//! Auto-invest tasks, one open task per (chain, wallet, campaign), and leases: a named role
//! (the auto-invest executor of a chain, the transaction sender of a chain and signer) held by
//! one process at a time across every process sharing the database.

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
                    .table("auto_invest_tasks")
                    .col(string_len("id", 36).primary_key())
                    .col(big_integer("chain_id"))
                    .col(string_len("wallet", 42))
                    .col(string_len("campaign", 42))
                    // The amount requested, in stablecoin base units (a decimal uint256).
                    .col(string_len("amount", 80))
                    // What the InvestFor event says was invested, once it succeeded.
                    .col(string_len_null("invested_amount", 80))
                    // pending → in_process → success | failed | expired | cancelled
                    .col(string_len("status", 16))
                    // `<chain>:<wallet>:<campaign>` while pending or in process, null after:
                    // at most one open task per triple.
                    .col(string_len_null("open_key", 140).unique_key())
                    // Bumped by every merge, so a batch built on an older amount is not claimed.
                    .col(big_integer("version"))
                    // Failed investment attempts so far.
                    .col(integer("attempts"))
                    // When the executor looks at it next (readiness recheck, retry backoff).
                    .col(big_integer("next_check_at_ms"))
                    .col(big_integer("expires_at_ms"))
                    .col(string_len_null("tx_intent_id", 36))
                    .col(string_len_null("tx_hash", 66))
                    .col(text_null("reason"))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("updated_at_ms"))
                    .col(big_integer_null("finished_at_ms"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "auto_invest_tasks",
            "auto_invest_tasks_due",
            &["chain_id", "status", "next_check_at_ms"],
        )
        .await?;
        index(
            manager,
            "auto_invest_tasks",
            "auto_invest_tasks_wallet",
            &["chain_id", "wallet", "created_at_ms"],
        )
        .await?;
        index(
            manager,
            "auto_invest_tasks",
            "auto_invest_tasks_campaign",
            &["chain_id", "campaign", "created_at_ms"],
        )
        .await?;
        index(
            manager,
            "auto_invest_tasks",
            "auto_invest_tasks_intent",
            &["tx_intent_id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("leases")
                    // e.g. `auto_invest:31337`, `tx_sender:31337:0xabc…`
                    .col(string_len("name", 120).primary_key())
                    // The holding process's id.
                    .col(string_len("holder", 64))
                    .col(big_integer("expires_at_ms"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["leases", "auto_invest_tasks"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
