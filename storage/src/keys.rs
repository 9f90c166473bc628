//! The JWT signing key, shared by every process on one database.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder};

use crate::entities::jwt_keys;
use crate::{Context, Result, Storage};
use ampflow_types::UnixMillis;

/// A stored signing key: its id and its PKCS#8 private key, base64-encoded.
#[derive(Clone)]
pub struct StoredJwtKey {
    pub kid: String,
    pub private_key_pkcs8_b64: String,
    pub created_at_ms: UnixMillis,
}

impl std::fmt::Debug for StoredJwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredJwtKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// The oldest stored key: every process picks the same one.
    pub async fn load_jwt_key(&self) -> Result<Option<StoredJwtKey>> {
        Ok(jwt_keys::Entity::find()
            .order_by_asc(jwt_keys::Column::CreatedAtMs)
            .order_by_asc(jwt_keys::Column::Kid)
            .one(&self.reader)
            .await
            .context("load jwt key")?
            .map(|m| StoredJwtKey {
                kid: m.kid,
                private_key_pkcs8_b64: m.private_key_pkcs8_b64,
                created_at_ms: m.created_at_ms,
            }))
    }

    /// Stores a freshly generated key unless one with this id exists.
    pub async fn insert_jwt_key(&self, key: &StoredJwtKey) -> Result<()> {
        jwt_keys::Entity::insert(jwt_keys::ActiveModel {
            kid: Set(key.kid.clone()),
            private_key_pkcs8_b64: Set(key.private_key_pkcs8_b64.clone()),
            created_at_ms: Set(key.created_at_ms),
        })
        .on_conflict(
            OnConflict::column(jwt_keys::Column::Kid)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await
        .context("insert jwt key")?;
        Ok(())
    }
}
