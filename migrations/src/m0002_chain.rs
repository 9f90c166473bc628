//! On-chain work: transaction intents (every transaction the platform sends, written down with
//! a business idempotency key before it is signed), faucet requests and whitelisting requests.

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
                    .table("tx_intents")
                    .col(string_len("id", 36).primary_key())
                    // What the transaction is for, e.g. `faucet:31337:<batch id>`: a second
                    // intent with the same key is refused, so business work is sent once.
                    .col(string_len_uniq("idempotency_key", 200))
                    .col(string_len("purpose", 32))
                    .col(big_integer("chain_id"))
                    .col(string_len("signer", 42))
                    .col(string_len("to_address", 42))
                    .col(text("calldata"))
                    .col(string_len("value_wei", 80))
                    // A fixed gas limit; estimated (with a margin) when null.
                    .col(big_integer_null("gas_limit"))
                    // queued → sent → confirmed | failed
                    .col(string_len("status", 16))
                    .col(big_integer_null("nonce"))
                    // The signed transaction currently in flight, kept so a restart
                    // rebroadcasts the very same bytes instead of signing anew.
                    .col(text_null("raw_tx"))
                    .col(string_len_null("tx_hash", 66))
                    // Hashes this intent was sent under before a fee bump (JSON array).
                    .col(text("replaced_hashes"))
                    .col(string_len_null("max_fee_per_gas", 80))
                    .col(string_len_null("max_priority_fee_per_gas", 80))
                    .col(integer("send_attempts"))
                    .col(big_integer_null("sent_at_ms"))
                    .col(big_integer_null("block_number"))
                    .col(big_integer_null("gas_used"))
                    .col(text_null("failure"))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("updated_at_ms"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "tx_intents",
            "tx_intents_open",
            &["chain_id", "signer", "status"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("faucet_requests")
                    .col(string_len("id", 36).primary_key())
                    .col(big_integer("chain_id"))
                    .col(string_len("address", 42))
                    .col(string_len("client_ip", 64))
                    // pending → submitted → paid | skipped | failed
                    .col(string_len("status", 16))
                    // `<chain>:<address>` while the request is open, null once settled: the
                    // unique index allows one open request per wallet and chain.
                    .col(string_len_null("open_key", 64).unique_key())
                    .col(integer("attempts"))
                    .col(big_integer("next_attempt_at_ms"))
                    .col(string_len_null("tx_intent_id", 36))
                    .col(string_len_null("tx_hash", 66))
                    .col(string_len_null("amount_wei", 80))
                    .col(text_null("reason"))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("updated_at_ms"))
                    .col(big_integer_null("settled_at_ms"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "faucet_requests",
            "faucet_requests_due",
            &["chain_id", "status", "next_attempt_at_ms"],
        )
        .await?;
        index(
            manager,
            "faucet_requests",
            "faucet_requests_wallet",
            &["chain_id", "address", "created_at_ms"],
        )
        .await?;
        index(
            manager,
            "faucet_requests",
            "faucet_requests_ip",
            &["chain_id", "client_ip", "created_at_ms"],
        )
        .await?;
        index(
            manager,
            "faucet_requests",
            "faucet_requests_intent",
            &["tx_intent_id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("whitelist_requests")
                    .col(string_len("id", 36).primary_key())
                    .col(big_integer("chain_id"))
                    .col(string_len("issuer", 42))
                    .col(string_len("address", 42))
                    // pending → submitted → confirmed | failed
                    .col(string_len("status", 16))
                    // `<chain>:<issuer>:<address>` while open, null once settled.
                    .col(string_len_null("open_key", 140).unique_key())
                    .col(integer("attempts"))
                    .col(big_integer("next_attempt_at_ms"))
                    .col(string_len_null("tx_intent_id", 36))
                    .col(string_len_null("tx_hash", 66))
                    .col(text_null("reason"))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("updated_at_ms"))
                    .col(big_integer_null("settled_at_ms"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "whitelist_requests",
            "whitelist_requests_due",
            &["chain_id", "issuer", "status", "next_attempt_at_ms"],
        )
        .await?;
        index(
            manager,
            "whitelist_requests",
            "whitelist_requests_wallet",
            &["address", "created_at_ms"],
        )
        .await?;
        index(
            manager,
            "whitelist_requests",
            "whitelist_requests_intent",
            &["tx_intent_id"],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["whitelist_requests", "faucet_requests", "tx_intents"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
