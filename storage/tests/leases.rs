//! Leases, on SQLite and PostgreSQL: one holder at a time, taken over once expired; a node's
//! later run takes its earlier run's leases back at once, another node's never, and an earlier
//! run finding its node's later run holding a lease is told so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ampflow_storage::testdb::{Backend, TestDatabase};
use ampflow_storage::*;

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() { super::$name(ampflow_storage::testdb::Backend::Sqlite).await }
            #[tokio::test]
            async fn postgres() { super::$name(ampflow_storage::testdb::Backend::Postgres).await }
        }
    )*};
}

on_both_databases!(
    leases_have_one_holder_at_a_time,
    a_restarted_node_takes_back_its_own_leases_at_once,
);

async fn storage(backend: Backend) -> Option<(Storage, TestDatabase)> {
    let db = TestDatabase::create(backend).await?;
    let storage = Storage::connect(&db.settings()).await.unwrap();
    storage.migrate().await.unwrap();
    Some((storage, db))
}

async fn leases_have_one_holder_at_a_time(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let (a, b) = (LeaseHolder::one_off(), LeaseHolder::one_off());
    let held = |state: LeaseState| state.is_held();
    assert!(held(
        storage
            .leases()
            .acquire_lease("exec:1", &a, 0, 100)
            .await
            .unwrap()
    ));
    assert_eq!(
        storage
            .leases()
            .acquire_lease("exec:1", &b, 50, 150)
            .await
            .unwrap(),
        LeaseState::Busy
    );
    assert!(
        held(
            storage
                .leases()
                .acquire_lease("exec:1", &a, 90, 190)
                .await
                .unwrap()
        ),
        "renewed"
    );
    assert!(!held(
        storage
            .leases()
            .acquire_lease("exec:1", &b, 150, 250)
            .await
            .unwrap()
    ));
    assert!(
        held(
            storage
                .leases()
                .acquire_lease("exec:1", &b, 190, 290)
                .await
                .unwrap()
        ),
        "taken once expired"
    );
    assert!(!held(
        storage
            .leases()
            .acquire_lease("exec:1", &a, 200, 300)
            .await
            .unwrap()
    ));
    storage.leases().release_lease("exec:1", &a).await.unwrap();
    assert!(
        !held(
            storage
                .leases()
                .acquire_lease("exec:1", &a, 200, 300)
                .await
                .unwrap()
        ),
        "not a's to release"
    );
    storage.leases().release_lease("exec:1", &b).await.unwrap();
    assert!(held(
        storage
            .leases()
            .acquire_lease("exec:1", &a, 200, 300)
            .await
            .unwrap()
    ));
    assert!(
        held(
            storage
                .leases()
                .acquire_lease("exec:2", &b, 200, 300)
                .await
                .unwrap()
        ),
        "leases are per name"
    );
    assert_eq!(
        storage.leases().lease("exec:2").await.unwrap(),
        Some((b.as_str().to_string(), 300))
    );
}

async fn a_restarted_node_takes_back_its_own_leases_at_once(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let first = storage
        .leases()
        .start_node("node-a", "host-1", 100, 0)
        .await
        .unwrap();
    assert_eq!(first.holder.as_str(), "node-a#1");
    assert_eq!(first.previous, None);
    let run1 = first.holder;
    assert_eq!(
        storage
            .leases()
            .acquire_lease("exec:1", &run1, 0, 1_000)
            .await
            .unwrap(),
        LeaseState::Held
    );
    let other = storage
        .leases()
        .start_node("node-b", "host-2", 7, 5)
        .await
        .unwrap()
        .holder;
    assert_eq!(other.as_str(), "node-b#1");
    assert_eq!(
        storage
            .leases()
            .acquire_lease("exec:1", &other, 10, 1_010)
            .await
            .unwrap(),
        LeaseState::Busy,
        "another node waits for the expiry"
    );

    // node-a starts again (its first run was killed): the lease is its own, taken back now.
    let second = storage
        .leases()
        .start_node("node-a", "host-1", 200, 20)
        .await
        .unwrap();
    assert_eq!(second.holder.as_str(), "node-a#2");
    assert_eq!(second.holder.node_id(), Some("node-a"));
    assert_eq!(second.holder.incarnation(), Some(2));
    assert_eq!(second.previous, Some(("host-1".into(), 100, 0)));
    let run2 = second.holder;
    assert_eq!(
        storage
            .leases()
            .acquire_lease("exec:1", &run2, 30, 1_030)
            .await
            .unwrap(),
        LeaseState::Held
    );
    assert_eq!(
        storage.leases().lease("exec:1").await.unwrap(),
        Some(("node-a#2".into(), 1_030))
    );
    // The earlier run, were it still alive, must not take it again: it is told why.
    assert_eq!(
        storage
            .leases()
            .acquire_lease("exec:1", &run1, 40, 1_040)
            .await
            .unwrap(),
        LeaseState::HeldByLaterRun
    );
    // A one-off holder (a command) never takes anything back early.
    let command = LeaseHolder::one_off();
    assert_eq!(
        storage
            .leases()
            .acquire_lease("exec:1", &command, 50, 1_050)
            .await
            .unwrap(),
        LeaseState::Busy
    );
    assert_eq!(
        storage
            .leases()
            .acquire_lease("exec:1", &other, 1_030, 2_030)
            .await
            .unwrap(),
        LeaseState::Held,
        "taken over once expired"
    );
    // A later run of node-b's takes it back from node-b's first; node-a's run does not.
    assert_eq!(
        storage
            .leases()
            .acquire_lease("exec:1", &run2, 1_100, 2_100)
            .await
            .unwrap(),
        LeaseState::Busy
    );
    let other2 = storage
        .leases()
        .start_node("node-b", "host-2", 8, 1_200)
        .await
        .unwrap()
        .holder;
    assert_eq!(
        storage
            .leases()
            .acquire_lease("exec:1", &other2, 1_200, 2_200)
            .await
            .unwrap(),
        LeaseState::Held
    );
    // Node ids are checked.
    assert!(
        storage
            .leases()
            .start_node("bad id", "h", 1, 0)
            .await
            .is_err()
    );
}
