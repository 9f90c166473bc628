//! Organisation API keys (issue 6, seeds 000 and 001): a key is an organisation's synthetic
//! identity with policies. It is used directly (`Bearer sk_live_…`, only its SHA-256 stored)
//! or through JWT access tokens signed with the key's internal secret. Rotation makes a new
//! secret current and deposes the previous one, which stays valid for a while; at most one is
//! deposed.

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
                    .table("api_keys")
                    // `key_<32 hex>`
                    .col(string_len("id", 40).primary_key())
                    .col(string_len("organisation_id", 40))
                    .col(string_len("name", 200))
                    // live | test: the key's prefix, sk_live_ or sk_test_
                    .col(string_len("mode", 8))
                    // Space-separated policies, e.g. `donations:read ledger:read`.
                    .col(string_len("policies", 512))
                    // SHA-256 (hex) of the whole `sk_…` key; the key itself is never stored.
                    .col(string_len("key_hash", 64).unique_key())
                    // The key's first and last characters, to tell keys apart in lists.
                    .col(string_len("key_hint", 32))
                    // The internal secret access tokens are signed with (HMAC-SHA256), and
                    // its id, which tokens name.
                    .col(string_len("secret_id", 40))
                    .col(string_len("secret", 64))
                    .col(big_integer("secret_created_at_ms"))
                    // The previous secret, valid until `deposed_until_ms`.
                    .col(string_len_null("deposed_secret_id", 40))
                    .col(string_len_null("deposed_secret", 64))
                    .col(big_integer_null("deposed_until_ms"))
                    // `usr_…` or `key_…`
                    .col(string_len("created_by", 40))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("updated_at_ms"))
                    // Written at most once per `auth.activity_write_interval_secs`.
                    .col(big_integer_null("last_used_at_ms"))
                    // A deleted key authenticates nothing, directly or through its tokens.
                    .col(big_integer_null("deleted_at_ms"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "api_keys",
            "api_keys_organisation",
            &["organisation_id", "created_at_ms", "id"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("api_keys").to_owned())
            .await
    }
}
