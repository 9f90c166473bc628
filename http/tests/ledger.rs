//! The public ledger over real HTTP, on SQLite and PostgreSQL: concurrent appends through the
//! organisation's ledger actor form one chain, pages and date filters read it, the export
//! verifies with `ampflow ledger verify`, and a flipped byte is caught at its entry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use ampflow_actors::organisations::NewOrganisation;
use ampflow_storage::testdb::Backend;
use ampflow_types::ledger::{LedgerExport, verify_export};
use common::{TestApp, assert_error, donation_entry};
use serde_json::Value;

on_both_databases!(
    concurrent_appends_form_one_chain_read_in_pages,
    the_export_verifies_and_tampering_is_located,
    bad_ledger_queries_are_refused,
);

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// 2025-01-15T00:00:00Z
const JAN_15: i64 = 1_736_899_200_000;

async fn organisation(app: &TestApp) -> String {
    let new = NewOrganisation {
        name: "Clean Water".into(),
        country: "KE".into(),
        status: "verified".into(),
        ..Default::default()
    };
    app.app()
        .actors()
        .organisations()
        .create(&new)
        .await
        .unwrap()
        .id
}

/// Appends `n` donations at once (the actor groups them), a day apart from Jan 15.
async fn append_many(app: &TestApp, org: &str, n: i64) {
    let ledger = app.app().actors().ledger();
    let appends = (0..n).map(|i| ledger.append(org, donation_entry(i, JAN_15 + i * DAY_MS)));
    for result in futures::future::join_all(appends).await {
        result.unwrap();
    }
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    app.send(app.client.get(app.url(path))).await
}

async fn concurrent_appends_form_one_chain_read_in_pages(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let org = organisation(&app).await;
    append_many(&app, &org, 7).await;
    // A repeated entry (same dedupe key) is not appended again.
    app.app()
        .actors()
        .ledger()
        .append(&org, donation_entry(3, JAN_15))
        .await
        .unwrap();

    let mut entries: Vec<Value> = Vec::new();
    let mut path = format!("/public/organisations/{org}/ledger?limit=3");
    loop {
        let (status, page) = get(&app, &path).await;
        assert_eq!(status, 200, "{page}");
        entries.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert_eq!(page["has_more"], true);
                path = format!("/public/organisations/{org}/ledger?limit=3&cursor={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(entries.len(), 7);
    let mut prev = Value::Null;
    for entry in &entries {
        assert_eq!(entry["prev_entry_hash"], prev);
        assert_eq!(entry["type"], "donation_received");
        assert_eq!(entry["currency"], "EUR");
        assert!(entry["entry_hash"].as_str().unwrap().starts_with("sha256:"));
        assert!(
            entry["metadata"]["stripe_payment_intent_id"]
                .as_str()
                .unwrap()
                .starts_with("pi_")
        );
        prev = entry["entry_hash"].clone();
    }

    // Dates are UTC days, both ends included.
    let (status, page) = get(
        &app,
        &format!("/public/organisations/{org}/ledger?start_date=2025-01-16&end_date=2025-01-17"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let days: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["created_at"].as_str().unwrap())
        .collect();
    assert_eq!(days.len(), 2, "{page}");
    assert!(
        days.iter()
            .all(|d| d.starts_with("2025-01-16") || d.starts_with("2025-01-17"))
    );
    app.stop().await;
}

async fn the_export_verifies_and_tampering_is_located(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let org = organisation(&app).await;
    append_many(&app, &org, 5).await;
    let response = app
        .client
        .get(app.url(&format!("/public/organisations/{org}/ledger/export")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    let export: LedgerExport = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(export.organisation_id, org);
    assert_eq!(export.entry_count, 5);
    assert_eq!(verify_export(&export), Ok(5));

    let folder = tempfile::tempdir().unwrap();
    let verify = |name: &str, content: &[u8]| {
        let file = folder.path().join(name);
        std::fs::write(&file, content).unwrap();
        Command::new(env!("CARGO_BIN_EXE_ampflow"))
            .args(["ledger", "verify"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let ok = verify("good.json", &bytes);
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).starts_with("ok: 5 entries"),
        "{ok:?}"
    );

    // Flip one byte of the fourth entry's amount (1003 → 1004).
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let tampered = text.replacen("\"amount\":1003", "\"amount\":1004", 1);
    assert_ne!(tampered, text);
    let broken = verify("tampered.json", tampered.as_bytes());
    assert_eq!(broken.status.code(), Some(1), "{broken:?}");
    let said = String::from_utf8_lossy(&broken.stdout);
    assert!(said.contains("entry 3 "), "{said}");
    // A donor name changed in the first entry.
    let tampered = text.replacen("Donor 0", "Donor X", 1);
    let broken = verify("renamed.json", tampered.as_bytes());
    assert!(String::from_utf8_lossy(&broken.stdout).contains("entry 0 "));
    // Not an export at all.
    let garbage = verify("garbage.json", b"{\"nope\": 1}");
    assert!(!garbage.status.success());

    let (status, body) = get(
        &app,
        "/public/organisations/org_0123456789abcdef0123456789abcdef/ledger/export",
    )
    .await;
    assert_error(status, &body, 404, "not_found", None);
    app.stop().await;
}

async fn bad_ledger_queries_are_refused(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let org = organisation(&app).await;
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=cur_zzz", "cursor"),
        ("start_date=15-01-2025", "start_date"),
        ("end_date=2025-02-30", "end_date"),
        ("start_date=2025-01-16&end_date=2025-01-15", "end_date"),
    ] {
        let (status, body) =
            get(&app, &format!("/public/organisations/{org}/ledger?{query}")).await;
        assert_error(status, &body, 400, "invalid_request", Some(param));
    }
    let (status, body) = get(&app, "/public/organisations/org_nope/ledger").await;
    assert_error(status, &body, 404, "not_found", None);
    let (status, page) = get(&app, &format!("/public/organisations/{org}/ledger")).await;
    assert_eq!(status, 200);
    assert_eq!(
        page,
        serde_json::json!({"data": [], "has_more": false, "next_cursor": null})
    );
    app.stop().await;
}
