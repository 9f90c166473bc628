//! Signed Stripe events whose PaymentIntent amount or currency differs from its donation's:
//! they are not applied (the donation keeps its state), but each one is recorded here once, by
//! event id, so a redelivery adds nothing and an operator can see what Stripe reported.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("stripe_amount_mismatches")
                    // `evt_…`: one row per event, however often it is delivered.
                    .col(string_len("event_id", 255).primary_key())
                    .col(string_len("event_type", 64))
                    .col(string_len("donation_id", 40))
                    .col(string_len("payment_intent_id", 255))
                    // The donation's amount (minor units) and ISO 4217 currency.
                    .col(big_integer("expected_amount"))
                    .col(string_len("expected_currency", 16))
                    // What the PaymentIntent in the event says.
                    .col(big_integer("received_amount"))
                    .col(string_len("received_currency", 16))
                    .col(big_integer("received_at_ms"))
                    .to_owned(),
            )
            .await?;
        crate::index(
            manager,
            "stripe_amount_mismatches",
            "stripe_amount_mismatches_donation",
            &["donation_id", "received_at_ms"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("stripe_amount_mismatches").to_owned())
            .await
    }
}
