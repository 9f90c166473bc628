//! The database, as the composition root sees it: `ampflow serve` and the CLI open it
//! ([`Storage::connect`], migrations), hand it to the [`ActorSystem`](crate::ActorSystem) or a
//! façade, and close it at shutdown; the configuration names it ([`DatabaseSettings`],
//! [`SqliteSync`]) and a node keeps its id beside it ([`sqlite_file`], [`check_node_id`]).
//! Nothing else in the front reaches storage: routes and extractors call the façades
//! (`http/tests/layering.rs` holds them to it).

pub use ampflow_storage::{
    DatabaseSettings, LeaseHolder, SqliteSync, Storage, check_node_id, sqlite_file,
};
