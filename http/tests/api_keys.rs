//! Organisation API keys and access tokens (issue 6, seeds 000 and 001): keys shown once and
//! stored hashed, every policy enforced on its endpoint, tokens signed with the key's secret,
//! a deposed secret valid inside its window and refused after it, revoking old and all tokens,
//! an issuer minting tokens for another key, the audit rows each action writes, the rate tier
//! a key is counted in, and bad input; on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ampflow_http::access_admin::set_member;
use ampflow_storage::AuditScope;
use ampflow_storage::testdb::Backend;
use ampflow_types::Clock;
use common::dashboard::*;
use common::{TestApp, assert_error};
use serde_json::{Value, json};

on_both_databases!(
    a_key_is_shown_once_stored_hashed_and_refused_once_deleted,
    each_policy_opens_its_endpoint_and_no_other,
    a_deposed_secret_verifies_inside_its_window_only,
    revoking_old_and_all_tokens,
    an_issuer_mints_tokens_for_another_key_of_its_organisation,
    every_key_action_writes_an_audit_row,
    keys_are_counted_in_the_api_key_rate_tier,
    bad_input_on_the_key_endpoints_answers_400,
);

const DAY_MS: i64 = 86_400_000;
const ALL_POLICIES: [&str; 8] = [
    "audit:read",
    "donations:read",
    "donations:write",
    "keys:admin",
    "ledger:read",
    "organisations:read",
    "organisations:write",
    "tokens:issue",
];

struct Org {
    id: String,
    admin: Session,
    member: Session,
}

async fn organisation(app: &TestApp, name: &str) -> String {
    common::verified_organisation(app, name, None).await
}

async fn org_with_admin(app: &TestApp) -> Org {
    let id = organisation(app, "Food Bank").await;
    create_member(app, &id, "admin@example.org", "admin").await;
    create_member(app, &id, "member@example.org", "member").await;
    Org {
        admin: login(app, "admin@example.org").await,
        member: login(app, "member@example.org").await,
        id,
    }
}

/// `GET /admin/api-keys` of the organisation, by its admin.
async fn list_keys(app: &TestApp, org: &Org) -> (u16, Value) {
    let path = format!("/admin/api-keys?organisation_id={}", org.id);
    call(app, "GET", &path, &org.admin, None).await
}

/// A request with `Authorization: Bearer <bearer>`.
async fn with_bearer(
    app: &TestApp,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.send(request).await
}

/// A new key of the organisation with `policies`, made by its admin: (id, `sk_…`).
async fn new_key(app: &TestApp, org: &Org, policies: &[&str]) -> (String, String) {
    let (status, body) = call(
        app,
        "POST",
        "/admin/api-keys",
        &org.admin,
        Some(json!({"organisation_id": org.id, "name": "integration", "policies": policies})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["data"]["id"].as_str().unwrap().to_string(),
        body["data"]["key"].as_str().unwrap().to_string(),
    )
}

/// `POST /admin/api-keys/{key_id}/tokens` by the admin's session: the token.
async fn mint(app: &TestApp, org: &Org, key_id: &str, body: Value) -> String {
    let path = format!("/admin/api-keys/{key_id}/tokens");
    let (status, answer) = call(app, "POST", &path, &org.admin, Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["data"]["token_type"], "Bearer");
    assert_eq!(answer["data"]["key_id"], key_id);
    answer["data"]["token"].as_str().unwrap().to_string()
}

/// The status `GET /donations` answers with `bearer` (a key with `donations:read`).
async fn reads(app: &TestApp, bearer: &str) -> u16 {
    with_bearer(app, "GET", "/donations", bearer, None).await.0
}

async fn a_key_is_shown_once_stored_hashed_and_refused_once_deleted(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    let (status, body) = call(
        &app,
        "POST",
        "/admin/api-keys",
        &org.admin,
        Some(json!({"organisation_id": org.id, "name": "CRM sync", "policies": ["donations:read", "ledger:read", "donations:read"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let key = body["data"]["key"].as_str().unwrap().to_string();
    let id = body["data"]["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk_test_"), "{key}");
    assert!(id.starts_with("key_"), "{id}");
    assert_eq!(body["data"]["mode"], "test");
    assert_eq!(
        body["data"]["policies"],
        json!(["donations:read", "ledger:read"])
    );
    assert!(
        body["data"]["key_hint"]
            .as_str()
            .unwrap()
            .starts_with("sk_test_")
    );
    assert_eq!(body["data"]["deposed_secret_expires_at"], Value::Null);

    // Listed and read without the key; only its hash is stored.
    let (status, list) = list_keys(&app, &org).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0].get("key").is_none(), "{list}");
    assert!(!list.to_string().contains(&key[8..]));
    let stored = app
        .app()
        .state()
        .storage()
        .api_key(&id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.key_hash, key);
    assert!(!format!("{stored:?}").contains(&key[8..]));
    let (status, one) = call(
        &app,
        "GET",
        &format!("/admin/api-keys/{id}"),
        &org.admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert!(one["data"].get("key").is_none());

    // Used directly; last use recorded.
    assert_eq!(reads(&app, &key).await, 200);
    let used = app
        .app()
        .state()
        .storage()
        .api_key(&id)
        .await
        .unwrap()
        .unwrap();
    assert!(used.last_used_at_ms.is_some());

    // A wrong key, a key of the other mode and a malformed one are refused.
    let mut wrong = key.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = with_bearer(&app, "GET", "/donations", &wrong, None).await;
    assert_error(status, &body, 401, "authentication_error", None);
    let live = key.replacen("sk_test_", "sk_live_", 1);
    let (status, body) = with_bearer(&app, "GET", "/donations", &live, None).await;
    assert_error(status, &body, 401, "authentication_error", None);
    let (status, body) = with_bearer(&app, "GET", "/donations", "sk_test_short", None).await;
    assert_error(status, &body, 401, "authentication_error", None);

    // A member may not manage keys; deleting stops the key and its tokens at once.
    let (status, body) = call(
        &app,
        "POST",
        "/admin/api-keys",
        &org.member,
        Some(json!({"organisation_id": org.id, "name": "x", "policies": ["donations:read"]})),
    )
    .await;
    assert_error(status, &body, 403, "authorization_error", None);
    let token = mint(&app, &org, &id, json!({})).await;
    assert_eq!(reads(&app, &token).await, 200);
    let (status, body) = call(
        &app,
        "DELETE",
        &format!("/admin/api-keys/{id}"),
        &org.admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(reads(&app, &key).await, 401);
    assert_eq!(reads(&app, &token).await, 401);
    let (status, body) = call(
        &app,
        "GET",
        &format!("/admin/api-keys/{id}"),
        &org.admin,
        None,
    )
    .await;
    assert_error(status, &body, 404, "not_found", None);
    let (_, list) = list_keys(&app, &org).await;
    assert_eq!(list["data"], json!([]));
    app.stop().await;
}

async fn each_policy_opens_its_endpoint_and_no_other(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    let other_org = organisation(&app, "Elsewhere").await;
    let (target, _) = new_key(&app, &org, &["donations:read"]).await;
    let donation = json!({
        "organisation_id": org.id, "amount": 1000, "currency": "EUR",
        "donor_email": "donor@example.org"
    });
    // (what it needs, method, path, body); `tokens:issue` is also open to `keys:admin`.
    let endpoints: Vec<(&[&str], &str, String, Option<Value>)> = vec![
        (&["donations:read"], "GET", "/donations".into(), None),
        (
            &["donations:write"],
            "POST",
            "/donations".into(),
            Some(donation),
        ),
        (
            &["ledger:read"],
            "GET",
            format!("/public/organisations/{}/ledger", org.id),
            None,
        ),
        (
            &["organisations:read"],
            "GET",
            format!("/organisations/{}", org.id),
            None,
        ),
        (
            &["organisations:write"],
            "PATCH",
            format!("/organisations/{}", org.id),
            Some(json!({"name": "Food Bank Berlin"})),
        ),
        (&["audit:read"], "GET", "/audit-events".into(), None),
        (&["keys:admin"], "GET", "/admin/api-keys".into(), None),
        (
            &["tokens:issue", "keys:admin"],
            "POST",
            format!("/admin/api-keys/{target}/tokens"),
            Some(json!({"expires_in_days": 1})),
        ),
    ];
    for policy in ALL_POLICIES {
        let (_, key) = new_key(&app, &org, &[policy]).await;
        for (needs, method, path, body) in &endpoints {
            let (status, answer) = with_bearer(&app, method, path, &key, body.clone()).await;
            if needs.contains(&policy) {
                assert!(
                    status != 401 && status != 403,
                    "{policy} on {method} {path}: {status} {answer}"
                );
            } else {
                assert_error(status, &answer, 403, "authorization_error", None);
                assert!(
                    answer["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("lacks"),
                    "{policy} on {method} {path}: {answer}"
                );
            }
        }
    }
    // Every policy, but another organisation's resources stay closed.
    let (_, all) = new_key(&app, &org, &ALL_POLICIES).await;
    for (method, path) in [
        ("GET", format!("/donations?organisation_id={other_org}")),
        ("GET", format!("/organisations/{other_org}")),
        ("GET", format!("/audit-events?organisation_id={other_org}")),
        (
            "GET",
            format!("/admin/api-keys?organisation_id={other_org}"),
        ),
        ("GET", format!("/public/organisations/{other_org}/ledger")),
    ] {
        let (status, answer) = with_bearer(&app, method, &path, &all, None).await;
        assert_error(status, &answer, 403, "authorization_error", None);
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("another organisation"),
            "{path}: {answer}"
        );
    }
    // Session-only endpoints refuse keys; anonymous ledger reads stay public.
    let (status, answer) = with_bearer(&app, "GET", "/me/organisations", &all, None).await;
    assert_error(status, &answer, 401, "authentication_error", None);
    let ledger = format!("/public/organisations/{}/ledger", org.id);
    assert_eq!(app.send(app.client.get(app.url(&ledger))).await.0, 200);
    // A key with the policy reads the organisation with the role `api_key`.
    let (status, answer) = with_bearer(
        &app,
        "GET",
        &format!("/organisations/{}", org.id),
        &all,
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["role"], "api_key");
    app.stop().await;
}

async fn a_deposed_secret_verifies_inside_its_window_only(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let mut org = org_with_admin(&app).await;
    let (id, key) = new_key(&app, &org, &["donations:read"]).await;
    let first = mint(&app, &org, &id, json!({"expires_in_days": 90})).await;
    assert_eq!(reads(&app, &first).await, 200);

    let rotate = format!("/admin/api-keys/{id}/rotate");
    let (status, body) = call(&app, "POST", &rotate, &org.admin, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["data"]["deposed_secret_expires_at"].is_string(),
        "{body}"
    );
    let second = mint(&app, &org, &id, json!({"expires_in_days": 90})).await;
    assert_eq!(reads(&app, &first).await, 200, "deposed, inside its window");
    assert_eq!(reads(&app, &second).await, 200);

    app.clock.advance_ms(29 * DAY_MS);
    assert_eq!(reads(&app, &first).await, 200, "29 days after the rotation");
    app.clock.advance_ms(DAY_MS + 1);
    assert_eq!(reads(&app, &first).await, 401, "30 days after the rotation");
    assert_eq!(reads(&app, &second).await, 200);
    assert_eq!(
        reads(&app, &key).await,
        200,
        "the sk_ key itself is unchanged"
    );

    // Rotating again drops the deposed secret at once: only one is ever deposed. (The admin's
    // session expired meanwhile.)
    org.admin = login(&app, "admin@example.org").await;
    let third_secret_token = {
        let (status, _) = call(&app, "POST", &rotate, &org.admin, None).await;
        assert_eq!(status, 200);
        mint(&app, &org, &id, json!({})).await
    };
    assert_eq!(
        reads(&app, &second).await,
        200,
        "second is now the deposed one"
    );
    let (status, _) = call(&app, "POST", &rotate, &org.admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        reads(&app, &second).await,
        401,
        "dropped by the next rotation"
    );
    assert_eq!(reads(&app, &third_secret_token).await, 200);

    // A token past its own expiry is refused whatever its secret.
    let short = mint(&app, &org, &id, json!({"expires_in_days": 1})).await;
    assert_eq!(reads(&app, &short).await, 200);
    app.clock.advance_ms(DAY_MS + 10_000);
    let (status, body) = with_bearer(&app, "GET", "/donations", &short, None).await;
    assert_error(status, &body, 401, "authentication_error", None);

    // Minting with `rotate` deposes the secret first.
    let before = mint(&app, &org, &id, json!({})).await;
    let after = mint(&app, &org, &id, json!({"rotate": true})).await;
    let stored = app
        .app()
        .state()
        .storage()
        .api_key(&id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.deposed.is_some());
    assert_eq!(reads(&app, &before).await, 200);
    assert_eq!(reads(&app, &after).await, 200);
    app.stop().await;
}

async fn revoking_old_and_all_tokens(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    let (id, key) = new_key(&app, &org, &["donations:read"]).await;
    let old = mint(&app, &org, &id, json!({})).await;
    let (status, _) = call(
        &app,
        "POST",
        &format!("/admin/api-keys/{id}/rotate"),
        &org.admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let current = mint(&app, &org, &id, json!({})).await;
    assert_eq!(reads(&app, &old).await, 200);

    let revoke = format!("/admin/api-keys/{id}/revoke-tokens");
    let (status, body) = call(
        &app,
        "POST",
        &revoke,
        &org.admin,
        Some(json!({"tokens": "old"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["deposed_secret_expires_at"], Value::Null);
    assert_eq!(reads(&app, &old).await, 401);
    assert_eq!(reads(&app, &current).await, 200);

    let another = mint(&app, &org, &id, json!({})).await;
    let (status, _) = call(
        &app,
        "POST",
        &revoke,
        &org.admin,
        Some(json!({"tokens": "all"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reads(&app, &current).await, 401);
    assert_eq!(reads(&app, &another).await, 401);
    assert_eq!(reads(&app, &key).await, 200, "the key itself still works");
    let fresh = mint(&app, &org, &id, json!({})).await;
    assert_eq!(reads(&app, &fresh).await, 200);

    let (status, body) = call(
        &app,
        "POST",
        &revoke,
        &org.admin,
        Some(json!({"tokens": "some"})),
    )
    .await;
    assert_error(status, &body, 400, "invalid_request", Some("tokens"));
    app.stop().await;
}

async fn an_issuer_mints_tokens_for_another_key_of_its_organisation(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    let (issuer_id, issuer) = new_key(&app, &org, &["tokens:issue"]).await;
    let (reader_id, _) = new_key(&app, &org, &["donations:read"]).await;
    let (_, plain) = new_key(&app, &org, &["donations:read"]).await;
    // The issuer works through its own access token too, as seed 001 describes.
    let issuer_token = mint(&app, &org, &issuer_id, json!({})).await;

    let path = format!("/admin/api-keys/{reader_id}/tokens");
    let expires = chrono::DateTime::from_timestamp_millis(app.clock.now_ms() + 3 * DAY_MS)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for bearer in [&issuer, &issuer_token] {
        let (status, body) = with_bearer(
            &app,
            "POST",
            &path,
            bearer,
            Some(json!({"expires-at": expires})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["data"]["expires_at"], expires.as_str());
        let token = body["data"]["token"].as_str().unwrap();
        assert_eq!(reads(&app, token).await, 200);
        // The minted token carries the reader's policies, not the issuer's.
        let (status, _) = with_bearer(&app, "GET", "/admin/api-keys", token, None).await;
        assert_eq!(status, 403);
    }
    // The issuer can do nothing else; a key without the policy cannot mint.
    assert_eq!(reads(&app, &issuer).await, 403);
    let (status, body) = with_bearer(&app, "POST", &path, &plain, Some(json!({}))).await;
    assert_error(status, &body, 403, "authorization_error", None);
    // Nor can an issuer of another organisation.
    let other = Org {
        id: organisation(&app, "Elsewhere").await,
        admin: org.admin.clone(),
        member: org.member.clone(),
    };
    set_member(
        app.app().state().storage(),
        &app.clock,
        &other.id,
        "admin@example.org",
        "admin",
    )
    .await
    .unwrap();
    let (_, foreign_issuer) = new_key(&app, &other, &["tokens:issue"]).await;
    let (status, body) = with_bearer(&app, "POST", &path, &foreign_issuer, Some(json!({}))).await;
    assert_error(status, &body, 403, "authorization_error", None);
    app.stop().await;
}

async fn every_key_action_writes_an_audit_row(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    let (id, key) = new_key(&app, &org, &["donations:read", "keys:admin"]).await;
    let base = format!("/admin/api-keys/{id}");
    let steps: Vec<(&str, String, Option<Value>)> = vec![
        (
            "PATCH",
            base.clone(),
            Some(json!({"name": "renamed", "policies": ["keys:admin"]})),
        ),
        ("POST", format!("{base}/rotate"), None),
        ("POST", format!("{base}/tokens"), Some(json!({}))),
        (
            "POST",
            format!("{base}/revoke-tokens"),
            Some(json!({"tokens": "old"})),
        ),
        (
            "POST",
            format!("{base}/revoke-tokens"),
            Some(json!({"tokens": "all"})),
        ),
    ];
    for (method, path, body) in steps {
        let (status, answer) = call(&app, method, &path, &org.admin, body).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
    }
    // The key acts on itself: its rows name the key, not a user.
    let (status, answer) = with_bearer(&app, "POST", &format!("{base}/rotate"), &key, None).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = call(&app, "DELETE", &base, &org.admin, None).await;
    assert_eq!(status, 200);

    let events = app
        .app()
        .state()
        .storage()
        .audit_events(&AuditScope::Organisation(org.id.clone()), None, 500)
        .await
        .unwrap();
    let key_events: Vec<_> = events
        .iter()
        .rev()
        .filter(|e| e.target.as_ref().is_some_and(|(_, t)| *t == id))
        .collect();
    let actions: Vec<&str> = key_events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "api_key.created",
            "api_key.updated",
            "api_key.rotated",
            "api_key.token_issued",
            "api_key.tokens_revoked",
            "api_key.tokens_revoked",
            "api_key.rotated",
            "api_key.deleted",
        ]
    );
    let by_key = key_events[6];
    assert_eq!(by_key.actor.kind(), "api_key");
    assert_eq!(by_key.actor.id(), Some(id.as_str()));
    assert_eq!(by_key.details["credential"], "key");
    assert_eq!(key_events[0].actor.kind(), "user");
    assert_eq!(
        key_events[1].details["previous_policies"],
        json!(["donations:read", "keys:admin"])
    );
    assert_eq!(key_events[4].details["tokens"], "old");
    assert!(
        key_events[3].details["issued_token_id"]
            .as_str()
            .unwrap()
            .starts_with("tok_")
    );
    // No secret in any row.
    let all =
        serde_json::to_string(&events.iter().map(|e| &e.details).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains(&key[8..]));

    // Admins read them through the API too.
    let (status, page) = call(
        &app,
        "GET",
        &format!("/audit-events?organisation_id={}", org.id),
        &org.admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "api_key.deleted")
    );
    app.stop().await;
}

async fn keys_are_counted_in_the_api_key_rate_tier(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |settings| {
        dashboard_settings(settings);
        settings.rate_limit.enabled = true;
        settings.rate_limit.tiers.api_write.limit = 2;
    })
    .await
    else {
        return;
    };
    let org = org_with_admin(&app).await;
    let (_, key) = new_key(&app, &org, &["donations:read", "organisations:write"]).await;
    let response = app
        .client
        .get(app.url("/donations"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ratelimit-limit"], "500");
    // Writes by the key: 2 allowed, then 429, while the admin's session is counted apart.
    let patch = format!("/organisations/{}", org.id);
    for _ in 0..2 {
        let (status, body) =
            with_bearer(&app, "PATCH", &patch, &key, Some(json!({"name": "A"}))).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = with_bearer(&app, "PATCH", &patch, &key, Some(json!({"name": "A"}))).await;
    assert_error(status, &body, 429, "rate_limit_exceeded", None);
    let (status, _) = call(
        &app,
        "PATCH",
        &patch,
        &org.admin,
        Some(json!({"name": "B"})),
    )
    .await;
    assert_eq!(status, 200);
    // A key that does not verify is counted by IP and refused by the endpoint.
    let (status, _) = with_bearer(
        &app,
        "GET",
        "/donations",
        &format!("{}x", &key[..key.len() - 1]),
        None,
    )
    .await;
    assert_eq!(status, 401);
    app.stop().await;
}

async fn bad_input_on_the_key_endpoints_answers_400(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    let (id, _) = new_key(&app, &org, &["donations:read"]).await;
    let create = |body: Value| call(&app, "POST", "/admin/api-keys", &org.admin, Some(body));
    for (body, param) in [
        (
            json!({"organisation_id": org.id, "name": "", "policies": ["donations:read"]}),
            "name",
        ),
        (
            json!({"organisation_id": org.id, "name": "x".repeat(201), "policies": ["donations:read"]}),
            "name",
        ),
        (
            json!({"organisation_id": org.id, "name": "ok", "policies": []}),
            "policies",
        ),
        (
            json!({"organisation_id": org.id, "name": "ok", "policies": ["root"]}),
            "policies",
        ),
        (
            json!({"organisation_id": org.id, "name": "ok", "policies": ["donations:read"], "mode": "live"}),
            "mode",
        ),
    ] {
        let (status, answer) = create(body.clone()).await;
        assert_error(status, &answer, 400, "invalid_request", Some(param));
    }
    let (status, answer) = create(json!({"organisation_id": org.id, "name": "ok", "policies": ["donations:read"], "extra": 1})).await;
    assert_error(status, &answer, 400, "invalid_request", None);
    let (status, answer) = create(
        json!({"organisation_id": "org_nope", "name": "ok", "policies": ["donations:read"]}),
    )
    .await;
    assert_error(status, &answer, 404, "not_found", None);

    let tokens = format!("/admin/api-keys/{id}/tokens");
    let past = chrono::DateTime::from_timestamp_millis(app.clock.now_ms() - DAY_MS)
        .unwrap()
        .to_rfc3339();
    let far = chrono::DateTime::from_timestamp_millis(app.clock.now_ms() + 400 * DAY_MS)
        .unwrap()
        .to_rfc3339();
    for (body, param) in [
        (json!({"expires-at": past}), Some("expires-at")),
        (json!({"expires-at": far}), Some("expires-at")),
        (json!({"expires-at": "tomorrow"}), Some("expires-at")),
        (json!({"expires_in_days": 0}), Some("expires_in_days")),
        (json!({"expires_in_days": 366}), Some("expires_in_days")),
        (
            json!({"expires-at": "2030-01-01T00:00:00Z", "expires_in_days": 2}),
            None,
        ),
    ] {
        let (status, answer) = call(&app, "POST", &tokens, &org.admin, Some(body)).await;
        assert_error(status, &answer, 400, "invalid_request", param);
    }
    let (status, answer) = call(
        &app,
        "PATCH",
        &format!("/admin/api-keys/{id}"),
        &org.admin,
        Some(json!({})),
    )
    .await;
    assert_error(status, &answer, 400, "invalid_request", None);
    // Unknown or malformed key ids, on every endpoint that names one.
    for id in ["nope", "key_00000000000000000000000000000000"] {
        for (method, suffix, body) in [
            ("GET", "", None),
            ("PATCH", "", Some(json!({"name": "x"}))),
            ("DELETE", "", None),
            ("POST", "/rotate", None),
            ("POST", "/revoke-tokens", Some(json!({"tokens": "old"}))),
            ("POST", "/tokens", Some(json!({}))),
        ] {
            let path = format!("/admin/api-keys/{id}{suffix}");
            let (status, answer) = call(&app, method, &path, &org.admin, body).await;
            assert_error(status, &answer, 404, "not_found", None);
        }
    }
    // Bodies that are not the endpoint's JSON.
    for (method, path) in [
        ("POST", "/admin/api-keys".to_string()),
        ("PATCH", format!("/admin/api-keys/{id}")),
        ("POST", format!("/admin/api-keys/{id}/revoke-tokens")),
        ("POST", format!("/admin/api-keys/{id}/tokens")),
    ] {
        for body in ["{", "[]", "\"text\"", "{\"tokens\": 5, \"name\": []}"] {
            let request = with_session(&app, method, &path, &org.admin)
                .header("content-type", "application/json")
                .body(body);
            let (status, answer) = app.send(request).await;
            assert_error(status, &answer, 400, "invalid_request", None);
        }
    }
    let revoke = format!("/admin/api-keys/{id}/revoke-tokens");
    let (status, answer) = call(&app, "POST", &revoke, &org.admin, Some(json!({}))).await;
    assert_error(status, &answer, 400, "invalid_request", Some("tokens"));
    let (status, answer) = call(&app, "GET", "/admin/api-keys", &org.admin, None).await;
    assert_error(
        status,
        &answer,
        400,
        "invalid_request",
        Some("organisation_id"),
    );
    let (status, answer) = app.send(app.client.get(app.url("/admin/api-keys"))).await;
    assert_error(status, &answer, 401, "authentication_error", None);
    app.stop().await;
}
