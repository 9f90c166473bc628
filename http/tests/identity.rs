//! Wallet-signature login over real HTTP, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ampflow_storage::testdb::Backend;
use common::{TestApp, Wallet, assert_error};
use serde_json::json;

on_both_databases!(
    full_login_flow_creates_the_user_on_first_login,
    by_message_login_flow_works_with_a_real_signature,
    addresses_in_any_case_are_stored_lowercase,
    a_nonce_is_used_once,
    concurrent_logins_with_one_nonce_succeed_exactly_once,
    nonces_expire_after_ten_minutes,
    refresh_rotates_and_reusing_a_spent_token_revokes_the_family,
    logout_revokes_the_sessions_access_and_refresh_tokens,
    a_malformed_address_or_signature_answers_400_with_param,
    a_signature_by_another_key_answers_401,
    contract_wallet_login_on_an_unconfigured_chain_answers_400,
    put_user_validates_and_stores_the_email,
    restart_mid_flow_keeps_unused_nonces_and_rejects_used_ones,
    a_login_on_one_process_is_served_at_once_by_another,
    a_change_on_another_process_is_not_lost_to_a_stale_copy,
);

async fn full_login_flow_creates_the_user_on_first_login(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();

    let (status, body) = app
        .post("/authorize", json!({"address": wallet.address()}))
        .await;
    assert_eq!(status, 200);
    let payload = body["payload"].as_str().unwrap();
    let prefix = format!(
        "Welcome!\nPlease sign this message to verify that you are the owner of address: {}\nNonce: ",
        wallet.address()
    );
    assert!(payload.starts_with(&prefix), "{payload}");
    assert!(payload[prefix.len()..].bytes().all(|b| b.is_ascii_digit()));

    let (status, tokens) = app
        .post("/authorize/jwt", json!({"address": wallet.address(), "signed_payload": wallet.sign(payload), "chain_id": 0}))
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["expires_in"], 86_400_000);
    assert_eq!(tokens["refresh_token_expires_in"], 7_776_000_000i64);
    let access = tokens["access_token"].as_str().unwrap();
    assert!(!tokens["refresh_token"].as_str().unwrap().is_empty());

    let (status, user) = app.get_auth("/user", access).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        user,
        json!({"address": wallet.address(), "email": null, "email_verified": false, "kyc_completed": false})
    );
    app.stop().await;
}

async fn by_message_login_flow_works_with_a_real_signature(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let response = app
        .client
        .post(app.url("/authorize/by-message"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["payload"].as_str().unwrap();
    let rest = message
        .strip_prefix("Please sign this message to verify your wallet ownership, unique ID: ")
        .unwrap();
    let (id, nonce) = rest.split_once(", nonce: ").unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert!(nonce.bytes().all(|b| b.is_ascii_digit()));

    let request = json!({"address": wallet.address(), "message_to_sign": message, "signed_payload": wallet.sign(message)});
    let (status, tokens) = app.post("/authorize/jwt/by-message", request.clone()).await;
    assert_eq!(status, 200, "{tokens}");
    let (status, user) = app
        .get_auth("/user", tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 200);
    assert_eq!(user["address"], wallet.address());

    // Used once: the same message and signature are refused now.
    let (status, body) = app.post("/authorize/jwt/by-message", request).await;
    assert_error(status, &body, 401, "authentication_error", None);

    // A message we never issued, signed correctly, is refused too.
    let forged = "Please sign this message to verify your wallet ownership, unique ID: 8b9ec2dd-626f-4444-9ae7-b4142e6e99e5, nonce: 721558130";
    let (status, body) = app
        .post("/authorize/jwt/by-message", json!({"address": wallet.address(), "message_to_sign": forged, "signed_payload": wallet.sign(forged)}))
        .await;
    assert_error(status, &body, 401, "authentication_error", None);

    let (status, body) = app
        .post("/authorize/jwt/by-message", json!({"address": wallet.address(), "message_to_sign": "hello", "signed_payload": wallet.sign("hello")}))
        .await;
    assert_error(
        status,
        &body,
        400,
        "invalid_request",
        Some("message_to_sign"),
    );
    app.stop().await;
}

async fn addresses_in_any_case_are_stored_lowercase(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let mixed = wallet.checksum_address();
    let upper = format!("0x{}", mixed[2..].to_ascii_uppercase());
    let (status, body) = app.post("/authorize", json!({"address": upper})).await;
    assert_eq!(status, 200);
    let payload = body["payload"].as_str().unwrap();
    assert!(
        payload.contains(&wallet.address()),
        "the payload names the lowercase address: {payload}"
    );
    let (status, tokens) = app
        .post(
            "/authorize/jwt",
            json!({"address": mixed, "signed_payload": wallet.sign(payload)}),
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    let (_, user) = app
        .get_auth("/user", tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(user["address"], wallet.address());
    app.stop().await;
}

async fn a_nonce_is_used_once(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let request = app.signed_login(&wallet).await;
    let (status, _) = app.post("/authorize/jwt", request.clone()).await;
    assert_eq!(status, 200);
    let (status, body) = app.post("/authorize/jwt", request).await;
    assert_error(
        status,
        &body,
        401,
        "authentication_error",
        Some("signed_payload"),
    );
    app.stop().await;
}

async fn concurrent_logins_with_one_nonce_succeed_exactly_once(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let request = app.signed_login(&wallet).await;
    let attempts = (0..8).map(|_| app.post("/authorize/jwt", request.clone()));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
    app.stop().await;
}

async fn nonces_expire_after_ten_minutes(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let by_address = app.signed_login(&wallet).await;
    let (_, body) = app.post("/authorize/by-message", json!({})).await;
    let message = body["payload"].as_str().unwrap().to_string();
    let by_message = json!({"address": wallet.address(), "message_to_sign": message, "signed_payload": wallet.sign(&message)});

    app.clock.advance_ms(10 * 60 * 1000 + 1);
    let (status, body) = app.post("/authorize/jwt", by_address).await;
    assert_error(status, &body, 401, "authentication_error", None);
    let (status, body) = app.post("/authorize/jwt/by-message", by_message).await;
    assert_error(status, &body, 401, "authentication_error", None);

    // A fresh nonce works.
    app.login(&wallet).await;
    app.stop().await;
}

async fn refresh_rotates_and_reusing_a_spent_token_revokes_the_family(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let first = app.login(&wallet).await;
    let refresh_1 = first["refresh_token"].as_str().unwrap();

    app.clock.advance_ms(60_000);
    let (status, second) = app
        .post("/authorize/refresh", json!({"refresh_token": refresh_1}))
        .await;
    assert_eq!(status, 200, "{second}");
    let refresh_2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(refresh_1, refresh_2, "the refresh token rotates");
    assert_eq!(
        second["refresh_token_expires_in"],
        7_776_000_000i64 - 60_000,
        "the family keeps its expiry"
    );
    let access_2 = second["access_token"].as_str().unwrap();
    assert_eq!(app.get_auth("/user", access_2).await.0, 200);

    // Replaying the spent token revokes the whole family: the new refresh token and every
    // access token of the session stop working.
    let (status, body) = app
        .post("/authorize/refresh", json!({"refresh_token": refresh_1}))
        .await;
    assert_error(
        status,
        &body,
        401,
        "authentication_error",
        Some("refresh_token"),
    );
    let (status, _) = app
        .post("/authorize/refresh", json!({"refresh_token": refresh_2}))
        .await;
    assert_eq!(status, 401);
    let (status, body) = app.get_auth("/user", access_2).await;
    assert_error(status, &body, 401, "authentication_error", None);
    let (status, _) = app
        .get_auth("/user", first["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 401);

    let (status, body) = app
        .post(
            "/authorize/refresh",
            json!({"refresh_token": "not-a-token"}),
        )
        .await;
    assert_error(
        status,
        &body,
        401,
        "authentication_error",
        Some("refresh_token"),
    );
    app.stop().await;
}

async fn logout_revokes_the_sessions_access_and_refresh_tokens(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let session_a = app.login(&wallet).await;
    let session_b = app.login(&wallet).await;
    let access_a = session_a["access_token"].as_str().unwrap();

    let (status, body) = app.post_auth("/user/logout", access_a, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.get_auth("/user", access_a).await;
    assert_error(status, &body, 401, "authentication_error", None);
    let (status, _) = app
        .post(
            "/authorize/refresh",
            json!({"refresh_token": session_a["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 401);

    // The other session is untouched.
    assert_eq!(
        app.get_auth("/user", session_b["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );
    app.stop().await;
}

async fn a_malformed_address_or_signature_answers_400_with_param(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    for bad in [
        "",
        "0x12",
        "ef678007d18427e6022059dbc264f27507cd1ffc",
        "0xzz678007d18427e6022059dbc264f27507cd1ffc",
    ] {
        let (status, body) = app.post("/authorize", json!({"address": bad})).await;
        assert_error(status, &body, 400, "invalid_request", Some("address"));
        let (status, body) = app
            .post(
                "/authorize/jwt",
                json!({"address": bad, "signed_payload": "0x00"}),
            )
            .await;
        assert_error(status, &body, 400, "invalid_request", Some("address"));
    }
    let good = wallet.sign(&app.payload(&wallet.address()).await);
    let bad_v = format!("{}1d", &good[..good.len() - 2]);
    for bad in [
        "",
        "0x",
        "0x1234",
        &good[..good.len() - 2],
        &format!("{good}00"),
        &bad_v,
    ] {
        let (status, body) = app
            .post(
                "/authorize/jwt",
                json!({"address": wallet.address(), "signed_payload": bad}),
            )
            .await;
        assert_error(
            status,
            &body,
            400,
            "invalid_request",
            Some("signed_payload"),
        );
        let (status, body) = app
            .post(
                "/authorize/jwt/by-message",
                json!({"address": wallet.address(), "message_to_sign": "m", "signed_payload": bad}),
            )
            .await;
        assert_error(
            status,
            &body,
            400,
            "invalid_request",
            Some("signed_payload"),
        );
    }
    // v as 0/1 works as well as 27/28.
    let v = u8::from_str_radix(&good[good.len() - 2..], 16).unwrap() - 27;
    let zero_based = format!("{}{v:02x}", &good[..good.len() - 2]);
    let (status, body) = app
        .post(
            "/authorize/jwt",
            json!({"address": wallet.address(), "signed_payload": zero_based}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

async fn a_signature_by_another_key_answers_401(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (wallet, intruder) = (Wallet::random(), Wallet::random());
    let signature = intruder.sign(&app.payload(&wallet.address()).await);
    let (status, body) = app
        .post(
            "/authorize/jwt",
            json!({"address": wallet.address(), "signed_payload": signature}),
        )
        .await;
    assert_error(
        status,
        &body,
        401,
        "authentication_error",
        Some("signed_payload"),
    );
    // No pending nonce at all reads differently from a wrong signature.
    let (status, body) = app
        .post(
            "/authorize/jwt",
            json!({"address": intruder.address(), "signed_payload": signature}),
        )
        .await;
    assert_error(status, &body, 401, "authentication_error", None);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("POST /authorize"),
        "{body}"
    );
    app.stop().await;
}

async fn contract_wallet_login_on_an_unconfigured_chain_answers_400(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (wallet, owner) = (Wallet::random(), Wallet::random());
    let payload = app.payload(&wallet.address()).await;
    // Not the wallet's own key: only EIP-1271 could vouch for it, and chain 137 is not configured.
    let (status, body) = app
        .post("/authorize/jwt", json!({"address": wallet.address(), "signed_payload": owner.sign(&payload), "chain_id": 137}))
        .await;
    assert_error(status, &body, 400, "unsupported_chain", Some("chain_id"));
    // An EOA signature with a chain id still logs in.
    let (status, _) = app
        .post("/authorize/jwt", json!({"address": wallet.address(), "signed_payload": wallet.sign(&payload), "chain_id": 137}))
        .await;
    assert_eq!(status, 200);
    app.stop().await;
}

async fn put_user_validates_and_stores_the_email(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let tokens = app.login(&wallet).await;
    let access = tokens["access_token"].as_str().unwrap();
    let put = |body: serde_json::Value| {
        app.send(
            app.client
                .put(app.url("/user"))
                .bearer_auth(access)
                .json(&body),
        )
    };
    let (status, user) = put(json!({"email": "investor@example.org"})).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["email"], "investor@example.org");
    assert_eq!(user["email_verified"], false);
    for bad in [
        "",
        "no-at-sign",
        "a@",
        &format!("{}@example.com", "x".repeat(300)),
    ] {
        let (status, body) = put(json!({"email": bad})).await;
        assert_error(status, &body, 400, "invalid_request", Some("email"));
    }
    let (_, user) = app.get_auth("/user", access).await;
    assert_eq!(user["email"], "investor@example.org");
    app.stop().await;
}

async fn restart_mid_flow_keeps_unused_nonces_and_rejects_used_ones(backend: Backend) {
    let Some(mut app) = TestApp::start(backend).await else {
        return;
    };
    let (pending, used) = (Wallet::random(), Wallet::random());
    let pending_request = app.signed_login(&pending).await;
    let used_request = app.signed_login(&used).await;
    let (status, tokens) = app.post("/authorize/jwt", used_request.clone()).await;
    assert_eq!(status, 200);

    app.restart().await;

    let (status, body) = app.post("/authorize/jwt", pending_request).await;
    assert_eq!(status, 200, "an unused nonce survives the restart: {body}");
    let (status, _) = app.post("/authorize/jwt", used_request).await;
    assert_eq!(status, 401, "a used nonce stays used");
    // Tokens minted before the restart still verify: the key is persisted.
    assert_eq!(
        app.get_auth("/user", tokens["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );
    app.stop().await;
}

/// Two processes on one database: the login message comes from one, the login goes to the
/// other, and the first then serves the new token at once, although its copy of the wallet
/// was loaded before the user existed (found by the fault campaign, seed 2: `GET /user`
/// answered 401 "the session has ended" for up to `identity.state_recheck_ms`).
async fn a_login_on_one_process_is_served_at_once_by_another(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let other = app.another_process("login-other").await;
    let wallet = Wallet::random();
    let answer = app
        .client
        .post(format!("{}/authorize", other.base_url()))
        .json(&json!({"address": wallet.address()}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let payload: serde_json::Value = answer.json().await.unwrap();
    let login = json!({"address": wallet.address(), "signed_payload": wallet.sign(payload["payload"].as_str().unwrap())});
    let (status, tokens) = app.post("/authorize/jwt", login).await;
    assert_eq!(status, 200, "{tokens}");
    // The manual clock stands still: the other process's copy never goes stale by itself.
    let answer = app
        .client
        .get(format!("{}/user", other.base_url()))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    other.shutdown().await;
    app.stop().await;
}

/// Node 1 read the user (email a); node 0 changed it to b; the user sets a again through the
/// second node. Its copy already says a, but the row says b: the change must be written, not
/// answered "already so" from the copy (which lost it).
async fn a_change_on_another_process_is_not_lost_to_a_stale_copy(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let other = app.another_process("stale-copy-other").await;
    let wallet = Wallet::random();
    let tokens = app.login(&wallet).await;
    let access = tokens["access_token"].as_str().unwrap();
    let put = |base: String, email: &'static str| {
        app.send(
            app.client
                .put(format!("{base}/user"))
                .bearer_auth(access)
                .json(&json!({ "email": email })),
        )
    };
    let (status, _) = put(app.app().base_url(), "a@example.org").await;
    assert_eq!(status, 200);
    let (status, user) = app
        .send(
            app.client
                .get(format!("{}/user", other.base_url()))
                .bearer_auth(access),
        )
        .await;
    assert_eq!(
        (status, user["email"].as_str()),
        (200, Some("a@example.org"))
    );
    let (status, _) = put(app.app().base_url(), "b@example.org").await;
    assert_eq!(status, 200);

    let (status, user) = put(other.base_url(), "a@example.org").await;
    assert_eq!(
        (status, user["email"].as_str()),
        (200, Some("a@example.org"))
    );
    app.clock.advance_ms(60_000);
    let (_, user) = app.get_auth("/user", access).await;
    assert_eq!(
        user["email"], "a@example.org",
        "the acknowledged change was lost"
    );
    other.shutdown().await;
    app.stop().await;
}
