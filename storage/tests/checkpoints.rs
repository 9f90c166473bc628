//! Checkpoint builds on SQLite and PostgreSQL: leaves are assigned in (created_at, id) order
//! across organisations, each checkpoint extends the one before, its head matches a tree
//! computed independently from the entries, every proof verifies, and builds are idempotent
//! and in date order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ampflow_storage::testdb::{Backend, TestDatabase};
use ampflow_storage::*;
use ampflow_types::ledger::LedgerMetadata;
use ampflow_types::merkle::{self, Hash};
use ampflow_types::note::{CheckpointBody, NoteSigner};

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(ampflow_storage::testdb::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(ampflow_storage::testdb::Backend::Postgres).await }
        }
    )*};
}

on_both_databases!(
    checkpoints_cover_every_organisation_day_by_day,
    builds_are_idempotent_and_in_date_order,
    a_tree_of_thousands_builds_in_pages,
);

const ORG_A: &str = "org_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const ORG_B: &str = "org_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// 2025-01-15T00:00:00Z
const JAN_15: i64 = 1_736_899_200_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

async fn storage(backend: Backend) -> Option<(Storage, TestDatabase)> {
    let db = TestDatabase::create(backend).await?;
    let storage = Storage::connect(&db.settings()).await.unwrap();
    storage.migrate().await.unwrap();
    Some((storage, db))
}

fn entry(n: i64, at_ms: i64, amount: i64, currency: &str) -> NewLedgerEntry {
    NewLedgerEntry {
        entry_type: "donation_received".into(),
        amount,
        currency: currency.into(),
        metadata: LedgerMetadata {
            donation_id: Some(format!("don_{n}")),
            donor_name: None,
            stripe_payment_intent_id: None,
        },
        created_at_ms: at_ms,
        dedupe_key: None,
        rule: Default::default(),
    }
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("test/ledger", [3u8; 32]).unwrap()
}

async fn build(storage: &Storage, date: &str, day_end_ms: i64) -> CheckpointRecord {
    let signer = signer();
    storage
        .checkpoints()
        .build_checkpoint(&CheckpointSpec {
            date,
            day_end_ms,
            origin: "test/ledger",
            signer: &signer,
            now: day_end_ms + 60_000,
        })
        .await
        .unwrap()
}

/// Every stored entry of both organisations, in leaf order: (created_at, id).
async fn leaf_order(storage: &Storage, before_ms: i64) -> Vec<LedgerEntryRecord> {
    let mut all = Vec::new();
    for org in [ORG_A, ORG_B] {
        all.extend(
            storage
                .ledger()
                .ledger_entries(org, LedgerRange::default(), 100_000)
                .await
                .unwrap(),
        );
    }
    all.retain(|e| e.created_at_ms < before_ms);
    all.sort_by(|a, b| {
        (a.created_at_ms, a.content.id.as_str()).cmp(&(b.created_at_ms, b.content.id.as_str()))
    });
    all
}

fn reference_root(leaves: &[Hash]) -> Hash {
    let mut nodes = std::collections::HashMap::new();
    let mut frontier = merkle::Frontier::default();
    for leaf in leaves {
        frontier.push(*leaf, |id, h| {
            nodes.insert(id, h);
        });
    }
    merkle::root(leaves.len() as u64, &mut |id| nodes[&id])
}

async fn checkpoints_cover_every_organisation_day_by_day(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    // Day one: interleaved entries of two organisations, appended out of time order.
    for (n, (org, minute)) in [(ORG_A, 30), (ORG_B, 10), (ORG_A, 50), (ORG_B, 40)]
        .into_iter()
        .enumerate()
    {
        let at = JAN_15 + minute * 60_000;
        storage
            .ledger()
            .append_ledger_entries(org, &[entry(n as i64, at, 1_000, "EUR")], at)
            .await
            .unwrap();
    }
    let day_one = build(&storage, "2025-01-15", JAN_15 + DAY_MS).await;
    assert_eq!(day_one.id, "chk_2025-01-15");
    assert_eq!(day_one.tree_size, 4);
    assert_eq!(day_one.total_volume, 4_000);
    let expected: Vec<Hash> = leaf_order(&storage, JAN_15 + DAY_MS)
        .await
        .iter()
        .map(|e| merkle::entry_leaf_hash(&e.entry_hash).unwrap())
        .collect();
    assert_eq!(day_one.root_hash, reference_root(&expected));

    // Day two, plus a late entry still dated day one: it joins day two's checkpoint.
    storage
        .ledger()
        .append_ledger_entries(
            ORG_B,
            &[
                entry(10, JAN_15 + DAY_MS + 5, -500, "EUR"),
                entry(11, JAN_15 + DAY_MS - 1, 700, "USD"),
            ],
            JAN_15 + DAY_MS + 10,
        )
        .await
        .unwrap();
    storage
        .ledger()
        .append_ledger_entries(
            ORG_A,
            &[entry(12, JAN_15 + 2 * DAY_MS + 1, 1, "EUR")],
            JAN_15 + 2 * DAY_MS + 1,
        )
        .await
        .unwrap();
    let day_two = build(&storage, "2025-01-16", JAN_15 + 2 * DAY_MS).await;
    assert_eq!(day_two.tree_size, 6);
    assert_eq!(day_two.total_volume, 4_000 - 500 + 700);
    assert_eq!(day_two.volume_by_currency["EUR"], 3_500);
    assert_eq!(day_two.volume_by_currency["USD"], 700);
    let all = leaf_order(&storage, JAN_15 + 2 * DAY_MS).await;
    let late = all
        .iter()
        .find(|e| e.created_at_ms == JAN_15 + DAY_MS - 1)
        .unwrap();
    let leaves: Vec<Hash> = expected
        .iter()
        .copied()
        .chain(
            [
                late,
                all.iter()
                    .find(|e| e.created_at_ms == JAN_15 + DAY_MS + 5)
                    .unwrap(),
            ]
            .iter()
            .map(|e| merkle::entry_leaf_hash(&e.entry_hash).unwrap()),
        )
        .collect();
    assert_eq!(day_two.root_hash, reference_root(&leaves));

    // The note is the C2SP checkpoint of that head, signed by the key.
    let body = signer()
        .verifier()
        .verify(&day_two.signed_note)
        .unwrap()
        .to_string();
    let body = CheckpointBody::parse(&body).unwrap();
    assert_eq!(body.tree_size, 6);
    assert_eq!(body.root_hash, day_two.root_hash);
    assert_eq!(body.origin, "test/ledger");

    // Every covered entry proves against both checkpoints it is in, and a wrong leaf fails.
    for entry in &all {
        let proof = storage
            .checkpoints()
            .inclusion_proof(&entry.content.id, None)
            .await
            .unwrap();
        assert_eq!(proof.checkpoint.id, "chk_2025-01-16");
        let leaf = merkle::entry_leaf_hash(&entry.entry_hash).unwrap();
        merkle::verify_inclusion(
            &leaf,
            proof.leaf_index,
            6,
            &proof.audit_path,
            &day_two.root_hash,
        )
        .unwrap();
        let wrong = merkle::leaf_hash(b"a forged entry");
        assert!(
            merkle::verify_inclusion(
                &wrong,
                proof.leaf_index,
                6,
                &proof.audit_path,
                &day_two.root_hash
            )
            .is_err()
        );
        match storage
            .checkpoints()
            .inclusion_proof(&entry.content.id, Some("chk_2025-01-15"))
            .await
        {
            Ok(old) => {
                assert!(old.leaf_index < 4);
                merkle::verify_inclusion(
                    &leaf,
                    old.leaf_index,
                    4,
                    &old.audit_path,
                    &day_one.root_hash,
                )
                .unwrap();
            }
            Err(ProofLookupError::NotInCheckpoint) => assert!(proof.leaf_index >= 4),
            Err(other) => panic!("{other}"),
        }
    }
    // The entry of day three is in no checkpoint yet; unknown ids are unknown.
    let newest = storage
        .ledger()
        .ledger_entries(ORG_A, LedgerRange::default(), 100)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(matches!(
        storage
            .checkpoints()
            .inclusion_proof(&newest.content.id, None)
            .await,
        Err(ProofLookupError::NotCheckpointed)
    ));
    assert!(matches!(
        storage
            .checkpoints()
            .inclusion_proof("led_nope", None)
            .await,
        Err(ProofLookupError::UnknownEntry)
    ));
    let listed = storage
        .checkpoints()
        .list_checkpoints(None, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["chk_2025-01-16", "chk_2025-01-15"]);
    let older = storage
        .checkpoints()
        .list_checkpoints(Some("2025-01-16"), 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
}

async fn builds_are_idempotent_and_in_date_order(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    assert_eq!(
        storage.checkpoints().latest_checkpoint().await.unwrap(),
        None
    );
    assert_eq!(
        storage
            .checkpoints()
            .oldest_unindexed_entry_ms()
            .await
            .unwrap(),
        None
    );
    storage
        .ledger()
        .append_ledger_entries(ORG_A, &[entry(1, JAN_15 + 5, 10, "EUR")], JAN_15)
        .await
        .unwrap();
    assert_eq!(
        storage
            .checkpoints()
            .oldest_unindexed_entry_ms()
            .await
            .unwrap(),
        Some(JAN_15 + 5)
    );
    let first = build(&storage, "2025-01-16", JAN_15 + 2 * DAY_MS).await;
    assert_eq!(first.tree_size, 1);
    assert_eq!(
        build(&storage, "2025-01-16", JAN_15 + 2 * DAY_MS).await,
        first
    );
    // An earlier date cannot come after.
    let signer = signer();
    let refused = storage
        .checkpoints()
        .build_checkpoint(&CheckpointSpec {
            date: "2025-01-15",
            day_end_ms: JAN_15 + DAY_MS,
            origin: "test/ledger",
            signer: &signer,
            now: JAN_15,
        })
        .await;
    assert!(
        matches!(refused, Err(StorageError::Conflict(_))),
        "{refused:?}"
    );
    // A day without entries repeats the head.
    let empty_day = build(&storage, "2025-01-17", JAN_15 + 3 * DAY_MS).await;
    assert_eq!(empty_day.tree_size, 1);
    assert_eq!(empty_day.root_hash, first.root_hash);
    assert_ne!(empty_day.signed_note, "");
    assert_eq!(
        storage
            .checkpoints()
            .oldest_unindexed_entry_ms()
            .await
            .unwrap(),
        None
    );

    // The first generated key is stored and kept: a later one is answered the first.
    assert_eq!(
        storage.checkpoints().load_checkpoint_key().await.unwrap(),
        None
    );
    assert_eq!(
        storage
            .checkpoints()
            .first_checkpoint_key("k+1+2", "PRIVATE+KEY+k", 1)
            .await
            .unwrap(),
        "PRIVATE+KEY+k"
    );
    assert_eq!(
        storage
            .checkpoints()
            .first_checkpoint_key("k+3+4", "PRIVATE+KEY+other", 0)
            .await
            .unwrap(),
        "PRIVATE+KEY+k"
    );
    assert_eq!(
        storage
            .checkpoints()
            .load_checkpoint_key()
            .await
            .unwrap()
            .as_deref(),
        Some("PRIVATE+KEY+k")
    );
}

async fn a_tree_of_thousands_builds_in_pages(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    const COUNT: i64 = 12_345;
    let batch: Vec<NewLedgerEntry> = (0..COUNT).map(|n| entry(n, JAN_15 + n, 1, "EUR")).collect();
    for chunk in batch.chunks(2_000) {
        storage
            .ledger()
            .append_ledger_entries(ORG_A, chunk, JAN_15)
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    let checkpoint = build(&storage, "2025-01-15", JAN_15 + DAY_MS).await;
    eprintln!("built a tree of {COUNT} in {:?}", started.elapsed());
    assert_eq!(checkpoint.tree_size, COUNT as u64);
    assert_eq!(checkpoint.total_volume, COUNT);
    let entries = storage
        .ledger()
        .ledger_entries(ORG_A, LedgerRange::default(), COUNT as u64)
        .await
        .unwrap();
    let leaves: Vec<Hash> = entries
        .iter()
        .map(|e| merkle::entry_leaf_hash(&e.entry_hash).unwrap())
        .collect();
    assert_eq!(checkpoint.root_hash, reference_root(&leaves));
    for index in [0, 1, 4_999, 5_000, 5_001, COUNT as usize - 1] {
        let proof = storage
            .checkpoints()
            .inclusion_proof(&entries[index].content.id, None)
            .await
            .unwrap();
        assert_eq!(proof.leaf_index, index as u64);
        merkle::verify_inclusion(
            &leaves[index],
            proof.leaf_index,
            COUNT as u64,
            &proof.audit_path,
            &checkpoint.root_hash,
        )
        .unwrap();
    }
}

/// The scale the design is for: `cargo test -p ampflow-storage --test checkpoints --
/// --ignored --nocapture` prints how long a million entries take to checkpoint and prove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a million entries"]
async fn a_million_entries_checkpoint_and_prove() {
    let backend = if std::env::var("TEST_DATABASE_URL").is_ok() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    const COUNT: i64 = 1_000_000;
    let started = std::time::Instant::now();
    for start in (0..COUNT).step_by(5_000) {
        let batch: Vec<NewLedgerEntry> = (start..start + 5_000)
            .map(|n| entry(n, JAN_15 + n / 20, 1, "EUR"))
            .collect();
        let org = if start % 10_000 == 0 { ORG_A } else { ORG_B };
        storage
            .ledger()
            .append_ledger_entries(org, &batch, JAN_15)
            .await
            .unwrap();
    }
    eprintln!("{backend:?}: appended {COUNT} in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let checkpoint = build(&storage, "2025-01-15", JAN_15 + DAY_MS).await;
    eprintln!(
        "{backend:?}: checkpointed {COUNT} in {:?}",
        started.elapsed()
    );
    assert_eq!(checkpoint.tree_size, COUNT as u64);
    let entries = storage
        .ledger()
        .ledger_entries(ORG_B, LedgerRange::default(), 3)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for entry in &entries {
        let proof = storage
            .checkpoints()
            .inclusion_proof(&entry.content.id, None)
            .await
            .unwrap();
        let leaf = merkle::entry_leaf_hash(&entry.entry_hash).unwrap();
        merkle::verify_inclusion(
            &leaf,
            proof.leaf_index,
            COUNT as u64,
            &proof.audit_path,
            &checkpoint.root_hash,
        )
        .unwrap();
    }
    eprintln!(
        "{backend:?}: {} proofs in {:?}",
        entries.len(),
        started.elapsed()
    );
}
