//! The HTTP surface: headers, request ids, probes, the OpenAPI document, bad input on every
//! endpoint, forged tokens and the test-mode switch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ampflow_storage::testdb::Backend;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{TestApp, Wallet, assert_error};
use serde_json::{Value, json};

on_both_databases!(
    every_response_has_a_request_id_and_the_security_headers,
    health_and_ready_answer,
    the_openapi_document_covers_every_endpoint,
    bad_input_on_every_endpoint_answers_4xx_with_the_envelope,
    forged_expired_and_tampered_tokens_are_rejected,
    test_kyc_verifies_only_the_callers_wallet,
);

async fn every_response_has_a_request_id_and_the_security_headers(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let response = app
        .client
        .get(app.url("/health"))
        .header("X-Request-Id", "client-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-abc-123");
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-xss-protection", "1; mode=block"),
        (
            "cache-control",
            "no-cache, no-store, max-age=0, must-revalidate",
        ),
        ("pragma", "no-cache"),
        ("expires", "0"),
        ("x-frame-options", "DENY"),
    ] {
        assert_eq!(response.headers()[name], value, "{name}");
    }
    // Generated when absent or unreasonable, on errors too.
    let too_long = "x".repeat(300);
    for request in [
        app.client.get(app.url("/nope")),
        app.client
            .get(app.url("/user"))
            .header("X-Request-Id", too_long.as_str()),
    ] {
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(id.starts_with("req_") && id.len() > 10, "{id}");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
    }
    app.stop().await;
}

async fn health_and_ready_answer(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (status, body) = app.send(app.client.get(app.url("/health"))).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
    app.stop().await;
}

/// (method, path) of every endpoint the server has.
const ENDPOINTS: [(&str, &str); 64] = [
    ("post", "/authorize"),
    ("post", "/authorize/by-message"),
    ("post", "/authorize/jwt"),
    ("post", "/authorize/jwt/by-message"),
    ("post", "/authorize/refresh"),
    ("get", "/user"),
    ("put", "/user"),
    ("post", "/user/logout"),
    ("post", "/user/whitelist"),
    ("get", "/user/whitelist"),
    ("post", "/auto_invest/{chainId}/{address}"),
    ("delete", "/auto_invest/{chainId}/{address}"),
    ("get", "/auto_invest/{chainId}/{address}"),
    ("get", "/auto_invest/{chainId}/{address}/history"),
    ("get", "/auto_invest/{chainId}/campaign/{address}"),
    ("get", "/public/organisations"),
    ("get", "/public/organisations/{id}"),
    ("get", "/public/organisations/{id}/ledger"),
    ("get", "/public/organisations/{id}/ledger/export"),
    ("post", "/donations"),
    ("get", "/donations"),
    ("get", "/donations/{id}"),
    ("post", "/webhooks/stripe"),
    ("get", "/public/organisations/{id}/ledger/proofs"),
    ("get", "/public/checkpoints"),
    ("get", "/public/checkpoints/key"),
    ("get", "/public/checkpoints/{id}"),
    ("get", "/public/ledger/entries/{id}/proof"),
    ("post", "/igive-api/v1_0/donation"),
    ("get", "/igive-api/v1_0/donation/{guid}"),
    ("delete", "/igive-api/v1_0/donation/{guid}"),
    ("get", "/nonprofit-json/{publisher_campaign_guid}"),
    ("post", "/test/kyc"),
    ("post", "/faucet/{chainId}"),
    ("get", "/faucet/{chainId}/requests/{id}"),
    ("post", "/veriff/session"),
    ("post", "/veriff/webhook/decision"),
    ("post", "/veriff/webhook/event"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/.well-known/jwks.json"),
    ("post", "/auth/login"),
    ("post", "/auth/logout"),
    ("post", "/auth/logout-all"),
    ("get", "/auth/me"),
    ("get", "/auth/sessions"),
    ("delete", "/auth/sessions/{session_id}"),
    ("post", "/auth/password"),
    ("patch", "/auth/security-settings"),
    ("get", "/me/organisations"),
    ("get", "/organisations/{id}"),
    ("patch", "/organisations/{id}"),
    ("get", "/organisations/{id}/stripe/connect"),
    ("get", "/audit-events"),
    ("post", "/admin/api-keys"),
    ("get", "/admin/api-keys"),
    ("get", "/admin/api-keys/{id}"),
    ("patch", "/admin/api-keys/{id}"),
    ("delete", "/admin/api-keys/{id}"),
    ("post", "/admin/api-keys/{id}/rotate"),
    ("post", "/admin/api-keys/{id}/revoke-tokens"),
    ("post", "/admin/api-keys/{id}/tokens"),
];

async fn the_openapi_document_covers_every_endpoint(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (status, doc) = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = ENDPOINTS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);
    // And each documented endpoint exists.
    for (method, path) in &documented {
        let request = app
            .client
            .request(method.to_uppercase().parse().unwrap(), app.url(path));
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        // A 404 about the record (not the route) still shows the route exists.
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let no_route =
            status == 405 || (status == 404 && body["error"]["message"] == "no such endpoint");
        assert!(!no_route, "{method} {path} answered {status}: {body}");
    }
    for scheme in [
        "wallet",
        "api_key",
        "igf",
        "stripe_signature",
        "veriff_signature",
    ] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["cookie"]["in"],
        "cookie"
    );
    app.stop().await;
}

async fn bad_input_on_every_endpoint_answers_4xx_with_the_envelope(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let token = app.login(&Wallet::random()).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let oversized = json!({"address": "x".repeat(100 * 1024)}).to_string();
    let bodies: Vec<(Option<&str>, String)> = vec![
        (Some("application/json"), r#"{"address":"#.to_string()),
        (Some("application/json"), "[]".to_string()),
        (Some("application/json"), "null".to_string()),
        (Some("application/json"), r#""text""#.to_string()),
        (Some("application/json"), "{}".to_string()),
        (Some("application/json"), String::new()),
        (Some("application/json"), r#"{"address":5,"signed_payload":[],"message_to_sign":{},"refresh_token":true,"email":1,"first_name":2,"last_name":3,"chain_id":"x"}"#.to_string()),
        (Some("application/json"), r#"{"address":"0x01","chain_id":-5,"signed_payload":"0x00","message_to_sign":"m","refresh_token":"","email":"no"}"#.to_string()),
        (Some("application/json"), oversized),
        (Some("text/plain"), r#"{"address":"0x0000000000000000000000000000000000000001"}"#.to_string()),
        (Some("application/json"), "\u{0}\u{1}\u{2}".to_string()),
    ];
    let endpoints = [
        ("POST", "/authorize", false),
        ("POST", "/authorize/jwt", false),
        ("POST", "/authorize/jwt/by-message", false),
        ("POST", "/authorize/refresh", false),
        ("PUT", "/user", true),
        ("POST", "/test/kyc", true),
        ("POST", "/faucet/31337", true),
        ("POST", "/faucet/not-a-chain", true),
        ("POST", "/donations", true),
        ("POST", "/auth/login", false),
    ];
    for (method, path, authenticated) in endpoints {
        for (content_type, body) in &bodies {
            let mut request = app
                .client
                .request(method.parse().unwrap(), app.url(path))
                .body(body.clone());
            if let Some(content_type) = content_type {
                request = request.header("content-type", *content_type);
            }
            if authenticated {
                request = request.bearer_auth(&token);
            }
            let (status, answer) = app.send(request).await;
            let shown = &body[..body.len().min(80)];
            assert!(
                (400..500).contains(&status),
                "{method} {path} {shown:?} answered {status}: {answer}"
            );
            assert!(
                answer["error"]["code"].is_string(),
                "{method} {path} {shown:?}: {answer}"
            );
        }
    }
    // Bodies that are not objects on endpoints without a body are ignored, not fatal.
    let (status, _) = app
        .send(
            app.client
                .post(app.url("/authorize/by-message"))
                .body("garbage"),
        )
        .await;
    assert_eq!(status, 200);
    app.stop().await;
}

async fn forged_expired_and_tampered_tokens_are_rejected(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let token = app.login(&Wallet::random()).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert!(header["kid"].is_string());
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());

    let none = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT", "kid": header["kid"]})),
        parts[1]
    );
    // HS256 keyed with the server's public modulus (from the JWKS), the classic confusion.
    let (_, jwks) = app
        .send(app.client.get(app.url("/.well-known/jwks.json")))
        .await;
    let modulus = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["n"].as_str().unwrap())
        .unwrap();
    let hs_input = format!(
        "{}.{}",
        encode(&json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]})),
        parts[1]
    );
    let hs = {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&modulus).unwrap();
        mac.update(hs_input.as_bytes());
        format!(
            "{hs_input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    claims["address"] = json!("0x0000000000000000000000000000000000000001");
    let tampered = format!("{}.{}.{}", parts[0], encode(&claims), parts[2]);

    for forged in [
        none.as_str(),
        hs.as_str(),
        tampered.as_str(),
        "abc",
        "a.b.c",
    ] {
        let (status, body) = app.get_auth("/user", forged).await;
        assert_error(status, &body, 401, "authentication_error", None);
    }
    for header in ["Basic abc", "Bearer", "Bearer ", "token"] {
        let (status, body) = app
            .send(
                app.client
                    .get(app.url("/user"))
                    .header("authorization", header),
            )
            .await;
        assert_error(status, &body, 401, "authentication_error", None);
    }
    assert_eq!(app.get_auth("/user", &token).await.0, 200);
    app.clock.advance_ms(24 * 60 * 60 * 1000 + 1000);
    let (status, body) = app.get_auth("/user", &token).await;
    assert_error(status, &body, 401, "authentication_error", None);
    app.stop().await;
}

async fn test_kyc_verifies_only_the_callers_wallet(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (wallet, other) = (Wallet::random(), Wallet::random());
    let token = app.login(&wallet).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"address": other.address(), "first_name": "John", "last_name": "Doe"});
    let (status, answer) = app.post_auth("/test/kyc", &token, body).await;
    assert_error(status, &answer, 403, "authorization_error", None);
    let (status, answer) = app
        .post(
            "/test/kyc",
            json!({"address": wallet.address(), "first_name": "John", "last_name": "Doe"}),
        )
        .await;
    assert_error(status, &answer, 401, "authentication_error", None);
    let body =
        json!({"address": wallet.checksum_address(), "first_name": "John", "last_name": "Doe"});
    let (status, user) = app.post_auth("/test/kyc", &token, body).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["kyc_completed"], true);
    assert_eq!(app.get_auth("/user", &token).await.1["kyc_completed"], true);
    app.stop().await;
}

/// Without test mode, `/test/kyc` answers 403 whatever the request holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kyc_answers_403_outside_test_mode() {
    let app = TestApp::start_with(Backend::Sqlite, |s| s.test_mode = false)
        .await
        .unwrap();
    let wallet = Wallet::random();
    let token = app.login(&wallet).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"address": wallet.address(), "first_name": "John", "last_name": "Doe"});
    let (status, answer) = app.post_auth("/test/kyc", &token, body).await;
    assert_error(status, &answer, 403, "authorization_error", None);
    let (status, answer) = app.post("/test/kyc", json!("garbage")).await;
    assert_error(status, &answer, 403, "authorization_error", None);
    assert_eq!(
        app.get_auth("/user", &token).await.1["kyc_completed"],
        false
    );
    app.stop().await;
}

/// With Redis configured, `/ready` checks it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_checks_redis_when_it_is_configured() {
    let Ok(redis_url) = std::env::var("TEST_REDIS_URL") else {
        eprintln!("TEST_REDIS_URL is not set: skipping");
        return;
    };
    let app = TestApp::start_with(Backend::Sqlite, |s| {
        s.redis_url = Some(ampflow_http::config::Secret::new(redis_url))
    })
    .await
    .unwrap();
    let (status, body) = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
    app.stop().await;
}

/// Every error code the API answers with (`ErrorCode::ALL`, the one list) has its row in the
/// README's error table, so a new code cannot ship undocumented.
#[test]
fn every_error_code_is_documented_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("read the README");
    // The codes in the first cell of the table's rows (a row may name several).
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split(" | ").next())
        .flat_map(|cell| cell.split('`').step_by(2))
        .map(|code| code.trim_matches(|c: char| c == ',' || c == '/' || c.is_whitespace()))
        .collect();
    let missing: Vec<&str> = ampflow_http::error::ErrorCode::ALL
        .iter()
        .map(|code| code.as_str())
        .filter(|code| !documented.contains(code))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without a row in the README's error table: {missing:?}"
    );
}
