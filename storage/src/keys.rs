//! The JWT signing key, shared by every process on one database.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryOrder,
    TransactionTrait,
};

use crate::entities::jwt_keys;
use crate::{Context, Result, SigningKeyRepo};

/// The advisory lock (PostgreSQL) under which a process that found no key stores one.
const KEY_CHOICE_LOCK: i64 = 0x616d_7066_6b65_7973; // "ampfkeys"

/// Begins a transaction in which no other process is choosing a key (two first starts at
/// once would otherwise each read an empty table, store their own key, and keep it): on
/// PostgreSQL under a transaction-scoped advisory lock; on SQLite by taking the database's
/// write lock with a statement that writes nothing, before anything is read.
pub(crate) async fn begin_key_choice(
    db: &sea_orm::DatabaseConnection,
) -> Result<DatabaseTransaction> {
    let txn = db.begin().await.context("begin key choice")?;
    let lock = match txn.get_database_backend() {
        DbBackend::Postgres => format!("SELECT pg_advisory_xact_lock({KEY_CHOICE_LOCK})"),
        _ => "DELETE FROM jwt_keys WHERE 1 = 0".to_string(),
    };
    txn.execute_unprepared(&lock)
        .await
        .context("lock the key choice")?;
    Ok(txn)
}
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

impl From<jwt_keys::Model> for StoredJwtKey {
    fn from(m: jwt_keys::Model) -> Self {
        Self {
            kid: m.kid,
            private_key_pkcs8_b64: m.private_key_pkcs8_b64,
            created_at_ms: m.created_at_ms,
        }
    }
}

impl SigningKeyRepo {
    /// The oldest stored key: every process picks the same one.
    pub async fn load_jwt_key(&self) -> Result<Option<StoredJwtKey>> {
        Ok(jwt_keys::Entity::find()
            .order_by_asc(jwt_keys::Column::CreatedAtMs)
            .order_by_asc(jwt_keys::Column::Kid)
            .one(&self.reader)
            .await
            .context("load jwt key")?
            .map(StoredJwtKey::from))
    }

    /// Stores `candidate` unless a key is stored already, and answers the key every process
    /// uses (the stored one, else `candidate`). Two processes starting at once on an empty
    /// database answer the same key.
    pub async fn first_jwt_key(&self, candidate: &StoredJwtKey) -> Result<StoredJwtKey> {
        let txn = begin_key_choice(&self.db).await?;
        let stored = jwt_keys::Entity::find()
            .order_by_asc(jwt_keys::Column::CreatedAtMs)
            .order_by_asc(jwt_keys::Column::Kid)
            .one(&txn)
            .await
            .context("load jwt key")?;
        let chosen = match stored {
            Some(m) => StoredJwtKey::from(m),
            None => {
                insert_jwt_key(&txn, candidate).await?;
                candidate.clone()
            }
        };
        txn.commit().await.context("commit key choice")?;
        Ok(chosen)
    }
}

async fn insert_jwt_key(db: &impl ConnectionTrait, key: &StoredJwtKey) -> Result<()> {
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
    .exec_without_returning(db)
    .await
    .context("insert jwt key")?;
    Ok(())
}
