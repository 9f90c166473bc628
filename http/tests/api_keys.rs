//! Organisation API keys and access tokens (issue 6, seeds 000 and 001): keys shown once and
//! stored hashed, every policy enforced on its endpoint, tokens signed with the key's secret,
//! a deposed secret valid inside its window and refused after it, revoking old and all tokens,
//! an issuer minting tokens for another key, the audit rows each action writes, the rate tier
//! a key is counted in, and bad input; and (issue 14) issuers bounded by their delegation: no
//! escalation through a keys:admin or tokens:issue target or a rotation, delegated tokens held
//! to their signed scope; on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ampflow_storage::AuditScope;
use ampflow_storage::testdb::Backend;
use ampflow_types::Clock;
use base64::Engine;
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
    a_key_holding_only_tokens_issue_cannot_escalate,
    an_issuer_mints_only_within_its_delegation,
    a_delegated_token_never_gains_what_its_key_gains,
    forged_scope_claims_fail_verification,
    delegations_are_checked_and_belong_to_issuers_only,
);

const DAY_MS: i64 = 86_400_000;

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

/// A second organisation ("Elsewhere") whose admin is also `org`'s admin, with the same
/// sessions.
async fn elsewhere_with_the_same_admin(app: &TestApp, org: &Org) -> Org {
    let other = Org {
        id: organisation(app, "Elsewhere").await,
        admin: org.admin.clone(),
        member: org.member.clone(),
    };
    app.app()
        .actors()
        .organisations()
        .set_member(&other.id, "admin@example.org", "admin")
        .await
        .unwrap();
    other
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

/// A new key of the organisation holding only `tokens:issue`, delegating these: (id, `sk_…`).
async fn new_issuer(
    app: &TestApp,
    org: &Org,
    delegable_policies: Option<&[&str]>,
    delegable_keys: Option<&[&str]>,
) -> (String, String) {
    let mut body =
        json!({"organisation_id": org.id, "name": "issuer", "policies": ["tokens:issue"]});
    if let Some(policies) = delegable_policies {
        body["delegable_policies"] = json!(policies);
    }
    if let Some(keys) = delegable_keys {
        body["delegable_keys"] = json!(keys);
    }
    let (status, answer) = call(app, "POST", "/admin/api-keys", &org.admin, Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    (
        answer["data"]["id"].as_str().unwrap().to_string(),
        answer["data"]["key"].as_str().unwrap().to_string(),
    )
}

/// `POST /admin/api-keys/{key_id}/tokens` with `bearer`.
async fn mint_with(app: &TestApp, bearer: &str, key_id: &str, body: Value) -> (u16, Value) {
    let path = format!("/admin/api-keys/{key_id}/tokens");
    with_bearer(app, "POST", &path, bearer, Some(body)).await
}

/// Asserts that `bearer` opens exactly the endpoints of `granted` (each policy's endpoint of
/// `org`; minting is for `target`, a key holding only `donations:read`) and answers 403
/// "lacks" on the others.
async fn assert_access(app: &TestApp, org: &Org, target: &str, bearer: &str, granted: &[&str]) {
    let donation = json!({
        "organisation_id": org.id, "amount": 1000, "currency": "EUR",
        "donor_email": "donor@example.org"
    });
    // (what it needs, method, path, body); minting is also open to `keys:admin`.
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
    for (needs, method, path, body) in &endpoints {
        let (status, answer) = with_bearer(app, method, path, bearer, body.clone()).await;
        if needs.iter().any(|p| granted.contains(p)) {
            assert!(
                status != 401 && status != 403,
                "{granted:?} on {method} {path}: {status} {answer}"
            );
        } else {
            assert_error(status, &answer, 403, "authorization_error", None);
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("lacks"),
                "{granted:?} on {method} {path}: {answer}"
            );
        }
    }
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
        .storage()
        .api_keys()
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
        .storage()
        .api_keys()
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
    for policy in ALL_POLICIES {
        // An issuer may mint for the target only within a delegation.
        let (_, key) = if policy == "tokens:issue" {
            new_issuer(&app, &org, Some(&["donations:read"]), None).await
        } else {
            new_key(&app, &org, &[policy]).await
        };
        assert_access(&app, &org, &target, &key, &[policy]).await;
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
        .storage()
        .api_keys()
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
    let (reader_id, _) = new_key(&app, &org, &["donations:read"]).await;
    let (issuer_id, issuer) = new_issuer(&app, &org, None, Some(&[&reader_id])).await;
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
        assert_eq!(body["data"]["scope"], json!(["donations:read"]));
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
    let other = elsewhere_with_the_same_admin(&app, &org).await;
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
        .storage()
        .audit()
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

/// Issue 14, finding 3, step by step: a key holding only `tokens:issue` minted a token for a
/// `keys:admin` key, with it made a key holding all eight policies and patched the
/// organisation; and it rotated another key twice through `rotate: true`, revoking its tokens.
/// Every step is refused now (on main the first one answered 201).
async fn a_key_holding_only_tokens_issue_cannot_escalate(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    // An issuer as it was made before issue 14: no delegation named.
    let (issuer_id, issuer) = new_key(&app, &org, &["tokens:issue"]).await;
    let issuer_token = mint(&app, &org, &issuer_id, json!({})).await;
    let (admin_key, _) = new_key(&app, &org, &["keys:admin"]).await;
    let (victim, _) = new_key(&app, &org, &["donations:read"]).await;
    let victim_token = mint(&app, &org, &victim, json!({})).await;
    for bearer in [&issuer, &issuer_token] {
        let (status, body) = mint_with(&app, bearer, &admin_key, json!({})).await;
        assert_error(status, &body, 403, "authorization_error", None);
        // What the finding did with the keys:admin token is closed to the issuer itself.
        let create = json!({"organisation_id": org.id, "name": "all", "policies": ALL_POLICIES});
        let (status, body) =
            with_bearer(&app, "POST", "/admin/api-keys", bearer, Some(create)).await;
        assert_error(status, &body, 403, "authorization_error", None);
        let patch = format!("/organisations/{}", org.id);
        let (status, body) = with_bearer(
            &app,
            "PATCH",
            &patch,
            bearer,
            Some(json!({"name": "Taken"})),
        )
        .await;
        assert_error(status, &body, 403, "authorization_error", None);
        // Rotating twice would have dropped the victim's tokens.
        for _ in 0..2 {
            let (status, body) = mint_with(&app, bearer, &victim, json!({"rotate": true})).await;
            assert_error(status, &body, 403, "authorization_error", None);
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("keys:admin"),
                "{body}"
            );
        }
    }
    assert_eq!(reads(&app, &victim_token).await, 200);
    let stored = app
        .app()
        .storage()
        .api_keys()
        .api_key(&victim)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.deposed, None, "never rotated");
    // An issuer delegating every policy it may still never mints for a key that can mint or
    // manage keys, nor rotates or revokes through the key endpoints.
    let delegable = &ALL_POLICIES[..]
        .iter()
        .copied()
        .filter(|p| *p != "keys:admin" && *p != "tokens:issue")
        .collect::<Vec<_>>();
    let (_, wide) = new_issuer(&app, &org, Some(delegable.as_slice()), None).await;
    for target in [&admin_key, &issuer_id] {
        let (status, body) = mint_with(&app, &wide, target, json!({})).await;
        assert_error(status, &body, 403, "authorization_error", None);
    }
    let (status, body) = mint_with(&app, &wide, &victim, json!({"rotate": true})).await;
    assert_error(status, &body, 403, "authorization_error", None);
    for (suffix, body) in [
        ("rotate", None),
        ("revoke-tokens", Some(json!({"tokens": "old"}))),
        ("revoke-tokens", Some(json!({"tokens": "all"}))),
    ] {
        let path = format!("/admin/api-keys/{victim}/{suffix}");
        let (status, answer) = with_bearer(&app, "POST", &path, &wide, body).await;
        assert_error(status, &answer, 403, "authorization_error", None);
    }
    assert_eq!(reads(&app, &victim_token).await, 200);
    // keys:admin, by a key or an admin's session, keeps rotating while minting.
    let (_, admin_bearer) = new_key(&app, &org, &["keys:admin"]).await;
    let (status, body) = mint_with(&app, &admin_bearer, &victim, json!({"rotate": true})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["scope"], Value::Null);
    mint(&app, &org, &victim, json!({"rotate": true})).await;
    assert_eq!(
        reads(&app, &victim_token).await,
        401,
        "the second rotation dropped it"
    );
    app.stop().await;
}

/// What minting answers: the token's scope, or words of the refusal.
type Expected<'a> = Result<&'a [&'a str], &'a str>;

/// The `scope` a token minted by `bearer` for `target` carries, or the refusal's message.
async fn minted_scope(
    app: &TestApp,
    bearer: &str,
    target: &str,
) -> Result<(Value, String), String> {
    let (status, body) = mint_with(app, bearer, target, json!({})).await;
    match status {
        201 => Ok((
            body["data"]["scope"].clone(),
            body["data"]["token"].as_str().unwrap().to_string(),
        )),
        403 => Err(body["error"]["message"].as_str().unwrap().to_string()),
        _ => panic!("minting for {target}: {status} {body}"),
    }
}

async fn an_issuer_mints_only_within_its_delegation(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    let (reader, _) = new_key(&app, &org, &["donations:read", "ledger:read"]).await;
    let (writer, _) = new_key(&app, &org, &["donations:write", "organisations:read"]).await;
    let (auditor, _) = new_key(&app, &org, &["audit:read"]).await;
    let (admin_key, _) = new_key(&app, &org, &["donations:read", "keys:admin"]).await;
    let (other_issuer, _) = new_issuer(&app, &org, Some(&["donations:read"]), None).await;
    let (none_id, none) = new_issuer(&app, &org, None, None).await;
    let (by_policy_id, by_policy) = new_issuer(
        &app,
        &org,
        Some(&["organisations:read", "donations:read"]),
        None,
    )
    .await;
    let (by_key_id, by_key) = new_issuer(&app, &org, None, Some(&[&reader])).await;
    let (_, both) = new_issuer(
        &app,
        &org,
        Some(&["ledger:read"]),
        Some(&[&reader, &writer]),
    )
    .await;

    // The keys show what they may delegate.
    let view = |id: &str| {
        let path = format!("/admin/api-keys/{id}");
        let (app, admin) = (&app, &org.admin);
        async move { call(app, "GET", &path, admin, None).await.1["data"].clone() }
    };
    let shown = view(&by_policy_id).await;
    assert_eq!(
        shown["delegable_policies"],
        json!(["donations:read", "organisations:read"])
    );
    assert_eq!(shown["delegable_keys"], Value::Null);
    assert_eq!(view(&by_key_id).await["delegable_keys"], json!([reader]));
    assert_eq!(view(&none_id).await["delegable_policies"], Value::Null);
    assert_eq!(view(&reader).await["delegable_keys"], Value::Null);

    // (issuer, target, the token's scope or words of the refusal)
    let cases: Vec<(&str, &str, Expected)> = vec![
        (&none, &reader, Err("delegate nothing")),
        (&by_policy, &reader, Ok(&["donations:read"])),
        (&by_policy, &writer, Ok(&["organisations:read"])),
        (&by_policy, &auditor, Err("none of the policies")),
        (&by_key, &reader, Ok(&["donations:read", "ledger:read"])),
        (&by_key, &writer, Err("not in its delegable_keys")),
        (&both, &reader, Ok(&["ledger:read"])),
        (&both, &writer, Err("none of the policies")),
        (&both, &auditor, Err("not in its delegable_keys")),
    ];
    for (issuer, target, expected) in cases {
        match (minted_scope(&app, issuer, target).await, expected) {
            (Ok((scope, token)), Ok(policies)) => {
                assert_eq!(scope, json!(policies), "{target}");
                // The token opens its scope's endpoints and nothing else.
                assert_access(&app, &org, &reader, &token, policies).await;
            }
            (Err(message), Err(words)) => assert!(message.contains(words), "{message}"),
            (got, expected) => panic!("{target}: got {got:?}, expected {expected:?}"),
        }
    }
    // No issuer mints for a key holding keys:admin or tokens:issue.
    for issuer in [&none, &by_policy, &by_key, &both] {
        for target in [&admin_key, &other_issuer] {
            let refusal = minted_scope(&app, issuer, target).await.unwrap_err();
            assert!(refusal.contains("keys:admin or tokens:issue"), "{refusal}");
        }
    }

    // The audit rows name the issuer and the scope; an admin's token has none.
    mint(&app, &org, &reader, json!({})).await;
    let events = app
        .app()
        .storage()
        .audit()
        .audit_events(&AuditScope::Organisation(org.id.clone()), None, 500)
        .await
        .unwrap();
    let issued: Vec<_> = events
        .iter()
        .filter(|e| e.action == "api_key.token_issued")
        .filter(|e| e.target.as_ref().is_some_and(|(_, t)| *t == reader))
        .collect();
    assert_eq!(issued.len(), 4, "by_policy, by_key, both and the admin");
    assert_eq!(issued[0].actor.kind(), "user", "newest first");
    assert_eq!(issued[0].details["scope"], Value::Null);
    assert!(
        issued[0].details["issuer"]
            .as_str()
            .unwrap()
            .starts_with("usr_")
    );
    let by_key_row = issued
        .iter()
        .find(|e| e.details["issuer"] == by_key_id.as_str())
        .unwrap();
    assert_eq!(by_key_row.actor.id(), Some(by_key_id.as_str()));
    assert_eq!(
        by_key_row.details["scope"],
        json!(["donations:read", "ledger:read"])
    );
    app.stop().await;
}

async fn a_delegated_token_never_gains_what_its_key_gains(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    let (reader, _) = new_key(&app, &org, &["donations:read"]).await;
    let (_, issuer) = new_issuer(&app, &org, None, Some(&[&reader])).await;
    let (scope, delegated) = minted_scope(&app, &issuer, &reader).await.unwrap();
    assert_eq!(scope, json!(["donations:read"]));
    let full = mint(&app, &org, &reader, json!({})).await;
    let set_policies = |policies: &'static [&'static str]| {
        let path = format!("/admin/api-keys/{reader}");
        let admin = org.admin.clone();
        let app = &app;
        async move {
            let body = json!({ "policies": policies });
            let (status, answer) = call(app, "PATCH", &path, &admin, Some(body)).await;
            assert_eq!(status, 200, "{answer}");
        }
    };

    set_policies(&["audit:read", "donations:read", "organisations:write"]).await;
    assert_access(&app, &org, &reader, &delegated, &["donations:read"]).await;
    // A token an admin minted carries the key's policies as they are now (unchanged rule).
    let now_held = ["audit:read", "donations:read", "organisations:write"];
    assert_access(&app, &org, &reader, &full, &now_held).await;
    // The issuer's next token carries the new policies: its delegation is by key.
    let (scope, _) = minted_scope(&app, &issuer, &reader).await.unwrap();
    assert_eq!(scope, json!(now_held));

    // A policy the key loses, its delegated tokens lose too.
    set_policies(&["audit:read"]).await;
    assert_eq!(reads(&app, &delegated).await, 403);

    // Once the key may manage keys the issuer no longer mints for it, and the token it
    // minted before still cannot manage keys.
    set_policies(&["donations:read", "keys:admin"]).await;
    assert_eq!(reads(&app, &delegated).await, 200);
    let (status, body) = with_bearer(&app, "GET", "/admin/api-keys", &delegated, None).await;
    assert_error(status, &body, 403, "authorization_error", None);
    let refusal = minted_scope(&app, &issuer, &reader).await.unwrap_err();
    assert!(refusal.contains("keys:admin"), "{refusal}");
    let (status, _) = with_bearer(&app, "GET", "/admin/api-keys", &full, None).await;
    assert_eq!(status, 200, "an admin's token follows the key");
    app.stop().await;
}

/// An HS256 token with `claims`, signed with `secret`, whose header names `kid`.
fn signed(claims: &Value, kid: &str, secret: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn forged_scope_claims_fail_verification(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    let (reader, _) = new_key(&app, &org, &["audit:read", "donations:read"]).await;
    let (_, issuer) = new_issuer(&app, &org, Some(&["donations:read"]), None).await;
    let (_, token) = minted_scope(&app, &issuer, &reader).await.unwrap();
    let audit = |bearer: String| {
        let app = &app;
        async move { with_bearer(app, "GET", "/audit-events", &bearer, None).await }
    };
    assert_eq!(reads(&app, &token).await, 200);
    assert_eq!(audit(token.clone()).await.0, 403);

    // Its claims widened, or without their scope, under its own signature.
    let parts: Vec<&str> = token.split('.').collect();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["scope"], "donations:read");
    let mut widened = claims.clone();
    widened["scope"] = json!("audit:read donations:read");
    let mut unscoped = claims.clone();
    unscoped.as_object_mut().unwrap().remove("scope");
    for forged_claims in [widened, unscoped] {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged_claims).unwrap());
        let forged = format!("{}.{body}.{}", parts[0], parts[2]);
        let (status, answer) = audit(forged).await;
        assert_error(status, &answer, 401, "authentication_error", None);
    }

    // Signed with the key's real secret, a scope naming an undelegable, unknown or no policy
    // is refused all the same (only a bug could mint one); a well-formed one passes, so the
    // refusals are about the scope.
    let stored = app
        .app()
        .storage()
        .api_keys()
        .api_key(&reader)
        .await
        .unwrap()
        .unwrap();
    let kid = format!("{}:{}", stored.id, stored.secret.id);
    let with_scope = |scope: &str| {
        let mut claims = claims.clone();
        claims["scope"] = json!(scope);
        signed(&claims, &kid, &stored.secret.value)
    };
    for scope in ["keys:admin audit:read", "tokens:issue", "root", ""] {
        let (status, answer) = audit(with_scope(scope)).await;
        assert_error(status, &answer, 401, "authentication_error", None);
    }
    assert_eq!(audit(with_scope("audit:read")).await.0, 200);
    app.stop().await;
}

async fn delegations_are_checked_and_belong_to_issuers_only(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let org = org_with_admin(&app).await;
    let other = elsewhere_with_the_same_admin(&app, &org).await;
    let (reader, _) = new_key(&app, &org, &["donations:read"]).await;
    let (admin_key, _) = new_key(&app, &org, &["keys:admin"]).await;
    let (other_issuer, _) = new_issuer(&app, &org, Some(&["donations:read"]), None).await;
    let (foreign, _) = new_key(&app, &other, &["donations:read"]).await;
    let (deleted, _) = new_key(&app, &org, &["donations:read"]).await;
    let path = format!("/admin/api-keys/{deleted}");
    assert_eq!(call(&app, "DELETE", &path, &org.admin, None).await.0, 200);

    let create = |policies: &[&str], field: &str, value: Value| {
        let body =
            json!({"organisation_id": org.id, "name": "x", "policies": policies, field: value});
        call(&app, "POST", "/admin/api-keys", &org.admin, Some(body))
    };
    // Only an issuer delegates.
    for field in ["delegable_policies", "delegable_keys"] {
        let value = if field == "delegable_keys" {
            json!([reader])
        } else {
            json!(["donations:read"])
        };
        let (status, answer) = create(&["donations:read", "keys:admin"], field, value).await;
        assert_error(status, &answer, 400, "invalid_request", Some(field));
    }
    for bad in [
        json!([]),
        json!(["keys:admin"]),
        json!(["tokens:issue", "donations:read"]),
        json!(["root"]),
    ] {
        let (status, answer) = create(&["tokens:issue"], "delegable_policies", bad).await;
        assert_error(
            status,
            &answer,
            400,
            "invalid_request",
            Some("delegable_policies"),
        );
    }
    for bad in [
        json!([]),
        json!(["nope"]),
        json!(["key_00000000000000000000000000000000"]),
        json!([admin_key]),
        json!([reader, other_issuer]),
        json!([foreign]),
        json!([deleted]),
    ] {
        let (status, answer) = create(&["tokens:issue"], "delegable_keys", bad).await;
        assert_error(
            status,
            &answer,
            400,
            "invalid_request",
            Some("delegable_keys"),
        );
    }

    // Changing a delegation: set, removed with null, checked, dropped with tokens:issue.
    let (issuer_id, issuer) = new_issuer(&app, &org, Some(&["donations:read"]), None).await;
    let patch = |body: Value| {
        let path = format!("/admin/api-keys/{issuer_id}");
        let admin = org.admin.clone();
        let app = &app;
        async move { call(app, "PATCH", &path, &admin, Some(body)).await }
    };
    let (status, key) = patch(json!({"delegable_keys": [reader]})).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["data"]["delegable_policies"], json!(["donations:read"]));
    assert_eq!(key["data"]["delegable_keys"], json!([reader]));
    let (status, key) = patch(json!({"delegable_policies": null})).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["data"]["delegable_policies"], Value::Null);
    assert_eq!(key["data"]["delegable_keys"], json!([reader]));
    let (status, answer) = patch(json!({"delegable_keys": [issuer_id]})).await;
    assert_error(
        status,
        &answer,
        400,
        "invalid_request",
        Some("delegable_keys"),
    );
    let (status, answer) = patch(json!({"delegable_policies": ["keys:admin"]})).await;
    assert_error(
        status,
        &answer,
        400,
        "invalid_request",
        Some("delegable_policies"),
    );
    assert!(minted_scope(&app, &issuer, &reader).await.is_ok());

    let (status, key) = patch(json!({"policies": ["donations:read"]})).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["data"]["delegable_keys"], Value::Null, "{key}");
    let (status, answer) = patch(json!({"delegable_policies": ["donations:read"]})).await;
    assert_error(
        status,
        &answer,
        400,
        "invalid_request",
        Some("delegable_policies"),
    );
    // Given tokens:issue back, it delegates nothing until told what.
    let (status, key) = patch(json!({"policies": ["tokens:issue"]})).await;
    assert_eq!(status, 200, "{key}");
    let refusal = minted_scope(&app, &issuer, &reader).await.unwrap_err();
    assert!(refusal.contains("delegate nothing"), "{refusal}");

    // The changes are audited with what they replaced.
    let events = app
        .app()
        .storage()
        .audit()
        .audit_events(&AuditScope::Organisation(org.id.clone()), None, 500)
        .await
        .unwrap();
    let first_update = events
        .iter()
        .rev()
        .find(|e| {
            e.action == "api_key.updated" && e.target.as_ref().is_some_and(|(_, t)| *t == issuer_id)
        })
        .unwrap();
    assert_eq!(first_update.details["delegable_keys"], json!([reader]));
    assert_eq!(first_update.details["previous_delegable_keys"], Value::Null);
    assert_eq!(
        first_update.details["delegable_policies"],
        json!(["donations:read"])
    );
    app.stop().await;
}
