//! Wallet identity: users, login challenges (nonces), sessions with their refresh tokens (the
//! current one on the session, the spent ones kept to detect replays), the
//! JWT signing keys, and the entities the supervisors gave up on.

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
                    .table("users")
                    .col(string_len("address", 42).primary_key())
                    .col(string_len_null("email", 254))
                    .col(boolean("email_verified"))
                    .col(boolean("kyc_completed"))
                    .col(string_len_null("kyc_first_name", 200))
                    .col(string_len_null("kyc_last_name", 200))
                    .col(big_integer("version"))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("updated_at_ms"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("login_challenges")
                    .col(string_len("id", 36).primary_key())
                    .col(string_len_null("address", 42))
                    .col(text("message"))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("expires_at_ms"))
                    .col(big_integer_null("used_at_ms"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "login_challenges",
            "login_challenges_address",
            &["address"],
        )
        .await?;
        index(
            manager,
            "login_challenges",
            "login_challenges_expires",
            &["expires_at_ms"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("sessions")
                    .col(string_len("id", 36).primary_key())
                    .col(string_len("address", 42))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("expires_at_ms"))
                    .col(big_integer_null("revoked_at_ms"))
                    .col(string_len_null("revoked_reason", 64))
                    // SHA-256 of the session's current refresh token: rotating it is one
                    // conditional update of this row.
                    .col(string_len_uniq("refresh_token_hash", 64))
                    .to_owned(),
            )
            .await?;
        index(manager, "sessions", "sessions_address", &["address"]).await?;
        index(manager, "sessions", "sessions_expires", &["expires_at_ms"]).await?;

        manager
            .create_table(
                Table::create()
                    .table("spent_refresh_tokens")
                    .col(string_len("token_hash", 64).primary_key())
                    .col(string_len("session_id", 36))
                    .col(big_integer("spent_at_ms"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "spent_refresh_tokens",
            "spent_refresh_tokens_session",
            &["session_id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("jwt_keys")
                    .col(string_len("kid", 64).primary_key())
                    .col(text("private_key_pkcs8_b64"))
                    .col(big_integer("created_at_ms"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("entity_failures")
                    .col(string_len("kind", 32))
                    .col(string_len("entity_key", 200))
                    .col(text("reason"))
                    .col(integer("restarts"))
                    .col(big_integer("failed_at_ms"))
                    .primary_key(Index::create().col("kind").col("entity_key"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "entity_failures",
            "jwt_keys",
            "spent_refresh_tokens",
            "sessions",
            "login_challenges",
            "users",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
