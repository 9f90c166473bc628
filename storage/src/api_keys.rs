//! Organisation API keys (seeds 000 and 001). A key is found by the SHA-256 of its `sk_…`
//! string (the string itself is never stored). Its internal secret signs the access tokens
//! minted for it; rotating makes a new secret current and deposes the previous one until
//! `deposed_until_ms`, dropping any older deposed secret. Each change writes its audit row in
//! the same transaction, and a change is conditional on the secret it replaces, so two
//! rotations at once never lose one. A key holding `tokens:issue` also stores what it may
//! delegate (policies, target keys); storage keeps the lists, the rule reading them is not
//! its business.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter,
    TransactionTrait,
};

use crate::audit::{AuditEvent, write_audit};
use crate::entities::api_keys;
use crate::keyset::{Keyset, Order, page};
use crate::{ApiKeyRepo, Context, Result, StorageError};
use ampflow_types::UnixMillis;

/// An internal secret: its id (named by the tokens it signs) and its value.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret {
    /// `sec_<32 hex>`
    pub id: String,
    /// Base64url of 32 random bytes.
    pub value: String,
}

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySecret")
            .field("id", &self.id)
            .field("value", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// `key_<32 hex>`
    pub id: String,
    pub organisation_id: String,
    pub name: String,
    /// `live` or `test`.
    pub mode: String,
    /// Sorted, without duplicates.
    pub policies: Vec<String>,
    /// SHA-256 (hex) of the `sk_…` string.
    pub key_hash: String,
    /// e.g. `sk_live_AbCd…wxyz`.
    pub key_hint: String,
    pub secret: KeySecret,
    pub secret_created_at_ms: UnixMillis,
    /// The previous secret and when it stops being valid.
    pub deposed: Option<(KeySecret, UnixMillis)>,
    /// `usr_…` or `key_…`.
    pub created_by: String,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    pub last_used_at_ms: Option<UnixMillis>,
    pub deleted_at_ms: Option<UnixMillis>,
    /// For an issuer (`tokens:issue`): the policies it may put in the tokens it mints,
    /// sorted; `None`: not restricted by policy.
    pub delegable_policies: Option<Vec<String>>,
    /// For an issuer: the ids of the keys it may mint for, sorted; `None`: not restricted by
    /// key. With both `None` an issuer delegates nothing.
    pub delegable_keys: Option<Vec<String>>,
}

impl ApiKeyRecord {
    pub fn has_policy(&self, policy: &str) -> bool {
        self.policies.iter().any(|p| p == policy)
    }

    /// The secret with `id` that may verify a token at `now`: the current one, or the deposed
    /// one until its window ends.
    pub fn secret_for(&self, id: &str, now: UnixMillis) -> Option<&KeySecret> {
        if self.secret.id == id {
            return Some(&self.secret);
        }
        self.deposed
            .as_ref()
            .filter(|(secret, until)| secret.id == id && now < *until)
            .map(|(secret, _)| secret)
    }
}

/// Which tokens [`Storage::revoke_api_key_tokens`] revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRevocation {
    /// Those signed before the last rotation: the deposed secret is dropped.
    Old,
    /// All of them: the current secret is replaced by this one and none is deposed.
    All(KeySecret),
}

/// The fields `PATCH` changes; `None` leaves one as it is (`Some(None)` clears a
/// delegation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyChanges {
    pub name: Option<String>,
    pub policies: Option<Vec<String>>,
    pub delegable_policies: Option<Option<Vec<String>>>,
    pub delegable_keys: Option<Option<Vec<String>>>,
}

impl ApiKeyRepo {
    /// Stores a new key.
    pub async fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEvent) -> Result<()> {
        let txn = self.db.begin().await.context("begin insert api key")?;
        api_keys::Entity::insert(model(key))
            .exec_without_returning(&txn)
            .await
            .context("insert api key")?;
        write_audit(&txn, audit).await?;
        txn.commit().await.context("commit insert api key")
    }

    /// The key with `id`, deleted or not.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        api_keys::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await
            .context("find api key")?
            .map(record)
            .transpose()
    }

    /// The key whose `sk_…` string hashes to `key_hash`, deleted or not.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        api_keys::Entity::find()
            .filter(api_keys::Column::KeyHash.eq(key_hash))
            .one(&self.db)
            .await
            .context("find api key by hash")?
            .map(record)
            .transpose()
    }

    /// The keys with these ids that are not deleted, in any order (unknown ids are left out).
    pub async fn live_api_keys_with_ids(&self, ids: &[String]) -> Result<Vec<ApiKeyRecord>> {
        use api_keys::Column as C;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        api_keys::Entity::find()
            .filter(C::Id.is_in(ids.iter().cloned()))
            .filter(C::DeletedAtMs.is_null())
            .all(&self.db)
            .await
            .context("find api keys by id")?
            .into_iter()
            .map(record)
            .collect()
    }

    /// The organisation's keys that are not deleted, newest first, after `cursor`.
    pub async fn api_keys_of(
        &self,
        organisation_id: &str,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<ApiKeyRecord>> {
        use api_keys::Column as C;
        let query = api_keys::Entity::find()
            .filter(C::OrganisationId.eq(organisation_id))
            .filter(C::DeletedAtMs.is_null());
        page(
            query,
            (C::CreatedAtMs, C::Id),
            Order::NewestFirst,
            cursor,
            limit,
        )
        .all(&self.db)
        .await
        .context("list api keys")?
        .into_iter()
        .map(record)
        .collect()
    }

    /// How many keys the organisation holds that are not deleted.
    pub async fn count_api_keys_of(&self, organisation_id: &str) -> Result<u64> {
        use api_keys::Column as C;
        api_keys::Entity::find()
            .filter(C::OrganisationId.eq(organisation_id))
            .filter(C::DeletedAtMs.is_null())
            .count(&self.db)
            .await
            .context("count api keys")
    }

    /// Makes `new` the key's current secret and deposes the current one until
    /// `deposed_until_ms` (dropping any older deposed secret). `None` when there is no such
    /// key or it is deleted.
    pub async fn rotate_api_key_secret(
        &self,
        id: &str,
        new: &KeySecret,
        now: UnixMillis,
        deposed_until_ms: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<Option<ApiKeyRecord>> {
        use api_keys::Column as C;
        self.change_api_key(id, audit, |key| {
            api_keys::Entity::update_many()
                .col_expr(C::DeposedSecretId, Expr::value(key.secret.id.clone()))
                .col_expr(C::DeposedSecret, Expr::value(key.secret.value.clone()))
                .col_expr(C::DeposedUntilMs, Expr::value(deposed_until_ms))
                .col_expr(C::SecretId, Expr::value(new.id.clone()))
                .col_expr(C::Secret, Expr::value(new.value.clone()))
                .col_expr(C::SecretCreatedAtMs, Expr::value(now))
                .col_expr(C::UpdatedAtMs, Expr::value(now))
        })
        .await
    }

    /// Revokes the key's older tokens or all of them (see [`TokenRevocation`]). `None` when
    /// there is no such key or it is deleted.
    pub async fn revoke_api_key_tokens(
        &self,
        id: &str,
        revocation: &TokenRevocation,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<Option<ApiKeyRecord>> {
        use api_keys::Column as C;
        self.change_api_key(id, audit, |_| {
            let mut update = api_keys::Entity::update_many()
                .col_expr(C::DeposedSecretId, Expr::value(Option::<String>::None))
                .col_expr(C::DeposedSecret, Expr::value(Option::<String>::None))
                .col_expr(C::DeposedUntilMs, Expr::value(Option::<i64>::None))
                .col_expr(C::UpdatedAtMs, Expr::value(now));
            if let TokenRevocation::All(new) = revocation {
                update = update
                    .col_expr(C::SecretId, Expr::value(new.id.clone()))
                    .col_expr(C::Secret, Expr::value(new.value.clone()))
                    .col_expr(C::SecretCreatedAtMs, Expr::value(now));
            }
            update
        })
        .await
    }

    /// Changes the key's name, policies or delegation. `None` when there is no such key or it
    /// is deleted.
    pub async fn update_api_key(
        &self,
        id: &str,
        changes: &ApiKeyChanges,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<Option<ApiKeyRecord>> {
        use api_keys::Column as C;
        self.change_api_key(id, audit, |_| {
            let mut update =
                api_keys::Entity::update_many().col_expr(C::UpdatedAtMs, Expr::value(now));
            if let Some(name) = &changes.name {
                update = update.col_expr(C::Name, Expr::value(name.clone()));
            }
            if let Some(policies) = &changes.policies {
                update = update.col_expr(C::Policies, Expr::value(policies.join(" ")));
            }
            if let Some(delegable) = &changes.delegable_policies {
                update = update.col_expr(C::DelegablePolicies, Expr::value(joined(delegable)));
            }
            if let Some(delegable) = &changes.delegable_keys {
                update = update.col_expr(C::DelegableKeys, Expr::value(joined(delegable)));
            }
            update
        })
        .await
    }

    /// Deletes the key: it and its tokens stop working at once. `None` when there is no such
    /// key or it was deleted before.
    pub async fn delete_api_key(
        &self,
        id: &str,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<Option<ApiKeyRecord>> {
        use api_keys::Column as C;
        self.change_api_key(id, audit, |_| {
            api_keys::Entity::update_many()
                .col_expr(C::DeletedAtMs, Expr::value(now))
                .col_expr(C::UpdatedAtMs, Expr::value(now))
        })
        .await
    }

    /// Moves `last_used_at` to `now` if it is older than `now - interval_ms`, so a busy key
    /// costs one write per interval.
    pub async fn touch_api_key(&self, id: &str, now: UnixMillis, interval_ms: i64) -> Result<()> {
        use api_keys::Column as C;
        api_keys::Entity::update_many()
            .col_expr(C::LastUsedAtMs, Expr::value(now))
            .filter(C::Id.eq(id))
            .filter(
                Condition::any()
                    .add(C::LastUsedAtMs.is_null())
                    .add(C::LastUsedAtMs.lte(now.saturating_sub(interval_ms))),
            )
            .exec(&self.db)
            .await
            .context("touch api key")?;
        Ok(())
    }

    /// Reads the key, applies `update` to it if it is unchanged since (same current secret,
    /// same `updated_at`) and not deleted, writes `audit` and answers the key as it is now.
    /// A concurrent change makes it read and try again, a bounded number of times.
    async fn change_api_key(
        &self,
        id: &str,
        audit: &AuditEvent,
        update: impl Fn(&ApiKeyRecord) -> sea_orm::UpdateMany<api_keys::Entity>,
    ) -> Result<Option<ApiKeyRecord>> {
        use api_keys::Column as C;
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let Some(key) = self.api_key(id).await? else {
                return Ok(None);
            };
            if key.deleted_at_ms.is_some() {
                return Ok(None);
            }
            let txn = self.db.begin().await.context("begin change api key")?;
            let result = update(&key)
                .filter(C::Id.eq(id))
                .filter(C::SecretId.eq(key.secret.id.clone()))
                .filter(C::UpdatedAtMs.eq(key.updated_at_ms))
                .filter(C::DeletedAtMs.is_null())
                .exec(&txn)
                .await
                .context("change api key")?;
            if result.rows_affected != 1 {
                txn.rollback().await.context("roll back change api key")?;
                continue;
            }
            write_audit(&txn, audit).await?;
            txn.commit().await.context("commit change api key")?;
            return self.api_key(id).await;
        }
        Err(StorageError::Conflict(format!(
            "the API key {id} kept changing; try again"
        )))
    }
}

fn model(key: &ApiKeyRecord) -> api_keys::ActiveModel {
    let (deposed_id, deposed_value, deposed_until) = match &key.deposed {
        Some((secret, until)) => (
            Some(secret.id.clone()),
            Some(secret.value.clone()),
            Some(*until),
        ),
        None => (None, None, None),
    };
    api_keys::ActiveModel {
        id: Set(key.id.clone()),
        organisation_id: Set(key.organisation_id.clone()),
        name: Set(key.name.clone()),
        mode: Set(key.mode.clone()),
        policies: Set(key.policies.join(" ")),
        key_hash: Set(key.key_hash.clone()),
        key_hint: Set(key.key_hint.clone()),
        secret_id: Set(key.secret.id.clone()),
        secret: Set(key.secret.value.clone()),
        secret_created_at_ms: Set(key.secret_created_at_ms),
        deposed_secret_id: Set(deposed_id),
        deposed_secret: Set(deposed_value),
        deposed_until_ms: Set(deposed_until),
        created_by: Set(key.created_by.clone()),
        created_at_ms: Set(key.created_at_ms),
        updated_at_ms: Set(key.updated_at_ms),
        last_used_at_ms: Set(key.last_used_at_ms),
        deleted_at_ms: Set(key.deleted_at_ms),
        delegable_policies: Set(joined(&key.delegable_policies)),
        delegable_keys: Set(joined(&key.delegable_keys)),
    }
}

/// A list as its space-separated column.
fn joined(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref().map(|items| items.join(" "))
}

/// A space-separated column as its list.
fn split(column: Option<String>) -> Option<Vec<String>> {
    column.map(|text| text.split_whitespace().map(str::to_string).collect())
}

fn record(m: api_keys::Model) -> Result<ApiKeyRecord> {
    let deposed = match (m.deposed_secret_id, m.deposed_secret, m.deposed_until_ms) {
        (Some(id), Some(value), Some(until)) => Some((KeySecret { id, value }, until)),
        (None, None, None) => None,
        _ => {
            return Err(StorageError::Corrupt(format!(
                "api key {}: a partly deposed secret",
                m.id
            )));
        }
    };
    Ok(ApiKeyRecord {
        policies: m.policies.split_whitespace().map(str::to_string).collect(),
        secret: KeySecret {
            id: m.secret_id,
            value: m.secret,
        },
        deposed,
        id: m.id,
        organisation_id: m.organisation_id,
        name: m.name,
        mode: m.mode,
        key_hash: m.key_hash,
        key_hint: m.key_hint,
        secret_created_at_ms: m.secret_created_at_ms,
        created_by: m.created_by,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
        last_used_at_ms: m.last_used_at_ms,
        deleted_at_ms: m.deleted_at_ms,
        delegable_policies: split(m.delegable_policies),
        delegable_keys: split(m.delegable_keys),
    })
}
