//! The partner API (seed 003): partners' signing keys, the details of donations partners
//! record, and the ads `GET /nonprofit-json/{guid}` serves. Donations get a `source`:
//! `stripe` (paid through a PaymentIntent) or `partner` (collected by a partner, no
//! PaymentIntent).

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
                    .table("partner_keys")
                    // The access key id, `IGF` and 17 base32 characters.
                    .col(string_len("id", 32).primary_key())
                    // The shared secret itself: HMAC needs it to verify. Stored as is (there is
                    // no encryption-at-rest key in the configuration yet).
                    .col(string_len("secret", 64))
                    // The organisation the key's donations go to.
                    .col(string_len("organisation_id", 40))
                    .col(string_len_null("name", 200))
                    // JSON array of CIDRs; empty = any address.
                    .col(text("allowed_ips"))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer_null("revoked_at_ms"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("donations")
                    .add_column(string_len("source", 16).default("stripe"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("partner_donations")
                    .col(string_len("donation_id", 40).primary_key())
                    .col(string_len("partner_key_id", 32))
                    // The seed's fields, as the partner sent them (guids lowercase).
                    .col(string_len("nonprofit_campaign_guid", 36))
                    .col(string_len("publisher_campaign_guid", 36))
                    .col(string_len("publisher_account_guid", 36))
                    .col(string_len_null("sponsor_campaign_guid", 36))
                    .col(integer_null("sponsor_matching_percentage"))
                    .col(string_len_null("publisher_transaction_id", 255))
                    // The donor object, JSON.
                    .col(text("donor"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("partner_ads")
                    // The ad's guid.
                    .col(string_len("id", 36).primary_key())
                    // The publisher campaign it is served for; NULL = a default ad.
                    .col(string_len_null("publisher_campaign_guid", 36))
                    // The ad object in the seed's shape, JSON.
                    .col(text("ad"))
                    .col(big_integer("created_at_ms"))
                    .to_owned(),
            )
            .await?;
        // A partner's retry of a POST carries the same transaction id: one donation per id.
        // NULLs are distinct, so donations without one are not constrained.
        manager
            .create_index(
                Index::create()
                    .name("partner_donations_transaction")
                    .table("partner_donations")
                    .col("partner_key_id")
                    .col("publisher_transaction_id")
                    .unique()
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "partner_ads",
            "partner_ads_campaign",
            &["publisher_campaign_guid", "created_at_ms"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["partner_ads", "partner_donations", "partner_keys"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("donations")
                    .drop_column("source")
                    .to_owned(),
            )
            .await
    }
}
