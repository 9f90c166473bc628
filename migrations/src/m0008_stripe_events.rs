//! Stripe webhook events already applied, by event id: recorded in the same transaction as
//! the change an event makes, so a redelivered event changes nothing.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("stripe_events")
                    // `evt_…`
                    .col(string_len("id", 255).primary_key())
                    .col(string_len("event_type", 64))
                    .col(string_len_null("donation_id", 40))
                    .col(big_integer("received_at_ms"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("stripe_events").to_owned())
            .await
    }
}
