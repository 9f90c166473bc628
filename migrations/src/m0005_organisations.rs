//! Organisations (the charities and projects donations go to) and their funds.

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
                    .table("organisations")
                    // `org_<32 hex>`
                    .col(string_len("id", 40).primary_key())
                    .col(string_len("name", 200))
                    // ISO 3166-1 alpha-2, upper case.
                    .col(string_len("country", 2))
                    // pending | verified | suspended
                    .col(string_len("status", 16))
                    .col(text_null("description"))
                    .col(string_len_null("website", 2048))
                    .col(string_len_null("logo_url", 2048))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("updated_at_ms"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "organisations",
            "organisations_listing",
            &["created_at_ms", "id"],
        )
        .await?;
        index(
            manager,
            "organisations",
            "organisations_country",
            &["country", "created_at_ms", "id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("funds")
                    // `fund_<32 hex>`
                    .col(string_len("id", 40).primary_key())
                    .col(string_len("organisation_id", 40))
                    .col(string_len("name", 200))
                    .col(text_null("description"))
                    .col(big_integer("created_at_ms"))
                    .to_owned(),
            )
            .await?;
        index(manager, "funds", "funds_organisation", &["organisation_id"]).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["funds", "organisations"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
