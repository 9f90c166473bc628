//! The API keys façade: an organisation's keys, their secrets' lifecycle (rotation with a
//! deposed secret, revoking old or all tokens, deletion) and the per-organisation cap, each
//! change with its audit row in one transaction. The `/admin/api-keys` routes call it, and
//! the API-key extractor reads keys through it. What a key may do (its policies, checked by
//! `Caller::require`) and how its tokens are signed stay at the trust boundary.

use std::sync::Arc;

use ampflow_storage::{Storage, StorageError};
use ampflow_types::{Clock, Keyset, UnixMillis};
use base64::Engine;
use rand::RngCore;

pub use ampflow_storage::{ApiKeyChanges, ApiKeyRecord, AuditEvent, KeySecret, TokenRevocation};

const DAY_MS: i64 = 86_400_000;
/// Random bytes in a key and in an internal secret.
const RANDOM_BYTES: usize = 32;

/// `auth.api_keys_per_organisation_max` and `auth.api_key_deposed_secret_days`.
#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    pub keys_per_organisation_max: u64,
    pub deposed_secret_days: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("no API key has this id")]
    NotFound,
    #[error("the organisation holds {held} keys, the most allowed; delete one first")]
    Full { held: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Base64url of 32 random bytes: the body of a key and of an internal secret.
pub fn random_text() -> String {
    let mut bytes = [0u8; RANDOM_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh internal secret.
pub fn new_secret() -> KeySecret {
    KeySecret {
        id: ampflow_storage::prefixed_id("sec"),
        value: random_text(),
    }
}

#[derive(Clone)]
pub struct ApiKeys {
    storage: Storage,
    clock: Arc<dyn Clock>,
    settings: ApiKeySettings,
}

impl ApiKeys {
    pub fn new(storage: Storage, clock: Arc<dyn Clock>, settings: ApiKeySettings) -> Self {
        Self {
            storage,
            clock,
            settings,
        }
    }

    /// A key that is not deleted.
    pub async fn live(&self, id: &str) -> Result<ApiKeyRecord, ApiKeyError> {
        self.storage
            .api_keys()
            .api_key(id)
            .await?
            .filter(|k| k.deleted_at_ms.is_none())
            .ok_or(ApiKeyError::NotFound)
    }

    /// A key by id, deleted or not (the extractor tells them apart).
    pub async fn record(&self, id: &str) -> Result<Option<ApiKeyRecord>, StorageError> {
        self.storage.api_keys().api_key(id).await
    }

    /// The key whose `sk_…` hashes to `key_hash`.
    pub async fn by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StorageError> {
        self.storage.api_keys().api_key_by_hash(key_hash).await
    }

    /// The keys among `ids` that are not deleted.
    pub async fn live_with_ids(&self, ids: &[String]) -> Result<Vec<ApiKeyRecord>, StorageError> {
        self.storage.api_keys().live_api_keys_with_ids(ids).await
    }

    /// The organisation's keys that are not deleted, newest first.
    pub async fn page(
        &self,
        organisation_id: &str,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
        Ok(self
            .storage
            .api_keys()
            .api_keys_of(organisation_id, cursor, limit)
            .await?)
    }

    /// `Full` when the organisation holds as many keys as allowed.
    async fn check_room(&self, organisation_id: &str) -> Result<(), ApiKeyError> {
        let held = self
            .storage
            .api_keys()
            .count_api_keys_of(organisation_id)
            .await?;
        if held >= self.settings.keys_per_organisation_max {
            return Err(ApiKeyError::Full { held });
        }
        Ok(())
    }

    /// Stores a new key (within the cap) with its `api_key.created` row.
    pub async fn create(&self, key: &ApiKeyRecord, audit: &AuditEvent) -> Result<(), ApiKeyError> {
        self.check_room(&key.organisation_id).await?;
        self.storage.api_keys().insert_api_key(key, audit).await?;
        Ok(())
    }

    pub async fn update(
        &self,
        id: &str,
        changes: &ApiKeyChanges,
        audit: &AuditEvent,
    ) -> Result<ApiKeyRecord, ApiKeyError> {
        self.storage
            .api_keys()
            .update_api_key(id, changes, self.clock.now_ms(), audit)
            .await?
            .ok_or(ApiKeyError::NotFound)
    }

    /// Stops the key and every token at once.
    pub async fn delete(&self, id: &str, audit: &AuditEvent) -> Result<ApiKeyRecord, ApiKeyError> {
        self.storage
            .api_keys()
            .delete_api_key(id, self.clock.now_ms(), audit)
            .await?
            .ok_or(ApiKeyError::NotFound)
    }

    /// When a secret deposed now stops verifying.
    pub fn deposed_until(&self, now: UnixMillis) -> UnixMillis {
        now + i64::from(self.settings.deposed_secret_days) * DAY_MS
    }

    /// Gives the key a fresh secret and deposes the current one until
    /// [`deposed_until`](Self::deposed_until) (a deposed one before it is dropped).
    pub async fn rotate(
        &self,
        id: &str,
        now: UnixMillis,
        audit: &AuditEvent,
    ) -> Result<ApiKeyRecord, ApiKeyError> {
        self.storage
            .api_keys()
            .rotate_api_key_secret(id, &new_secret(), now, self.deposed_until(now), audit)
            .await?
            .ok_or(ApiKeyError::NotFound)
    }

    /// Revokes the key's old tokens (the deposed secret is dropped) or all of them (the
    /// current secret is replaced too).
    pub async fn revoke_tokens(
        &self,
        id: &str,
        all: bool,
        audit: &AuditEvent,
    ) -> Result<ApiKeyRecord, ApiKeyError> {
        let revocation = if all {
            TokenRevocation::All(new_secret())
        } else {
            TokenRevocation::Old
        };
        self.storage
            .api_keys()
            .revoke_api_key_tokens(id, &revocation, self.clock.now_ms(), audit)
            .await?
            .ok_or(ApiKeyError::NotFound)
    }

    /// Records that a token was issued (`api_key.token_issued`): tokens are not stored.
    pub async fn token_issued(&self, audit: &AuditEvent) -> Result<(), StorageError> {
        self.storage.audit().record_audit_event(audit).await
    }

    /// Moves the key's `last_used_at` at most once per `interval_ms`.
    pub async fn touch(
        &self,
        id: &str,
        now: UnixMillis,
        interval_ms: i64,
    ) -> Result<(), StorageError> {
        self.storage
            .api_keys()
            .touch_api_key(id, now, interval_ms)
            .await
    }
}
