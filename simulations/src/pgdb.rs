//! A fresh PostgreSQL database for one benchmark run, created with `psql` on a loopback server
//! the caller names (usually the shared test database's server) and dropped, `WITH (FORCE)`,
//! when the guard is dropped. `psql` keeps the simulations free of a database driver of their
//! own; the server under test still talks to the database through its own pool.

use std::process::Command;

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
