//! KYC: the Veriff sessions of each wallet and the decision Veriff sent for each. The user's
//! KYC fields live on `users` (see `identity.rs`); a decision that changes both is written in
//! one transaction.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

use crate::entities::veriff_sessions;
use crate::identity::update_user_on;
use crate::records::*;
use crate::{Context, IdentityRepo, Result, StorageError};
use ampflow_types::WalletAddress;

impl IdentityRepo {
    pub async fn insert_veriff_session(&self, session: &VeriffSessionRecord) -> Result<()> {
        veriff_sessions::Entity::insert(veriff_session_model(session))
            .exec_without_returning(&self.db)
            .await
            .context("insert veriff session")?;
        Ok(())
    }

    pub async fn find_veriff_session(&self, id: &str) -> Result<Option<VeriffSessionRecord>> {
        veriff_sessions::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find veriff session")?
            .map(veriff_session_record)
            .transpose()
    }

    /// The wallet's most recent Veriff session.
    pub async fn latest_veriff_session(
        &self,
        address: &WalletAddress,
    ) -> Result<Option<VeriffSessionRecord>> {
        veriff_sessions::Entity::find()
            .filter(veriff_sessions::Column::Address.eq(address.to_string()))
            .order_by_desc(veriff_sessions::Column::CreatedAtMs)
            .order_by_desc(veriff_sessions::Column::Id)
            .one(&self.reader)
            .await
            .context("find latest veriff session")?
            .map(veriff_session_record)
            .transpose()
    }

    /// Writes `session` (and `user`, when given) if the stored rows still have the versions
    /// before theirs, in one transaction. Returns false, writing nothing, when another writer
    /// got there first; the caller reloads and decides again.
    pub async fn update_veriff_session(
        &self,
        session: &VeriffSessionRecord,
        user: Option<&UserRecord>,
    ) -> Result<bool> {
        let txn = self
            .db
            .begin()
            .await
            .context("begin veriff session update")?;
        let updated = update_veriff_session_on(&txn, session).await?
            && match user {
                Some(user) => update_user_on(&txn, user).await?,
                None => true,
            };
        if updated {
            txn.commit().await.context("commit veriff session update")?;
        } else {
            txn.rollback()
                .await
                .context("roll back veriff session update")?;
        }
        Ok(updated)
    }

    /// The wallet's KYC (completion and verified document), or `None` for an unknown wallet.
    pub async fn kyc_status(&self, address: &WalletAddress) -> Result<Option<KycStatus>> {
        Ok(self.find_user(address).await?.map(|u| u.kyc_status()))
    }
}

async fn update_veriff_session_on(
    db: &impl ConnectionTrait,
    s: &VeriffSessionRecord,
) -> Result<bool> {
    use veriff_sessions::Column as C;
    let d = s.decision.as_ref();
    let result = veriff_sessions::Entity::update_many()
        .col_expr(C::LastEvent, Expr::value(s.last_event.clone()))
        .col_expr(C::LastEventCode, Expr::value(s.last_event_code))
        .col_expr(C::LastEventAtMs, Expr::value(s.last_event_at_ms))
        .col_expr(
            C::DecisionStatus,
            Expr::value(d.map(|d| d.status.as_str().to_string())),
        )
        .col_expr(C::DecisionCode, Expr::value(d.map(|d| d.code)))
        .col_expr(
            C::DecisionReason,
            Expr::value(d.and_then(|d| d.reason.clone())),
        )
        .col_expr(
            C::DecisionReasonCode,
            Expr::value(d.and_then(|d| d.reason_code)),
        )
        .col_expr(
            C::DecisionTime,
            Expr::value(d.and_then(|d| d.decision_time.clone())),
        )
        .col_expr(
            C::AcceptanceTime,
            Expr::value(d.and_then(|d| d.acceptance_time.clone())),
        )
        .col_expr(C::DecidedAtMs, Expr::value(s.decided_at_ms))
        .col_expr(
            C::PersonFirstName,
            Expr::value(d.and_then(|d| d.person_first_name.clone())),
        )
        .col_expr(
            C::PersonLastName,
            Expr::value(d.and_then(|d| d.person_last_name.clone())),
        )
        .col_expr(
            C::DocumentType,
            Expr::value(d.and_then(|d| d.document_type.clone())),
        )
        .col_expr(
            C::DocumentCountry,
            Expr::value(d.and_then(|d| d.document_country.clone())),
        )
        .col_expr(
            C::DocumentValidUntil,
            Expr::value(d.and_then(|d| d.document_valid_until)),
        )
        .col_expr(C::Version, Expr::value(s.version))
        .filter(C::Id.eq(s.id.as_str()))
        .filter(C::Version.eq(s.version - 1))
        .exec(db)
        .await
        .context("update veriff session")?;
    Ok(result.rows_affected == 1)
}

fn veriff_session_record(m: veriff_sessions::Model) -> Result<VeriffSessionRecord> {
    let decision = match (m.decision_status, m.decision_code) {
        (Some(status), Some(code)) => Some(VeriffDecision {
            status: VeriffDecisionStatus::parse(&status).ok_or_else(|| {
                StorageError::Corrupt(format!("veriff session {}: status {status}", m.id))
            })?,
            code,
            reason: m.decision_reason,
            reason_code: m.decision_reason_code,
            decision_time: m.decision_time,
            acceptance_time: m.acceptance_time,
            person_first_name: m.person_first_name,
            person_last_name: m.person_last_name,
            document_type: m.document_type,
            document_country: m.document_country,
            document_valid_until: m.document_valid_until,
        }),
        _ => None,
    };
    Ok(VeriffSessionRecord {
        id: m.id,
        address: crate::typed::read_address(&m.address)?,
        url: m.url,
        created_at_ms: m.created_at_ms,
        last_event: m.last_event,
        last_event_code: m.last_event_code,
        last_event_at_ms: m.last_event_at_ms,
        decision,
        decided_at_ms: m.decided_at_ms,
        version: m.version,
    })
}

fn veriff_session_model(s: &VeriffSessionRecord) -> veriff_sessions::ActiveModel {
    let d = s.decision.as_ref();
    veriff_sessions::ActiveModel {
        id: Set(s.id.clone()),
        address: Set(s.address.to_string()),
        url: Set(s.url.clone()),
        created_at_ms: Set(s.created_at_ms),
        last_event: Set(s.last_event.clone()),
        last_event_code: Set(s.last_event_code),
        last_event_at_ms: Set(s.last_event_at_ms),
        decision_status: Set(d.map(|d| d.status.as_str().to_string())),
        decision_code: Set(d.map(|d| d.code)),
        decision_reason: Set(d.and_then(|d| d.reason.clone())),
        decision_reason_code: Set(d.and_then(|d| d.reason_code)),
        decision_time: Set(d.and_then(|d| d.decision_time.clone())),
        acceptance_time: Set(d.and_then(|d| d.acceptance_time.clone())),
        decided_at_ms: Set(s.decided_at_ms),
        person_first_name: Set(d.and_then(|d| d.person_first_name.clone())),
        person_last_name: Set(d.and_then(|d| d.person_last_name.clone())),
        document_type: Set(d.and_then(|d| d.document_type.clone())),
        document_country: Set(d.and_then(|d| d.document_country.clone())),
        document_valid_until: Set(d.and_then(|d| d.document_valid_until)),
        version: Set(s.version),
    }
}
