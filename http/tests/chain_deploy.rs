//! `ampflow chain deploy` against a real anvil node: the contract set is deployed and wired,
//! and the addresses land in the configuration file, which still loads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder};
use ampflow_chain::contracts::{Campaign, Issuer, TestStablecoin};
use ampflow_http::config::Settings;
use common::anvil::{Anvil, CHAIN_ID, DEV_KEY_0};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_deploy_deploys_the_contract_set_and_records_it_in_the_config() {
    let anvil = Anvil::start().await;
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("ampflow.toml");
    std::fs::write(
        &config,
        format!(
            "# a comment that must survive\nlisten = \"127.0.0.1:0\"\n\n[[chains]]\nchain_id = {CHAIN_ID}\nname = \"anvil\"\nrpc_url = \"{}\"\nsigner_key_env = \"TEST_DEPLOYER_KEY\"\n",
            anvil.url
        ),
    )
    .unwrap();
    let deploy = |extra_env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ampflow"));
        command
            .args([
                "chain",
                "deploy",
                "--chain",
                &CHAIN_ID.to_string(),
                "--config",
            ])
            .arg(&config);
        command.env_remove("TEST_DEPLOYER_KEY");
        for (key, value) in extra_env {
            command.env(key, value);
        }
        command.output().expect("run ampflow chain deploy")
    };

    let missing_key = deploy(&[]);
    assert!(!missing_key.status.success());
    assert!(
        String::from_utf8_lossy(&missing_key.stderr).contains("TEST_DEPLOYER_KEY"),
        "{missing_key:?}"
    );

    let output = deploy(&[("TEST_DEPLOYER_KEY", DEV_KEY_0)]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains(&DEV_KEY_0[2..]),
        "the key is never printed"
    );

    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("# a comment that must survive"), "{text}");
    let settings = Settings::load(Some(&config)).expect("the updated file still loads");
    let contracts = settings.chains[0]
        .contracts
        .clone()
        .expect("addresses recorded");

    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    for address in [
        contracts.stablecoin,
        contracts.wallet_approver,
        contracts.issuer,
        contracts.faucet,
        contracts.invest_service,
        contracts.campaign,
    ] {
        assert!(
            !provider.get_code_at(address).await.unwrap().is_empty(),
            "{address} has code"
        );
    }
    let issuer = Issuer::new(contracts.issuer, &provider);
    assert_eq!(
        issuer.walletApprover().call().await.unwrap(),
        contracts.wallet_approver
    );
    let campaign = Campaign::new(contracts.campaign, &provider);
    assert_eq!(
        campaign.investService().call().await.unwrap(),
        contracts.invest_service
    );
    assert_eq!(
        campaign.stablecoin().call().await.unwrap(),
        contracts.stablecoin
    );
    let stablecoin = TestStablecoin::new(contracts.stablecoin, &provider);
    assert_eq!(stablecoin.decimals().call().await.unwrap(), 6);
    let faucet_balance = provider.get_balance(contracts.faucet).await.unwrap();
    assert_eq!(
        faucet_balance,
        U256::from(100u64) * U256::from(10u64).pow(U256::from(18u64))
    );
}
