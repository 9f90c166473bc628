//! Entities whose actors kept crashing. A failed entity is refused until an operator clears it.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::entity_failures;
use crate::records::EntityFailure;
use crate::{Context, FailureRepo, Result};

impl FailureRepo {
    pub async fn mark_entity_failed(&self, failure: &EntityFailure) -> Result<()> {
        entity_failures::Entity::insert(entity_failures::ActiveModel {
            kind: Set(failure.kind.clone()),
            entity_key: Set(failure.entity_key.clone()),
            reason: Set(failure.reason.clone()),
            restarts: Set(failure.restarts),
            failed_at_ms: Set(failure.failed_at_ms),
        })
        .on_conflict(
            OnConflict::columns([
                entity_failures::Column::Kind,
                entity_failures::Column::EntityKey,
            ])
            .update_columns([
                entity_failures::Column::Reason,
                entity_failures::Column::Restarts,
                entity_failures::Column::FailedAtMs,
            ])
            .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await
        .context("mark entity failed")?;
        Ok(())
    }

    pub async fn entity_failure(&self, kind: &str, key: &str) -> Result<Option<EntityFailure>> {
        Ok(
            entity_failures::Entity::find_by_id((kind.to_string(), key.to_string()))
                .one(&self.reader)
                .await
                .context("find entity failure")?
                .map(failure_record),
        )
    }

    /// The most recent failures, at most `limit`.
    pub async fn list_entity_failures(&self, limit: u64) -> Result<Vec<EntityFailure>> {
        Ok(entity_failures::Entity::find()
            .order_by_desc(entity_failures::Column::FailedAtMs)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list entity failures")?
            .into_iter()
            .map(failure_record)
            .collect())
    }

    /// The keys of failed entities of one kind, at most `limit`.
    pub async fn failed_entity_keys(&self, kind: &str, limit: u64) -> Result<Vec<String>> {
        Ok(entity_failures::Entity::find()
            .filter(entity_failures::Column::Kind.eq(kind))
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list failed entity keys")?
            .into_iter()
            .map(|m| m.entity_key)
            .collect())
    }

    /// Lets a failed entity start again. Returns false if it was not marked failed.
    pub async fn clear_entity_failure(&self, kind: &str, key: &str) -> Result<bool> {
        let result = entity_failures::Entity::delete_many()
            .filter(entity_failures::Column::Kind.eq(kind))
            .filter(entity_failures::Column::EntityKey.eq(key))
            .exec(&self.db)
            .await
            .context("clear entity failure")?;
        Ok(result.rows_affected > 0)
    }
}

fn failure_record(m: entity_failures::Model) -> EntityFailure {
    EntityFailure {
        kind: m.kind,
        entity_key: m.entity_key,
        reason: m.reason,
        restarts: m.restarts,
        failed_at_ms: m.failed_at_ms,
    }
}
