//! Dashboard users (email and password) and their sessions. A session is valid while it is not
//! revoked, not expired, and holds the user's current security stamp: rotating the stamp
//! (logout-all, a password change) ends every session at once. Each change writes its audit
//! row in the same transaction.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr, TransactionTrait,
};

use crate::audit::{AuditEvent, write_audit};
use crate::entities::{dashboard_sessions, dashboard_users};
use crate::{Context, DashboardRepo, Result, StorageError};
use ampflow_types::UnixMillis;

/// How a session is tied to the address it logged in from (seed 000, "IP Binding Options").
/// A request that breaks the binding flags the session; it is not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpBinding {
    None,
    /// Another country (needs a GeoIP database; without one nothing is flagged).
    Country,
    /// Another /24 (IPv4) or /64 (IPv6).
    Subnet,
    /// Any other address.
    Strict,
}

impl IpBinding {
    pub const ALL: [Self; 4] = [Self::None, Self::Country, Self::Subnet, Self::Strict];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Country => "country",
            Self::Subnet => "subnet",
            Self::Strict => "strict",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == text)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct DashboardUserRecord {
    /// `usr_<32 hex>`
    pub id: String,
    /// Trimmed, lower case.
    pub email: String,
    pub name: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    pub security_stamp: String,
    pub ip_binding: IpBinding,
    pub session_timeout_days: i32,
    pub notify_new_device: bool,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
}

impl std::fmt::Debug for DashboardUserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardUserRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("password_hash", &"[redacted]")
            .field("security_stamp", &"[redacted]")
            .field("ip_binding", &self.ip_binding)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct DashboardSessionRecord {
    /// `ses_<32 hex>`
    pub id: String,
    pub user_id: String,
    /// SHA-256 (hex) of the cookie's secret.
    pub token_hash: String,
    pub security_stamp: String,
    pub created_at_ms: UnixMillis,
    pub last_activity_ms: UnixMillis,
    pub expires_at_ms: UnixMillis,
    pub revoked_at_ms: Option<UnixMillis>,
    pub revoked_reason: Option<String>,
    pub ip_address: String,
    pub user_agent: Option<String>,
    pub ip_country: Option<String>,
    pub ip_city: Option<String>,
    pub binding_violation_at_ms: Option<UnixMillis>,
    pub binding_violation_ip: Option<String>,
}

impl std::fmt::Debug for DashboardSessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardSessionRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("token_hash", &"[redacted]")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .finish_non_exhaustive()
    }
}

impl DashboardSessionRecord {
    /// Not revoked, not expired at `now`, and still holding `stamp`.
    pub fn is_active(&self, stamp: &str, now: UnixMillis) -> bool {
        self.revoked_at_ms.is_none() && now < self.expires_at_ms && self.security_stamp == stamp
    }

    /// Whether no request used the session for `idle_timeout_ms` (0: never idle). Its
    /// `last_activity_ms` is written at most once per `auth.activity_write_interval_secs`.
    pub fn is_idle(&self, now: UnixMillis, idle_timeout_ms: i64) -> bool {
        idle_timeout_ms > 0 && now - self.last_activity_ms >= idle_timeout_ms
    }
}

/// The security settings `PATCH /auth/security-settings` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecuritySettings {
    pub ip_binding: IpBinding,
    pub session_timeout_days: i32,
    pub notify_new_device: bool,
}

/// What rotating a user's stamp does besides.
/// What a successful login does to its attempt counters: the account's failures are
/// forgotten (`cleared_keys`) and the other keys' reservation is handed back (`refunded`).
#[derive(Debug, Clone, Copy)]
pub struct LoginSuccess<'a> {
    pub cleared_keys: &'a [String],
    pub refunded: &'a [crate::FailureCount],
}

#[derive(Debug, Clone)]
pub struct StampRotation<'a> {
    pub user_id: &'a str,
    pub new_stamp: &'a str,
    /// A new password hash, for a password change.
    pub new_password_hash: Option<&'a str>,
    /// The session that stays signed in (it is given the new stamp), for a password change.
    pub keep_session: Option<&'a str>,
    /// `logout_all` or `password_changed`.
    pub reason: &'a str,
    pub now: UnixMillis,
}

impl DashboardRepo {
    /// Creates a user; `Conflict` when the email is taken.
    pub async fn insert_dashboard_user(
        &self,
        user: &DashboardUserRecord,
        audit: &AuditEvent,
    ) -> Result<()> {
        if self.dashboard_user_by_email(&user.email).await?.is_some() {
            return Err(StorageError::Conflict(format!(
                "a user with the email {} exists",
                user.email
            )));
        }
        let txn = self.db.begin().await.context("begin insert user")?;
        // Two creations of one email at once: the unique index refuses the second.
        match dashboard_users::Entity::insert(user_model(user))
            .exec_without_returning(&txn)
            .await
        {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Err(StorageError::Conflict(format!(
                    "a user with the email {} exists",
                    user.email
                )));
            }
            Err(e) => return Err(e).context("insert dashboard user"),
        }
        write_audit(&txn, audit).await?;
        txn.commit().await.context("commit insert user")
    }

    pub async fn dashboard_user(&self, id: &str) -> Result<Option<DashboardUserRecord>> {
        dashboard_users::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find dashboard user")?
            .map(user_record)
            .transpose()
    }

    pub async fn dashboard_user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<DashboardUserRecord>> {
        dashboard_users::Entity::find()
            .filter(dashboard_users::Column::Email.eq(email))
            .one(&self.reader)
            .await
            .context("find dashboard user by email")?
            .map(user_record)
            .transpose()
    }

    pub async fn update_security_settings(
        &self,
        user_id: &str,
        settings: SecuritySettings,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<()> {
        use dashboard_users::Column as C;
        let txn = self.db.begin().await.context("begin security settings")?;
        dashboard_users::Entity::update_many()
            .col_expr(C::IpBinding, Expr::value(settings.ip_binding.as_str()))
            .col_expr(
                C::SessionTimeoutDays,
                Expr::value(settings.session_timeout_days),
            )
            .col_expr(C::NotifyNewDevice, Expr::value(settings.notify_new_device))
            .col_expr(C::UpdatedAtMs, Expr::value(now))
            .filter(C::Id.eq(user_id))
            .exec(&txn)
            .await
            .context("update security settings")?;
        write_audit(&txn, audit).await?;
        txn.commit().await.context("commit security settings")
    }

    /// Stores a new session and its audit rows, and forgets the failed logins counted under
    /// `cleared_failure_key` (the account's).
    pub async fn insert_dashboard_session(
        &self,
        session: &DashboardSessionRecord,
        login: &LoginSuccess<'_>,
        audits: &[AuditEvent],
    ) -> Result<()> {
        let txn = self.db.begin().await.context("begin insert session")?;
        dashboard_sessions::Entity::insert(session_model(session))
            .exec_without_returning(&txn)
            .await
            .context("insert dashboard session")?;
        crate::throttle::settle(&txn, login.cleared_keys, login.refunded).await?;
        for audit in audits {
            write_audit(&txn, audit).await?;
        }
        txn.commit().await.context("commit insert session")
    }

    /// The user's newest sessions, whatever their state (to recognise a device).
    pub async fn recent_dashboard_sessions(
        &self,
        user_id: &str,
        limit: u64,
    ) -> Result<Vec<DashboardSessionRecord>> {
        use dashboard_sessions::Column as C;
        Ok(dashboard_sessions::Entity::find()
            .filter(C::UserId.eq(user_id))
            .order_by_desc(C::CreatedAtMs)
            .order_by_desc(C::Id)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list recent dashboard sessions")?
            .into_iter()
            .map(session_record)
            .collect())
    }

    pub async fn dashboard_session(&self, id: &str) -> Result<Option<DashboardSessionRecord>> {
        Ok(dashboard_sessions::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find dashboard session")?
            .map(session_record))
    }

    /// The user's active sessions (see [`DashboardSessionRecord::is_active`]), newest first.
    pub async fn active_dashboard_sessions(
        &self,
        user_id: &str,
        stamp: &str,
        now: UnixMillis,
        limit: u64,
    ) -> Result<Vec<DashboardSessionRecord>> {
        use dashboard_sessions::Column as C;
        Ok(dashboard_sessions::Entity::find()
            .filter(C::UserId.eq(user_id))
            .filter(C::SecurityStamp.eq(stamp))
            .filter(C::RevokedAtMs.is_null())
            .filter(C::ExpiresAtMs.gt(now))
            .order_by_desc(C::CreatedAtMs)
            .order_by_desc(C::Id)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list dashboard sessions")?
            .into_iter()
            .map(session_record)
            .collect())
    }

    /// Moves `last_activity` to `now` if it is older than `now - interval_ms`, so an active
    /// session costs one write per interval, not one per request.
    pub async fn touch_dashboard_session(
        &self,
        id: &str,
        now: UnixMillis,
        interval_ms: i64,
    ) -> Result<()> {
        use dashboard_sessions::Column as C;
        dashboard_sessions::Entity::update_many()
            .col_expr(C::LastActivityMs, Expr::value(now))
            .filter(C::Id.eq(id))
            .filter(C::LastActivityMs.lte(now.saturating_sub(interval_ms)))
            .exec(&self.db)
            .await
            .context("touch dashboard session")?;
        Ok(())
    }

    /// Flags the session's first binding violation (and writes `audit` with it); false when
    /// it was flagged before.
    pub async fn flag_binding_violation(
        &self,
        id: &str,
        ip: &str,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<bool> {
        use dashboard_sessions::Column as C;
        let txn = self.db.begin().await.context("begin binding violation")?;
        let result = dashboard_sessions::Entity::update_many()
            .col_expr(C::BindingViolationAtMs, Expr::value(now))
            .col_expr(C::BindingViolationIp, Expr::value(ip))
            .filter(C::Id.eq(id))
            .filter(C::BindingViolationAtMs.is_null())
            .exec(&txn)
            .await
            .context("flag binding violation")?;
        if result.rows_affected != 1 {
            txn.rollback()
                .await
                .context("roll back binding violation")?;
            return Ok(false);
        }
        write_audit(&txn, audit).await?;
        txn.commit().await.context("commit binding violation")?;
        Ok(true)
    }

    /// Revokes one of `user_id`'s sessions if it is not revoked yet; false otherwise.
    pub async fn revoke_dashboard_session(
        &self,
        id: &str,
        user_id: &str,
        reason: &str,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<bool> {
        use dashboard_sessions::Column as C;
        let txn = self.db.begin().await.context("begin revoke session")?;
        let result = dashboard_sessions::Entity::update_many()
            .col_expr(C::RevokedAtMs, Expr::value(now))
            .col_expr(C::RevokedReason, Expr::value(reason))
            .filter(C::Id.eq(id))
            .filter(C::UserId.eq(user_id))
            .filter(C::RevokedAtMs.is_null())
            .exec(&txn)
            .await
            .context("revoke dashboard session")?;
        if result.rows_affected != 1 {
            txn.rollback().await.context("roll back revoke session")?;
            return Ok(false);
        }
        write_audit(&txn, audit).await?;
        txn.commit().await.context("commit revoke session")?;
        Ok(true)
    }

    /// Gives the user a new stamp (and password hash), which ends every session holding the
    /// old one except `keep_session`; those are also marked revoked. Answers how many were
    /// active; the count is added to the audit row's details as `sessions_revoked`.
    /// `Conflict` when the stamp changed under us (a concurrent rotation).
    pub async fn rotate_security_stamp(
        &self,
        rotation: &StampRotation<'_>,
        audit: &AuditEvent,
    ) -> Result<u64> {
        use dashboard_sessions::Column as S;
        use dashboard_users::Column as U;
        let txn = self.db.begin().await.context("begin rotate stamp")?;
        let user = dashboard_users::Entity::find_by_id(rotation.user_id.to_string())
            .one(&txn)
            .await
            .context("read user for rotation")?
            .ok_or_else(|| StorageError::Conflict("the user does not exist".into()))?;
        let mut others = dashboard_sessions::Entity::find()
            .filter(S::UserId.eq(rotation.user_id))
            .filter(S::SecurityStamp.eq(user.security_stamp.as_str()))
            .filter(S::RevokedAtMs.is_null())
            .filter(S::ExpiresAtMs.gt(rotation.now));
        if let Some(keep) = rotation.keep_session {
            others = others.filter(S::Id.ne(keep));
        }
        let revoked = others.count(&txn).await.context("count sessions")?;
        let mut update = dashboard_users::Entity::update_many()
            .col_expr(U::SecurityStamp, Expr::value(rotation.new_stamp))
            .col_expr(U::UpdatedAtMs, Expr::value(rotation.now));
        if let Some(hash) = rotation.new_password_hash {
            update = update.col_expr(U::PasswordHash, Expr::value(hash));
        }
        let changed = update
            .filter(U::Id.eq(rotation.user_id))
            .filter(U::SecurityStamp.eq(user.security_stamp.as_str()))
            .exec(&txn)
            .await
            .context("rotate security stamp")?;
        if changed.rows_affected != 1 {
            txn.rollback().await.context("roll back rotate stamp")?;
            return Err(StorageError::Conflict("the security stamp changed".into()));
        }
        let mut revoke = dashboard_sessions::Entity::update_many()
            .col_expr(S::RevokedAtMs, Expr::value(rotation.now))
            .col_expr(S::RevokedReason, Expr::value(rotation.reason))
            .filter(S::UserId.eq(rotation.user_id))
            .filter(S::RevokedAtMs.is_null());
        if let Some(keep) = rotation.keep_session {
            revoke = revoke.filter(S::Id.ne(keep));
            dashboard_sessions::Entity::update_many()
                .col_expr(S::SecurityStamp, Expr::value(rotation.new_stamp))
                .filter(S::Id.eq(keep))
                .exec(&txn)
                .await
                .context("keep the current session")?;
        }
        revoke.exec(&txn).await.context("revoke sessions")?;
        let audit = audit.clone().detail("sessions_revoked", revoked);
        write_audit(&txn, &audit).await?;
        txn.commit().await.context("commit rotate stamp")?;
        Ok(revoked)
    }
}

fn user_model(u: &DashboardUserRecord) -> dashboard_users::ActiveModel {
    dashboard_users::ActiveModel {
        id: Set(u.id.clone()),
        email: Set(u.email.clone()),
        name: Set(u.name.clone()),
        password_hash: Set(u.password_hash.clone()),
        security_stamp: Set(u.security_stamp.clone()),
        ip_binding: Set(u.ip_binding.as_str().into()),
        session_timeout_days: Set(u.session_timeout_days),
        notify_new_device: Set(u.notify_new_device),
        created_at_ms: Set(u.created_at_ms),
        updated_at_ms: Set(u.updated_at_ms),
    }
}

fn user_record(m: dashboard_users::Model) -> Result<DashboardUserRecord> {
    let ip_binding = IpBinding::parse(&m.ip_binding)
        .ok_or_else(|| StorageError::Corrupt(format!("user {}: ip_binding", m.id)))?;
    Ok(DashboardUserRecord {
        id: m.id,
        email: m.email,
        name: m.name,
        password_hash: m.password_hash,
        security_stamp: m.security_stamp,
        ip_binding,
        session_timeout_days: m.session_timeout_days,
        notify_new_device: m.notify_new_device,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
    })
}

fn session_model(s: &DashboardSessionRecord) -> dashboard_sessions::ActiveModel {
    dashboard_sessions::ActiveModel {
        id: Set(s.id.clone()),
        user_id: Set(s.user_id.clone()),
        token_hash: Set(s.token_hash.clone()),
        security_stamp: Set(s.security_stamp.clone()),
        created_at_ms: Set(s.created_at_ms),
        last_activity_ms: Set(s.last_activity_ms),
        expires_at_ms: Set(s.expires_at_ms),
        revoked_at_ms: Set(s.revoked_at_ms),
        revoked_reason: Set(s.revoked_reason.clone()),
        ip_address: Set(s.ip_address.clone()),
        user_agent: Set(s.user_agent.clone()),
        ip_country: Set(s.ip_country.clone()),
        ip_city: Set(s.ip_city.clone()),
        binding_violation_at_ms: Set(s.binding_violation_at_ms),
        binding_violation_ip: Set(s.binding_violation_ip.clone()),
    }
}

fn session_record(m: dashboard_sessions::Model) -> DashboardSessionRecord {
    DashboardSessionRecord {
        id: m.id,
        user_id: m.user_id,
        token_hash: m.token_hash,
        security_stamp: m.security_stamp,
        created_at_ms: m.created_at_ms,
        last_activity_ms: m.last_activity_ms,
        expires_at_ms: m.expires_at_ms,
        revoked_at_ms: m.revoked_at_ms,
        revoked_reason: m.revoked_reason,
        ip_address: m.ip_address,
        user_agent: m.user_agent,
        ip_country: m.ip_country,
        ip_city: m.ip_city,
        binding_violation_at_ms: m.binding_violation_at_ms,
        binding_violation_ip: m.binding_violation_ip,
    }
}
