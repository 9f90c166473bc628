//! Who belongs to which organisation, with which role. Every change writes its audit row in
//! the same transaction.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    TransactionTrait,
};

use crate::audit::{AuditEvent, write_audit};
use crate::entities::{memberships, organisations};
use crate::{Context, OrganisationRecord, OrganisationRepo, Result, StorageError};
use ampflow_types::UnixMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Member,
    /// Everything a member may, and changing the organisation, its keys and reading its audit
    /// log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Member, Self::Admin]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// The fields an organisation's admin may change; `None` leaves one as it is, `Some(None)`
/// clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganisationChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub website: Option<Option<String>>,
    pub logo_url: Option<Option<String>>,
}

impl OrganisationRepo {
    /// Gives `user_id` `role` in the organisation (adding the membership or changing its
    /// role); answers the role it had before. `audit` is written with it, its action set to
    /// `membership.added` or `membership.role_changed` and `role` (and `previous_role`)
    /// added to its details.
    pub async fn set_membership(
        &self,
        organisation_id: &str,
        user_id: &str,
        role: Role,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<Option<Role>> {
        use memberships::Column as C;
        let txn = self.db.begin().await.context("begin membership")?;
        let before =
            memberships::Entity::find_by_id((organisation_id.to_string(), user_id.to_string()))
                .one(&txn)
                .await
                .context("read membership")?;
        let previous = match before {
            Some(m) => {
                memberships::Entity::update_many()
                    .col_expr(C::Role, Expr::value(role.as_str()))
                    .col_expr(C::UpdatedAtMs, Expr::value(now))
                    .filter(C::OrganisationId.eq(organisation_id))
                    .filter(C::UserId.eq(user_id))
                    .exec(&txn)
                    .await
                    .context("change role")?;
                Some(
                    Role::parse(&m.role).ok_or_else(|| {
                        StorageError::Corrupt(format!("membership role {}", m.role))
                    })?,
                )
            }
            None => {
                let inserted = memberships::Entity::insert(memberships::ActiveModel {
                    organisation_id: Set(organisation_id.to_string()),
                    user_id: Set(user_id.to_string()),
                    role: Set(role.as_str().into()),
                    created_at_ms: Set(now),
                    updated_at_ms: Set(now),
                })
                .exec_without_returning(&txn)
                .await;
                match inserted {
                    Ok(_) => None,
                    // Another change added it since the read: the caller may retry.
                    Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                        return Err(StorageError::Conflict(
                            "the membership changed meanwhile; try again".into(),
                        ));
                    }
                    Err(e) => return Err(e).context("insert membership"),
                }
            }
        };
        // The caller cannot know inside this transaction whether it adds or changes: the row
        // says `membership.added` or `membership.role_changed` (with the previous role).
        let mut audit = audit.clone().detail("role", role.as_str());
        if let Some(previous) = previous {
            audit.action = "membership.role_changed".into();
            audit = audit.detail("previous_role", previous.as_str());
        } else {
            audit.action = "membership.added".into();
        }
        write_audit(&txn, &audit).await?;
        txn.commit().await.context("commit membership")?;
        Ok(previous)
    }

    /// Removes the membership; false when there was none.
    pub async fn remove_membership(
        &self,
        organisation_id: &str,
        user_id: &str,
        audit: &AuditEvent,
    ) -> Result<bool> {
        use memberships::Column as C;
        let txn = self.db.begin().await.context("begin remove membership")?;
        let result = memberships::Entity::delete_many()
            .filter(C::OrganisationId.eq(organisation_id))
            .filter(C::UserId.eq(user_id))
            .exec(&txn)
            .await
            .context("remove membership")?;
        if result.rows_affected != 1 {
            txn.rollback()
                .await
                .context("roll back remove membership")?;
            return Ok(false);
        }
        write_audit(&txn, audit).await?;
        txn.commit().await.context("commit remove membership")?;
        Ok(true)
    }

    /// The user's role in the organisation, if they belong to it.
    pub async fn membership(&self, organisation_id: &str, user_id: &str) -> Result<Option<Role>> {
        memberships::Entity::find_by_id((organisation_id.to_string(), user_id.to_string()))
            .one(&self.reader)
            .await
            .context("find membership")?
            .map(|m| {
                Role::parse(&m.role)
                    .ok_or_else(|| StorageError::Corrupt(format!("membership role {}", m.role)))
            })
            .transpose()
    }

    /// The organisations the user belongs to, oldest membership first, at most `limit`.
    pub async fn organisations_of(
        &self,
        user_id: &str,
        limit: u64,
    ) -> Result<Vec<(OrganisationRecord, Role)>> {
        let rows = memberships::Entity::find()
            .filter(memberships::Column::UserId.eq(user_id))
            .order_by_asc(memberships::Column::CreatedAtMs)
            .order_by_asc(memberships::Column::OrganisationId)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list memberships")?;
        // The organisations in one read, answered in membership order.
        let mut found: std::collections::HashMap<String, OrganisationRecord> =
            organisations::Entity::find()
                .filter(
                    organisations::Column::Id
                        .is_in(rows.iter().map(|m| m.organisation_id.as_str())),
                )
                .all(&self.reader)
                .await
                .context("find organisations of memberships")?
                .into_iter()
                .map(|o| crate::organisations::organisation_record(o).map(|o| (o.id.clone(), o)))
                .collect::<Result<_>>()?;
        let mut organisations = Vec::with_capacity(rows.len());
        for m in rows {
            let role = Role::parse(&m.role)
                .ok_or_else(|| StorageError::Corrupt(format!("membership role {}", m.role)))?;
            if let Some(org) = found.remove(&m.organisation_id) {
                organisations.push((org, role));
            }
        }
        Ok(organisations)
    }

    /// Applies `changes` to the organisation and writes `audit`; false when there is no such
    /// organisation.
    pub async fn update_organisation(
        &self,
        id: &str,
        changes: &OrganisationChanges,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<bool> {
        use organisations::Column as C;
        let txn = self.db.begin().await.context("begin update organisation")?;
        let mut update =
            organisations::Entity::update_many().col_expr(C::UpdatedAtMs, Expr::value(now));
        if let Some(name) = &changes.name {
            update = update.col_expr(C::Name, Expr::value(name.clone()));
        }
        if let Some(description) = &changes.description {
            update = update.col_expr(C::Description, Expr::value(description.clone()));
        }
        if let Some(website) = &changes.website {
            update = update.col_expr(C::Website, Expr::value(website.clone()));
        }
        if let Some(logo_url) = &changes.logo_url {
            update = update.col_expr(C::LogoUrl, Expr::value(logo_url.clone()));
        }
        let result = update
            .filter(C::Id.eq(id))
            .exec(&txn)
            .await
            .context("update organisation")?;
        if result.rows_affected != 1 {
            txn.rollback()
                .await
                .context("roll back update organisation")?;
            return Ok(false);
        }
        write_audit(&txn, audit).await?;
        txn.commit().await.context("commit update organisation")?;
        Ok(true)
    }
}
