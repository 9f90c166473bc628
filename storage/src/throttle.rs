//! Login attempt counters, one row per key (`account:<email>`, `account_ip:<email>|<ip>`,
//! `ip:<ip>`), each counting in a fixed window. They live in the database so every process sees
//! the same counts.
//!
//! An attempt is reserved before its password is checked: one statement adds one to every key
//! and answers the counts after it, so concurrent attempts see each other and a limit cannot
//! be overrun by racing (increment-then-check). A refused or successful attempt hands its
//! reservation back; a failed one leaves it counted. Rows whose window is over are deleted as
//! new failures come, so the table holds at most the keys that failed within one window.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
};

use crate::audit::{AuditEvent, write_audit};
use crate::entities::login_failures;
use crate::{Context, DashboardRepo, Result};
use ampflow_types::UnixMillis;

/// A key's count in its current window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCount {
    pub key: String,
    pub failures: i32,
    pub window_start_ms: UnixMillis,
}

/// Forgets the counts under `cleared` and takes one back from each of `refunded` (if its window
/// is still the one it was counted in), one row at a time in ascending key order.
///
/// Every writer of these rows locks them in ascending key order (the reservation's upsert
/// lists its keys sorted), so two writers never wait on each other in a cycle. A statement
/// touching several rows at once would lock them in whatever order PostgreSQL scans them, and
/// deadlock with a concurrent reservation.
pub(crate) async fn settle(
    db: &impl ConnectionTrait,
    cleared: &[String],
    refunded: &[FailureCount],
) -> Result<()> {
    use login_failures::Column as C;
    let mut steps: Vec<(&str, Option<&FailureCount>)> = cleared
        .iter()
        .map(|key| (key.as_str(), None))
        .chain(
            refunded
                .iter()
                .filter(|count| !cleared.contains(&count.key))
                .map(|count| (count.key.as_str(), Some(count))),
        )
        .collect();
    steps.sort_by_key(|(key, _)| *key);
    steps.dedup_by_key(|(key, _)| *key);
    for (key, refund) in steps {
        match refund {
            None => {
                login_failures::Entity::delete_many()
                    .filter(C::Key.eq(key))
                    .exec(db)
                    .await
                    .context("clear login failures")?;
            }
            Some(count) => {
                login_failures::Entity::update_many()
                    .col_expr(C::Failures, Expr::col(C::Failures).sub(1))
                    .filter(C::Key.eq(key))
                    .filter(C::WindowStartMs.eq(count.window_start_ms))
                    .filter(C::Failures.gt(0))
                    .exec(db)
                    .await
                    .context("refund login attempt")?;
            }
        }
    }
    Ok(())
}

impl DashboardRepo {
    /// Reserves one login attempt under every key, in one statement: each count goes up by one
    /// (a window that is over starts again at `now`), and the counts after it are answered, in
    /// the order of `keys`.
    pub async fn reserve_login_attempt(
        &self,
        keys: &[&str],
        now: UnixMillis,
        window_ms: i64,
    ) -> Result<Vec<FailureCount>> {
        use login_failures::Column as C;
        let expired = now.saturating_sub(window_ms);
        let restart = format!(
            "CASE WHEN login_failures.window_start_ms <= {expired} THEN {{}} ELSE {{}} END"
        );
        // In ascending key order, as every writer of these rows locks them (see `settle`).
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let models = sorted.iter().map(|key| login_failures::ActiveModel {
            key: Set((*key).to_string()),
            window_start_ms: Set(now),
            failures: Set(1),
        });
        let rows = login_failures::Entity::insert_many(models)
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
            .exec_with_returning(&self.db)
            .await
            .context("reserve login attempt")?;
        let mut counts: Vec<FailureCount> = rows
            .into_iter()
            .map(|m| FailureCount {
                key: m.key,
                failures: m.failures,
                window_start_ms: m.window_start_ms,
            })
            .collect();
        counts.sort_by_key(|c| keys.iter().position(|k| *k == c.key));
        Ok(counts)
    }

    /// Hands back attempts reserved with [`reserve_login_attempt`](Self::reserve_login_attempt)
    /// that were refused before their password was checked.
    pub async fn refund_login_attempt(&self, reserved: &[FailureCount]) -> Result<()> {
        settle(&self.db, &[], reserved).await
    }

    /// A failed attempt: its reservation stays counted. Drops the rows of windows that are
    /// over and writes `audit`, in one transaction.
    pub async fn record_login_failure(
        &self,
        now: UnixMillis,
        window_ms: i64,
        audit: &AuditEvent,
    ) -> Result<()> {
        let expired = now.saturating_sub(window_ms);
        let txn = self.db.begin().await.context("begin login failure")?;
        login_failures::Entity::delete_many()
            .filter(login_failures::Column::WindowStartMs.lte(expired))
            .exec(&txn)
            .await
            .context("drop expired login failures")?;
        write_audit(&txn, audit).await?;
        txn.commit().await.context("commit login failure")
    }
}
