#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The faucet and the transaction pipeline against a real anvil: payouts land exactly once,
//! a restart between sending and the receipt sends nothing twice, an unreachable node only
//! delays the work, and a reverted transaction is a failure.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use ampflow_chain::contracts::Faucet;
use ampflow_chain::deploy::{DeployedContracts, FaucetFunding, deploy_platform};
use ampflow_chain::{ChainSettings, FaucetSettings};
use ampflow_http::config::{Secret, Settings};
use ampflow_standins::recaptcha::RecaptchaStandIn;
use ampflow_storage::testdb::Backend;
use ampflow_storage::{NewTxIntent, TxIntentStatus};
use common::anvil::{Anvil, CHAIN_ID, DEV_KEY_0};
use common::{TestApp, Wallet, assert_error, wait_until};
use serde_json::{Value, json};

const REWARD_WEI: u64 = 100_000_000_000_000_000; // 0.1 ETH

struct Setup {
    anvil: Anvil,
    app: TestApp,
    contracts: DeployedContracts,
}

fn signer() -> PrivateKeySigner {
    DEV_KEY_0.parse().unwrap()
}

async fn setup(backend: Backend, tweak: impl FnOnce(&mut FaucetSettings)) -> Option<Setup> {
    setup_with(backend, tweak, |_| {}).await
}

async fn setup_with(
    backend: Backend,
    tweak: impl FnOnce(&mut FaucetSettings),
    tweak_settings: impl FnOnce(&mut Settings),
) -> Option<Setup> {
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
            reward_wei: U256::from(REWARD_WEI),
            balance_threshold_wei: U256::from(REWARD_WEI),
            initial_balance_wei: U256::from(1_000u64) * U256::from(REWARD_WEI),
        },
    )
    .await
    .unwrap();
    let mut faucet = FaucetSettings {
        max_wait_ms: 200,
        retry_backoff_ms: 100,
        ..FaucetSettings::default()
    };
    tweak(&mut faucet);
    let chain = ChainSettings {
        chain_id: CHAIN_ID,
        name: "anvil".into(),
        rpc_url: anvil.url.clone(),
        contracts: Some(contracts.clone()),
        faucet: Some(faucet),
        tx: ampflow_chain::tx::TxSettings {
            poll_interval_ms: 100,
            max_backoff_ms: 1_000,
            ..Default::default()
        },
        ..Default::default()
    };
    let signers = HashMap::from([(CHAIN_ID, signer())]);
    let app = TestApp::start_signing(backend, signers, |s| {
        s.chains = vec![chain];
        tweak_settings(s);
    })
    .await?;
    Some(Setup {
        anvil,
        app,
        contracts,
    })
}

async fn balance(anvil: &Anvil, address: Address) -> U256 {
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    provider.get_balance(address).await.unwrap()
}

async fn signer_nonce(anvil: &Anvil) -> u64 {
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    provider
        .get_transaction_count(signer().address())
        .await
        .unwrap()
}

async fn ask(app: &TestApp, token: &str) -> (u16, Value) {
    app.post_auth(
        &format!("/faucet/{CHAIN_ID}"),
        token,
        json!({"re_captcha_token": "t"}),
    )
    .await
}

async fn wait_for_status(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    let path = format!("/faucet/{CHAIN_ID}/requests/{id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = app.get_auth(&path, token).await;
        assert_eq!(code, 200, "{body}");
        if body["status"] == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} never reached {status}: {body}"
        );
        // The app runs on a manual clock: let time pass, so batches close.
        app.clock.advance_ms(100);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn each_request_is_paid_exactly_once(backend: Backend) {
    let Some(Setup { anvil, app, .. }) = setup(backend, |_| {}).await else {
        return;
    };
    let nonce_before = signer_nonce(&anvil).await;
    let wallets: Vec<Wallet> = (0..3).map(|_| Wallet::random()).collect();
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for wallet in &wallets {
        let token = app.access_token(wallet).await;
        let (status, body) = ask(&app, &token).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "pending");
        assert_eq!(body["wallet_address"], wallet.address());
        ids.push(body["id"].as_str().unwrap().to_string());
        tokens.push(token);
    }
    // Asking again while the request is open answers the same request.
    let (status, again) = ask(&app, &tokens[0]).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], ids[0].as_str());

    for ((wallet, token), id) in wallets.iter().zip(&tokens).zip(&ids) {
        let paid = wait_for_status(&app, token, id, "paid").await;
        assert_eq!(paid["amount"], REWARD_WEI.to_string());
        assert!(paid["tx_hash"].as_str().unwrap().starts_with("0x"));
        assert_eq!(
            balance(&anvil, wallet.alloy_address()).await,
            U256::from(REWARD_WEI)
        );
    }
    // The three requests went out in one faucet transaction.
    assert_eq!(signer_nonce(&anvil).await, nonce_before + 1);

    // Paid wallets wait for the cooldown, told when to come back.
    let response = app
        .client
        .post(app.url(&format!("/faucet/{CHAIN_ID}")))
        .bearer_auth(&tokens[0])
        .json(&json!({"re_captcha_token": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 24 * 3600);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "faucet_cooldown");

    // Someone else's request is not visible.
    let (status, body) = app
        .get_auth(
            &format!("/faucet/{CHAIN_ID}/requests/{}", ids[0]),
            &tokens[1],
        )
        .await;
    assert_error(status, &body, 404, "not_found", None);
    app.stop().await;
}

async fn bad_requests_are_refused(backend: Backend) {
    let Some(Setup {
        app, anvil: _anvil, ..
    }) = setup(backend, |f| f.per_ip_max = 2).await
    else {
        return;
    };
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    // No JWT.
    let (status, body) = app
        .post("/faucet/31337", json!({"re_captcha_token": "t"}))
        .await;
    assert_error(status, &body, 401, "authentication_error", None);
    let (status, body) = app.get_auth("/faucet/31337/requests/x", "nope").await;
    assert_error(status, &body, 401, "authentication_error", None);
    // A chain that is not configured.
    let (status, body) = app
        .post_auth("/faucet/80001", &token, json!({"re_captcha_token": "t"}))
        .await;
    assert_error(status, &body, 400, "unsupported_chain", Some("chainId"));
    // An unknown request.
    let (status, body) = app
        .get_auth(
            &format!("/faucet/{CHAIN_ID}/requests/{}", uuid::Uuid::new_v4()),
            &token,
        )
        .await;
    assert_error(status, &body, 404, "not_found", None);
    let (status, body) = app
        .get_auth(&format!("/faucet/{CHAIN_ID}/requests/not-an-id"), &token)
        .await;
    assert_error(status, &body, 404, "not_found", None);
    // The per-IP limit: two requests from loopback, then 429.
    for _ in 0..2 {
        let other = Wallet::random();
        let token = app.access_token(&other).await;
        let (status, body) = ask(&app, &token).await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, body) = ask(&app, &token).await;
    assert_error(status, &body, 429, "rate_limited", None);
    app.stop().await;
}

/// With mining paused, the faucet transaction is sent but has no receipt; the server stops
/// (every step was written down) and a new one takes over: it rebroadcasts the recorded bytes
/// instead of signing again, and settles the request once the block is mined.
async fn a_restart_between_send_and_receipt_sends_nothing_twice(backend: Backend) {
    let Some(Setup { anvil, mut app, .. }) = setup(backend, |_| {}).await else {
        return;
    };
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let nonce_before = signer_nonce(&anvil).await;
    let _: () = provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    let (status, body) = ask(&app, &token).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let storage = app.app().storage().clone();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            app.clock.advance_ms(100);
            storage
                .chain()
                .tx_intents_for_purpose("faucet", 10)
                .await
                .unwrap()
                .iter()
                .any(|i| i.status == TxIntentStatus::Sent)
        })
        .await,
        "the faucet transaction was never sent"
    );
    app.restart().await;
    let _: () = provider
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
    let _: Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
    wait_for_status(&app, &token, &id, "paid").await;
    assert_eq!(signer_nonce(&anvil).await, nonce_before + 1);
    assert_eq!(
        balance(&anvil, wallet.alloy_address()).await,
        U256::from(REWARD_WEI)
    );
    let intents = app
        .app()
        .storage()
        .chain()
        .tx_intents_for_purpose("faucet", 10)
        .await
        .unwrap();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].status, TxIntentStatus::Confirmed);
    assert_eq!(intents[0].send_attempts, 1, "signed once");
    app.stop().await;
}

/// With mining paused, the faucet transaction is sent and waits in the node's pool: the
/// `submitted` request shows the hash it was sent under (so does the answer to asking again);
/// once it is stuck for `stuck_after_secs` and replaced with higher fees, the replacement's
/// hash; and once mined, the mined one.
async fn a_submitted_request_shows_its_transaction_before_it_is_mined(backend: Backend) {
    let Some(Setup { anvil, app, .. }) = setup(backend, |_| {}).await else {
        return;
    };
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let _: () = provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    let (status, body) = ask(&app, &token).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["tx_hash"], Value::Null, "nothing sent yet: {body}");
    let id = body["id"].as_str().unwrap().to_string();
    let path = format!("/faucet/{CHAIN_ID}/requests/{id}");
    let storage = app.app().storage().clone();
    let sent_intent = || async {
        storage
            .chain()
            .tx_intents_for_purpose("faucet", 10)
            .await
            .unwrap()
            .into_iter()
            .find(|i| i.status == TxIntentStatus::Sent)
    };
    assert!(
        wait_until(Duration::from_secs(30), || async {
            app.clock.advance_ms(100);
            sent_intent().await.is_some()
        })
        .await,
        "the faucet transaction was never sent"
    );
    let intent = sent_intent().await.unwrap();
    let first = intent.tx_hash.clone().unwrap();
    let (status, shown) = app.get_auth(&path, &token).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["status"], "submitted", "{shown}");
    assert_eq!(shown["tx_hash"], first.as_str(), "{shown}");
    let (status, again) = ask(&app, &token).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["tx_hash"], first.as_str(), "{again}");
    let pooled = provider
        .get_transaction_by_hash(first.parse().unwrap())
        .await
        .unwrap()
        .expect("the node has the transaction");
    assert!(pooled.block_number.is_none(), "not mined yet");

    // Stuck past `stuck_after_secs` (120 s): replaced at the same nonce with higher fees.
    app.clock.advance_ms(121_000);
    let bumped = wait_until(Duration::from_secs(30), || async {
        let (_, shown) = app.get_auth(&path, &token).await;
        shown["tx_hash"].as_str().is_some_and(|h| h != first)
    })
    .await;
    assert!(bumped, "the request never showed the replacement");
    let replaced = storage
        .chain()
        .tx_intent(&intent.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replaced.replaced_hashes, vec![first.clone()]);
    let second = replaced.tx_hash.clone().unwrap();
    let (_, shown) = app.get_auth(&path, &token).await;
    assert_eq!(shown["status"], "submitted", "{shown}");
    assert_eq!(shown["tx_hash"], second.as_str(), "{shown}");

    // Mined: the replacement is the transaction on chain, and the request keeps its hash.
    let _: () = provider
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
    let _: Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
    let paid = wait_for_status(&app, &token, &id, "paid").await;
    assert_eq!(paid["tx_hash"], second.as_str(), "{paid}");
    let receipt = provider
        .get_transaction_receipt(second.parse().unwrap())
        .await
        .unwrap()
        .expect("the replacement was mined");
    assert!(receipt.status());
    app.stop().await;
}

/// The node stops answering (SIGSTOP): the request waits, the sender backs off, and the
/// payout completes once the node is back.
async fn work_survives_an_unreachable_node(backend: Backend) {
    let Some(Setup { anvil, app, .. }) = setup(backend, |_| {}).await else {
        return;
    };
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    anvil.pause();
    let (status, body) = ask(&app, &token).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    wait_for_status(&app, &token, &id, "submitted").await;
    anvil.resume();
    wait_for_status(&app, &token, &id, "paid").await;
    assert_eq!(
        balance(&anvil, wallet.alloy_address()).await,
        U256::from(REWARD_WEI)
    );
    app.stop().await;
}

/// A transaction mined with status 0 is recorded as failed, with the block, not as a success.
async fn a_reverted_transaction_is_a_failure(backend: Backend) {
    let Some(Setup {
        app,
        contracts,
        anvil: _anvil,
    }) = setup(backend, |_| {}).await
    else {
        return;
    };
    let storage = app.app().storage().clone();
    // `updateCallerStatus(0x0, true)` reverts; a fixed gas limit skips the estimate, so it is
    // mined and reverts on chain.
    let call = Faucet::updateCallerStatusCall {
        caller: Address::ZERO,
        allowed: true,
    };
    let intent = storage
        .chain()
        .insert_tx_intent(
            NewTxIntent {
                idempotency_key: "test:revert".into(),
                purpose: "test".into(),
                chain_id: CHAIN_ID,
                signer: ampflow_types::WalletAddress::from_alloy(signer().address()),
                to: ampflow_types::WalletAddress::from_alloy(contracts.faucet),
                calldata: format!("0x{}", hex::encode(call.abi_encode())),
                value_wei: ampflow_types::TokenAmount::ZERO,
                gas_limit: Some(100_000),
            },
            0,
        )
        .await
        .unwrap();
    // The same business key is written once.
    let again = storage
        .chain()
        .insert_tx_intent(
            NewTxIntent {
                idempotency_key: "test:revert".into(),
                purpose: "test".into(),
                chain_id: CHAIN_ID,
                signer: ampflow_types::WalletAddress::from_alloy(signer().address()),
                to: ampflow_types::WalletAddress::from_alloy(contracts.faucet),
                calldata: "0x".into(),
                value_wei: ampflow_types::TokenAmount::ZERO,
                gas_limit: None,
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(again.id, intent.id);
    app.app().actors().tx_senders().wake(CHAIN_ID);
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let current = storage
            .chain()
            .tx_intent(&intent.id)
            .await
            .unwrap()
            .unwrap();
        if current.status == TxIntentStatus::Failed {
            break current;
        }
        assert!(
            Instant::now() < deadline,
            "the intent never failed: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        failed.failure.as_deref().unwrap().contains("reverted"),
        "{failed:?}"
    );
    assert!(failed.block_number.is_some() && failed.gas_used.is_some());
    app.stop().await;
}

/// With a reCAPTCHA secret set, tokens are checked through siteverify (a stand-in speaking
/// Google's wire format): missing, unknown and low-scoring tokens are refused, a good one
/// passes, and an unreachable siteverify answers 503.
async fn recaptcha_is_checked(backend: Backend) {
    let recaptcha = RecaptchaStandIn::start("s3cret").await.unwrap();
    recaptcha.issue("human", 0.9);
    recaptcha.issue("bot", 0.2);
    let verify_url = recaptcha.verify_url();
    let Some(Setup {
        app, anvil: _anvil, ..
    }) = setup_with(
        backend,
        |_| {},
        |s| {
            s.recaptcha.secret = Some(Secret::new("s3cret"));
            s.recaptcha.verify_url = verify_url;
        },
    )
    .await
    else {
        return;
    };
    let token = app.access_token(&Wallet::random()).await;
    let path = format!("/faucet/{CHAIN_ID}");
    for body in [
        json!({}),
        json!({"re_captcha_token": ""}),
        json!({"re_captcha_token": "forged"}),
        json!({"re_captcha_token": "bot"}),
    ] {
        let (status, answer) = app.post_auth(&path, &token, body.clone()).await;
        assert_error(
            status,
            &answer,
            400,
            "recaptcha_failed",
            Some("re_captcha_token"),
        );
    }
    // An unsupported chain is refused before siteverify is asked.
    let checks = recaptcha.checks();
    let (status, answer) = app
        .post_auth(
            "/faucet/80001",
            &token,
            json!({"re_captcha_token": "human"}),
        )
        .await;
    assert_error(status, &answer, 400, "unsupported_chain", Some("chainId"));
    assert_eq!(recaptcha.checks(), checks);

    let (status, answer) = app
        .post_auth(&path, &token, json!({"re_captcha_token": "human"}))
        .await;
    assert_eq!(status, 202, "{answer}");

    drop(recaptcha);
    let other = app.access_token(&Wallet::random()).await;
    let (status, answer) = app
        .post_auth(&path, &other, json!({"re_captcha_token": "human"}))
        .await;
    assert_error(status, &answer, 503, "recaptcha_unavailable", None);
    app.stop().await;
}

on_both_databases!(
    recaptcha_is_checked,
    each_request_is_paid_exactly_once,
    bad_requests_are_refused,
    a_restart_between_send_and_receipt_sends_nothing_twice,
    a_submitted_request_shows_its_transaction_before_it_is_mined,
    work_survives_an_unreachable_node,
    a_reverted_transaction_is_a_failure,
    a_request_fails_after_its_last_attempt,
    the_per_ip_limit_counts_an_ipv6_client_by_its_64,
    concurrent_requests_from_one_address_never_pass_its_limit_together,
);

/// The per-address limit spans every wallet: eight fresh wallets asking at once from one
/// address open exactly `per_ip_max` requests, and the others are told when to come back.
/// (Each wallet has its own actor, so only storage's count-and-insert under the address's
/// lock keeps them from all reading the count before any of them wrote.)
async fn concurrent_requests_from_one_address_never_pass_its_limit_together(backend: Backend) {
    let Some(Setup {
        app, anvil: _anvil, ..
    }) = setup_with(
        backend,
        |f| f.per_ip_max = 3,
        |s| s.http.trusted_proxies = vec!["127.0.0.1".into()],
    )
    .await
    else {
        return;
    };
    let mut tokens = Vec::new();
    for _ in 0..8 {
        tokens.push(app.access_token(&Wallet::random()).await);
    }
    let asks = tokens.iter().map(|token| {
        app.send(
            app.client
                .post(app.url(&format!("/faucet/{CHAIN_ID}")))
                .bearer_auth(token)
                .header("x-forwarded-for", "198.51.100.40")
                .json(&json!({"re_captcha_token": "t"})),
        )
    });
    let answers = futures::future::join_all(asks).await;
    let opened = answers.iter().filter(|(status, _)| *status == 202).count();
    let refused = answers.iter().filter(|(status, _)| *status == 429).count();
    assert_eq!((opened, refused), (3, 5), "{answers:?}");
    app.stop().await;
}

/// One IPv6 subscriber holds a whole /64: its addresses share one per-IP budget.
async fn the_per_ip_limit_counts_an_ipv6_client_by_its_64(backend: Backend) {
    let Some(Setup {
        app, anvil: _anvil, ..
    }) = setup_with(
        backend,
        |f| f.per_ip_max = 2,
        |s| s.http.trusted_proxies = vec!["127.0.0.1".into()],
    )
    .await
    else {
        return;
    };
    let ask_from = |ip: &'static str| {
        let app = &app;
        async move {
            let token = app.access_token(&Wallet::random()).await;
            app.send(
                app.client
                    .post(app.url(&format!("/faucet/{CHAIN_ID}")))
                    .bearer_auth(token)
                    .header("x-forwarded-for", ip)
                    .json(&json!({"re_captcha_token": "t"})),
            )
            .await
        }
    };
    assert_eq!(ask_from("2001:db8:9:9::1").await.0, 202);
    assert_eq!(ask_from("2001:db8:9:9::2").await.0, 202);
    let (status, body) = ask_from("2001:db8:9:9:ffff:1:2:3").await;
    assert_error(status, &body, 429, "rate_limited", None);
    assert_eq!(ask_from("2001:db8:9:a::1").await.0, 202);
    app.stop().await;
}

/// The faucet contract stops accepting the platform's signer (its ownership moves to another
/// account): every transaction would revert, so none is sent (the gas estimate refuses it and
/// no nonce is used), the request is retried after its backoff, and after `attempts_max`
/// attempts it is failed with the reason. The wallet may then ask again.
async fn a_request_fails_after_its_last_attempt(backend: Backend) {
    let Some(Setup {
        anvil,
        app,
        contracts,
    }) = setup(backend, |f| {
        f.attempts_max = 2;
        f.retry_backoff_ms = 100;
    })
    .await
    else {
        return;
    };
    let owner = ProviderBuilder::new()
        .wallet(signer())
        .connect_http(anvil.url.parse().unwrap());
    let elsewhere: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        .parse()
        .unwrap();
    Faucet::new(contracts.faucet, &owner)
        .transferOwnership(elsewhere)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let nonce_before = signer_nonce(&anvil).await;

    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    let (status, body) = ask(&app, &token).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let failed = wait_for_status(&app, &token, &id, "failed").await;
    assert_eq!(failed["attempts"], 2, "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("gave up after 2 attempts"), "{reason}");
    assert!(reason.contains("caller is not allowed"), "{reason}");
    assert_eq!(failed["amount"], Value::Null);
    assert_eq!(signer_nonce(&anvil).await, nonce_before, "nothing was sent");
    assert_eq!(balance(&anvil, wallet.alloy_address()).await, U256::ZERO);
    let intents = app
        .app()
        .storage()
        .chain()
        .tx_intents_for_purpose("faucet", 10)
        .await
        .unwrap();
    assert_eq!(intents.len(), 2, "one intent per attempt: {intents:?}");
    assert!(intents.iter().all(|i| i.status == TxIntentStatus::Failed));

    // A failed request is closed: the wallet may ask again.
    let (status, body) = ask(&app, &token).await;
    assert_eq!(status, 202, "{body}");
    assert_ne!(body["id"], id.as_str());
    app.stop().await;
}
