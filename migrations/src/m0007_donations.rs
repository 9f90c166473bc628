//! Donations: one row per donation, its state (pending, succeeded, failed, cancelled,
//! refunded) and its Stripe PaymentIntent. The PaymentIntent's client secret is never stored.

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
                    .table("donations")
                    // `don_<32 hex>`, also the Stripe idempotency key.
                    .col(string_len("id", 40).primary_key())
                    .col(string_len("organisation_id", 40))
                    .col(string_len_null("fund_id", 40))
                    // The donor's wallet (lowercase `0x…`), who may read the donation.
                    .col(string_len("wallet_address", 42))
                    // Minor units, > 0.
                    .col(big_integer("amount"))
                    // ISO 4217, upper case.
                    .col(string_len("currency", 3))
                    .col(string_len("donor_email", 254))
                    .col(string_len_null("donor_name", 200))
                    // pending | succeeded | failed | cancelled | refunded
                    .col(string_len("status", 16))
                    .col(string_len_null("stripe_payment_intent_id", 255))
                    .col(text_null("failure_reason"))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("updated_at_ms"))
                    // Bumped by every update; updates name the version they read.
                    .col(big_integer("version"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "donations",
            "donations_wallet",
            &["wallet_address", "created_at_ms", "id"],
        )
        .await?;
        index(
            manager,
            "donations",
            "donations_payment_intent",
            &["stripe_payment_intent_id"],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("donations").to_owned())
            .await
    }
}
