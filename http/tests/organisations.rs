//! Organisations: created by the operator command (`ampflow org create`, `org add-fund`) and
//! listed publicly with the seed's envelopes and cursor pages, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use ampflow_actors::organisations::NewOrganisation;
use ampflow_storage::testdb::{Backend, TestDatabase};
use common::{TestApp, assert_error};
use serde_json::{Value, json};

on_both_databases!(
    organisations_are_listed_in_pages_and_by_country,
    one_organisation_shows_its_funds_in_the_envelope,
    bad_queries_are_refused,
);

fn new_org(name: &str, country: &str) -> NewOrganisation {
    NewOrganisation {
        name: name.into(),
        country: country.into(),
        status: "verified".into(),
        description: Some(format!("{name} helps")),
        website: Some("https://example.org".into()),
        logo_url: None,
    }
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    app.send(app.client.get(app.url(path))).await
}

async fn organisations_are_listed_in_pages_and_by_country(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for (i, country) in ["DE", "FR", "de", "DE", "GB"].iter().enumerate() {
        let org = app
            .app()
            .actors()
            .organisations()
            .create(&new_org(&format!("Org {i}"), country))
            .await
            .unwrap();
        ids.push(org.id);
        app.clock.advance_ms(1);
    }
    let (status, page) = get(&app, "/public/organisations?limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["id"], ids[0].as_str());
    assert_eq!(page["data"][0]["status"], "verified");
    assert_eq!(
        page["data"][0]["profile"]["website"],
        "https://example.org/"
    );
    assert!(page["data"][0].get("funds").is_none());
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = page["next_cursor"].as_str().map(str::to_string);
    seen.extend(
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_string()),
    );
    while let Some(c) = cursor {
        let (status, page) = get(&app, &format!("/public/organisations?limit=2&cursor={c}")).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_string()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            assert_eq!(page["has_more"], false);
        }
    }
    assert_eq!(seen, ids, "every organisation once, oldest first");

    let (status, german) = get(&app, "/public/organisations?country=de").await;
    assert_eq!(status, 200, "{german}");
    let german: Vec<&str> = german["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        german,
        vec![ids[0].as_str(), ids[2].as_str(), ids[3].as_str()]
    );
    let (_, none) = get(&app, "/public/organisations?country=US").await;
    assert_eq!(
        none,
        json!({"data": [], "has_more": false, "next_cursor": null})
    );
    app.stop().await;
}

async fn one_organisation_shows_its_funds_in_the_envelope(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let org = app
        .app()
        .actors()
        .organisations()
        .create(&new_org("Clean Water", "KE"))
        .await
        .unwrap();
    let fund = app
        .app()
        .actors()
        .organisations()
        .add_fund(&org.id, "Wells", Some("Drilling"))
        .await
        .unwrap();
    assert!(fund.id.starts_with("fund_"));
    assert!(
        app.app()
            .actors()
            .organisations()
            .add_fund("org_missing", "x", None)
            .await
            .is_err()
    );
    let response = app
        .client
        .get(app.url(&format!("/public/organisations/{}", org.id)))
        .header("x-request-id", "req_test_42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["meta"]["request_id"], "req_test_42");
    assert_eq!(body["data"]["id"], org.id.as_str());
    assert_eq!(body["data"]["name"], "Clean Water");
    assert_eq!(body["data"]["country"], "KE");
    assert_eq!(body["data"]["profile"]["description"], "Clean Water helps");
    assert_eq!(
        body["data"]["funds"],
        json!([{"id": fund.id, "name": "Wells", "description": "Drilling"}])
    );
    assert!(body["data"]["created_at"].as_str().unwrap().ends_with('Z'));

    for id in ["org_0000", "nope", "org_0123456789abcdef0123456789abcdef"] {
        let (status, body) = get(&app, &format!("/public/organisations/{id}")).await;
        assert_error(status, &body, 404, "not_found", None);
    }
    app.stop().await;
}

async fn bad_queries_are_refused(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=forged", "cursor"),
        ("country=DEU", "country"),
    ] {
        let (status, body) = get(&app, &format!("/public/organisations?{query}")).await;
        assert_error(status, &body, 400, "invalid_request", Some(param));
    }
    let (status, body) = get(&app, "/public/organisations?limit=abc").await;
    assert_error(status, &body, 400, "invalid_request", None);
    app.stop().await;
}

/// The operator commands, through the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_org_commands_create_organisations_and_funds() {
    let db = TestDatabase::sqlite();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ampflow"))
            .args(args)
            .env("DATABASE_URL", &db.url)
            .output()
            .expect("run ampflow")
    };
    let created = run(&[
        "org",
        "create",
        "--name",
        "Food Bank",
        "--country",
        "fr",
        "--website",
        "https://food.example",
    ]);
    assert!(created.status.success(), "{created:?}");
    let id = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(id.starts_with("org_"), "{id}");
    let fund = run(&["org", "add-fund", "--organisation", &id, "--name", "Winter"]);
    assert!(fund.status.success(), "{fund:?}");
    assert!(String::from_utf8_lossy(&fund.stdout).starts_with("fund_"));

    let refused = run(&["org", "create", "--name", "X", "--country", "France"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("ISO 3166-1"),
        "{refused:?}"
    );
    let refused = run(&[
        "org",
        "create",
        "--name",
        "X",
        "--country",
        "FR",
        "--website",
        "http://x.example",
    ]);
    assert!(!refused.status.success());
    let refused = run(&[
        "org",
        "add-fund",
        "--organisation",
        "org_nope",
        "--name",
        "W",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("org_nope"));

    let storage = ampflow_storage::Storage::connect(&db.settings())
        .await
        .unwrap();
    let org = storage
        .organisations()
        .organisation(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.country, "FR");
    assert_eq!(org.status, ampflow_storage::OrganisationStatus::Verified);
    assert_eq!(
        storage.organisations().funds_of(&id).await.unwrap().len(),
        1
    );
}
