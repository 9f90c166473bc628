//! KYC through Veriff: the Veriff sessions of each wallet (with the last event and the decision
//! Veriff sent), and the verified document on the user, which whitelisting checks for expiry.
//!
//! (m0002 is reserved for the chain tables.)

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Columns added to `users`. SQLite alters one column per statement, so each is its own.
const USER_COLUMNS: [&str; 5] = [
    "kyc_session_id",
    "kyc_document_type",
    "kyc_document_country",
    "kyc_document_valid_until",
    "kyc_verified_at_ms",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("veriff_sessions")
                    // Veriff's verification id (a UUID).
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("address", 42))
                    .col(text("url"))
                    .col(big_integer("created_at_ms"))
                    // The last event webhook: its action ("started", "submitted") and code.
                    .col(string_len_null("last_event", 32))
                    .col(integer_null("last_event_code"))
                    .col(big_integer_null("last_event_at_ms"))
                    // The decision webhook: approved, declined, resubmission_requested,
                    // expired, abandoned or review, with Veriff's code and reason.
                    .col(string_len_null("decision_status", 32))
                    .col(integer_null("decision_code"))
                    .col(text_null("decision_reason"))
                    .col(integer_null("decision_reason_code"))
                    .col(string_len_null("decision_time", 40))
                    .col(string_len_null("acceptance_time", 40))
                    .col(big_integer_null("decided_at_ms"))
                    .col(string_len_null("person_first_name", 200))
                    .col(string_len_null("person_last_name", 200))
                    .col(string_len_null("document_type", 64))
                    .col(string_len_null("document_country", 8))
                    .col(date_null("document_valid_until"))
                    .col(big_integer("version"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("veriff_sessions_address_created")
                    .table("veriff_sessions")
                    .col("address")
                    .col("created_at_ms")
                    .to_owned(),
            )
            .await?;

        for column in USER_COLUMNS {
            let definition = match column {
                "kyc_session_id" => string_len_null(column, 64),
                "kyc_document_type" => string_len_null(column, 64),
                "kyc_document_country" => string_len_null(column, 8),
                "kyc_document_valid_until" => date_null(column),
                _ => big_integer_null(column),
            };
            manager
                .alter_table(
                    Table::alter()
                        .table("users")
                        .add_column(definition)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in USER_COLUMNS {
            manager
                .alter_table(Table::alter().table("users").drop_column(column).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table("veriff_sessions").to_owned())
            .await
    }
}
