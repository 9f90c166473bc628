//! Ledger repository guarantees, on SQLite and PostgreSQL: entries link into one chain whose
//! hashes recompute, a dedupe key records once, and concurrent appenders (two connections'
//! worth, as two processes would be) never fork the chain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ampflow_storage::testdb::{Backend, TestDatabase};
use ampflow_storage::*;
use ampflow_types::ledger::LedgerMetadata;

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
    entries_link_into_one_chain,
    a_dedupe_key_records_once,
    concurrent_appenders_never_fork_the_chain,
    groups_of_many_organisations_commit_together_and_keep_each_chain,
    a_running_total_records_only_what_is_missing,
);

const ORG: &str = "org_0123456789abcdef0123456789abcdef";

async fn storage(backend: Backend) -> Option<(Storage, TestDatabase)> {
    let db = TestDatabase::create(backend).await?;
    let storage = Storage::connect(&db.settings()).await.unwrap();
    storage.migrate().await.unwrap();
    Some((storage, db))
}

fn donation(n: i64, key: Option<&str>) -> NewLedgerEntry {
    NewLedgerEntry {
        entry_type: "donation_received".into(),
        amount: 100 * n,
        currency: "EUR".into(),
        metadata: LedgerMetadata {
            donation_id: Some(format!("don_{n}")),
            donor_name: Some("Jane".into()),
            stripe_payment_intent_id: Some(format!("pi_{n}")),
        },
        created_at_ms: 1_700_000_000_000 + n,
        dedupe_key: key.map(str::to_string),
        rule: Default::default(),
    }
}

/// Checks links and hashes of a whole chain.
fn assert_chain(entries: &[LedgerEntryRecord]) {
    let mut prev: Option<String> = None;
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.seq, i as u64 + 1);
        assert_eq!(entry.content.prev_entry_hash, prev, "entry {i}");
        assert_eq!(entry.content.entry_hash(), entry.entry_hash, "entry {i}");
        prev = Some(entry.entry_hash.clone());
    }
}

async fn entries_link_into_one_chain(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let first = storage
        .ledger()
        .append_ledger_entries(ORG, &[donation(1, None)], 1)
        .await
        .unwrap();
    assert_eq!(first[0].content.prev_entry_hash, None);
    let batch: Vec<NewLedgerEntry> = (2..=5).map(|n| donation(n, None)).collect();
    let more = storage
        .ledger()
        .append_ledger_entries(ORG, &batch, 2)
        .await
        .unwrap();
    assert_eq!(more.len(), 4);
    assert_eq!(
        more[0].content.prev_entry_hash.as_deref(),
        Some(first[0].entry_hash.as_str())
    );
    let all = storage
        .ledger()
        .ledger_entries(ORG, LedgerRange::default(), 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    assert_chain(&all);
    assert_eq!(all[3], more[2], "read back as written");
    assert_eq!(
        storage.ledger().ledger_head(ORG).await.unwrap(),
        (5, Some(all[4].entry_hash.clone()))
    );
    // Ranges: after a sequence number, and by time.
    let page = storage
        .ledger()
        .ledger_entries(
            ORG,
            LedgerRange {
                after_seq: 2,
                ..Default::default()
            },
            2,
        )
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    let timed = storage
        .ledger()
        .ledger_entries(
            ORG,
            LedgerRange {
                after_seq: 0,
                from_ms: Some(1_700_000_000_002),
                until_ms: Some(1_700_000_000_004),
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(timed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    // Another organisation has its own chain.
    let other = storage
        .ledger()
        .append_ledger_entries("org_other", &[donation(9, None)], 3)
        .await
        .unwrap();
    assert_eq!(other[0].seq, 1);
    assert_eq!(other[0].content.prev_entry_hash, None);
}

async fn a_dedupe_key_records_once(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let key = Some("donation_received:don_1");
    let first = storage
        .ledger()
        .append_ledger_entries(ORG, &[donation(1, key)], 1)
        .await
        .unwrap();
    // Again, alone and within a batch with a new entry and a duplicate of itself.
    let again = storage
        .ledger()
        .append_ledger_entries(ORG, &[donation(1, key)], 2)
        .await
        .unwrap();
    assert_eq!(again, first);
    let batch = storage
        .ledger()
        .append_ledger_entries(
            ORG,
            &[
                donation(2, Some("donation_received:don_2")),
                donation(1, key),
                donation(2, Some("donation_received:don_2")),
            ],
            3,
        )
        .await
        .unwrap();
    assert_eq!(batch[1], first[0]);
    assert_eq!(batch[0], batch[2]);
    let all = storage
        .ledger()
        .ledger_entries(ORG, LedgerRange::default(), 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_chain(&all);
}

async fn concurrent_appenders_never_fork_the_chain(backend: Backend) {
    let Some((storage, db)) = storage(backend).await else {
        return;
    };
    // A second handle, with its own pool, as a second process would have.
    let other = Storage::connect(&db.settings()).await.unwrap();
    let mut tasks = Vec::new();
    for (w, store) in [storage.clone(), other.clone(), storage.clone(), other]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let n = (w * 100 + i) as i64;
                let batch = [donation(n, None), donation(n + 50, None)];
                // On SQLite a writer from the second pool may find the file busy: retry. On
                // PostgreSQL the head lock makes every append succeed at once.
                let mut tries = 0;
                loop {
                    match store.ledger().append_ledger_entries(ORG, &batch, n).await {
                        Ok(_) => break,
                        Err(e) if backend == Backend::Sqlite && tries < 50 => {
                            tries += 1;
                            let _ = e;
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let all = storage
        .ledger()
        .ledger_entries(ORG, LedgerRange::default(), 1000)
        .await
        .unwrap();
    assert_eq!(all.len(), 80);
    assert_chain(&all);
}

async fn groups_of_many_organisations_commit_together_and_keep_each_chain(backend: Backend) {
    let Some((storage, db)) = storage(backend).await else {
        return;
    };
    // On PostgreSQL a second handle too, as a second process would have (its groups lock the
    // same heads in the same order). SQLite is one process's file.
    let mut stores = vec![storage.clone()];
    if backend == Backend::Postgres {
        stores.push(Storage::connect(&db.settings()).await.unwrap());
    }
    let orgs: Vec<String> = (0..24).map(|o| format!("org_{o:032x}")).collect();
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for (o, org) in orgs.iter().enumerate() {
            let (store, org) = (store.clone(), org.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..8 {
                    let n = (s * 100_000 + o * 100 + i) as i64;
                    let key = format!("donation_received:don_{n}");
                    let group = vec![donation(n, Some(&key)), donation(n + 50, None)];
                    let stored = store
                        .ledger()
                        .append_ledger_group(&org, group, n)
                        .await
                        .unwrap();
                    assert_eq!(stored.len(), 2);
                    assert_eq!(stored[1].seq, stored[0].seq + 1, "a group stays together");
                }
            }));
        }
    }
    // Two groups of one organisation in flight at once (an actor replaced while its old one
    // still had a group out): they may share a batch, and each keeps its entries together.
    let extra = "org_ffffffffffffffffffffffffffffffff".to_string();
    for g in 0..2 {
        let (store, org) = (storage.clone(), extra.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..8 {
                let n = 900_000 + g * 100 + i;
                let stored = store
                    .ledger()
                    .append_ledger_group(&org, vec![donation(n, None), donation(n + 50, None)], n)
                    .await
                    .unwrap();
                assert_eq!(stored[1].seq, stored[0].seq + 1, "a group stays together");
                assert_eq!(stored[0].content.amount, 100 * n);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let all = storage
        .ledger()
        .ledger_entries(&extra, LedgerRange::default(), 1000)
        .await
        .unwrap();
    assert_eq!(all.len(), 32);
    assert_chain(&all);
    for org in &orgs {
        let all = storage
            .ledger()
            .ledger_entries(org, LedgerRange::default(), 1000)
            .await
            .unwrap();
        assert_eq!(all.len(), 16 * stores.len(), "{org}");
        assert_chain(&all);
        assert!(all.iter().all(|e| e.content.organisation_id == *org));
    }
}

async fn a_running_total_records_only_what_is_missing(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let refund = |total: i64| NewLedgerEntry {
        entry_type: "donation_refunded".into(),
        amount: -total,
        currency: "EUR".into(),
        metadata: LedgerMetadata {
            donation_id: Some("don_1".into()),
            donor_name: None,
            stripe_payment_intent_id: Some("pi_1".into()),
        },
        created_at_ms: 1_700_000_000_000,
        dedupe_key: Some(format!("donation_refunded:don_1:{total}")),
        rule: AmountRule::RunningTotal,
    };
    storage
        .ledger()
        .append_ledger_entries(ORG, &[donation(1, Some("donation_received:don_1"))], 1)
        .await
        .unwrap();
    // 300, then 500 twice in one batch: -300 and -200.
    let stored = storage
        .ledger()
        .append_ledger_entries(ORG, &[refund(300)], 2)
        .await
        .unwrap();
    assert_eq!(stored[0].content.amount, -300);
    let stored = storage
        .ledger()
        .append_ledger_entries(ORG, &[refund(500), refund(500)], 3)
        .await
        .unwrap();
    assert_eq!(stored[0].content.amount, -200);
    assert_eq!(stored[1], stored[0]);
    // An older, smaller total (delivered late) is covered: nothing, the latest answers.
    let stored = storage
        .ledger()
        .append_ledger_entries(ORG, &[refund(400)], 4)
        .await
        .unwrap();
    assert_eq!(stored[0].content.amount, -200);
    // Through the grouped path too.
    let stored = storage
        .ledger()
        .append_ledger_group(ORG, vec![refund(650)], 5)
        .await
        .unwrap();
    assert_eq!(stored[0].content.amount, -150);
    let all = storage
        .ledger()
        .ledger_entries(ORG, LedgerRange::default(), 100)
        .await
        .unwrap();
    let amounts: Vec<i64> = all.iter().map(|e| e.content.amount).collect();
    assert_eq!(amounts, vec![100, -300, -200, -150]);
    assert_chain(&all);
    // Without a donation id the rule cannot apply.
    let mut orphan = refund(10);
    orphan.metadata.donation_id = None;
    assert!(
        storage
            .ledger()
            .append_ledger_entries(ORG, &[orphan], 6)
            .await
            .is_err()
    );
}
