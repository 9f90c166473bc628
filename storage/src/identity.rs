//! Wallet identity: users, login challenges, sessions and refresh tokens.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

use crate::entities::{login_challenges, refresh_tokens, sessions, users};
use crate::records::*;
use crate::{Context, Result, Storage};
use ampflow_types::UnixMillis;

impl Storage {
    /// The user, the redeemable `/authorize` challenges and the live sessions of one wallet.
    pub async fn load_wallet(&self, address: &str, now: UnixMillis) -> Result<WalletSnapshot> {
        let user = self.find_user(address).await?;
        let challenges = login_challenges::Entity::find()
            .filter(login_challenges::Column::Address.eq(address))
            .filter(login_challenges::Column::UsedAtMs.is_null())
            .filter(login_challenges::Column::ExpiresAtMs.gt(now))
            .order_by_desc(login_challenges::Column::CreatedAtMs)
            .all(&self.reader)
            .await
            .context("load wallet challenges")?
            .into_iter()
            .map(challenge_record)
            .collect();
        let sessions = sessions::Entity::find()
            .filter(sessions::Column::Address.eq(address))
            .filter(sessions::Column::RevokedAtMs.is_null())
            .filter(sessions::Column::ExpiresAtMs.gt(now))
            .all(&self.reader)
            .await
            .context("load wallet sessions")?
            .into_iter()
            .map(session_record)
            .collect();
        Ok(WalletSnapshot {
            user,
            challenges,
            sessions,
        })
    }

    pub async fn find_user(&self, address: &str) -> Result<Option<UserRecord>> {
        Ok(users::Entity::find_by_id(address.to_string())
            .one(&self.reader)
            .await
            .context("find user")?
            .map(user_record))
    }

    /// Writes `user` if the stored row still has `user.version - 1`. Returns false when another
    /// writer got there first; the caller reloads and decides again.
    pub async fn update_user(&self, user: &UserRecord) -> Result<bool> {
        let result = users::Entity::update_many()
            .col_expr(users::Column::Email, Expr::value(user.email.clone()))
            .col_expr(
                users::Column::EmailVerified,
                Expr::value(user.email_verified),
            )
            .col_expr(users::Column::KycCompleted, Expr::value(user.kyc_completed))
            .col_expr(
                users::Column::KycFirstName,
                Expr::value(user.kyc_first_name.clone()),
            )
            .col_expr(
                users::Column::KycLastName,
                Expr::value(user.kyc_last_name.clone()),
            )
            .col_expr(users::Column::Version, Expr::value(user.version))
            .col_expr(users::Column::UpdatedAtMs, Expr::value(user.updated_at_ms))
            .filter(users::Column::Address.eq(user.address.as_str()))
            .filter(users::Column::Version.eq(user.version - 1))
            .exec(&self.db)
            .await
            .context("update user")?;
        Ok(result.rows_affected == 1)
    }

    pub async fn insert_challenge(&self, challenge: &ChallengeRecord) -> Result<()> {
        login_challenges::Entity::insert(challenge_model(challenge))
            .exec_without_returning(&self.db)
            .await
            .context("insert login challenge")?;
        Ok(())
    }

    pub async fn delete_challenge(&self, id: &str) -> Result<()> {
        login_challenges::Entity::delete_by_id(id.to_string())
            .exec(&self.db)
            .await
            .context("delete login challenge")?;
        Ok(())
    }

    pub async fn find_challenge(&self, id: &str) -> Result<Option<ChallengeRecord>> {
        Ok(login_challenges::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find login challenge")?
            .map(challenge_record))
    }

    /// Consumes the challenge and starts a session in one transaction. The challenge is
    /// consumed with a conditional update, so of two concurrent logins with one nonce (on one
    /// process or several) exactly one succeeds.
    pub async fn login(&self, write: &LoginWrite, now: UnixMillis) -> Result<LoginOutcome> {
        let txn = self.db.begin().await.context("begin login")?;
        let consumed = login_challenges::Entity::update_many()
            .col_expr(login_challenges::Column::UsedAtMs, Expr::value(now))
            .filter(login_challenges::Column::Id.eq(write.challenge_id.as_str()))
            .filter(login_challenges::Column::UsedAtMs.is_null())
            .filter(login_challenges::Column::ExpiresAtMs.gt(now))
            .exec(&txn)
            .await
            .context("consume login challenge")?;
        if consumed.rows_affected != 1 {
            txn.rollback().await.context("roll back login")?;
            return Ok(LoginOutcome::ChallengeUnavailable);
        }
        let created = users::Entity::insert(user_model(&write.new_user))
            .on_conflict(
                OnConflict::column(users::Column::Address)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .context("create user on first login")?;
        sessions::Entity::insert(session_model(&write.session))
            .exec_without_returning(&txn)
            .await
            .context("insert session")?;
        insert_refresh_token(&txn, &write.refresh_token_hash, &write.session.id, now).await?;
        let user = if created == 1 {
            write.new_user.clone()
        } else {
            users::Entity::find_by_id(write.new_user.address.clone())
                .one(&txn)
                .await
                .context("read user after login")?
                .map(user_record)
                .ok_or_else(|| crate::StorageError::Corrupt("user vanished during login".into()))?
        };
        txn.commit().await.context("commit login")?;
        Ok(LoginOutcome::LoggedIn(user))
    }

    pub async fn find_session(&self, id: &str) -> Result<Option<SessionRecord>> {
        Ok(sessions::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find session")?
            .map(session_record))
    }

    /// The refresh token with this hash and the session it belongs to.
    pub async fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(RefreshTokenRecord, SessionRecord)>> {
        let Some(token) = refresh_tokens::Entity::find_by_id(token_hash.to_string())
            .one(&self.reader)
            .await
            .context("find refresh token")?
        else {
            return Ok(None);
        };
        let Some(session) = self.find_session(&token.session_id).await? else {
            return Ok(None);
        };
        Ok(Some((refresh_token_record(token), session)))
    }

    /// Spends `old_hash` and stores `new_hash` in the same session, atomically.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        session_id: &str,
        now: UnixMillis,
    ) -> Result<RotateOutcome> {
        let txn = self.db.begin().await.context("begin refresh")?;
        let spent = refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::UsedAtMs, Expr::value(now))
            .filter(refresh_tokens::Column::TokenHash.eq(old_hash))
            .filter(refresh_tokens::Column::UsedAtMs.is_null())
            .exec(&txn)
            .await
            .context("spend refresh token")?;
        if spent.rows_affected != 1 {
            txn.rollback().await.context("roll back refresh")?;
            return Ok(RotateOutcome::AlreadySpent);
        }
        insert_refresh_token(&txn, new_hash, session_id, now).await?;
        txn.commit().await.context("commit refresh")?;
        Ok(RotateOutcome::Rotated)
    }

    /// Revokes a session and so every access and refresh token issued in it. Returns false if
    /// it was already revoked.
    pub async fn revoke_session(&self, id: &str, reason: &str, now: UnixMillis) -> Result<bool> {
        let result = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAtMs, Expr::value(now))
            .col_expr(sessions::Column::RevokedReason, Expr::value(reason))
            .filter(sessions::Column::Id.eq(id))
            .filter(sessions::Column::RevokedAtMs.is_null())
            .exec(&self.db)
            .await
            .context("revoke session")?;
        Ok(result.rows_affected == 1)
    }

    /// Deletes challenges and sessions (with their refresh tokens) that ended before `before`.
    /// Returns how many rows went.
    pub async fn delete_expired_identity_rows(&self, before: UnixMillis) -> Result<u64> {
        let challenges = login_challenges::Entity::delete_many()
            .filter(login_challenges::Column::ExpiresAtMs.lt(before))
            .exec(&self.db)
            .await
            .context("delete expired challenges")?
            .rows_affected;
        let expired_sessions: Vec<String> = sessions::Entity::find()
            .filter(sessions::Column::ExpiresAtMs.lt(before))
            .all(&self.db)
            .await
            .context("find expired sessions")?
            .into_iter()
            .map(|s| s.id)
            .collect();
        let mut tokens = 0;
        for chunk in expired_sessions.chunks(500) {
            tokens += refresh_tokens::Entity::delete_many()
                .filter(refresh_tokens::Column::SessionId.is_in(chunk.iter().cloned()))
                .exec(&self.db)
                .await
                .context("delete refresh tokens of expired sessions")?
                .rows_affected;
            sessions::Entity::delete_many()
                .filter(sessions::Column::Id.is_in(chunk.iter().cloned()))
                .exec(&self.db)
                .await
                .context("delete expired sessions")?;
        }
        Ok(challenges + tokens + expired_sessions.len() as u64)
    }
}

async fn insert_refresh_token(
    db: &impl ConnectionTrait,
    token_hash: &str,
    session_id: &str,
    now: UnixMillis,
) -> Result<()> {
    refresh_tokens::Entity::insert(refresh_tokens::ActiveModel {
        token_hash: Set(token_hash.to_string()),
        session_id: Set(session_id.to_string()),
        created_at_ms: Set(now),
        used_at_ms: Set(None),
    })
    .exec_without_returning(db)
    .await
    .context("insert refresh token")?;
    Ok(())
}

fn user_record(m: users::Model) -> UserRecord {
    UserRecord {
        address: m.address,
        email: m.email,
        email_verified: m.email_verified,
        kyc_completed: m.kyc_completed,
        kyc_first_name: m.kyc_first_name,
        kyc_last_name: m.kyc_last_name,
        version: m.version,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
    }
}

fn user_model(u: &UserRecord) -> users::ActiveModel {
    users::ActiveModel {
        address: Set(u.address.clone()),
        email: Set(u.email.clone()),
        email_verified: Set(u.email_verified),
        kyc_completed: Set(u.kyc_completed),
        kyc_first_name: Set(u.kyc_first_name.clone()),
        kyc_last_name: Set(u.kyc_last_name.clone()),
        version: Set(u.version),
        created_at_ms: Set(u.created_at_ms),
        updated_at_ms: Set(u.updated_at_ms),
    }
}

fn challenge_record(m: login_challenges::Model) -> ChallengeRecord {
    ChallengeRecord {
        id: m.id,
        address: m.address,
        message: m.message,
        created_at_ms: m.created_at_ms,
        expires_at_ms: m.expires_at_ms,
        used_at_ms: m.used_at_ms,
    }
}

fn challenge_model(c: &ChallengeRecord) -> login_challenges::ActiveModel {
    login_challenges::ActiveModel {
        id: Set(c.id.clone()),
        address: Set(c.address.clone()),
        message: Set(c.message.clone()),
        created_at_ms: Set(c.created_at_ms),
        expires_at_ms: Set(c.expires_at_ms),
        used_at_ms: Set(c.used_at_ms),
    }
}

fn session_record(m: sessions::Model) -> SessionRecord {
    SessionRecord {
        id: m.id,
        address: m.address,
        created_at_ms: m.created_at_ms,
        expires_at_ms: m.expires_at_ms,
        revoked_at_ms: m.revoked_at_ms,
        revoked_reason: m.revoked_reason,
    }
}

fn session_model(s: &SessionRecord) -> sessions::ActiveModel {
    sessions::ActiveModel {
        id: Set(s.id.clone()),
        address: Set(s.address.clone()),
        created_at_ms: Set(s.created_at_ms),
        expires_at_ms: Set(s.expires_at_ms),
        revoked_at_ms: Set(s.revoked_at_ms),
        revoked_reason: Set(s.revoked_reason.clone()),
    }
}

fn refresh_token_record(m: refresh_tokens::Model) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: m.token_hash,
        session_id: m.session_id,
        created_at_ms: m.created_at_ms,
        used_at_ms: m.used_at_ms,
    }
}
