//! The database of one benchmark run: a fresh SQLite file, or a fresh PostgreSQL database
//! created with `psql` on a loopback server the caller names (usually the shared test
//! database's server) and dropped, `WITH (FORCE)`, when the guard is dropped, or by
//! [`drop_on_ctrl_c`] when the run is interrupted. `psql` keeps the simulations free of a
//! database driver of their own; the server under test still talks to the database through
//! its own pool.

use std::process::Command;
use std::sync::Mutex;

use ampflow_storage::testdb::replace_database_name;
use anyhow::{Context, bail, ensure};

pub struct FreshPostgres {
    admin_url: String,
    pub name: String,
    /// The new database's URL.
    pub url: String,
}

impl FreshPostgres {
    /// Creates `bench_<random>` on the server `admin_url` points at (any database there).
    pub fn create(admin_url: &str) -> anyhow::Result<Self> {
        ensure!(
            is_loopback(admin_url),
            "benchmarks only use a database on loopback, not {admin_url}"
        );
        let name = format!("bench_{:016x}", rand::random::<u64>());
        psql(admin_url, &format!("CREATE DATABASE \"{name}\""))
            .with_context(|| format!("create database {name}"))?;
        Ok(Self {
            url: replace_database_name(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
        })
    }

    /// What to run to drop it, for a Ctrl-C handler that cannot unwind.
    pub fn drop_command(&self) -> (String, String) {
        (self.admin_url.clone(), drop_sql(&self.name))
    }
}

impl Drop for FreshPostgres {
    fn drop(&mut self) {
        if let Err(error) = psql(&self.admin_url, &drop_sql(&self.name)) {
            eprintln!("could not drop database {}: {error:#}", self.name);
        }
    }
}

fn drop_sql(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
}

/// Runs one statement with `psql`.
pub fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .context("run psql (is the PostgreSQL client installed?)")?;
    if !output.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Whether a `postgres://user@host:port/db` URL names a loopback host.
fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    matches!(host, "127.0.0.1" | "localhost" | "::1") || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_hosts_pass() {
        assert!(is_loopback("postgres://root@127.0.0.1:5432/test"));
        assert!(is_loopback("postgres://u:p@localhost/test?sslmode=disable"));
        assert!(is_loopback("postgres://[::1]:5432/test"));
        assert!(!is_loopback("postgres://root@db.example.org:5432/test"));
        assert!(!is_loopback("postgres://root@10.0.0.1/test"));
        assert!(!is_loopback("nonsense"));
    }
}

/// Which database a run uses (`--databases postgres,sqlite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DbKind {
    Postgres,
    Sqlite,
}

impl DbKind {
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Postgres => "PostgreSQL",
            DbKind::Sqlite => "SQLite",
        }
    }
}

/// The fresh PostgreSQL database of the run in progress, for the Ctrl-C handler.
static PG_TO_DROP: Mutex<Option<(String, String)>> = Mutex::new(None);

/// A run's database: its URL and a label to print; dropped (folder or database) with it.
pub struct BenchDb {
    pub url: String,
    pub label: String,
    _folder: Option<tempfile::TempDir>,
    _postgres: Option<FreshPostgres>,
}

impl BenchDb {
    pub fn new(kind: DbKind, postgres_url: &str) -> anyhow::Result<Self> {
        match kind {
            DbKind::Postgres => Self::postgres(postgres_url),
            DbKind::Sqlite => Self::sqlite(),
        }
    }

    /// A SQLite file in a temporary folder.
    pub fn sqlite() -> anyhow::Result<Self> {
        let folder = tempfile::tempdir()?;
        Ok(Self {
            url: format!(
                "sqlite://{}?mode=rwc",
                folder.path().join("bench.db").display()
            ),
            label: "SQLite (fresh file)".into(),
            _folder: Some(folder),
            _postgres: None,
        })
    }

    /// A `bench_<random>` database on the server `admin_url` points at.
    pub fn postgres(admin_url: &str) -> anyhow::Result<Self> {
        let db = FreshPostgres::create(admin_url)?;
        if let Ok(mut slot) = PG_TO_DROP.lock() {
            *slot = Some(db.drop_command());
        }
        Ok(Self {
            url: db.url.clone(),
            label: format!("PostgreSQL (fresh database {})", db.name),
            _folder: None,
            _postgres: Some(db),
        })
    }

    /// A database given by URL: a `postgres://` server gets a fresh database; anything else
    /// is used as it is; nothing means a fresh SQLite file.
    pub fn from_arg(url: Option<&str>) -> anyhow::Result<Self> {
        match url {
            None => Self::sqlite(),
            Some(url) if url.starts_with("postgres") => Self::postgres(url),
            Some(url) => Ok(Self {
                url: url.to_string(),
                label: format!("{url} (as given)"),
                _folder: None,
                _postgres: None,
            }),
        }
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if self._postgres.is_some()
            && let Ok(mut slot) = PG_TO_DROP.lock()
        {
            *slot = None;
        }
    }
}

/// For a Ctrl-C handler: drops the fresh PostgreSQL database of the run in progress, if any
/// (the handler exits without unwinding, so the guard would not).
pub fn drop_on_ctrl_c() {
    let to_drop = PG_TO_DROP.lock().ok().and_then(|mut d| d.take());
    if let Some((admin, sql)) = to_drop {
        let _ = psql(&admin, &sql);
    }
}
