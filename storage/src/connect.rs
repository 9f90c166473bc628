use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database};
use serde::{Deserialize, Serialize};

use crate::{Context, Result, Storage, StorageError};

/// Reader connections on SQLite, whatever `max_connections` says.
const SQLITE_READERS_MAX: u32 = 4;

/// How hard SQLite pushes each commit to disk. In WAL mode `Normal` survives a crash of the
/// process (what ampflow's crash tests check) but may lose the last commits if the machine loses
/// power; `Full` survives that too, at one fsync per commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    #[default]
    Normal,
    Full,
}

/// How to reach the database. The URL may carry a password, so it is not printed by `Debug`.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub sqlite_sync: SqliteSync,
    /// Writes that many callers make at once (logins, auto-invest submits, Stripe events,
    /// ledger appends) are committed in groups; false commits each on its own (a baseline for
    /// benchmarks).
    pub group_commit: bool,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("sqlite_sync", &self.sqlite_sync)
            .field("group_commit", &self.group_commit)
            .finish()
    }
}

/// The URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl Storage {
    /// Connects, creating the SQLite file (and its folder) when needed.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self> {
        let url = settings.url.as_str();
        if !url.starts_with("sqlite:") {
            let db = Database::connect(pool_options(settings, settings.max_connections))
                .await
                .context("connect to database")?;
            return Ok(Self::assemble(db.clone(), db, settings.group_commit));
        }
        create_sqlite_folder(url)?;
        let db = Database::connect(sqlite_options(settings, 1))
            .await
            .context("connect to database")?;
        // Each SQLite connection is a thread of its own; more readers than cores only adds
        // scheduling.
        let readers = settings
            .max_connections
            .saturating_sub(1)
            .clamp(1, SQLITE_READERS_MAX);
        let reader = Database::connect(sqlite_options(settings, readers))
            .await
            .context("connect to database")?;
        Ok(Self::assemble(db, reader, settings.group_commit))
    }
}

fn pool_options(settings: &DatabaseSettings, connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(settings.url.as_str());
    options
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(settings.acquire_timeout)
        .sqlx_logging(false);
    options
}

fn sqlite_options(settings: &DatabaseSettings, connections: u32) -> ConnectOptions {
    let synchronous = match settings.sqlite_sync {
        SqliteSync::Normal => SqliteSynchronous::Normal,
        SqliteSync::Full => SqliteSynchronous::Full,
    };
    let mut options = pool_options(settings, connections);
    options.map_sqlx_sqlite_opts(move |opts: SqliteConnectOptions| {
        opts.create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
    });
    options
}

/// The file a `sqlite:` URL names, or `None` for an in-memory database or a URL that is not
/// SQLite's.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    (!path.as_os_str().is_empty()).then(|| path.to_path_buf())
}

fn create_sqlite_folder(url: &str) -> Result<()> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StorageError::Corrupt(format!("bad SQLite URL: {e}")))?;
    let path = options.get_filename();
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(|e| {
            StorageError::Corrupt(format!("cannot create {}: {e}", folder.display()))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/ampflow"),
            "postgres://app:***@db:5432/ampflow"
        );
        assert_eq!(
            redact_url("postgres://app@db/ampflow"),
            "postgres://app@db/ampflow"
        );
        assert_eq!(redact_url("sqlite://data/a.db"), "sqlite://data/a.db");
    }

    #[test]
    fn the_sqlite_file_is_read_from_the_url() {
        use super::sqlite_file;
        assert_eq!(
            sqlite_file("sqlite://data/ampflow.db?mode=rwc"),
            Some("data/ampflow.db".into())
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://a.db?mode=memory"), None);
        assert_eq!(sqlite_file("postgres://db/ampflow"), None);
    }
}
