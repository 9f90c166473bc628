//! Everything a campaign needs before the first fault: the configuration file, the contracts
//! (deployed with `ampflow chain deploy`, more campaigns registered with `ampflow chain
//! campaign add`), funded investors with their allowances, organisations, a dashboard admin
//! and a partner key (with the `ampflow` operator commands), all while the chain mines every
//! transaction at once. The nodes then see a chain that mines a block a second.

use std::path::{Path, PathBuf};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use ampflow_chain::contracts::TestStablecoin;
use ampflow_chain::deploy::DeployedContracts;
use anyhow::{Context, bail};
use serde_json::Value;

use super::infra::ampflow;
use super::rng::Stream;
use crate::flows;

pub const CHAIN_ID: ampflow_types::ChainId = ampflow_types::ChainId::new(31337);
/// anvil's first development account: deploys and owns the contracts (the operator).
pub const OPERATOR_KEY: &str = crate::anvil::DEV_KEY_0;
/// anvil's second development account: the nodes' signer (an allowed caller only).
pub const SIGNER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
pub const STRIPE_SECRET_KEY: &str = "sk_test_chaos";
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_chaos";
pub const VERIFF_API_KEY: &str = "veriff-chaos-key";
pub const VERIFF_SHARED_SECRET: &str = "veriff-chaos-secret";
pub const RECAPTCHA_SECRET: &str = "recaptcha-chaos-secret";
pub const ADMIN_EMAIL: &str = "admin@chaos.example.org";
pub const ADMIN_PASSWORD: &str = "chaos-admin-password-1";
/// What the faucet pays, and the balance below which it pays: a wallet paid twice would hold
/// twice the reward and still be below the threshold, so a second payout shows as a second
/// FaucetPaid event instead of being skipped by the contract.
pub const FAUCET_REWARD_WEI: u128 = 10_000_000_000_000_000;
pub const FAUCET_THRESHOLD_WEI: u128 = 1_000_000_000_000_000_000;
/// Blocks, the receipt's included, before an outcome is final; reorgs are at most
/// `REORG_DEPTH_MAX` blocks deep (plus one block that may be mined while the revert is sent).
pub const CONFIRMATIONS: u64 = 4;
pub const REORG_DEPTH_MAX: u64 = 2;
/// Leases: a paused node holds its leases past this, so another node takes over.
pub const LEASE_TTL_MS: u64 = 3_000;
/// Stablecoin per investor, and what each allows each campaign to take.
const INVESTOR_STABLECOIN: u64 = 1_000_000_000_000;

pub struct World {
    pub config_path: PathBuf,
    /// The environment every node and command gets (database, Redis, keys, stand-ins).
    pub env: Vec<(String, String)>,
    pub contracts: DeployedContracts,
    pub campaigns: Vec<Address>,
    pub investors: Vec<PrivateKeySigner>,
    pub organisations: Vec<String>,
    pub partner_key_id: String,
    pub partner_secret: String,
}

/// The configuration file: the chain behind the RPC proxy, short leases and intervals (so a
/// short campaign sees takeovers and settles), and rate limits high enough for one loopback
/// client but still counted (in the campaign's Redis).
pub fn write_config(dir: &Path, rpc_url: &str) -> anyhow::Result<PathBuf> {
    let tiers = [
        "public",
        "donation_initiation",
        "ledger_view",
        "ledger_export",
        "widget",
        "widget_burst",
        "dashboard",
        "donation_creation",
        "settings",
        "password",
        "api_read",
        "api_write",
    ]
    .iter()
    .map(|tier| format!("[rate_limit.tiers.{tier}]\nlimit = 1000000\nwindow_secs = 60\n"))
    .collect::<Vec<_>>()
    .join("\n");
    let text = format!(
        r#"# Written by the chaos campaign.
[database]
max_connections = 8

[rate_limit]
enabled = true

[rate_limit.auto_block]
enabled = false

[rate_limit.card_testing]
enabled = false

{tiers}
[checkpoints]
interval_ms = 1000
grace_ms = 3000
lease_ttl_ms = 3000

[[chains]]
chain_id = {CHAIN_ID}
name = "anvil"
rpc_url = "{rpc_url}"
signer_key_env = "CHAOS_SIGNER_KEY"
operator_key_env = "CHAOS_OPERATOR_KEY"

[chains.tx]
confirmations = {CONFIRMATIONS}
poll_interval_ms = 250
max_backoff_ms = 2000
lease_ttl_ms = {LEASE_TTL_MS}
stuck_after_secs = 15

[chains.faucet]
max_wait_ms = 500
per_ip_max = 0

[chains.whitelist]
max_wait_ms = 500

[chains.auto_invest]
tick_interval_ms = 500
recheck_interval_ms = 1000
lease_ttl_ms = {LEASE_TTL_MS}
"#
    );
    let path = dir.join("ampflow.toml");
    std::fs::write(&path, text).context("write the configuration")?;
    Ok(path)
}

/// A node's own copy of the configuration (contracts included, as `chain deploy` wrote them),
/// reaching the chain through `proxy_url`.
pub fn node_config(
    base: &Path,
    anvil_url: &str,
    proxy_url: &str,
    index: usize,
) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(base).context("read the configuration")?;
    let from = format!("rpc_url = \"{anvil_url}\"");
    anyhow::ensure!(
        text.contains(&from),
        "the configuration has no rpc_url {anvil_url}"
    );
    let path = base.with_file_name(format!("ampflow-node-{index}.toml"));
    std::fs::write(
        &path,
        text.replace(&from, &format!("rpc_url = \"{proxy_url}\"")),
    )?;
    Ok(path)
}

/// Deploys, registers and funds; `anvil_url` is the node itself (not the proxy).
pub async fn build(
    binary: &Path,
    env: Vec<(String, String)>,
    config_path: PathBuf,
    anvil_url: &str,
    investors: usize,
    campaigns: usize,
    rng: &mut Stream,
) -> anyhow::Result<World> {
    let contracts = deploy(binary, &env, &config_path)?;
    let campaign_list = add_campaigns(binary, &env, anvil_url, &contracts, campaigns).await?;
    let investor_keys: Vec<PrivateKeySigner> = (0..investors).map(|_| flows::wallet(rng)).collect();
    fund_investors(
        &operator(anvil_url)?,
        anvil_url,
        &contracts,
        &campaign_list,
        &investor_keys,
    )
    .await?;
    let organisations = create_organisations(binary, &env)?;
    let partner = ampflow(
        binary,
        &env,
        &[
            "partner",
            "create",
            "--org",
            &organisations[0],
            "--name",
            "Chaos publisher",
        ],
        None,
    )?;
    let field = |name: &str| {
        partner
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .context("partner create's output")
    };
    Ok(World {
        config_path,
        partner_key_id: field("access key id:")?,
        partner_secret: field("secret:")?,
        env,
        contracts,
        campaigns: campaign_list,
        investors: investor_keys,
        organisations,
    })
}

/// Migrates the database and deploys the contracts with `ampflow chain deploy`; answers their
/// addresses, as it wrote them into the configuration.
fn deploy(
    binary: &Path,
    env: &[(String, String)],
    config_path: &Path,
) -> anyhow::Result<DeployedContracts> {
    ampflow(binary, env, &["migrate"], None)?;
    ampflow(
        binary,
        env,
        &[
            "chain",
            "deploy",
            "--chain",
            &CHAIN_ID.to_string(),
            "--faucet-reward-wei",
            &FAUCET_REWARD_WEI.to_string(),
            "--faucet-threshold-wei",
            &FAUCET_THRESHOLD_WEI.to_string(),
            "--faucet-funding-wei",
            &(FAUCET_REWARD_WEI * 10_000).to_string(),
        ],
        None,
    )?;
    let settings = ampflow_http::config::Settings::load(Some(config_path))
        .map_err(|e| anyhow::anyhow!("read back the configuration: {e}"))?;
    settings
        .chains
        .first()
        .and_then(|c| c.contracts.clone())
        .context("chain deploy wrote no addresses")
}

/// A provider that sends as the operator. A new one for each step: alloy's nonce filler
/// caches the account's nonce, and the `ampflow` commands in between send with the same key.
fn operator(anvil_url: &str) -> anyhow::Result<impl Provider> {
    let key: PrivateKeySigner = OPERATOR_KEY.parse()?;
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(key))
        .connect_http(anvil_url.parse()?))
}

/// Deploys more campaigns until there are `campaigns` of them, the deployment's own first,
/// registering each with `ampflow chain campaign add`; answers them all.
async fn add_campaigns(
    binary: &Path,
    env: &[(String, String)],
    anvil_url: &str,
    contracts: &DeployedContracts,
    campaigns: usize,
) -> anyhow::Result<Vec<Address>> {
    let mut campaign_list = vec![contracts.campaign];
    while campaign_list.len() < campaigns {
        let campaign = ampflow_chain::deploy::deploy_campaign(&operator(anvil_url)?, contracts)
            .await
            .context("deploy a campaign")?;
        let address = format!("{campaign:#x}");
        let chain = CHAIN_ID.to_string();
        ampflow(
            binary,
            env,
            &["chain", "campaign", "add", "--chain", &chain, &address],
            None,
        )?;
        campaign_list.push(campaign);
    }
    Ok(campaign_list)
}

/// Two organisations, and the dashboard admin as an admin of both; answers their ids.
fn create_organisations(binary: &Path, env: &[(String, String)]) -> anyhow::Result<Vec<String>> {
    let organisations = (0..2)
        .map(|i| {
            let name = format!("Chaos organisation {i}");
            let out = ampflow(
                binary,
                env,
                &["org", "create", "--name", &name, "--country", "DE"],
                None,
            )?;
            Ok(out.trim().to_string())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ampflow(
        binary,
        env,
        &[
            "user",
            "create",
            "--email",
            ADMIN_EMAIL,
            "--name",
            "Chaos admin",
        ],
        Some(ADMIN_PASSWORD),
    )?;
    for organisation in &organisations {
        ampflow(
            binary,
            env,
            &[
                "org",
                "add-member",
                "--organisation",
                organisation,
                "--email",
                ADMIN_EMAIL,
                "--role",
                "admin",
            ],
            None,
        )?;
    }
    Ok(organisations)
}

/// Each investor gets gas money and stablecoin, and allows every campaign to take it.
async fn fund_investors(
    owner: &impl Provider,
    anvil_url: &str,
    contracts: &DeployedContracts,
    campaigns: &[Address],
    investors: &[PrivateKeySigner],
) -> anyhow::Result<()> {
    let coin = TestStablecoin::new(contracts.stablecoin, owner);
    for investor in investors {
        let _: Value = owner
            .raw_request(
                "anvil_setBalance".into(),
                (investor.address(), U256::from(10u64).pow(U256::from(19u64))),
            )
            .await?;
        coin.mint(investor.address(), U256::from(INVESTOR_STABLECOIN))
            .send()
            .await?
            .get_receipt()
            .await?;
        let own = ProviderBuilder::new()
            .wallet(EthereumWallet::from(investor.clone()))
            .connect_http(anvil_url.parse()?);
        let coin = TestStablecoin::new(contracts.stablecoin, &own);
        for campaign in campaigns {
            let receipt = coin
                .approve(*campaign, U256::from(INVESTOR_STABLECOIN))
                .send()
                .await?
                .get_receipt()
                .await?;
            if !receipt.status() {
                bail!("an investor's approval reverted");
            }
        }
    }
    Ok(())
}
