//! This process's node id (`node.id`, see `ampflow_actors`' node module for what it is for):
//! configured, or generated on first start and kept in a file beside the node's data
//! (`node.id_file`; by default `<SQLite database>.node_id`, or `data/node_id` with PostgreSQL).
//!
//! A process locks that file for as long as it runs (an OS file lock, released when the
//! process ends, SIGKILL included), so the id kept in it is never used by two live processes:
//! a second process finding the file locked runs without a node id (its leases then wait for
//! their expiry after a restart, as any other node's do) and says so. A configured `node.id`
//! cannot be checked that way: the operator keeps it unique (see the README).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Settings;

/// Where a generated id is kept with PostgreSQL, relative to the working directory.
const POSTGRES_ID_FILE: &str = "data/node_id";
/// Random hexadecimal digits in a generated id (`node-` and 12 digits, 48 bits).
const GENERATED_ID_DIGITS: usize = 12;

/// The node id this process runs as, and the lock on the file it was read from.
#[derive(Debug)]
pub struct NodeIdentity {
    pub id: Option<String>,
    /// Held while the process runs; dropping it (or the process ending) releases the lock.
    _lock: Option<File>,
}

impl NodeIdentity {
    /// The configured id, else the one kept in the id file (generated and written there on
    /// first start). An id file that cannot be written, or that another process holds, leaves
    /// the process without an id, with a warning; an id file holding something that is not a
    /// node id stops the start.
    pub fn resolve(settings: &Settings) -> anyhow::Result<Self> {
        if let Some(id) = &settings.node.id {
            return Ok(Self {
                id: Some(id.clone()),
                _lock: None,
            });
        }
        let Some(path) = id_file(settings) else {
            // An in-memory database ends with the process: nothing to take back.
            return Ok(Self {
                id: None,
                _lock: None,
            });
        };
        match kept_in(&path)? {
            Kept::Id(id, lock) => {
                tracing::info!(node = %id, file = %path.display(), "node id");
                Ok(Self {
                    id: Some(id),
                    _lock: Some(lock),
                })
            }
            Kept::Locked => {
                tracing::warn!(
                    file = %path.display(),
                    "another running process holds this node id file, so this process runs without a node id: after a crash it waits for its leases to expire. Give each process its own node.id or node.id_file"
                );
                Ok(Self {
                    id: None,
                    _lock: None,
                })
            }
            Kept::Unwritable(error) => {
                tracing::warn!(
                    file = %path.display(),
                    %error,
                    "cannot keep a node id in this file, so this process runs without one: after a crash it waits for its leases to expire. Set node.id or node.id_file"
                );
                Ok(Self {
                    id: None,
                    _lock: None,
                })
            }
        }
    }
}

/// Where the generated id is kept, or `None` for an in-memory database.
fn id_file(settings: &Settings) -> Option<PathBuf> {
    if let Some(path) = &settings.node.id_file {
        return Some(path.clone());
    }
    let url = settings.database.url.expose();
    if url.starts_with("sqlite:") {
        let mut file = ampflow_actors::database::sqlite_file(url)?.into_os_string();
        file.push(".node_id");
        return Some(file.into());
    }
    Some(PathBuf::from(POSTGRES_ID_FILE))
}

enum Kept {
    Id(String, File),
    Locked,
    Unwritable(std::io::Error),
}

/// Opens and locks the id file, reading its id or writing a new one.
fn kept_in(path: &Path) -> anyhow::Result<Kept> {
    let opened = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
        });
    let mut file = match opened {
        Ok(file) => file,
        Err(error) => return Ok(Kept::Unwritable(error)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(Kept::Locked),
        Err(TryLockError::Error(error)) => return Ok(Kept::Unwritable(error)),
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("read the node id file {}", path.display()))?;
    let id = text.trim();
    if !id.is_empty() {
        ampflow_actors::database::check_node_id(id).map_err(|e| {
            anyhow::anyhow!(
                "the node id file {} is damaged ({e}); fix or delete it",
                path.display()
            )
        })?;
        return Ok(Kept::Id(id.to_string(), file));
    }
    let id = generated_id();
    let written = file
        .rewind()
        .and_then(|()| file.set_len(0))
        .and_then(|()| file.write_all(format!("{id}\n").as_bytes()))
        .and_then(|()| file.sync_all());
    Ok(match written {
        Ok(()) => Kept::Id(id, file),
        Err(error) => Kept::Unwritable(error),
    })
}

fn generated_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("node-{}", &random[..GENERATED_ID_DIGITS])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_settings(folder: &Path) -> Settings {
        let mut settings = Settings::default();
        settings.database.url = crate::config::Secret::new(format!(
            "sqlite://{}?mode=rwc",
            folder.join("ampflow.db").display()
        ));
        settings
    }

    #[test]
    fn a_generated_id_is_kept_beside_the_database_and_locked_while_in_use() {
        let folder = tempfile::tempdir().unwrap();
        let settings = sqlite_settings(folder.path());
        let first = NodeIdentity::resolve(&settings).unwrap();
        let id = first.id.clone().unwrap();
        assert!(id.starts_with("node-") && id.len() == 17, "{id}");
        let kept = std::fs::read_to_string(folder.path().join("ampflow.db.node_id")).unwrap();
        assert_eq!(kept.trim(), id);
        // While the first holds it, another process gets no id rather than the same one.
        assert_eq!(NodeIdentity::resolve(&settings).unwrap().id, None);
        drop(first);
        // The next run of the node reads the same id.
        assert_eq!(NodeIdentity::resolve(&settings).unwrap().id, Some(id));
    }

    #[test]
    fn a_configured_id_wins_and_a_damaged_file_stops_the_start() {
        let folder = tempfile::tempdir().unwrap();
        let mut settings = sqlite_settings(folder.path());
        settings.node.id = Some("eu-1".into());
        assert_eq!(
            NodeIdentity::resolve(&settings).unwrap().id.as_deref(),
            Some("eu-1")
        );
        settings.node.id = None;
        let file = folder.path().join("id");
        std::fs::write(&file, "not a # node id\n").unwrap();
        settings.node.id_file = Some(file);
        let error = NodeIdentity::resolve(&settings).unwrap_err().to_string();
        assert!(error.contains("damaged"), "{error}");
    }

    #[test]
    fn postgres_keeps_it_in_the_data_folder_and_memory_keeps_none() {
        let mut settings = Settings::default();
        settings.database.url = crate::config::Secret::new("postgres://db/ampflow");
        assert_eq!(id_file(&settings), Some(PathBuf::from("data/node_id")));
        settings.database.url = crate::config::Secret::new("sqlite::memory:");
        assert_eq!(id_file(&settings), None);
    }
}
