//! The route × credential matrix (issue 14): every operation the server serves, called with
//! every kind of credential a caller can bring, answers what its OpenAPI document says, on
//! SQLite and PostgreSQL.
//!
//! What an operation accepts comes from the document (`GET /openapi.json`): its `security`
//! names the credentials (`wallet`, `cookie` and `api_key` with the policies they need,
//! `igf`, the webhook signatures, `metrics_token`, or an empty requirement for "anyone"). The
//! table [`fixture`] gives each operation a request and says whose resource it touches. The
//! test fails when an operation has no entry, when an entry names no operation, when a route is
//! added outside the documented router, when a cell answers otherwise than the document
//! implies, or when a refusal's status is not among the operation's documented responses.
//!
//! The cells: no credential; a valid, forged, expired, logged-out and revoked-family wallet
//! token, and another wallet's; a session cookie of an admin, a member, another organisation's
//! admin, and a forged, expired and logged-out one; an API key with every policy, its access
//! token, a key without the operation's policy, another organisation's key, a forged key, a
//! key of the other mode, an expired and a revoked access token; partner signatures (valid,
//! forged, another organisation's); webhook signatures (valid, forged).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use ampflow_http::config::Secret;
use ampflow_standins::stripe::StripeStandIn;
use ampflow_storage::testdb::Backend;
use ampflow_types::Clock;
use base64::Engine;
use common::dashboard::{ALL_POLICIES, Session, create_member, dashboard_settings, login};
use common::partner::{donation_body, http_date, sign};
use common::{TestApp, Wallet};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

on_both_databases!(every_route_answers_every_credential_as_documented);

const STRIPE_KEY: &str = "sk_test_matrix";
const STRIPE_WEBHOOK_SECRET: &str = "whsec_matrix";
const VERIFF_API_KEY: &str = "veriff-matrix-api-key";
const VERIFF_SECRET: &str = "veriff-matrix-shared-secret";
const CHAIN: u64 = 31337;
/// What a member's role holds; an admin holds every policy.
const MEMBER_POLICIES: [&str; 3] = ["donations:read", "ledger:read", "organisations:read"];

/// A partner access key.
#[derive(Clone)]
struct PartnerKey {
    id: String,
    secret: String,
}

/// A credential, as a request carries it.
#[derive(Clone)]
enum Cred {
    None,
    /// A wallet's access token.
    Bearer(String),
    /// An API key or one of its access tokens.
    Key(String),
    Cookie(String),
    Partner(PartnerKey),
    PartnerForged,
    Stripe,
    StripeForged,
    Veriff,
    VeriffForged,
}

/// What a cell must answer.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Past the trust boundary: neither 401, 403 nor a refused signature (what the operation
    /// then answers is its own business, a 400 or a 404 included).
    Pass,
    /// Refused with one of these statuses.
    Refused(&'static [u16]),
}

const UNAUTHENTICATED: Expect = Expect::Refused(&[401]);
const FORBIDDEN: Expect = Expect::Refused(&[403]);
const ANOTHER_OWNER: Expect = Expect::Refused(&[403, 404]);

/// Whose resource an operation's fixture touches: wallet A's (another wallet gets 403 or
/// 404), organisation 1's (another organisation's credential gets 403 or 404), or both.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct Owner {
    wallet_a: bool,
    organisation: bool,
}

/// Operations that end the credential they are called with: their passing cells get fresh
/// credentials of their own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Consumes {
    Nothing,
    Credential,
}

/// How to call one operation.
struct Fixture {
    path: String,
    body: Option<Value>,
    /// Appended to the path for session cookies and API keys (they name the organisation; a
    /// wallet may not).
    dashboard_query: Option<String>,
    owner: Owner,
    consumes: Consumes,
}

fn call(path: impl Into<String>, body: Option<Value>) -> Fixture {
    Fixture {
        path: path.into(),
        body,
        dashboard_query: None,
        owner: Owner::default(),
        consumes: Consumes::Nothing,
    }
}

impl Fixture {
    fn of_wallet_a(mut self) -> Self {
        self.owner.wallet_a = true;
        self
    }

    fn of_organisation(mut self) -> Self {
        self.owner.organisation = true;
        self
    }

    fn consuming(mut self) -> Self {
        self.consumes = Consumes::Credential;
        self
    }

    fn for_dashboards(mut self, query: String) -> Self {
        self.dashboard_query = Some(query);
        self
    }
}

/// Everything the cells use, made before and after the clock jumps 100 days (so the "old"
/// credentials have expired).
struct World {
    org1: String,
    wallet_a: Wallet,
    token_a: String,
    token_b: String,
    token_expired: String,
    token_logged_out: String,
    token_revoked_family: String,
    admin1: Session,
    member1: Session,
    admin2: Session,
    admin1_other_session: Session,
    cookie_expired: String,
    cookie_logged_out: String,
    key_all: String,
    key_all_token: String,
    key_all_org2: String,
    key_token_expired: String,
    key_token_revoked: String,
    victim_key_id: String,
    donation_a: String,
    partner1: PartnerKey,
    partner2: PartnerKey,
    partner_guid: String,
}

async fn start(backend: Backend) -> Option<(TestApp, StripeStandIn)> {
    let stripe = StripeStandIn::start(STRIPE_KEY, STRIPE_WEBHOOK_SECRET)
        .await
        .unwrap();
    let base_url = stripe.base_url();
    let app = TestApp::start_with(backend, |s| {
        dashboard_settings(s);
        s.stripe.secret_key = Some(Secret::new(STRIPE_KEY));
        s.stripe.webhook_secrets = vec![Secret::new(STRIPE_WEBHOOK_SECRET)];
        s.stripe.base_url = base_url;
        s.veriff.api_key = Some(Secret::new(VERIFF_API_KEY));
        s.veriff.shared_secret = Some(Secret::new(VERIFF_SECRET));
        // Nothing listens there: a session call answers 503, after the boundary.
        s.veriff.base_url = "http://127.0.0.1:9".into();
        s.veriff.request_timeout_ms = 500;
    })
    .await?;
    Some((app, stripe))
}

async fn key_with(
    app: &TestApp,
    org: &str,
    admin: &Session,
    policies: &[&str],
) -> (String, String) {
    let (status, body) = common::dashboard::call(
        app,
        "POST",
        "/admin/api-keys",
        admin,
        Some(json!({"organisation_id": org, "name": "matrix", "policies": policies})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["data"]["id"].as_str().unwrap().to_string(),
        body["data"]["key"].as_str().unwrap().to_string(),
    )
}

async fn mint(app: &TestApp, admin: &Session, key_id: &str, days: u32) -> String {
    let path = format!("/admin/api-keys/{key_id}/tokens");
    let body = json!({"expires_in_days": days});
    let (status, answer) = common::dashboard::call(app, "POST", &path, admin, Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    answer["data"]["token"].as_str().unwrap().to_string()
}

async fn logged_out_cookie(app: &TestApp, email: &str) -> String {
    let session = login(app, email).await;
    let (status, body) = common::dashboard::call(app, "POST", "/auth/logout", &session, None).await;
    assert_eq!(status, 200, "{body}");
    session.cookie
}

async fn build_world(app: &TestApp) -> World {
    let org1 = common::verified_organisation(app, "Food Bank", None).await;
    let org2 = common::verified_organisation(app, "Seed Bank", None).await;
    create_member(app, &org1, "admin1@example.org", "admin").await;
    create_member(app, &org1, "member1@example.org", "member").await;
    create_member(app, &org1, "spare@example.org", "admin").await;
    create_member(app, &org2, "admin2@example.org", "admin").await;

    // Credentials that the jump of the clock expires: a wallet token (1 day), a session
    // (7 days), a key's access token (1 day).
    let token_expired = app.access_token(&Wallet::random()).await;
    let old_admin = login(app, "admin1@example.org").await;
    let (expiring_key, _) = key_with(app, &org1, &old_admin, &ALL_POLICIES).await;
    let key_token_expired = mint(app, &old_admin, &expiring_key, 1).await;
    app.clock.advance_ms(100 * 86_400_000);

    let wallet_a = Wallet::random();
    let token_a = app.access_token(&wallet_a).await;
    let token_b = app.access_token(&Wallet::random()).await;
    let token_logged_out = app.access_token(&Wallet::random()).await;
    let (status, body) = app
        .post_auth("/user/logout", &token_logged_out, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    // A refresh family revoked by a replayed refresh token: the access token minted by the
    // refresh stops working too.
    let first = app.login(&Wallet::random()).await;
    let (status, second) = app
        .post(
            "/authorize/refresh",
            json!({"refresh_token": first["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    let (status, _) = app
        .post(
            "/authorize/refresh",
            json!({"refresh_token": first["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 401);
    let token_revoked_family = second["access_token"].as_str().unwrap().to_string();

    let admin1 = login(app, "admin1@example.org").await;
    let admin1_other_session = login(app, "admin1@example.org").await;
    let member1 = login(app, "member1@example.org").await;
    let admin2 = login(app, "admin2@example.org").await;
    let cookie_logged_out = logged_out_cookie(app, "admin1@example.org").await;

    let (key_all_id, key_all) = key_with(app, &org1, &admin1, &ALL_POLICIES).await;
    let key_all_token = mint(app, &admin1, &key_all_id, 30).await;
    let (_, key_all_org2) = key_with(app, &org2, &admin2, &ALL_POLICIES).await;
    let (revoked_id, _) = key_with(app, &org1, &admin1, &["donations:read"]).await;
    let key_token_revoked = mint(app, &admin1, &revoked_id, 30).await;
    let path = format!("/admin/api-keys/{revoked_id}/revoke-tokens");
    let (status, body) =
        common::dashboard::call(app, "POST", &path, &admin1, Some(json!({"tokens": "all"}))).await;
    assert_eq!(status, 200, "{body}");
    let (victim_key_id, _) = key_with(app, &org1, &admin1, &["donations:read"]).await;

    let donation = json!({"organisation_id": org1, "amount": 500, "currency": "EUR", "donor_email": "a@example.org"});
    let (status, body) = app.post_auth("/donations", &token_a, donation).await;
    assert_eq!(status, 201, "{body}");
    let donation_a = body["data"]["id"].as_str().unwrap().to_string();

    let partner = |org: String| async move {
        let key = app
            .app()
            .actors()
            .partners()
            .create_key(&org, &[], Some("Publisher"))
            .await
            .unwrap();
        PartnerKey {
            id: key.id,
            secret: key.secret,
        }
    };
    let partner1 = partner(org1.clone()).await;
    let partner2 = partner(org2.clone()).await;
    let body = donation_body().to_string();
    let response = send(
        app,
        "POST",
        "/igive-api/v1_0/donation",
        Some(&body),
        &Cred::Partner(partner1.clone()),
    )
    .await;
    assert_eq!(response.0, 201, "{}", response.1);
    let partner_guid = response.1["guid"]
        .as_str()
        .or_else(|| response.1["donationGuid"].as_str())
        .or_else(|| response.1.as_str())
        .unwrap_or_else(|| panic!("a partner donation guid in {}", response.1))
        .to_string();
    World {
        org1,
        wallet_a,
        token_a,
        token_b,
        token_expired,
        token_logged_out,
        token_revoked_family,
        admin1,
        member1,
        admin2,
        admin1_other_session,
        cookie_expired: old_admin.cookie,
        cookie_logged_out,
        key_all,
        key_all_token,
        key_all_org2,
        key_token_expired,
        key_token_revoked,
        victim_key_id,
        donation_a,
        partner1,
        partner2,
        partner_guid,
    }
}

/// The request for every documented operation; `None` for an operation nobody described,
/// which fails the test.
fn fixture(w: &World, method: &str, path: &str) -> Option<Fixture> {
    let a = w.wallet_a.address();
    let campaign = format!("0x{}", "11".repeat(20));
    let org1 = &w.org1;
    let victim = &w.victim_key_id;
    let org_query = format!("organisation_id={org1}");
    Some(match (method, path) {
        ("get", "/.well-known/jwks.json")
        | ("get", "/health")
        | ("get", "/ready")
        | ("get", "/openapi.json")
        | ("get", "/metrics")
        | ("get", "/public/checkpoints")
        | ("get", "/public/checkpoints/key")
        | ("get", "/public/organisations")
        | ("post", "/authorize/by-message") => call(path, None),
        ("post", "/auth/login") => call(path, Some(json!({"email": "", "password": "x"}))),
        ("post", "/authorize") => call(path, Some(json!({"address": a}))),
        ("post", "/authorize/jwt") => {
            call(path, Some(json!({"address": a, "signed_payload": "0x00"})))
        }
        ("post", "/authorize/jwt/by-message") => call(
            path,
            Some(json!({"address": a, "message_to_sign": "hello", "signed_payload": "0x00"})),
        ),
        ("post", "/authorize/refresh") => call(path, Some(json!({"refresh_token": ""}))),
        ("get", "/auto_invest/{chainId}/campaign/{address}") => {
            call(format!("/auto_invest/{CHAIN}/campaign/{campaign}"), None)
        }
        ("get", "/auto_invest/{chainId}/{address}") => {
            call(format!("/auto_invest/{CHAIN}/{a}"), None)
        }
        ("get", "/auto_invest/{chainId}/{address}/history") => {
            call(format!("/auto_invest/{CHAIN}/{a}/history"), None)
        }
        ("post", "/auto_invest/{chainId}/{address}") => call(
            format!("/auto_invest/{CHAIN}/{campaign}"),
            Some(json!({"amount": "100"})),
        ),
        ("delete", "/auto_invest/{chainId}/{address}") => {
            call(format!("/auto_invest/{CHAIN}/{campaign}"), None)
        }
        ("get", "/nonprofit-json/{publisher_campaign_guid}") => call(
            "/nonprofit-json/59e680df-df0a-42c3-969a-800d35ca5684",
            None,
        ),
        ("get", "/public/checkpoints/{id}") => call("/public/checkpoints/chk_2026-01-01", None),
        ("get", "/public/ledger/entries/{id}/proof") => {
            call("/public/ledger/entries/led_0/proof", None)
        }
        ("get", "/public/organisations/{id}") => call(format!("/public/organisations/{org1}"), None),
        ("get", "/public/organisations/{id}/ledger") => {
            call(format!("/public/organisations/{org1}/ledger"), None).of_organisation()
        }
        ("get", "/public/organisations/{id}/ledger/export") => {
            call(format!("/public/organisations/{org1}/ledger/export"), None)
                .of_organisation()
        }
        ("get", "/public/organisations/{id}/ledger/proofs") => {
            call(format!("/public/organisations/{org1}/ledger/proofs"), None)
        }
        // Wallet routes.
        ("get", "/user") | ("get", "/user/whitelist") | ("post", "/veriff/session") => {
            call(path, None)
        }
        ("put", "/user") => call(path, Some(json!({"email": "a@example.org"}))),
        ("post", "/user/logout") => call(path, Some(json!({}))).consuming(),
        ("post", "/user/whitelist") => call(
            path,
            Some(json!({"issuer_address": campaign, "chain_id": CHAIN})),
        ),
        ("post", "/test/kyc") => call(
            path,
            Some(json!({"address": a, "first_name": "Jane", "last_name": "Doe"})),
        )
        .of_wallet_a(),
        ("post", "/faucet/{chainId}") => {
            call(format!("/faucet/{CHAIN}"), Some(json!({"re_captcha_token": "t"})))
        }
        ("get", "/faucet/{chainId}/requests/{id}") => call(
            format!("/faucet/{CHAIN}/requests/{}", uuid::Uuid::new_v4()),
            None,
        ),
        // Donations: wallets, sessions and keys.
        ("post", "/donations") => call(
            path,
            Some(json!({"organisation_id": org1, "amount": 500, "currency": "EUR", "donor_email": "d@example.org"})),
        )
        .of_organisation(),
        ("get", "/donations") => call(path, None)
            .for_dashboards(org_query.clone())
            .of_organisation(),
        ("get", "/donations/{id}") => call(format!("/donations/{}", w.donation_a), None)
            .of_wallet_a()
            .of_organisation(),
        // Dashboard sessions.
        ("get", "/auth/me") | ("get", "/auth/sessions") | ("get", "/me/organisations") => {
            call(path, None)
        }
        ("post", "/auth/logout") | ("post", "/auth/logout-all") => {
            call(path, None).consuming()
        }
        ("post", "/auth/password") => call(
            path,
            Some(json!({"current_password": "not the password", "new_password": "a new long password"})),
        )
        .consuming(),
        ("patch", "/auth/security-settings") => {
            call(path, Some(json!({"notify_new_device": true})))
        }
        ("delete", "/auth/sessions/{session_id}") => {
            call(format!("/auth/sessions/{}", w.admin1_other_session.id), None)
        }
        ("get", "/organisations/{id}") => {
            call(format!("/organisations/{org1}"), None).of_organisation()
        }
        ("patch", "/organisations/{id}") => call(
            format!("/organisations/{org1}"),
            Some(json!({"name": "Food Bank"})),
        )
        .of_organisation(),
        ("get", "/organisations/{id}/stripe/connect") => {
            call(format!("/organisations/{org1}/stripe/connect"), None)
                .of_organisation()
        }
        ("get", "/audit-events") => call(path, None)
            .for_dashboards(org_query.clone())
            .of_organisation(),
        // API keys.
        ("post", "/admin/api-keys") => call(
            path,
            Some(json!({"organisation_id": org1, "name": "made", "policies": ["ledger:read"]})),
        )
        .of_organisation(),
        ("get", "/admin/api-keys") => {
            call(format!("/admin/api-keys?{org_query}"), None).of_organisation()
        }
        ("get", "/admin/api-keys/{id}") | ("delete", "/admin/api-keys/{id}") => {
            call(format!("/admin/api-keys/{victim}"), None).of_organisation()
        }
        ("patch", "/admin/api-keys/{id}") => call(
            format!("/admin/api-keys/{victim}"),
            Some(json!({"name": "renamed"})),
        )
        .of_organisation(),
        ("post", "/admin/api-keys/{id}/rotate") => {
            call(format!("/admin/api-keys/{victim}/rotate"), Some(json!({})))
                .of_organisation()
        }
        ("post", "/admin/api-keys/{id}/revoke-tokens") => call(
            format!("/admin/api-keys/{victim}/revoke-tokens"),
            Some(json!({"tokens": "old"})),
        )
        .of_organisation(),
        ("post", "/admin/api-keys/{id}/tokens") => call(
            format!("/admin/api-keys/{victim}/tokens"),
            Some(json!({"expires_in_days": 1})),
        )
        .of_organisation(),
        // Partners and webhooks.
        ("post", "/igive-api/v1_0/donation") => call(path, Some(donation_body())),
        ("get", "/igive-api/v1_0/donation/{guid}") | ("delete", "/igive-api/v1_0/donation/{guid}") => {
            call(format!("/igive-api/v1_0/donation/{}", w.partner_guid), None)
                .of_organisation()
        }
        ("post", "/webhooks/stripe") => call(path, Some(json!({}))),
        ("post", "/veriff/webhook/decision") | ("post", "/veriff/webhook/event") => {
            call(path, Some(json!({})))
        }
        _ => return None,
    })
}

/// The credentials an operation's `security` accepts, with the policies each needs (any one
/// of them), and whether anyone may call it.
struct Security {
    anyone: bool,
    schemes: Vec<(String, Vec<String>)>,
}

impl Security {
    fn of(operation: &Value) -> Self {
        let requirements = operation["security"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let anyone = requirements.is_empty()
            || requirements
                .iter()
                .any(|r| r.as_object().is_some_and(|o| o.is_empty()));
        let schemes = requirements
            .iter()
            .filter_map(|r| r.as_object())
            .flat_map(|o| o.iter())
            .map(|(name, scopes)| {
                let scopes = scopes
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect();
                (name.clone(), scopes)
            })
            .collect();
        Self { anyone, schemes }
    }

    fn scopes(&self, scheme: &str) -> Option<&[String]> {
        self.schemes
            .iter()
            .find(|(name, _)| name == scheme)
            .map(|(_, scopes)| scopes.as_slice())
    }

    /// What a credential of a kind the operation does not take answers: ignored where anyone
    /// may call, refused elsewhere (a bad Stripe signature is 400 by Stripe's convention).
    fn foreign(&self) -> Expect {
        if self.anyone {
            Expect::Pass
        } else if self.scopes("stripe_signature").is_some() {
            Expect::Refused(&[400])
        } else {
            UNAUTHENTICATED
        }
    }
}

/// One cell: a name for the failure message, the credential, the expectation.
type Cell = (&'static str, Cred, Expect);

fn wallet_cells(w: &World, security: &Security, fixture: &Fixture) -> Vec<Cell> {
    let bearer = |t: &str| Cred::Bearer(t.to_string());
    let forged = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIweDAwIn0.c2lnbmF0dXJl";
    let mut cells = Vec::new();
    if security.scopes("wallet").is_some() {
        cells.push(("wallet A", bearer(&w.token_a), Expect::Pass));
        for (name, token) in [
            ("forged wallet token", forged),
            ("expired wallet token", &w.token_expired),
            ("logged-out wallet token", &w.token_logged_out),
            ("revoked-family wallet token", &w.token_revoked_family),
        ] {
            cells.push((name, bearer(token), UNAUTHENTICATED));
        }
        let other = if fixture.owner.wallet_a {
            ANOTHER_OWNER
        } else {
            Expect::Pass
        };
        cells.push(("wallet B", bearer(&w.token_b), other));
    } else {
        let foreign = security.foreign();
        cells.push(("wallet token", bearer(&w.token_a), foreign));
        cells.push(("forged wallet token", bearer(forged), foreign));
    }
    cells
}

fn cookie_cells(w: &World, security: &Security, fixture: &Fixture) -> Vec<Cell> {
    let cookie = |c: &str| Cred::Cookie(c.to_string());
    let mut cells = Vec::new();
    let Some(scopes) = security.scopes("cookie") else {
        let foreign = security.foreign();
        cells.push(("session cookie", cookie(&w.admin1.cookie), foreign));
        cells.push((
            "forged session cookie",
            cookie("ses_forged.c2VjcmV0"),
            foreign,
        ));
        return cells;
    };
    cells.push(("admin session", cookie(&w.admin1.cookie), Expect::Pass));
    let member_may =
        scopes.is_empty() || scopes.iter().any(|s| MEMBER_POLICIES.contains(&s.as_str()));
    let member = if member_may { Expect::Pass } else { FORBIDDEN };
    cells.push(("member session", cookie(&w.member1.cookie), member));
    let other = if fixture.owner.organisation {
        ANOTHER_OWNER
    } else {
        Expect::Pass
    };
    cells.push((
        "another organisation's admin",
        cookie(&w.admin2.cookie),
        other,
    ));
    let forged = format!("{}.{}", w.admin1.id, "Zm9yZ2Vk".repeat(5));
    for (name, value) in [
        ("forged session cookie", forged.as_str()),
        ("expired session cookie", &w.cookie_expired),
        ("logged-out session cookie", &w.cookie_logged_out),
    ] {
        cells.push((name, cookie(value), UNAUTHENTICATED));
    }
    cells
}

async fn key_cells(app: &TestApp, w: &World, security: &Security, fixture: &Fixture) -> Vec<Cell> {
    let bearer = |t: &str| Cred::Key(t.to_string());
    let random = || {
        let bytes: [u8; 32] = rand::random();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let forged = format!("sk_test_{}", random());
    let other_mode = format!("sk_live_{}", random());
    let mut cells = Vec::new();
    let Some(scopes) = security.scopes("api_key") else {
        let foreign = security.foreign();
        cells.push(("API key", bearer(&w.key_all), foreign));
        cells.push(("forged API key", bearer(&forged), foreign));
        return cells;
    };
    cells.push((
        "API key with every policy",
        bearer(&w.key_all),
        Expect::Pass,
    ));
    cells.push(("its access token", bearer(&w.key_all_token), Expect::Pass));
    let other = if fixture.owner.organisation {
        ANOTHER_OWNER
    } else {
        Expect::Pass
    };
    cells.push(("another organisation's key", bearer(&w.key_all_org2), other));
    for (name, key) in [
        ("forged API key", forged.as_str()),
        ("API key of the other mode", &other_mode),
        ("expired key token", &w.key_token_expired),
        ("revoked key token", &w.key_token_revoked),
    ] {
        cells.push((name, bearer(key), UNAUTHENTICATED));
    }
    if !scopes.is_empty() {
        // Every policy but the ones the operation takes.
        let without: Vec<&str> = ALL_POLICIES
            .into_iter()
            .filter(|p| !scopes.iter().any(|s| s == p))
            .collect();
        let (_, key) = key_with(app, &w.org1, &w.admin1, &without).await;
        cells.push(("API key without the policy", Cred::Key(key), FORBIDDEN));
    }
    cells
}

fn signature_cells(w: &World, security: &Security, fixture: &Fixture) -> Vec<Cell> {
    let mut cells = Vec::new();
    if security.scopes("igf").is_some() {
        cells.push((
            "partner signature",
            Cred::Partner(w.partner1.clone()),
            Expect::Pass,
        ));
        cells.push((
            "forged partner signature",
            Cred::PartnerForged,
            UNAUTHENTICATED,
        ));
        let other = if fixture.owner.organisation {
            Expect::Refused(&[404])
        } else {
            Expect::Pass
        };
        cells.push((
            "another organisation's partner key",
            Cred::Partner(w.partner2.clone()),
            other,
        ));
    }
    if security.scopes("stripe_signature").is_some() {
        cells.push(("Stripe signature", Cred::Stripe, Expect::Pass));
        cells.push((
            "forged Stripe signature",
            Cred::StripeForged,
            Expect::Refused(&[400]),
        ));
    }
    if security.scopes("veriff_signature").is_some() {
        cells.push(("Veriff signature", Cred::Veriff, Expect::Pass));
        cells.push((
            "forged Veriff signature",
            Cred::VeriffForged,
            UNAUTHENTICATED,
        ));
    }
    cells
}

fn hex_hmac_sha256(secret: &str, data: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Sends one request with `cred`; answers the status and the JSON body (`Null` when none).
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<&str>,
    cred: &Cred,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method.to_uppercase().parse().unwrap(), app.url(path));
    let content_type = "application/json";
    if let Some(body) = body {
        request = request
            .header("content-type", content_type)
            .body(body.to_string());
    }
    let body = body.unwrap_or("");
    request = match cred {
        Cred::None => request,
        Cred::Bearer(token) | Cred::Key(token) => request.bearer_auth(token),
        // A browser on the server's own page sends its Origin with a write.
        Cred::Cookie(value) => request
            .header("cookie", format!("session={value}"))
            .header("origin", app.app().base_url()),
        Cred::Partner(key) => {
            let date = http_date(app, 0);
            let content_type = if body.is_empty() { "" } else { content_type };
            let signature = sign(
                &key.secret,
                &method.to_uppercase(),
                body,
                content_type,
                &date,
                path,
            );
            request
                .header("date", date)
                .header("authorization", format!("IGF {}:{signature}", key.id))
        }
        Cred::PartnerForged => request
            .header("date", http_date(app, 0))
            .header("authorization", "IGF nobody:Zm9yZ2Vk"),
        Cred::Stripe | Cred::StripeForged => {
            let t = app.clock.now_ms() / 1000;
            let secret = match cred {
                Cred::Stripe => STRIPE_WEBHOOK_SECRET,
                _ => "whsec_forged",
            };
            let v1 = hex_hmac_sha256(secret, &format!("{t}.{body}"));
            request.header("stripe-signature", format!("t={t},v1={v1}"))
        }
        Cred::Veriff | Cred::VeriffForged => {
            let secret = match cred {
                Cred::Veriff => VERIFF_SECRET,
                _ => "forged-secret",
            };
            request
                .header("x-auth-client", VERIFF_API_KEY)
                .header("x-hmac-signature", hex_hmac_sha256(secret, body))
        }
    };
    app.send(request).await
}

/// Checks one answer against its cell; answers the failure, if any.
fn judge(
    operation: &str,
    cell: &str,
    expect: Expect,
    documented: &BTreeSet<u16>,
    (status, body): &(u16, Value),
) -> Option<String> {
    let code = body["error"]["code"].as_str().unwrap_or("");
    let refused = matches!(*status, 401 | 403) || code == "invalid_signature";
    let fail = |why: String| Some(format!("{operation} with {cell}: {why}: {status} {body}"));
    if *status >= 500 && !matches!(*status, 502 | 503) {
        return fail("a server error".into());
    }
    match expect {
        Expect::Pass if refused => fail("expected to pass the boundary".into()),
        Expect::Pass => None,
        Expect::Refused(statuses) if !statuses.contains(status) => {
            fail(format!("expected {statuses:?}"))
        }
        Expect::Refused(_) if !documented.contains(status) => {
            fail("the status is not among the operation's documented responses".into())
        }
        Expect::Refused(_) => {
            let expected_code = match status {
                401 => "authentication_error",
                403 => "authorization_error",
                404 => "not_found",
                _ => "invalid_signature",
            };
            (code != expected_code).then(|| {
                format!("{operation} with {cell}: code {code}, expected {expected_code}: {body}")
            })
        }
    }
}

/// A fresh credential of the same kind, for an operation that ends the one it is called with.
async fn fresh(app: &TestApp, cred: &Cred) -> Cred {
    match cred {
        Cred::Bearer(_) => Cred::Bearer(app.access_token(&Wallet::random()).await),
        Cred::Cookie(_) => Cred::Cookie(login(app, "spare@example.org").await.cookie),
        other => other.clone(),
    }
}

async fn every_route_answers_every_credential_as_documented(backend: Backend) {
    let Some((app, _stripe)) = start(backend).await else {
        return;
    };
    let world = build_world(&app).await;
    let (status, doc) = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(status, 200);
    let mut failures = Vec::new();
    let mut passing = Vec::new();
    let mut covered = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let name = format!("{} {path}", method.to_uppercase());
            let Some(fixture) = fixture(&world, method, path) else {
                failures.push(format!(
                    "{name}: no entry in the route matrix; add one to fixture()"
                ));
                continue;
            };
            covered += 1;
            let security = Security::of(operation);
            let documented: BTreeSet<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .filter_map(|k| k.parse().ok())
                .collect();
            let anonymous = if security.anyone {
                Expect::Pass
            } else {
                security.foreign()
            };
            let mut cells: Vec<Cell> = vec![("no credential", Cred::None, anonymous)];
            cells.extend(wallet_cells(&world, &security, &fixture));
            cells.extend(cookie_cells(&world, &security, &fixture));
            cells.extend(key_cells(&app, &world, &security, &fixture).await);
            cells.extend(signature_cells(&world, &security, &fixture));
            let body = fixture.body.as_ref().map(Value::to_string);
            for (cell, cred, expect) in cells {
                // Passing calls can change state (log out, delete, rotate): they run last.
                if matches!(expect, Expect::Pass) && !matches!(cred, Cred::None) {
                    passing.push((name.clone(), method.clone(), cell, cred, documented.clone()));
                    continue;
                }
                let mut target = fixture.path.clone();
                if let (Cred::Cookie(_) | Cred::Key(_), Some(query)) =
                    (&cred, &fixture.dashboard_query)
                {
                    target = format!("{target}?{query}");
                }
                let answer = send(&app, method, &target, body.as_deref(), &cred).await;
                failures.extend(judge(&name, cell, expect, &documented, &answer));
            }
        }
    }
    for (name, method, cell, cred, documented) in passing {
        let path = name.split_once(' ').unwrap().1;
        let fixture = fixture(&world, &method, path).unwrap();
        let cred = if fixture.consumes == Consumes::Credential {
            fresh(&app, &cred).await
        } else {
            cred
        };
        let mut target = fixture.path.clone();
        if let (Cred::Cookie(_) | Cred::Key(_), Some(query)) = (&cred, &fixture.dashboard_query) {
            target = format!("{target}?{query}");
        }
        let body = fixture.body.as_ref().map(Value::to_string);
        let answer = send(&app, &method, &target, body.as_deref(), &cred).await;
        failures.extend(judge(&name, cell, Expect::Pass, &documented, &answer));
    }
    assert!(covered >= 64, "only {covered} operations in the document");
    assert!(
        failures.is_empty(),
        "{} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    app.stop().await;
}

/// Every route is registered through utoipa's `routes!`, so the document (and with it the
/// matrix) sees it. The two partner `PUT` stubs answer 405 like the router's own fallback.
#[test]
fn every_route_is_registered_where_the_document_sees_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // Unit tests build routers of their own.
                let served = text.split("#[cfg(test)]").next().unwrap_or("");
                for (i, line) in served.lines().enumerate() {
                    if line.trim_start().starts_with(".route(") {
                        found.push(format!("{}:{}", path.display(), i + 1));
                    }
                }
            }
        }
    }
    let unexpected: Vec<_> = found
        .iter()
        .filter(|place| !place.contains("routes/partner.rs"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "routes added with .route() are not in the OpenAPI document, so the route matrix cannot see them; use routes!() with a #[utoipa::path]: {unexpected:?}"
    );
    assert_eq!(found.len(), 2, "{found:?}");
}
