//! The edge rule for text and bodies, and login messages third parties cannot evict (issue 14,
//! findings 9–13), over real HTTP on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ampflow_storage::testdb::Backend;
use common::dashboard::*;
use common::{TestApp, Wallet, assert_error};
use serde_json::json;

on_both_databases!(
    control_characters_in_paths_queries_and_bodies_answer_400,
    json_bodies_must_be_objects,
    a_json_route_without_content_type_answers_415,
    cookie_writes_need_this_origin_and_a_json_body,
    third_parties_cannot_evict_a_wallets_login_message,
    a_high_s_signature_answers_400,
);

/// NUL and other control characters never reach storage (PostgreSQL cannot store NUL and
/// answered 500 with an ERROR log line): 400 with the parameter named.
async fn control_characters_in_paths_queries_and_bodies_answer_400(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let get = |path: &str| app.send(app.client.get(app.url(path)));
    let (status, body) = get("/public/organisations/org_%00").await;
    assert_error(status, &body, 400, "invalid_request", Some("path"));
    let (status, body) = get("/public/checkpoints/chk_2026-01-0%01").await;
    assert_error(status, &body, 400, "invalid_request", Some("path"));
    let (status, body) = get("/public/organisations?limit=5&cursor=a%00").await;
    assert_error(status, &body, 400, "invalid_request", Some("cursor"));
    let (status, body) = get("/public/organisations?country=f%7F").await;
    assert_error(status, &body, 400, "invalid_request", Some("country"));
    let (status, body) = app
        .post(
            "/auth/login",
            json!({"email": "a\u{0}@example.org", "password": "x"}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_request", Some("email"));
    let (status, body) = app
        .post("/authorize", json!({"address": "0x\u{1b}[31m"}))
        .await;
    assert_error(status, &body, 400, "invalid_request", Some("address"));
    // Free text keeps its tabs and newlines.
    let wallet = Wallet::random();
    let access = app.access_token(&wallet).await;
    let (status, body) = app
        .post_auth(
            "/test/kyc",
            &access,
            json!({"address": wallet.address(), "first_name": "Jane", "last_name": "Doe\u{8}"}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_request", Some("last_name"));
    app.stop().await;
}

/// serde builds a struct from a JSON array; the edge refuses anything but an object, before
/// authentication decides anything or a PaymentIntent is made.
async fn json_bodies_must_be_objects(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let access = app.access_token(&Wallet::random()).await;
    let array = json!(["org_1", null, 1000, "EUR", "a@example.org", "A"]);
    let (status, body) = app.post_auth("/donations", &access, array).await;
    assert_error(status, &body, 400, "invalid_request", None);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON object"),
        "{body}"
    );
    let (status, body) = app.post("/authorize", json!("0xabc")).await;
    assert_error(status, &body, 400, "invalid_request", None);
    app.stop().await;
}

/// The README promises 415 for bodies that are not JSON: a missing body and a missing
/// Content-Type included.
async fn a_json_route_without_content_type_answers_415(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let (status, body) = app.send(app.client.post(app.url("/authorize"))).await;
    assert_error(status, &body, 415, "invalid_request", None);
    let wallet = Wallet::random();
    let (status, body) = app
        .send(
            app.client
                .post(app.url("/authorize"))
                .body(json!({"address": wallet.address()}).to_string()),
        )
        .await;
    assert_error(status, &body, 415, "invalid_request", None);
    let (status, body) = app
        .send(
            app.client
                .post(app.url("/authorize"))
                .header("content-type", "text/plain")
                .body(json!({"address": wallet.address()}).to_string()),
        )
        .await;
    assert_error(status, &body, 415, "invalid_request", None);
    app.stop().await;
}

/// A same-site page (another subdomain) could make the browser send the dashboard cookie with
/// a form or a simple request; writes with the cookie need this server's Origin (or one
/// configured) and a JSON body.
async fn cookie_writes_need_this_origin_and_a_json_body(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |s| {
        dashboard_settings(s);
        s.http.allowed_origins = vec!["https://dashboard.example.org".into()];
    })
    .await
    else {
        return;
    };
    let org = common::verified_organisation(&app, "Food Bank", None).await;
    create_member(&app, &org, "admin@example.org", "admin").await;
    let admin = login(&app, "admin@example.org").await;
    let body = json!({"organisation_id": org, "name": "CRM", "policies": ["donations:read"]});
    let post = |origin: Option<&str>, fetch_site: Option<&str>| {
        let mut request = app
            .client
            .post(app.url("/admin/api-keys"))
            .header("cookie", format!("session={}", admin.cookie))
            .header("x-forwarded-for", admin.ip.as_str())
            .json(&body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = fetch_site {
            request = request.header("sec-fetch-site", site);
        }
        app.send(request)
    };
    for (origin, site) in [
        (None, None),
        (Some("https://evil.example.org"), None),
        (Some("null"), None),
        (None, Some("same-site")),
        (None, Some("cross-site")),
    ] {
        let (status, answer) = post(origin, site).await;
        assert_error(status, &answer, 403, "authorization_error", None);
    }
    let own = app.app().base_url();
    for (origin, site) in [
        (Some(own.as_str()), None),
        (None, Some("same-origin")),
        (Some("https://dashboard.example.org"), None),
    ] {
        let (status, answer) = post(origin, site).await;
        assert_eq!(status, 201, "{origin:?} {site:?}: {answer}");
    }
    // A form post (no JSON content type) from the right origin is still refused.
    let (status, answer) = app
        .send(
            with_session(&app, "POST", "/admin/api-keys", &admin)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("organisation_id=x"),
        )
        .await;
    assert_error(status, &answer, 415, "invalid_request", None);
    // Body-less cookie writes need the origin too; reads do not.
    let (status, answer) = app
        .send(
            app.client
                .post(app.url("/auth/logout"))
                .header("cookie", format!("session={}", admin.cookie)),
        )
        .await;
    assert_error(status, &answer, 403, "authorization_error", None);
    let (status, _) = app
        .send(
            app.client
                .get(app.url("/auth/me"))
                .header("cookie", format!("session={}", admin.cookie)),
        )
        .await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// Anyone may ask `/authorize` for any address. Asking again answers the same message while
/// it has more than half its life left, so a third party cannot push the owner's out.
async fn third_parties_cannot_evict_a_wallets_login_message(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let owner = Wallet::random();
    let message = app.payload(&owner.address()).await;
    for _ in 0..10 {
        assert_eq!(app.payload(&owner.address()).await, message);
    }
    let login = json!({"address": owner.address(), "signed_payload": owner.sign(&message)});
    let (status, tokens) = app.post("/authorize/jwt", login).await;
    assert_eq!(status, 200, "{tokens}");
    // Past half its life a new message is made; the old one still signs in until it expires.
    let first = app.payload(&owner.address()).await;
    app.clock.advance_ms(5 * 60 * 1000 + 1);
    let second = app.payload(&owner.address()).await;
    assert_ne!(first, second);
    for _ in 0..10 {
        assert_eq!(app.payload(&owner.address()).await, second);
    }
    let login = json!({"address": owner.address(), "signed_payload": owner.sign(&first)});
    let (status, tokens) = app.post("/authorize/jwt", login).await;
    assert_eq!(status, 200, "{tokens}");
    app.stop().await;
}

/// (r, n − s) recovers the same key: the malleable twin of the owner's signature is refused
/// with 400 rather than accepted as a second valid form.
async fn a_high_s_signature_answers_400(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let message = app.payload(&wallet.address()).await;
    let signature = hex::decode(wallet.sign(&message).trim_start_matches("0x")).unwrap();
    let twin = common::high_s_twin(&signature);
    let login =
        json!({"address": wallet.address(), "signed_payload": format!("0x{}", hex::encode(twin))});
    let (status, body) = app.post("/authorize/jwt", login).await;
    assert_error(
        status,
        &body,
        400,
        "invalid_request",
        Some("signed_payload"),
    );
    let (status, _) = app
        .post(
            "/authorize/jwt",
            json!({"address": wallet.address(), "signed_payload": wallet.sign(&message)}),
        )
        .await;
    assert_eq!(status, 200);
    app.stop().await;
}
