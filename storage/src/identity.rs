//! Wallet identity: users, login challenges, sessions and refresh tokens.

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::entities::{
    dashboard_sessions, login_challenges, sessions, spent_refresh_tokens, users,
};
use crate::records::*;
use crate::typed::{read_address, read_chain, read_optional};
use crate::{Context, IdentityRepo, Result};
use ampflow_types::{UnixMillis, WalletAddress};

/// Expired sessions deleted per statement by the janitor, and chunks per run (the rest waits
/// for the next run).
const EXPIRED_SESSION_CHUNK: u64 = 500;
const EXPIRED_SESSION_CHUNKS_PER_RUN_MAX: usize = 100;

impl IdentityRepo {
    /// The user and the redeemable `/authorize` challenges of one wallet. (Sessions are read
    /// one at a time, when a request names one.)
    pub async fn load_wallet(
        &self,
        address: &WalletAddress,
        now: UnixMillis,
    ) -> Result<WalletSnapshot> {
        let user = self.find_user(address).await?;
        let challenges = login_challenges::Entity::find()
            .filter(login_challenges::Column::Address.eq(address.to_string()))
            .filter(login_challenges::Column::UsedAtMs.is_null())
            .filter(login_challenges::Column::ExpiresAtMs.gt(now))
            .order_by_desc(login_challenges::Column::CreatedAtMs)
            .all(&self.reader)
            .await
            .context("load wallet challenges")?
            .into_iter()
            .map(challenge_record)
            .collect::<Result<_>>()?;
        Ok(WalletSnapshot { user, challenges })
    }

    pub async fn find_user(&self, address: &WalletAddress) -> Result<Option<UserRecord>> {
        users::Entity::find_by_id(address.to_string())
            .one(&self.reader)
            .await
            .context("find user")?
            .map(user_record)
            .transpose()
    }

    /// Writes `user` if the stored row still has `user.version - 1`. Returns false when another
    /// writer got there first; the caller reloads and decides again.
    pub async fn update_user(&self, user: &UserRecord) -> Result<bool> {
        update_user_on(&self.db, user).await
    }

    /// Stores a new challenge (group-committed with concurrent ones).
    pub async fn insert_challenge(&self, challenge: &ChallengeRecord) -> Result<()> {
        self.challenge_batch.submit(challenge.clone()).await
    }

    pub async fn delete_challenge(&self, id: &str) -> Result<()> {
        login_challenges::Entity::delete_by_id(id.to_string())
            .exec(&self.db)
            .await
            .context("delete login challenge")?;
        Ok(())
    }

    pub async fn find_challenge(&self, id: &str) -> Result<Option<ChallengeRecord>> {
        login_challenges::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find login challenge")?
            .map(challenge_record)
            .transpose()
    }

    /// Consumes the challenge and opens the session, atomically: in one transaction, group-
    /// committed with concurrent logins. The challenge is consumed with a conditional update
    /// (`used_at IS NULL AND expires_at > now`), so of two concurrent logins with one nonce, on
    /// one process or several, exactly one succeeds.
    pub async fn login(&self, write: &LoginWrite, now: UnixMillis) -> Result<LoginOutcome> {
        self.login_batch.submit((write.clone(), now)).await
    }

    pub async fn find_session(&self, id: &str) -> Result<Option<SessionRecord>> {
        sessions::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find session")?
            .map(session_record)
            .transpose()
    }

    /// The session a refresh token belongs to, and whether it is the current token or one
    /// rotated away.
    pub async fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(RefreshTokenState, SessionRecord)>> {
        let current = sessions::Entity::find()
            .filter(sessions::Column::RefreshTokenHash.eq(token_hash))
            .one(&self.reader)
            .await
            .context("find session by refresh token")?;
        if let Some(session) = current {
            return Ok(Some((RefreshTokenState::Current, session_record(session)?)));
        }
        let Some(spent) = spent_refresh_tokens::Entity::find_by_id(token_hash.to_string())
            .one(&self.reader)
            .await
            .context("find spent refresh token")?
        else {
            return Ok(None);
        };
        let session = self.find_session(&spent.session_id).await?;
        Ok(session.map(|session| (RefreshTokenState::Spent, session)))
    }

    /// Replaces the session's current refresh token `old_hash` by `new_hash` and records the
    /// old one as spent, atomically. Of two concurrent rotations of one token, one wins.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        session_id: &str,
        now: UnixMillis,
    ) -> Result<RotateOutcome> {
        let txn = self.db.begin().await.context("begin refresh")?;
        let rotated = sessions::Entity::update_many()
            .col_expr(sessions::Column::RefreshTokenHash, Expr::value(new_hash))
            .filter(sessions::Column::Id.eq(session_id))
            .filter(sessions::Column::RefreshTokenHash.eq(old_hash))
            .filter(sessions::Column::RevokedAtMs.is_null())
            .exec(&txn)
            .await
            .context("rotate refresh token")?;
        if rotated.rows_affected != 1 {
            txn.rollback().await.context("roll back refresh")?;
            return Ok(RotateOutcome::AlreadySpent);
        }
        spent_refresh_tokens::Entity::insert(spent_refresh_tokens::ActiveModel {
            token_hash: Set(old_hash.to_string()),
            session_id: Set(session_id.to_string()),
            spent_at_ms: Set(now),
        })
        .exec_without_returning(&txn)
        .await
        .context("record spent refresh token")?;
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

    /// Deletes challenges and sessions (with their spent refresh tokens) that ended before
    /// `before`.
    /// Returns how many rows went.
    pub async fn delete_expired_identity_rows(&self, before: UnixMillis) -> Result<u64> {
        let challenges = login_challenges::Entity::delete_many()
            .filter(login_challenges::Column::ExpiresAtMs.lt(before))
            .exec(&self.db)
            .await
            .context("delete expired challenges")?
            .rows_affected;
        // Sessions go in bounded chunks, each with its spent refresh tokens, so one run never
        // holds more than a chunk of ids.
        let mut deleted = challenges;
        for _ in 0..EXPIRED_SESSION_CHUNKS_PER_RUN_MAX {
            let chunk: Vec<String> = sessions::Entity::find()
                .filter(sessions::Column::ExpiresAtMs.lt(before))
                .limit(EXPIRED_SESSION_CHUNK)
                .all(&self.db)
                .await
                .context("find expired sessions")?
                .into_iter()
                .map(|s| s.id)
                .collect();
            if chunk.is_empty() {
                break;
            }
            deleted += spent_refresh_tokens::Entity::delete_many()
                .filter(spent_refresh_tokens::Column::SessionId.is_in(chunk.iter().cloned()))
                .exec(&self.db)
                .await
                .context("delete refresh tokens of expired sessions")?
                .rows_affected;
            deleted += sessions::Entity::delete_many()
                .filter(sessions::Column::Id.is_in(chunk.iter().cloned()))
                .exec(&self.db)
                .await
                .context("delete expired sessions")?
                .rows_affected;
        }
        // Dashboard sessions too, expired or revoked before the cutoff, in the same bounded
        // chunks.
        for _ in 0..EXPIRED_SESSION_CHUNKS_PER_RUN_MAX {
            let chunk: Vec<String> = dashboard_sessions::Entity::find()
                .select_only()
                .column(dashboard_sessions::Column::Id)
                .filter(
                    Condition::any()
                        .add(dashboard_sessions::Column::ExpiresAtMs.lt(before))
                        .add(dashboard_sessions::Column::RevokedAtMs.lt(before)),
                )
                .limit(EXPIRED_SESSION_CHUNK)
                .into_tuple()
                .all(&self.db)
                .await
                .context("find ended dashboard sessions")?;
            if chunk.is_empty() {
                break;
            }
            deleted += dashboard_sessions::Entity::delete_many()
                .filter(dashboard_sessions::Column::Id.is_in(chunk))
                .exec(&self.db)
                .await
                .context("delete ended dashboard sessions")?
                .rows_affected;
        }
        Ok(deleted)
    }
}

/// Writes a batch of challenges with one multi-row insert.
pub(crate) async fn write_challenges(
    db: &DatabaseConnection,
    batch: Vec<ChallengeRecord>,
) -> Result<Vec<()>> {
    let count = batch.len();
    login_challenges::Entity::insert_many(batch.iter().map(challenge_model))
        .exec_without_returning(db)
        .await
        .context("insert login challenges")?;
    Ok(vec![(); count])
}

/// Writes a batch of logins in one transaction: one conditional update consumes every
/// challenge that is still redeemable (and says which), one insert creates the users that are
/// new, one insert opens the sessions of the logins that won their challenge.
pub(crate) async fn write_logins(
    db: &DatabaseConnection,
    batch: Vec<(LoginWrite, UnixMillis)>,
) -> Result<Vec<LoginOutcome>> {
    let now = batch.iter().map(|(_, now)| *now).max().unwrap_or_default();
    let ids: HashSet<&str> = batch.iter().map(|(w, _)| w.challenge_id.as_str()).collect();
    let txn = db.begin().await.context("begin logins")?;
    let consumed: HashSet<String> = login_challenges::Entity::update_many()
        .col_expr(login_challenges::Column::UsedAtMs, Expr::value(now))
        .filter(login_challenges::Column::Id.is_in(ids))
        .filter(login_challenges::Column::UsedAtMs.is_null())
        .filter(login_challenges::Column::ExpiresAtMs.gt(now))
        .exec_with_returning(&txn)
        .await
        .context("consume login challenges")?
        .into_iter()
        .map(|challenge| challenge.id)
        .collect();
    // Two logins in one batch may present the same challenge: the first one wins it.
    let mut claimed = HashSet::new();
    let won: Vec<bool> = batch
        .iter()
        .map(|(w, _)| consumed.contains(&w.challenge_id) && claimed.insert(w.challenge_id.as_str()))
        .collect();

    let new_users: Vec<&UserRecord> = batch
        .iter()
        .zip(&won)
        .filter_map(|((write, _), won)| write.create_user.as_ref().filter(|_| *won))
        .collect();
    let users = create_users(&txn, &new_users).await?;
    let sessions: Vec<_> = batch
        .iter()
        .zip(&won)
        .filter(|(_, won)| **won)
        .map(|((w, _), _)| session_model(&w.session))
        .collect();
    if !sessions.is_empty() {
        sessions::Entity::insert_many(sessions)
            .exec_without_returning(&txn)
            .await
            .context("insert sessions")?;
    }
    txn.commit().await.context("commit logins")?;

    batch
        .iter()
        .zip(won)
        .map(|((write, _), won)| {
            if !won {
                return Ok(LoginOutcome::ChallengeUnavailable);
            }
            let Some(new_user) = &write.create_user else {
                return Ok(LoginOutcome::LoggedIn(None));
            };
            users
                .get(&new_user.address)
                .cloned()
                .map(|user| LoginOutcome::LoggedIn(Some(user)))
                .ok_or_else(|| crate::StorageError::Corrupt("user missing after login".into()))
        })
        .collect()
}

/// Creates the users of first logins (a user created meanwhile by another login is kept) and
/// reads them back, by address.
async fn create_users(
    txn: &sea_orm::DatabaseTransaction,
    new_users: &[&UserRecord],
) -> Result<HashMap<WalletAddress, UserRecord>> {
    let mut by_address: HashMap<String, &UserRecord> = HashMap::new();
    for user in new_users {
        by_address.entry(user.address.to_string()).or_insert(user);
    }
    if by_address.is_empty() {
        return Ok(HashMap::new());
    }
    users::Entity::insert_many(by_address.values().map(|u| user_model(u)))
        .on_conflict(
            OnConflict::column(users::Column::Address)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await
        .context("create users on first login")?;
    users::Entity::find()
        .filter(users::Column::Address.is_in(by_address.keys().cloned()))
        .all(txn)
        .await
        .context("read users after login")?
        .into_iter()
        .map(|m| Ok((read_address(&m.address)?, user_record(m)?)))
        .collect()
}

/// `Storage::update_user` on a connection or inside a transaction.
pub(crate) async fn update_user_on(db: &impl ConnectionTrait, user: &UserRecord) -> Result<bool> {
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
        .col_expr(
            users::Column::KycSessionId,
            Expr::value(user.kyc_session_id.clone()),
        )
        .col_expr(
            users::Column::KycDocumentType,
            Expr::value(user.kyc_document_type.clone()),
        )
        .col_expr(
            users::Column::KycDocumentCountry,
            Expr::value(user.kyc_document_country.clone()),
        )
        .col_expr(
            users::Column::KycDocumentValidUntil,
            Expr::value(user.kyc_document_valid_until),
        )
        .col_expr(
            users::Column::KycVerifiedAtMs,
            Expr::value(user.kyc_verified_at_ms),
        )
        .col_expr(users::Column::Version, Expr::value(user.version))
        .col_expr(users::Column::UpdatedAtMs, Expr::value(user.updated_at_ms))
        .filter(users::Column::Address.eq(user.address.to_string()))
        .filter(users::Column::Version.eq(user.version - 1))
        .exec(db)
        .await
        .context("update user")?;
    Ok(result.rows_affected == 1)
}

pub(crate) fn user_record(m: users::Model) -> Result<UserRecord> {
    Ok(UserRecord {
        address: read_address(&m.address)?,
        email: m.email,
        email_verified: m.email_verified,
        kyc_completed: m.kyc_completed,
        kyc_first_name: m.kyc_first_name,
        kyc_last_name: m.kyc_last_name,
        kyc_session_id: m.kyc_session_id,
        kyc_document_type: m.kyc_document_type,
        kyc_document_country: m.kyc_document_country,
        kyc_document_valid_until: m.kyc_document_valid_until,
        kyc_verified_at_ms: m.kyc_verified_at_ms,
        version: m.version,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
    })
}

fn user_model(u: &UserRecord) -> users::ActiveModel {
    users::ActiveModel {
        address: Set(u.address.to_string()),
        email: Set(u.email.clone()),
        email_verified: Set(u.email_verified),
        kyc_completed: Set(u.kyc_completed),
        kyc_first_name: Set(u.kyc_first_name.clone()),
        kyc_last_name: Set(u.kyc_last_name.clone()),
        kyc_session_id: Set(u.kyc_session_id.clone()),
        kyc_document_type: Set(u.kyc_document_type.clone()),
        kyc_document_country: Set(u.kyc_document_country.clone()),
        kyc_document_valid_until: Set(u.kyc_document_valid_until),
        kyc_verified_at_ms: Set(u.kyc_verified_at_ms),
        version: Set(u.version),
        created_at_ms: Set(u.created_at_ms),
        updated_at_ms: Set(u.updated_at_ms),
    }
}

fn challenge_record(m: login_challenges::Model) -> Result<ChallengeRecord> {
    Ok(ChallengeRecord {
        id: m.id,
        address: read_optional(m.address, read_address)?,
        message: m.message,
        created_at_ms: m.created_at_ms,
        expires_at_ms: m.expires_at_ms,
        used_at_ms: m.used_at_ms,
    })
}

fn challenge_model(c: &ChallengeRecord) -> login_challenges::ActiveModel {
    login_challenges::ActiveModel {
        id: Set(c.id.clone()),
        address: Set(c.address.map(|a| a.to_string())),
        message: Set(c.message.clone()),
        created_at_ms: Set(c.created_at_ms),
        expires_at_ms: Set(c.expires_at_ms),
        used_at_ms: Set(c.used_at_ms),
    }
}

fn session_record(m: sessions::Model) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: m.id,
        address: read_address(&m.address)?,
        created_at_ms: m.created_at_ms,
        expires_at_ms: m.expires_at_ms,
        revoked_at_ms: m.revoked_at_ms,
        revoked_reason: m.revoked_reason,
        refresh_token_hash: m.refresh_token_hash,
        chain_id: m.chain_id.map(read_chain).transpose()?,
    })
}

fn session_model(s: &SessionRecord) -> sessions::ActiveModel {
    sessions::ActiveModel {
        id: Set(s.id.clone()),
        address: Set(s.address.to_string()),
        created_at_ms: Set(s.created_at_ms),
        expires_at_ms: Set(s.expires_at_ms),
        revoked_at_ms: Set(s.revoked_at_ms),
        revoked_reason: Set(s.revoked_reason.clone()),
        refresh_token_hash: Set(s.refresh_token_hash.clone()),
        chain_id: Set(s.chain_id.map(crate::typed::chain_column)),
    }
}
