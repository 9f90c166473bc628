//! `ampflow chain deploy` against a real anvil node: the contract set is deployed and wired,
//! and the addresses land in the configuration file, which still loads; the sample campaign
//! and the issuer are trusted. `ampflow chain campaign|issuer add|remove|list` change and show
//! the registry of trusted contracts, on chain with the operator's key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder};
use ampflow_chain::contracts::{Campaign, InvestService, Issuer, TestStablecoin, WalletApprover};
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
            "# a comment that must survive\nlisten = \"127.0.0.1:0\"\n\n[database]\nurl = \"{}\"\n\n[[chains]]\nchain_id = {CHAIN_ID}\nname = \"anvil\"\nrpc_url = \"{}\"\nsigner_key_env = \"TEST_DEPLOYER_KEY\"\n",
            sqlite_url(folder.path()),
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
        command
            .env_remove("TEST_DEPLOYER_KEY")
            .env_remove("DATABASE_URL")
            .env_remove("AMPFLOW_CONFIG");
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
    // The sample campaign and the issuer are trusted, on chain and in the database.
    let invest_service = InvestService::new(contracts.invest_service, &provider);
    assert!(
        invest_service
            .isRegisteredCampaign(contracts.campaign)
            .call()
            .await
            .unwrap()
    );
    let approver = WalletApprover::new(contracts.wallet_approver, &provider);
    assert!(
        approver
            .isRegisteredIssuer(contracts.issuer)
            .call()
            .await
            .unwrap()
    );
    for (kind, address) in [
        ("campaign", contracts.campaign),
        ("issuer", contracts.issuer),
    ] {
        let listed = ampflow(&config, &["chain", kind, "list", "--chain", "31337"], &[]);
        assert!(listed.status.success(), "{listed:?}");
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout)
                .lines()
                .filter(|l| l.starts_with(&format!("{address:#x}\t"))
                    && l.ends_with("\tregistered on chain"))
                .count(),
            1,
            "{listed:?}"
        );
    }
    let faucet_balance = provider.get_balance(contracts.faucet).await.unwrap();
    assert_eq!(
        faucet_balance,
        U256::from(100u64) * U256::from(10u64).pow(U256::from(18u64))
    );
}

fn sqlite_url(folder: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", folder.join("ampflow.db").display())
}

/// Runs the binary with `config` and `env` (and no inherited key variables).
fn ampflow(config: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ampflow"));
    command.args(args).arg("--config").arg(config);
    for variable in ["TEST_DEPLOYER_KEY", "TEST_OPERATOR_KEY", "TEST_SIGNER_KEY"] {
        command.env_remove(variable);
    }
    command
        .env_remove("DATABASE_URL")
        .env_remove("AMPFLOW_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run ampflow")
}

/// anvil's second development account: the server's signer, when an operator deploys.
const DEV_KEY_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// An operator (its own key, `operator_key_env`) deploys for the server's signer: it owns the
/// contracts and their registries, and the signer may only send the platform's transactions.
/// The operator then trusts a new campaign and removes it again, on chain and in the database;
/// without the operator key the command changes the database and says what the owner must do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_key_owns_the_registries_and_the_signer_only_sends() {
    let anvil = Anvil::start().await;
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("ampflow.toml");
    let chain_table = format!(
        "[[chains]]\nchain_id = {CHAIN_ID}\nname = \"anvil\"\nrpc_url = \"{}\"\nsigner_key_env = \"TEST_SIGNER_KEY\"\n",
        anvil.url
    );
    let database = format!("[database]\nurl = \"{}\"\n\n", sqlite_url(folder.path()));
    std::fs::write(
        &config,
        format!("{database}{chain_table}operator_key_env = \"TEST_OPERATOR_KEY\"\n"),
    )
    .unwrap();
    let keys = [
        ("TEST_OPERATOR_KEY", DEV_KEY_0),
        ("TEST_SIGNER_KEY", DEV_KEY_1),
    ];
    let deployed = ampflow(&config, &["chain", "deploy", "--chain", "31337"], &keys);
    assert!(deployed.status.success(), "{deployed:?}");
    let contracts = Settings::load(Some(&config)).unwrap().chains[0]
        .contracts
        .clone()
        .unwrap();
    let operator: alloy::signers::local::PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let signer: alloy::signers::local::PrivateKeySigner = DEV_KEY_1.parse().unwrap();
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let invest_service = InvestService::new(contracts.invest_service, &provider);
    assert_eq!(
        invest_service.owner().call().await.unwrap(),
        operator.address()
    );
    assert!(
        invest_service
            .isAllowedCaller(signer.address())
            .call()
            .await
            .unwrap()
    );
    let approver = WalletApprover::new(contracts.wallet_approver, &provider);
    assert!(
        approver
            .isAllowedToApprove(signer.address())
            .call()
            .await
            .unwrap()
    );

    // A new campaign, trusted with the operator's key: on chain and in the database.
    let owner = ProviderBuilder::new()
        .wallet(operator.clone())
        .connect_http(anvil.url.parse().unwrap());
    let campaign = *Campaign::deploy(&owner, contracts.stablecoin, contracts.issuer)
        .await
        .unwrap()
        .address();
    let address = format!("{campaign:#x}");
    let add = [
        "chain",
        "campaign",
        "add",
        "--chain",
        "31337",
        address.as_str(),
    ];
    let added = ampflow(&config, &add, &keys);
    assert!(added.status.success(), "{added:?}");
    let text = String::from_utf8_lossy(&added.stdout);
    assert!(text.contains("added to the database registry"), "{text}");
    assert!(text.contains("registered on chain in 0x"), "{text}");
    assert!(
        invest_service
            .isRegisteredCampaign(campaign)
            .call()
            .await
            .unwrap()
    );
    // An account without code is refused (a typo), and so is a malformed address.
    let nothing = format!("{:#x}", alloy::primitives::Address::repeat_byte(0x42));
    let refused = ampflow(
        &config,
        &[
            "chain",
            "campaign",
            "add",
            "--chain",
            "31337",
            nothing.as_str(),
        ],
        &keys,
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no code"),
        "{refused:?}"
    );
    let malformed = ampflow(
        &config,
        &["chain", "issuer", "add", "--chain", "31337", "0x12"],
        &keys,
    );
    assert!(!malformed.status.success());

    // Removed with the operator's key: gone from both.
    let remove = [
        "chain",
        "campaign",
        "remove",
        "--chain",
        "31337",
        address.as_str(),
    ];
    let removed = ampflow(&config, &remove, &keys);
    assert!(removed.status.success(), "{removed:?}");
    assert!(
        !invest_service
            .isRegisteredCampaign(campaign)
            .call()
            .await
            .unwrap()
    );
    let listed = ampflow(
        &config,
        &["chain", "campaign", "list", "--chain", "31337"],
        &[],
    );
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&address));

    // Without the operator key in the configuration: the database changes, and the command
    // names the call the owner must make on chain.
    std::fs::write(&config, {
        let text = std::fs::read_to_string(&config).unwrap();
        text.replace("operator_key_env = \"TEST_OPERATOR_KEY\"\n", "")
    })
    .unwrap();
    let added = ampflow(&config, &add, &[("TEST_SIGNER_KEY", DEV_KEY_1)]);
    assert!(added.status.success(), "{added:?}");
    let text = String::from_utf8_lossy(&added.stdout);
    assert!(text.contains("NOT registered on chain"), "{text}");
    assert!(text.contains("setCampaignStatus(address,bool)"), "{text}");
    let listed = ampflow(
        &config,
        &["chain", "campaign", "list", "--chain", "31337"],
        &[],
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&address) && l.ends_with("\tNOT registered on chain")),
        "{text}"
    );
}
