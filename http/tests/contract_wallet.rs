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

on_both_databases!(a_contract_wallet_logs_in_with_its_owners_signature);

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
