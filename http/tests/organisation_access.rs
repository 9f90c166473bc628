//! Organisation membership and roles (issue 6): what members, admins and outsiders may do on
//! each organisation endpoint, members listing their organisation's donations, Stripe Connect
//! onboarding, the audit log's paging and scope, and the operator commands (`ampflow user
//! create`, `ampflow org add-member` / `remove-member`); on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use ampflow_storage::testdb::{Backend, TestDatabase};
use ampflow_storage::{DonationRecord, DonationStatus, prefixed_id};
use common::dashboard::*;
use common::{TestApp, Wallet, assert_error};
use serde_json::json;

on_both_databases!(
    members_admins_and_outsiders_on_each_organisation_endpoint,
    an_organisation_patch_is_validated_and_audited,
    stripe_connect_answers_a_signed_onboarding_url,
    members_list_their_organisations_donations,
    audit_events_are_paged_and_scoped_to_admins,
);

struct Org {
    id: String,
    admin: Session,
    member: Session,
    outsider: Session,
    admin_id: String,
    member_id: String,
}

async fn organisation(app: &TestApp, name: &str) -> String {
    common::verified_organisation(app, name, Some("Helps")).await
}

async fn org_with_people(app: &TestApp) -> Org {
    let id = organisation(app, "Food Bank").await;
    let admin_id = create_member(app, &id, "admin@example.org", "admin").await;
    let member_id = create_member(app, &id, "member@example.org", "member").await;
    create_user(app, "outsider@example.org").await;
    Org {
        admin: login(app, "admin@example.org").await,
        member: login(app, "member@example.org").await,
        outsider: login(app, "outsider@example.org").await,
        id,
        admin_id,
        member_id,
    }
}

async fn members_admins_and_outsiders_on_each_organisation_endpoint(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_people(&app).await;
    let other = organisation(&app, "Elsewhere").await;
    let (status, mine) = call(&app, "GET", "/me/organisations", &org.member, None).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
    assert_eq!(mine["data"][0]["id"], org.id.as_str());
    assert_eq!(mine["data"][0]["role"], "member");
    assert_eq!(mine["data"][0]["profile"]["description"], "Helps");
    let (_, mine) = call(&app, "GET", "/me/organisations", &org.outsider, None).await;
    assert_eq!(mine["data"], json!([]));

    let path = format!("/organisations/{}", org.id);
    let (status, body) = call(&app, "GET", &path, &org.member, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["role"], "member");
    assert_eq!(body["data"]["funds"], json!([]));
    assert_eq!(
        call(&app, "GET", &path, &org.admin, None).await.1["data"]["role"],
        "admin"
    );
    let (status, body) = call(&app, "GET", &path, &org.outsider, None).await;
    assert_error(status, &body, 403, "authorization_error", None);
    let (status, body) = call(
        &app,
        "GET",
        &format!("/organisations/{other}"),
        &org.admin,
        None,
    )
    .await;
    assert_error(status, &body, 403, "authorization_error", None);
    let (status, body) = call(&app, "GET", "/organisations/org_nope", &org.admin, None).await;
    assert_error(status, &body, 404, "not_found", None);

    let patch = json!({"name": "Food Bank Berlin"});
    for who in [&org.member, &org.outsider] {
        let (status, body) = call(&app, "PATCH", &path, who, Some(patch.clone())).await;
        assert_error(status, &body, 403, "authorization_error", None);
    }
    let connect = format!("/organisations/{}/stripe/connect", org.id);
    for who in [&org.member, &org.outsider] {
        let (status, body) = call(&app, "GET", &connect, who, None).await;
        assert_error(status, &body, 403, "authorization_error", None);
    }
    let (status, body) = call(&app, "GET", &connect, &org.admin, None).await;
    assert_error(status, &body, 503, "stripe_connect_not_configured", None);
    for (method, path) in [
        ("GET", "/me/organisations".to_string()),
        ("GET", path.clone()),
        ("PATCH", path.clone()),
        ("GET", connect.clone()),
        ("GET", "/audit-events".to_string()),
    ] {
        let request = app.client.request(method.parse().unwrap(), app.url(&path));
        let (status, body) = app.send(request).await;
        assert_error(status, &body, 401, "authentication_error", None);
    }
    // Removing the member takes effect at once.
    app.app()
        .actors()
        .organisations()
        .remove_member(&org.id, "member@example.org")
        .await
        .unwrap();
    let (status, _) = call(&app, "GET", &path, &org.member, None).await;
    assert_eq!(status, 403);
    app.stop().await;
}

async fn an_organisation_patch_is_validated_and_audited(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_people(&app).await;
    let path = format!("/organisations/{}", org.id);
    for (body, param) in [
        (json!({"name": ""}), Some("name")),
        (
            json!({"profile": {"website": "http://insecure.example"}}),
            Some("profile.website"),
        ),
        (
            json!({"profile": {"logo_url": "javascript:alert(1)"}}),
            Some("profile.logo_url"),
        ),
        (
            json!({"profile": {"description": "x".repeat(5_001)}}),
            Some("profile.description"),
        ),
        (json!({"status": "verified"}), None),
        (json!({"country": "FR"}), None),
        (json!({}), None),
    ] {
        let (status, answer) = call(&app, "PATCH", &path, &org.admin, Some(body)).await;
        assert_error(status, &answer, 400, "invalid_request", param);
    }
    let body = json!({"name": "Food Bank Berlin",
        "profile": {"website": "https://food.example", "description": null}});
    let (status, answer) = call(&app, "PATCH", &path, &org.admin, Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["name"], "Food Bank Berlin");
    assert_eq!(
        answer["data"]["profile"]["website"],
        "https://food.example/"
    );
    assert_eq!(answer["data"]["profile"]["description"], json!(null));
    assert_eq!(answer["data"]["country"], "DE");
    let (_, public) = app
        .send(
            app.client
                .get(app.url(&format!("/public/organisations/{}", org.id))),
        )
        .await;
    assert_eq!(public["data"]["name"], "Food Bank Berlin");
    let (_, page) = call(
        &app,
        "GET",
        &format!("/audit-events?organisation_id={}", org.id),
        &org.admin,
        None,
    )
    .await;
    let row = &page["data"][0];
    assert_eq!(row["action"], "organisation.updated");
    assert_eq!(row["actor"], json!({"type": "user", "id": org.admin_id}));
    assert_eq!(row["target"], json!({"type": "organisation", "id": org.id}));
    assert_eq!(row["ip_address"], "203.0.113.45");
    assert_eq!(
        row["details"]["changed"],
        json!({"name": "Food Bank Berlin", "website": "https://food.example/", "description": null})
    );
    app.stop().await;
}

async fn stripe_connect_answers_a_signed_onboarding_url(backend: Backend) {
    let secret = "a-state-secret-of-at-least-32-characters";
    let Some(app) = TestApp::start_with(backend, |s| {
        dashboard_settings(s);
        s.stripe_connect.client_id = Some("ca_test123".into());
        s.stripe_connect.redirect_url = Some("https://dashboard.example/stripe/return".into());
        s.stripe_connect.state_secret = Some(ampflow_http::config::Secret::new(secret));
    })
    .await
    else {
        return;
    };
    let org = org_with_people(&app).await;
    let connect = format!("/organisations/{}/stripe/connect", org.id);
    let (status, body) = call(&app, "GET", &connect, &org.admin, None).await;
    assert_eq!(status, 200, "{body}");
    let url = url::Url::parse(body["data"]["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.host_str(), Some("connect.stripe.com"));
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], "ca_test123");
    assert_eq!(query["response_type"], "code");
    assert_eq!(
        query["redirect_uri"],
        "https://dashboard.example/stripe/return"
    );
    let now = ampflow_types::Clock::now_ms(&app.clock);
    let state = ampflow_http::auth::connect::verify_state(secret, &query["state"], now).unwrap();
    assert_eq!(state.organisation_id, org.id);
    assert_eq!(state.user_id, org.admin_id);
    assert!(
        ampflow_http::auth::connect::verify_state("another-secret", &query["state"], now).is_none()
    );
    assert!(body["data"]["expires_at"].is_string());
    let (status, _) = call(&app, "GET", &connect, &org.member, None).await;
    assert_eq!(status, 403);
    app.stop().await;
}

async fn members_list_their_organisations_donations(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_people(&app).await;
    let other = organisation(&app, "Elsewhere").await;
    let storage = app.app().storage();
    let now = ampflow_types::Clock::now_ms(&app.clock);
    let mut ours = Vec::new();
    for (i, organisation_id) in [&org.id, &other, &org.id, &org.id].iter().enumerate() {
        let donation = DonationRecord {
            id: prefixed_id("don"),
            organisation_id: organisation_id.to_string(),
            fund_id: None,
            wallet_address: Some(
                ampflow_types::WalletAddress::parse(&Wallet::random().address()).unwrap(),
            ),
            amount: 1_000 + i as i64,
            currency: "EUR".into(),
            donor_email: "donor@example.com".into(),
            donor_name: None,
            status: DonationStatus::Pending,
            stripe_payment_intent_id: None,
            failure_reason: None,
            created_at_ms: now + i as i64,
            updated_at_ms: now + i as i64,
            version: 0,
            source: ampflow_storage::DonationSource::Stripe,
        };
        storage
            .donations()
            .insert_donation(&donation)
            .await
            .unwrap();
        if *organisation_id == &org.id {
            ours.push(donation.id);
        }
    }
    ours.reverse();
    let mut seen = Vec::new();
    let mut path = format!("/donations?organisation_id={}&limit=2", org.id);
    loop {
        let (status, page) = call(&app, "GET", &path, &org.member, None).await;
        assert_eq!(status, 200, "{page}");
        for d in page["data"].as_array().unwrap() {
            assert_eq!(d["organisation_id"], org.id.as_str());
            seen.push(d["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!(
                    "/donations?organisation_id={}&limit=2&cursor={cursor}",
                    org.id
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, ours);
    let path = format!("/donations?organisation_id={}", org.id);
    let (status, body) = call(&app, "GET", &path, &org.outsider, None).await;
    assert_error(status, &body, 403, "authorization_error", None);
    let (status, body) = app.send(app.client.get(app.url(&path))).await;
    assert_error(status, &body, 401, "authentication_error", None);
    // A wallet's token is not a member's session.
    let token = app.access_token(&Wallet::random()).await;
    let (status, body) = app.get_auth(&path, &token).await;
    assert_error(status, &body, 401, "authentication_error", None);
    // Without organisation_id, the wallet listing is unchanged.
    let (status, body) = app.get_auth("/donations", &token).await;
    assert_eq!((status, body["data"].clone()), (200, json!([])));
    // A member's session must name the organisation.
    let (status, body) = call(&app, "GET", "/donations", &org.member, None).await;
    assert_error(
        status,
        &body,
        400,
        "invalid_request",
        Some("organisation_id"),
    );
    app.stop().await;
}

async fn audit_events_are_paged_and_scoped_to_admins(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_people(&app).await;
    create_user(&app, "late@example.org").await;
    app.app()
        .actors()
        .organisations()
        .set_member(&org.id, "late@example.org", "member")
        .await
        .unwrap();
    app.app()
        .actors()
        .organisations()
        .set_member(&org.id, "late@example.org", "admin")
        .await
        .unwrap();
    let base = format!("/audit-events?organisation_id={}", org.id);
    let mut actions = Vec::new();
    let mut path = format!("{base}&limit=2");
    let mut pages = 0;
    loop {
        let (status, page) = call(&app, "GET", &path, &org.admin, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for event in page["data"].as_array().unwrap() {
            assert_eq!(event["organisation_id"], org.id.as_str());
            assert!(event["id"].as_str().unwrap().starts_with("aud_"));
            actions.push(event["action"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{base}&limit=2&cursor={cursor}"),
            None => {
                assert_eq!(page["has_more"], false);
                break;
            }
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(
        actions,
        [
            "membership.role_changed",
            "membership.added",
            "membership.added",
            "membership.added"
        ]
    );
    let (_, page) = call(&app, "GET", &format!("{base}&limit=1"), &org.admin, None).await;
    let row = &page["data"][0];
    assert_eq!(row["actor"], json!({"type": "system", "id": null}));
    assert_eq!(
        row["details"],
        json!({"role": "admin", "previous_role": "member"})
    );
    for who in [&org.member, &org.outsider] {
        let (status, body) = call(&app, "GET", &base, who, None).await;
        assert_error(status, &body, 403, "authorization_error", None);
    }
    for query in ["limit=0", "limit=201", "cursor=forged"] {
        let (status, body) = call(&app, "GET", &format!("{base}&{query}"), &org.admin, None).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    // Without organisation_id: your own events, nobody else's.
    let (status, page) = call(&app, "GET", "/audit-events", &org.member, None).await;
    assert_eq!(status, 200, "{page}");
    for event in page["data"].as_array().unwrap() {
        let mine = event["actor"]["id"] == org.member_id.as_str()
            || event["target"]["id"] == org.member_id.as_str();
        assert!(mine, "{event}");
    }
    let names: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["session.login", "membership.added", "user.created"]);
    app.stop().await;
}

fn run(
    db: &TestDatabase,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ampflow"));
    command
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env_remove("AMPFLOW_USER_PASSWORD")
        .env("AMPFLOW_AUTH__ARGON2_MEMORY_KIB", "64")
        .env("AMPFLOW_AUTH__ARGON2_ITERATIONS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("run ampflow");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The operator commands, through the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_and_member_commands_create_users_and_roles() {
    let db = TestDatabase::sqlite();
    let created = run(
        &db,
        &[
            "user",
            "create",
            "--email",
            "Jane@Example.org",
            "--name",
            "Jane",
        ],
        Some("a long enough password\n"),
        &[],
    );
    assert!(created.status.success(), "{created:?}");
    let user_id = stdout(&created);
    assert!(user_id.starts_with("usr_"), "{user_id}");
    let from_env = run(
        &db,
        &["user", "create", "--email", "bob@example.org"],
        None,
        &[("AMPFLOW_USER_PASSWORD", "another long password")],
    );
    assert!(from_env.status.success(), "{from_env:?}");
    for (args, stdin, needle) in [
        (
            vec!["user", "create", "--email", "jane@example.org"],
            "a long enough password\n",
            "exists",
        ),
        (
            vec!["user", "create", "--email", "x@example.org"],
            "short\n",
            "password",
        ),
        (
            vec!["user", "create", "--email", "not-an-email"],
            "a long enough password\n",
            "email",
        ),
        (
            vec!["user", "create", "--email", "y@example.org"],
            "\n",
            "password",
        ),
    ] {
        let refused = run(&db, &args, Some(stdin), &[]);
        assert!(!refused.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("a long enough password"), "{stderr}");
    }
    let org = run(
        &db,
        &["org", "create", "--name", "Food Bank", "--country", "DE"],
        None,
        &[],
    );
    let org_id = stdout(&org);
    let added = run(
        &db,
        &[
            "org",
            "add-member",
            "--organisation",
            &org_id,
            "--email",
            "jane@example.org",
            "--role",
            "member",
        ],
        None,
        &[],
    );
    assert!(added.status.success(), "{added:?}");
    assert_eq!(stdout(&added), format!("{user_id} in {org_id}: member"));
    let promoted = run(
        &db,
        &[
            "org",
            "add-member",
            "--organisation",
            &org_id,
            "--email",
            "jane@example.org",
            "--role",
            "admin",
        ],
        None,
        &[],
    );
    assert_eq!(
        stdout(&promoted),
        format!("{user_id} in {org_id}: admin (was member)")
    );
    for args in [
        vec![
            "org",
            "add-member",
            "--organisation",
            org_id.as_str(),
            "--email",
            "jane@example.org",
            "--role",
            "owner",
        ],
        vec![
            "org",
            "add-member",
            "--organisation",
            "org_nope",
            "--email",
            "jane@example.org",
        ],
        vec![
            "org",
            "add-member",
            "--organisation",
            org_id.as_str(),
            "--email",
            "nobody@example.org",
        ],
    ] {
        assert!(!run(&db, &args, None, &[]).status.success(), "{args:?}");
    }
    let storage = ampflow_storage::Storage::connect(&db.settings())
        .await
        .unwrap();
    assert_eq!(
        storage
            .organisations()
            .membership(&org_id, &user_id)
            .await
            .unwrap(),
        Some(ampflow_storage::Role::Admin)
    );
    let user = storage
        .dashboard()
        .dashboard_user(&user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.email, "jane@example.org");
    assert!(user.password_hash.starts_with("$argon2id$"));
    let removed = run(
        &db,
        &[
            "org",
            "remove-member",
            "--organisation",
            &org_id,
            "--email",
            "jane@example.org",
        ],
        None,
        &[],
    );
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(
        storage
            .organisations()
            .membership(&org_id, &user_id)
            .await
            .unwrap(),
        None
    );
    let events = storage
        .audit()
        .audit_events(
            &ampflow_storage::AuditScope::Subject(user_id.clone()),
            None,
            10,
        )
        .await
        .unwrap();
    let actions: Vec<_> = events.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.created",
            "membership.added",
            "membership.role_changed",
            "membership.removed"
        ]
    );
}
