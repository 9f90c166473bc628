//! Dashboard access (issue 6): users who sign in with an email and a password, their sessions,
//! their memberships of organisations (role member or admin), the audit log every session and
//! role change writes, and the failed-login counters that throttle guessing. (The wallet
//! identity's `users` and `sessions` tables are a different thing: wallets, not people.)

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
                    .table("dashboard_users")
                    // `usr_<32 hex>`
                    .col(string_len("id", 40).primary_key())
                    // Trimmed and lower case.
                    .col(string_len("email", 254).unique_key())
                    .col(string_len_null("name", 200))
                    // The argon2id PHC string (salt and parameters inside).
                    .col(string_len("password_hash", 256))
                    // Rotated by logout-all and a password change: a session holding an older
                    // stamp is no longer valid.
                    .col(string_len("security_stamp", 64))
                    // none | country | subnet | strict
                    .col(string_len("ip_binding", 16))
                    .col(integer("session_timeout_days"))
                    .col(boolean("notify_new_device"))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("updated_at_ms"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("dashboard_sessions")
                    // `ses_<32 hex>`
                    .col(string_len("id", 40).primary_key())
                    .col(string_len("user_id", 40))
                    // SHA-256 (hex) of the cookie's secret part; the secret itself is never
                    // stored.
                    .col(string_len("token_hash", 64))
                    // The user's stamp when the session began.
                    .col(string_len("security_stamp", 64))
                    .col(big_integer("created_at_ms"))
                    // Written at most once per `auth.activity_write_interval_secs`.
                    .col(big_integer("last_activity_ms"))
                    .col(big_integer("expires_at_ms"))
                    .col(big_integer_null("revoked_at_ms"))
                    .col(string_len_null("revoked_reason", 32))
                    // The client at login.
                    .col(string_len("ip_address", 45))
                    .col(string_len_null("user_agent", 512))
                    .col(string_len_null("ip_country", 2))
                    .col(string_len_null("ip_city", 200))
                    // The first request that broke the user's IP binding, if any.
                    .col(big_integer_null("binding_violation_at_ms"))
                    .col(string_len_null("binding_violation_ip", 45))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "dashboard_sessions",
            "dashboard_sessions_user",
            &["user_id", "created_at_ms"],
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table("memberships")
                    .col(string_len("organisation_id", 40))
                    .col(string_len("user_id", 40))
                    // member | admin
                    .col(string_len("role", 16))
                    .col(big_integer("created_at_ms"))
                    .col(big_integer("updated_at_ms"))
                    .primary_key(Index::create().col("organisation_id").col("user_id"))
                    .to_owned(),
            )
            .await?;
        index(manager, "memberships", "memberships_user", &["user_id"]).await?;
        manager
            .create_table(
                Table::create()
                    .table("audit_events")
                    // `aud_<32 hex>`
                    .col(string_len("id", 40).primary_key())
                    .col(big_integer("occurred_at_ms"))
                    // user | api_key | system | anonymous
                    .col(string_len("actor_type", 16))
                    .col(string_len_null("actor_id", 64))
                    // e.g. `session.login`, `membership.role_changed`
                    .col(string_len("action", 64))
                    .col(string_len_null("target_type", 32))
                    .col(string_len_null("target_id", 254))
                    .col(string_len_null("organisation_id", 40))
                    .col(string_len_null("ip_address", 45))
                    .col(string_len_null("request_id", 128))
                    // A small JSON object; never a secret.
                    .col(text("details"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "audit_events",
            "audit_events_organisation",
            &["organisation_id", "occurred_at_ms", "id"],
        )
        .await?;
        index(
            manager,
            "audit_events",
            "audit_events_actor",
            &["actor_id", "occurred_at_ms", "id"],
        )
        .await?;
        index(
            manager,
            "audit_events",
            "audit_events_target",
            &["target_id", "occurred_at_ms", "id"],
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table("login_failures")
                    // `account:<email>` or `ip:<address>`
                    .col(string_len("key", 300).primary_key())
                    .col(big_integer("window_start_ms"))
                    .col(integer("failures"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "login_failures",
            "login_failures_window",
            &["window_start_ms"],
        )
        .await?;
        // Organisation members list their organisation's donations.
        index(
            manager,
            "donations",
            "donations_organisation",
            &["organisation_id", "created_at_ms", "id"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("donations_organisation")
                    .table("donations")
                    .to_owned(),
            )
            .await?;
        for table in [
            "login_failures",
            "audit_events",
            "memberships",
            "dashboard_sessions",
            "dashboard_users",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
