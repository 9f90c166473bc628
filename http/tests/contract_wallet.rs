//! EIP-1271 login against a real anvil node with a minimal contract wallet deployed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use alloy::network::EthereumWallet;
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;
use ampflow_chain::ChainSettings;
use ampflow_chain::contracts::MinimalEip1271Wallet;
use ampflow_storage::testdb::Backend;
use common::anvil::{Anvil, CHAIN_ID, DEV_KEY_0};
use common::{TestApp, Wallet, assert_error};
use serde_json::json;

on_both_databases!(
    a_contract_wallet_logs_in_with_its_owners_signature,
    a_contract_wallet_session_acts_on_its_chain_only,
);

/// The chain id of a second configured chain (served by the same node): control of an
/// address on chain A says nothing about that address on chain B.
const OTHER_CHAIN_ID: ampflow_types::ChainId = ampflow_types::ChainId::new(CHAIN_ID.get() + 1);

/// Deploys a contract wallet owned by `owner`; answers its lowercase address.
async fn deploy_wallet(anvil: &Anvil, owner: &Wallet) -> String {
    let deployer: PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(deployer))
        .connect_http(anvil.url.parse().unwrap());
    let contract = MinimalEip1271Wallet::deploy(&provider, owner.alloy_address())
        .await
        .unwrap();
    format!("{:#x}", contract.address())
}

async fn a_contract_wallet_logs_in_with_its_owners_signature(backend: Backend) {
    let mut anvil = Anvil::start().await;
    let rpc_url = anvil.url.clone();
    let Some(app) = TestApp::start_with(backend, |s| {
        s.chains = vec![ChainSettings {
            chain_id: CHAIN_ID,
            name: "anvil".into(),
            rpc_url,
            signer_key_env: None,
            contracts: None,
            ..Default::default()
        }];
    })
    .await
    else {
        return;
    };
    let (owner, intruder) = (Wallet::random(), Wallet::random());
    let wallet = deploy_wallet(&anvil, &owner).await;

    // The owner's signature, checked by the contract: logged in as the contract wallet.
    let message = app.payload(&wallet).await;
    let request =
        json!({"address": wallet, "signed_payload": owner.sign(&message), "chain_id": CHAIN_ID});
    let (status, tokens) = app.post("/authorize/jwt", request.clone()).await;
    assert_eq!(status, 200, "{tokens}");
    let (status, user) = app
        .get_auth("/user", tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        (status, user["address"].as_str().unwrap()),
        (200, wallet.as_str())
    );
    // The nonce is spent for contract wallets too.
    let (status, body) = app.post("/authorize/jwt", request).await;
    assert_error(status, &body, 401, "authentication_error", None);

    // Someone else's signature: the contract says no.
    let message = app.payload(&wallet).await;
    let (status, body) = app
        .post("/authorize/jwt", json!({"address": wallet, "signed_payload": intruder.sign(&message), "chain_id": CHAIN_ID}))
        .await;
    assert_error(
        status,
        &body,
        401,
        "authentication_error",
        Some("signed_payload"),
    );
    // A long (multi-owner style) signature is accepted as input and refused by the contract.
    let long = format!("0x{}", "ab".repeat(130));
    let (status, body) = app
        .post(
            "/authorize/jwt",
            json!({"address": wallet, "signed_payload": long, "chain_id": CHAIN_ID}),
        )
        .await;
    assert_error(status, &body, 401, "authentication_error", None);

    // An EOA (no code) that did not sign is refused, and its own signature still works.
    let eoa = Wallet::random();
    let eoa_message = app.payload(&eoa.address()).await;
    let (status, _) = app
        .post("/authorize/jwt", json!({"address": eoa.address(), "signed_payload": intruder.sign(&eoa_message), "chain_id": CHAIN_ID}))
        .await;
    assert_eq!(status, 401);
    let (status, _) = app
        .post("/authorize/jwt", json!({"address": eoa.address(), "signed_payload": eoa.sign(&eoa_message), "chain_id": CHAIN_ID}))
        .await;
    assert_eq!(status, 200);

    // A chain that is not configured, and a configured one whose node is down.
    let (status, body) = app
        .post(
            "/authorize/jwt",
            json!({"address": wallet, "signed_payload": owner.sign(&message), "chain_id": 5}),
        )
        .await;
    assert_error(status, &body, 400, "unsupported_chain", Some("chain_id"));
    anvil.stop();
    let (status, body) = app
        .post("/authorize/jwt", json!({"address": wallet, "signed_payload": owner.sign(&message), "chain_id": CHAIN_ID}))
        .await;
    assert_error(status, &body, 503, "chain_unavailable", None);
    app.stop().await;
}

async fn a_contract_wallet_session_acts_on_its_chain_only(backend: Backend) {
    let anvil = Anvil::start().await;
    let Some(app) = TestApp::start_with(backend, |s| {
        s.chains = [CHAIN_ID, OTHER_CHAIN_ID]
            .map(|chain_id| ChainSettings {
                chain_id,
                name: format!("anvil-{chain_id}"),
                rpc_url: anvil.url.clone(),
                signer_key_env: None,
                contracts: None,
                ..Default::default()
            })
            .to_vec();
    })
    .await
    else {
        return;
    };
    let owner = Wallet::random();
    let wallet = deploy_wallet(&anvil, &owner).await;
    let message = app.payload(&wallet).await;
    let (status, tokens) = app
        .post("/authorize/jwt", json!({"address": wallet, "signed_payload": owner.sign(&message), "chain_id": CHAIN_ID}))
        .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let campaign = format!("0x{}", "11".repeat(20));
    let body = json!({"amount": "100"});
    // On its own chain the session passes authentication (the chain runs no auto-invest).
    let (status, answer) = app
        .post_auth(
            &format!("/auto_invest/{CHAIN_ID}/{campaign}"),
            &access,
            body.clone(),
        )
        .await;
    assert_error(status, &answer, 400, "auto_invest_unsupported", None);
    // On another chain it is refused, for every chain-scoped action.
    let (status, answer) = app
        .post_auth(
            &format!("/auto_invest/{OTHER_CHAIN_ID}/{campaign}"),
            &access,
            body,
        )
        .await;
    assert_error(status, &answer, 403, "authorization_error", None);
    let (status, answer) = app
        .delete_auth(
            &format!("/auto_invest/{OTHER_CHAIN_ID}/{campaign}"),
            &access,
        )
        .await;
    assert_error(status, &answer, 403, "authorization_error", None);
    let (status, answer) = app
        .post_auth(
            "/user/whitelist",
            &access,
            json!({"issuer_address": campaign, "chain_id": OTHER_CHAIN_ID}),
        )
        .await;
    assert_error(status, &answer, 403, "authorization_error", None);
    // A refresh keeps the binding.
    let (status, refreshed) = app
        .post(
            "/authorize/refresh",
            json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    let (status, answer) = app
        .post_auth(
            &format!("/auto_invest/{OTHER_CHAIN_ID}/{campaign}"),
            refreshed["access_token"].as_str().unwrap(),
            json!({"amount": "100"}),
        )
        .await;
    assert_error(status, &answer, 403, "authorization_error", None);
    // An EOA's own signature holds on every chain.
    let eoa = Wallet::random();
    let eoa_access = app.access_token(&eoa).await;
    let (status, answer) = app
        .post_auth(
            &format!("/auto_invest/{OTHER_CHAIN_ID}/{campaign}"),
            &eoa_access,
            json!({"amount": "100"}),
        )
        .await;
    assert_error(status, &answer, 400, "auto_invest_unsupported", None);
    app.stop().await;
}
