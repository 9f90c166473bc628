//! Failed-login counters, one row per key (`account:<email>`, `ip:<address>`), each counting
//! failures in a fixed window. They live in the database so every process sees the same
//! counts; rows whose window is over are deleted as new failures come, so the table holds at
//! most the keys that failed within one window.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
};

use crate::audit::{AuditEvent, write_audit};
use crate::entities::login_failures;
use crate::{Context, Result, Storage};
use ampflow_types::UnixMillis;

/// A key's failures in its current window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCount {
    pub key: String,
    pub failures: i32,
    pub window_start_ms: UnixMillis,
}

pub(crate) async fn clear_failures(db: &impl ConnectionTrait, key: &str) -> Result<()> {
    login_failures::Entity::delete_many()
        .filter(login_failures::Column::Key.eq(key))
        .exec(db)
        .await
        .context("clear login failures")?;
    Ok(())
}

impl Storage {
    /// The failures counted under `keys` in windows that began after `now - window_ms`.
    pub async fn login_failures(
        &self,
        keys: &[&str],
        now: UnixMillis,
        window_ms: i64,
    ) -> Result<Vec<FailureCount>> {
        use login_failures::Column as C;
        Ok(login_failures::Entity::find()
            .filter(C::Key.is_in(keys.iter().copied()))
            .filter(C::WindowStartMs.gt(now.saturating_sub(window_ms)))
            .all(&self.db)
            .await
            .context("read login failures")?
            .into_iter()
            .map(|m| FailureCount {
                key: m.key,
                failures: m.failures,
                window_start_ms: m.window_start_ms,
            })
            .collect())
    }

    /// Counts one failure under each key (a window that is over starts again at `now`), drops
    /// the rows of windows that are over, and writes `audit`, in one transaction.
    pub async fn record_login_failure(
        &self,
        keys: &[&str],
        now: UnixMillis,
        window_ms: i64,
        audit: &AuditEvent,
    ) -> Result<()> {
        use login_failures::Column as C;
        let expired = now.saturating_sub(window_ms);
        let txn = self.db.begin().await.context("begin login failure")?;
        for key in keys {
            // One atomic statement, so concurrent failures in several processes all count.
            let restart = format!(
                "CASE WHEN login_failures.window_start_ms <= {expired} THEN {{}} ELSE {{}} END"
            );
            login_failures::Entity::insert(login_failures::ActiveModel {
                key: Set((*key).to_string()),
                window_start_ms: Set(now),
                failures: Set(1),
            })
            .on_conflict(
                OnConflict::column(C::Key)
                    .value(
                        C::Failures,
                        Expr::cust(restart.replacen("{}", "1", 1).replacen(
                            "{}",
                            "login_failures.failures + 1",
                            1,
                        )),
                    )
                    .value(
                        C::WindowStartMs,
                        Expr::cust(restart.replacen("{}", &now.to_string(), 1).replacen(
                            "{}",
                            "login_failures.window_start_ms",
                            1,
                        )),
                    )
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .context("count login failure")?;
        }
        login_failures::Entity::delete_many()
            .filter(C::WindowStartMs.lte(expired))
            .exec(&txn)
            .await
            .context("drop expired login failures")?;
        write_audit(&txn, audit).await?;
        txn.commit().await.context("commit login failure")
    }
}
