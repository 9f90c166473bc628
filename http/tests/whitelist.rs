#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Whitelisting KYC'd wallets on issuers, against a real anvil with the platform deployed and
//! the Veriff stand-in: KYC approved through a signed webhook, then `POST /user/whitelist`,
//! then `isWalletApproved` is true on chain; approvals are batched into one `approveWallets`
//! per (chain, issuer); an approval the issuer refuses is recorded failed; and every refusal
//! (no JWT, bad input, unsupported chain, KYC missing or expired, an issuer not in the
//! registry or not managed by the platform) is clear.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use ampflow_chain::ChainSettings;
use ampflow_chain::contracts::Issuer;
use ampflow_chain::deploy::{DeployedContracts, FaucetFunding, deploy_platform};
use ampflow_http::config::{Secret, Settings};
use ampflow_standins::veriff::{Decision, SignatureScheme, VeriffStandIn};
use ampflow_storage::testdb::Backend;
use common::anvil::{Anvil, CHAIN_ID, DEV_KEY_0};
use common::{TestApp, Wallet, assert_error};
use serde_json::{Value, json};

on_both_databases!(
    kyc_approved_through_veriff_then_whitelisted_on_chain,
    approvals_are_batched_per_issuer,
    a_submitted_approval_shows_its_transaction_before_it_is_mined,
    an_approval_the_issuer_refuses_is_recorded_failed,
    kyc_missing_or_expired_is_refused,
    kyc_done_on_another_process_is_honoured_at_once,
    bad_requests_are_refused,
);

const VERIFF_API_KEY: &str = "0f6a8d52-0c55-4f0c-9d7e-whitelisting";
const VERIFF_SECRET: &str = "veriff-secret-for-whitelisting-tests";
/// anvil's second development account: deploys issuers the platform does not manage.
const DEV_KEY_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// A chain that is configured, with contracts, but whose node cannot be reached.
const DOWN_CHAIN_ID: ampflow_types::ChainId = ampflow_types::ChainId::new(999);
/// A chain that is configured without contracts.
const BARE_CHAIN_ID: ampflow_types::ChainId = ampflow_types::ChainId::new(998);

struct Setup {
    anvil: Anvil,
    app: TestApp,
    contracts: DeployedContracts,
}

fn signer() -> PrivateKeySigner {
    DEV_KEY_0.parse().unwrap()
}

async fn setup(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<Setup> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let anvil = Anvil::start().await;
    let contracts = deploy_platform(
        &anvil.url,
        signer(),
        FaucetFunding {
            reward_wei: U256::from(1u64),
            balance_threshold_wei: U256::from(1u64),
            initial_balance_wei: U256::ZERO,
        },
    )
    .await
    .unwrap();
    let tx = ampflow_chain::tx::TxSettings {
        poll_interval_ms: 100,
        max_backoff_ms: 1_000,
        ..Default::default()
    };
    let chain = ChainSettings {
        chain_id: CHAIN_ID,
        name: "anvil".into(),
        rpc_url: anvil.url.clone(),
        contracts: Some(contracts.clone()),
        tx: tx.clone(),
        whitelist: ampflow_chain::BatchSettings {
            max_wait_ms: 200,
            retry_backoff_ms: 100,
            ..Default::default()
        },
        ..Default::default()
    };
    let down = ChainSettings {
        chain_id: DOWN_CHAIN_ID,
        name: "unreachable".into(),
        rpc_url: "http://127.0.0.1:1".into(),
        contracts: Some(contracts.clone()),
        tx,
        ..Default::default()
    };
    let bare = ChainSettings {
        chain_id: BARE_CHAIN_ID,
        name: "bare".into(),
        rpc_url: anvil.url.clone(),
        ..Default::default()
    };
    let signers = HashMap::from([(CHAIN_ID, signer()), (DOWN_CHAIN_ID, signer())]);
    let app = TestApp::start_signing(backend, signers, |s| {
        s.chains = vec![chain, down, bare];
        tweak(s);
    })
    .await?;
    // The deployment registered the issuer on the WalletApprover; the database learns it as
    // `ampflow chain deploy` records it.
    for chain_id in [CHAIN_ID, DOWN_CHAIN_ID] {
        trust(&app, chain_id, contracts.issuer).await;
    }
    Some(Setup {
        anvil,
        app,
        contracts,
    })
}

/// Records an issuer in the database's registry of trusted contracts.
async fn trust(app: &TestApp, chain_id: ampflow_types::ChainId, issuer: Address) {
    app.app()
        .actors()
        .trusted()
        .record(chain_id, ampflow_types::TrustedKind::Issuer, &[issuer])
        .await
        .unwrap();
}

/// KYC through the test-mode shortcut (no document, so it never expires).
async fn test_kyc(app: &TestApp, wallet: &Wallet, token: &str) {
    let (status, body) = app
        .post_auth(
            "/test/kyc",
            token,
            json!({"address": wallet.address(), "first_name": "Ada", "last_name": "Lovelace"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The setup, with Veriff pointing at a stand-in that sends its webhooks to the app.
async fn setup_with_veriff(backend: Backend) -> Option<(Setup, VeriffStandIn)> {
    let veriff = VeriffStandIn::start(VERIFF_API_KEY, VERIFF_SECRET)
        .await
        .unwrap();
    let base_url = veriff.base_url();
    let setup = setup(backend, |s| {
        s.veriff.base_url = base_url;
        s.veriff.api_key = Some(Secret::new(VERIFF_API_KEY.to_string()));
        s.veriff.shared_secret = Some(Secret::new(VERIFF_SECRET.to_string()));
        s.veriff.callback_url = Some("https://app.example.org/kyc/done".into());
    })
    .await?;
    veriff.set_webhook_base(&setup.app.app().base_url());
    Some((setup, veriff))
}

/// Opens a Veriff session for the caller and has Veriff deliver `decision` for it, signed
/// with `scheme`.
async fn veriff_decides(
    app: &TestApp,
    veriff: &VeriffStandIn,
    token: &str,
    decision: Decision,
    scheme: SignatureScheme,
) {
    let (status, session) = app
        .send(
            app.client
                .post(app.url("/veriff/session"))
                .bearer_auth(token),
        )
        .await;
    assert_eq!(status, 200, "{session}");
    let session_id = veriff
        .sessions()
        .into_iter()
        .find(|s| s.url == session["verification_url"])
        .unwrap()
        .id;
    let delivered = veriff
        .send_decision(&session_id, &decision, scheme)
        .await
        .unwrap();
    assert_eq!(delivered, 200);
}

async fn ask(app: &TestApp, token: &str, issuer: Address) -> (u16, Value) {
    app.post_auth(
        "/user/whitelist",
        token,
        json!({"issuer_address": format!("{issuer:#x}"), "chain_id": CHAIN_ID}),
    )
    .await
}

async fn is_approved(anvil: &Anvil, issuer: Address, wallet: Address) -> bool {
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    Issuer::new(issuer, provider)
        .isWalletApproved(wallet)
        .call()
        .await
        .unwrap()
}

async fn signer_nonce(anvil: &Anvil) -> u64 {
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    provider
        .get_transaction_count(signer().address())
        .await
        .unwrap()
}

/// Polls `GET /user/whitelist` until request `id` has `status`, letting the manual clock run
/// so batches close.
async fn wait_for_status(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = app.get_auth("/user/whitelist", token).await;
        assert_eq!(code, 200, "{body}");
        let request = body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("request {id} is not listed: {body}"));
        if request["status"] == status {
            return request;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} never reached {status}: {request}"
        );
        app.clock.advance_ms(100);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn kyc_approved_through_veriff_then_whitelisted_on_chain(backend: Backend) {
    let Some((
        Setup {
            anvil,
            app,
            contracts,
        },
        veriff,
    )) = setup_with_veriff(backend).await
    else {
        return;
    };
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;

    // Before KYC: refused.
    let (status, body) = ask(&app, &token, contracts.issuer).await;
    assert_error(status, &body, 400, "kyc_required", None);

    // KYC through Veriff: a session, then Veriff's signed decision webhook.
    veriff_decides(
        &app,
        &veriff,
        &token,
        Decision::approved(),
        SignatureScheme::Hmac,
    )
    .await;

    let nonce_before = signer_nonce(&anvil).await;
    let (status, body) = ask(&app, &token, contracts.issuer).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["wallet_address"], wallet.address());
    assert_eq!(body["issuer_address"], format!("{:#x}", contracts.issuer));
    assert_eq!(body["chain_id"], CHAIN_ID.get());
    let id = body["id"].as_str().unwrap().to_string();

    // The same request while it is open queues nothing new.
    let (status, again) = ask(&app, &token, contracts.issuer).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());

    let confirmed = wait_for_status(&app, &token, &id, "confirmed").await;
    assert!(confirmed["tx_hash"].as_str().unwrap().starts_with("0x"));
    assert_eq!(confirmed["reason"], Value::Null);
    assert!(is_approved(&anvil, contracts.issuer, wallet.alloy_address()).await);
    assert_eq!(signer_nonce(&anvil).await, nonce_before + 1);

    // Approved already: 200, and no transaction is sent.
    let (status, body) = ask(&app, &token, contracts.issuer).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["id"], Value::Null);
    app.clock.advance_ms(1_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(signer_nonce(&anvil).await, nonce_before + 1);
    let (_, list) = app.get_auth("/user/whitelist", &token).await;
    assert_eq!(list["requests"].as_array().unwrap().len(), 1, "{list}");
    app.stop().await;
}

async fn approvals_are_batched_per_issuer(backend: Backend) {
    let Some(Setup {
        anvil,
        mut app,
        contracts,
    }) = setup(backend, |_| {}).await
    else {
        return;
    };
    let nonce_before = signer_nonce(&anvil).await;
    let wallets: Vec<Wallet> = (0..3).map(|_| Wallet::random()).collect();
    let mut queued = Vec::new();
    for wallet in &wallets {
        let token = app.access_token(wallet).await;
        test_kyc(&app, wallet, &token).await;
        let (status, body) = ask(&app, &token, contracts.issuer).await;
        assert_eq!(status, 202, "{body}");
        queued.push((token, body["id"].as_str().unwrap().to_string()));
    }
    // Queued work survives a restart: the batcher starts again for the open group.
    app.restart().await;
    let mut hashes = Vec::new();
    for (token, id) in &queued {
        let confirmed = wait_for_status(&app, token, id, "confirmed").await;
        hashes.push(confirmed["tx_hash"].clone());
    }
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    assert_eq!(
        signer_nonce(&anvil).await,
        nonce_before + 1,
        "one transaction"
    );
    for wallet in &wallets {
        assert!(is_approved(&anvil, contracts.issuer, wallet.alloy_address()).await);
    }
    app.stop().await;
}

/// With mining paused, the `approveWallets` transaction waits in the node's pool: the
/// `submitted` approval shows its hash in `GET /user/whitelist` (and in the answer to asking
/// again) before it is mined, and keeps it once confirmed.
async fn a_submitted_approval_shows_its_transaction_before_it_is_mined(backend: Backend) {
    let Some(Setup {
        anvil,
        app,
        contracts,
    }) = setup(backend, |_| {}).await
    else {
        return;
    };
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let _: () = provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    test_kyc(&app, &wallet, &token).await;
    let (status, body) = ask(&app, &token, contracts.issuer).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["tx_hash"], Value::Null, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let storage = app.app().storage().clone();
    let sent_hash = || async {
        storage
            .chain()
            .tx_intents_for_purpose("whitelist", 10)
            .await
            .unwrap()
            .into_iter()
            .find_map(|i| i.tx_hash)
    };
    let sent = common::wait_until(Duration::from_secs(30), || async {
        app.clock.advance_ms(100);
        sent_hash().await.is_some()
    })
    .await;
    assert!(sent, "the approveWallets transaction was never sent");
    let hash = sent_hash().await.unwrap();
    let shown = wait_for_status(&app, &token, &id, "submitted").await;
    assert_eq!(shown["tx_hash"], hash.as_str(), "{shown}");
    let (status, again) = ask(&app, &token, contracts.issuer).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["tx_hash"], hash.as_str(), "{again}");
    let pooled = provider
        .get_transaction_by_hash(hash.parse().unwrap())
        .await
        .unwrap()
        .expect("the node has the transaction");
    assert!(pooled.block_number.is_none(), "not mined yet");

    let _: () = provider
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
    let _: Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
    let confirmed = wait_for_status(&app, &token, &id, "confirmed").await;
    assert_eq!(confirmed["tx_hash"], hash.as_str(), "{confirmed}");
    assert!(is_approved(&anvil, contracts.issuer, wallet.alloy_address()).await);
    app.stop().await;
}

/// The issuer's owner hands its approver role elsewhere after the request was queued: the
/// WalletApprover's call is refused, its event says so, and the request is failed with the
/// reason (the transaction itself succeeded, so there is nothing to retry).
async fn an_approval_the_issuer_refuses_is_recorded_failed(backend: Backend) {
    let Some(Setup {
        anvil,
        app,
        contracts,
    }) = setup(backend, |_| {}).await
    else {
        return;
    };
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    test_kyc(&app, &wallet, &token).await;
    let (status, body) = ask(&app, &token, contracts.issuer).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();

    // The batch is still open (the manual clock has not moved): take the role away.
    let owner = ProviderBuilder::new()
        .wallet(signer())
        .connect_http(anvil.url.parse().unwrap());
    Issuer::new(contracts.issuer, &owner)
        .changeWalletApprover(signer().address())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    let failed = wait_for_status(&app, &token, &id, "failed").await;
    assert!(failed["tx_hash"].as_str().unwrap().starts_with("0x"));
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("refused the approval"),
        "{failed}"
    );
    assert!(!is_approved(&anvil, contracts.issuer, wallet.alloy_address()).await);
    // Now the issuer is not the platform's to manage.
    let (status, body) = ask(&app, &token, contracts.issuer).await;
    assert_error(
        status,
        &body,
        400,
        "issuer_not_managed",
        Some("issuer_address"),
    );
    app.stop().await;
}

async fn kyc_missing_or_expired_is_refused(backend: Backend) {
    let Some((
        Setup {
            anvil: _anvil,
            app,
            contracts,
        },
        veriff,
    )) = setup_with_veriff(backend).await
    else {
        return;
    };
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    let (status, body) = ask(&app, &token, contracts.issuer).await;
    assert_error(status, &body, 400, "kyc_required", None);

    // Declined: still not KYC'd.
    veriff_decides(
        &app,
        &veriff,
        &token,
        Decision::declined(),
        SignatureScheme::Hmac,
    )
    .await;
    let (status, body) = ask(&app, &token, contracts.issuer).await;
    assert_error(status, &body, 400, "kyc_required", None);

    // Approved with a document that expired: refused with its own code.
    let decision = Decision::approved().with_valid_until(Some("2020-01-31"));
    veriff_decides(&app, &veriff, &token, decision, SignatureScheme::Legacy).await;
    let (status, body) = ask(&app, &token, contracts.issuer).await;
    assert_error(status, &body, 400, "kyc_expired", None);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2020-01-31")
    );

    let (status, list) = app.get_auth("/user/whitelist", &token).await;
    assert_eq!(status, 200);
    assert_eq!(list, json!({"requests": []}));
    app.stop().await;
}

async fn bad_requests_are_refused(backend: Backend) {
    let Some(Setup {
        anvil,
        app,
        contracts,
    }) = setup(backend, |_| {}).await
    else {
        return;
    };
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    test_kyc(&app, &wallet, &token).await;
    let issuer = format!("{:#x}", contracts.issuer);

    // No JWT, or a bad one.
    let (status, body) = app
        .post(
            "/user/whitelist",
            json!({"issuer_address": issuer, "chain_id": CHAIN_ID}),
        )
        .await;
    assert_error(status, &body, 401, "authentication_error", None);
    let (status, body) = app.get_auth("/user/whitelist", "not-a-jwt").await;
    assert_error(status, &body, 401, "authentication_error", None);

    // Malformed bodies.
    for (body, param) in [
        (
            json!({"issuer_address": "0x1234", "chain_id": CHAIN_ID}),
            "issuer_address",
        ),
        (json!({"chain_id": CHAIN_ID}), "issuer_address"),
        (json!({"issuer_address": issuer}), "chain_id"),
        (
            json!({"issuer_address": issuer, "chain_id": "abc"}),
            "chain_id",
        ),
    ] {
        let (status, answer) = app.post_auth("/user/whitelist", &token, body).await;
        assert_error(status, &answer, 400, "invalid_request", Some(param));
    }

    // Chains: not configured, configured without contracts, unreachable.
    let (status, body) = app
        .post_auth(
            "/user/whitelist",
            &token,
            json!({"issuer_address": issuer, "chain_id": 80001}),
        )
        .await;
    assert_error(status, &body, 400, "unsupported_chain", Some("chain_id"));
    let (status, body) = app
        .post_auth(
            "/user/whitelist",
            &token,
            json!({"issuer_address": issuer, "chain_id": BARE_CHAIN_ID}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "whitelisting_unsupported",
        Some("chain_id"),
    );
    let (status, body) = app
        .post_auth(
            "/user/whitelist",
            &token,
            json!({"issuer_address": issuer, "chain_id": DOWN_CHAIN_ID}),
        )
        .await;
    assert_error(status, &body, 503, "chain_unavailable", None);

    // Issuers the registry does not hold: an account without code, a contract that is not
    // an issuer, and an issuer whose approver is not the platform's WalletApprover.
    let stranger: PrivateKeySigner = DEV_KEY_1.parse().unwrap();
    let foreign = Issuer::deploy(
        ProviderBuilder::new()
            .wallet(stranger)
            .connect_http(anvil.url.parse().unwrap()),
        Address::ZERO,
    )
    .await
    .unwrap();
    let nobody = Wallet::random().alloy_address();
    for unknown in [nobody, contracts.stablecoin, *foreign.address()] {
        let (status, body) = ask(&app, &token, unknown).await;
        assert_error(
            status,
            &body,
            400,
            "issuer_not_registered",
            Some("issuer_address"),
        );
    }
    // The same, registered by mistake: still refused, after a read on chain.
    for registered in [nobody, contracts.stablecoin, *foreign.address()] {
        trust(&app, CHAIN_ID, registered).await;
    }
    let (status, body) = ask(&app, &token, nobody).await;
    assert_error(status, &body, 400, "not_an_issuer", Some("issuer_address"));
    let (status, body) = ask(&app, &token, contracts.stablecoin).await;
    assert_error(status, &body, 400, "not_an_issuer", Some("issuer_address"));
    let (status, body) = ask(&app, &token, *foreign.address()).await;
    assert_error(
        status,
        &body,
        400,
        "issuer_not_managed",
        Some("issuer_address"),
    );

    // Nothing was queued by any of it.
    let (status, list) = app.get_auth("/user/whitelist", &token).await;
    assert_eq!(status, 200);
    assert_eq!(list, json!({"requests": []}));
    app.stop().await;
}

/// Node 1 read the wallet before its KYC was done; the KYC is then done through node 0 (as a
/// Veriff webhook would land there). Asking node 1 at once must not be refused from its copy.
async fn kyc_done_on_another_process_is_honoured_at_once(backend: Backend) {
    let Some(Setup {
        anvil: _anvil,
        app,
        contracts,
    }) = setup(backend, |_| {}).await
    else {
        return;
    };
    let other = app.another_process("whitelist-other").await;
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    let ask_other = || {
        app.send(
            app.client
                .post(format!("{}/user/whitelist", other.base_url()))
                .bearer_auth(&token)
                .json(&json!({"issuer_address": format!("{:#x}", contracts.issuer), "chain_id": CHAIN_ID})),
        )
    };
    let (status, body) = ask_other().await;
    assert_error(status, &body, 400, "kyc_required", None);

    test_kyc(&app, &wallet, &token).await;
    // The manual clock stands still: node 1's copy never goes stale by itself.
    let (status, body) = ask_other().await;
    assert!(status < 300, "refused from a stale copy: {status} {body}");
    other.shutdown().await;
    app.stop().await;
}
