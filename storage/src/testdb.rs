//! Fresh databases for tests: a SQLite file in a temporary folder, or a PostgreSQL database
//! created on the server `TEST_DATABASE_URL` points at. Each is dropped when the value is.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};

use crate::{DatabaseSettings, SqliteSync};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    _folder: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// A fresh database on `backend`, or `None` for PostgreSQL when `TEST_DATABASE_URL` is
    /// unset (the PostgreSQL suite is then skipped; `.ci/run` always sets it).
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => {
                let admin_url = std::env::var("TEST_DATABASE_URL").ok()?;
                Some(Self::postgres(admin_url).await)
            }
        }
    }

    pub fn sqlite() -> Self {
        #[allow(clippy::expect_used)]
        let folder = tempfile::tempdir().expect("create a temporary folder");
        let url = format!(
            "sqlite://{}?mode=rwc",
            folder.path().join("ampflow.db").display()
        );
        Self {
            backend: Backend::Sqlite,
            url,
            _folder: Some(folder),
            postgres: None,
        }
    }

    #[allow(clippy::expect_used)]
    async fn postgres(admin_url: String) -> Self {
        let name = format!("ampflow_t_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url.as_str())
            .await
            .expect("connect to TEST_DATABASE_URL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create a test database");
        let _ = admin.close().await;
        let url = replace_database_name(&admin_url, &name);
        Self {
            backend: Backend::Postgres,
            url,
            _folder: None,
            postgres: Some((admin_url, name)),
        }
    }

    pub fn settings(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: self.url.clone(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            sqlite_sync: SqliteSync::Normal,
            group_commit: true,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop may run inside a runtime, so the async cleanup gets a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(admin_url.as_str()).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    if let Err(e) = admin.execute_unprepared(&sql).await {
                        eprintln!("could not drop test database {name}: {e}");
                    }
                    let _ = admin.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// `postgres://u@h:5432/test?x=y` with the database `name` instead of `test`.
pub fn replace_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_and_path = &base[scheme_end..];
    let root = match host_and_path.find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database_name;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            replace_database_name("postgres://root@127.0.0.1:5432/test", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database_name("postgres://root@127.0.0.1/test?sslmode=disable", "x"),
            "postgres://root@127.0.0.1/x?sslmode=disable"
        );
        assert_eq!(replace_database_name("postgres://h", "x"), "postgres://h/x");
    }
}
