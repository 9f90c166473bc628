//! Stripe events recorded with their donation moves, on SQLite and PostgreSQL: events that
//! arrive together are group-committed, and however they are batched (together, duplicated,
//! from two processes) each event id is applied exactly once and each donation moves once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use ampflow_storage::testdb::{Backend, TestDatabase};
use ampflow_storage::*;

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

on_both_databases!(events_arriving_together_apply_once_each);

async fn storage(backend: Backend) -> Option<(Storage, TestDatabase)> {
    let db = TestDatabase::create(backend).await?;
    let storage = Storage::connect(&db.settings()).await.unwrap();
    storage.migrate().await.unwrap();
    Some((storage, db))
}

fn pending(n: usize) -> DonationRecord {
    DonationRecord {
        id: format!("don_{n:032x}"),
        organisation_id: "org_0123456789abcdef0123456789abcdef".into(),
        fund_id: None,
        wallet_address: None,
        amount: 1_000 + n as i64,
        currency: "EUR".into(),
        donor_email: "donor@example.com".into(),
        donor_name: None,
        status: DonationStatus::Pending,
        stripe_payment_intent_id: Some(format!("pi_{n}")),
        failure_reason: None,
        created_at_ms: 1,
        updated_at_ms: 1,
        version: 0,
        source: DonationSource::Stripe,
    }
}

async fn events_arriving_together_apply_once_each(backend: Backend) {
    let Some((storage, db)) = storage(backend).await else {
        return;
    };
    const DONATIONS: usize = 60;
    for n in 0..DONATIONS {
        storage
            .donations()
            .insert_donation(&pending(n))
            .await
            .unwrap();
    }
    // On PostgreSQL a second handle too, as a second process would have.
    let mut stores = [storage.clone(), storage.clone()];
    if backend == Backend::Postgres {
        stores[1] = Storage::connect(&db.settings()).await.unwrap();
    }
    // Every event three times, concurrently: twice through one handle, once through the other.
    let mut tasks = Vec::new();
    for copy in 0..3 {
        for n in 0..DONATIONS {
            let store = stores[copy % 2].clone();
            tasks.push(tokio::spawn(async move {
                let event = StripeEventRecord {
                    id: format!("evt_{n}"),
                    event_type: "payment_intent.succeeded".into(),
                    donation_id: Some(pending(n).id),
                    received_at_ms: 2,
                };
                let next = DonationRecord {
                    status: DonationStatus::Succeeded,
                    updated_at_ms: 2,
                    version: 1,
                    ..pending(n)
                };
                let written = store
                    .donations()
                    .record_stripe_event(&event, Some((DonationStatus::Pending, &next)))
                    .await
                    .unwrap();
                (n, written)
            }));
        }
    }
    let mut applied: HashMap<usize, usize> = HashMap::new();
    for task in tasks {
        let (n, written) = task.await.unwrap();
        match written {
            EventWrite::Applied => *applied.entry(n).or_default() += 1,
            // A copy that lost: the event id was recorded, or the donation moved, first.
            EventWrite::Duplicate | EventWrite::Conflict => {}
        }
    }
    for n in 0..DONATIONS {
        assert_eq!(applied.get(&n), Some(&1), "event {n}");
        let donation = storage
            .donations()
            .donation(&pending(n).id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(donation.status, DonationStatus::Succeeded);
        assert_eq!(donation.version, 1, "moved once");
    }
    // Recorded: any later delivery is a duplicate and writes nothing.
    let again = StripeEventRecord {
        id: "evt_0".into(),
        event_type: "payment_intent.succeeded".into(),
        donation_id: Some(pending(0).id),
        received_at_ms: 3,
    };
    assert_eq!(
        storage
            .donations()
            .record_stripe_event(&again, None)
            .await
            .unwrap(),
        EventWrite::Duplicate
    );
}
