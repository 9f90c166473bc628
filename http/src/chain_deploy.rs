//! `ampflow chain deploy`: deploys the contract set to a development node and records the
//! addresses in the chain's `[[chains]]` table of the configuration file, keeping the rest of
//! the file (comments, order) as it was.

use std::path::Path;

use ampflow_chain::deploy::{DeployedContracts, FaucetFunding, deploy_platform};
use ampflow_http::config::Settings;
use anyhow::{Context, bail};

pub async fn run(
    settings: &Settings,
    config: &Path,
    chain_id: u64,
    funding: FaucetFunding,
) -> anyhow::Result<()> {
    let chain = settings
        .chains
        .iter()
        .find(|c| c.chain_id == chain_id)
        .with_context(|| {
            format!(
                "chain {chain_id} is not configured under [[chains]] in {}",
                config.display()
            )
        })?;
    let key_env = chain.signer_key_env.as_deref().with_context(|| {
        format!("chain {chain_id} has no signer_key_env naming the deployer key's variable")
    })?;
    let key = std::env::var(key_env)
        .with_context(|| format!("the environment variable {key_env} is not set"))?;
    let deployer: alloy::signers::local::PrivateKeySigner = key
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{key_env} does not hold a valid private key"))?;
    tracing::info!(chain_id, deployer = %deployer.address(), "deploying the contract set");
    let deployed = deploy_platform(&chain.rpc_url, deployer, funding).await?;
    write_addresses(config, chain_id, &deployed)?;
    println!(
        "deployed to chain {chain_id} and wrote the addresses into {}:",
        config.display()
    );
    println!("{}", serde_json::to_string_pretty(&deployed)?);
    Ok(())
}

fn write_addresses(
    config: &Path,
    chain_id: u64,
    deployed: &DeployedContracts,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("read {}", config.display()))?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parse {}", config.display()))?;
    let Some(chains) = document
        .get_mut("chains")
        .and_then(|item| item.as_array_of_tables_mut())
    else {
        bail!("{} has no [[chains]] tables", config.display());
    };
    let table = chains
        .iter_mut()
        .find(|table| table.get("chain_id").and_then(|v| v.as_integer()) == Some(chain_id as i64))
        .with_context(|| {
            format!(
                "{} has no [[chains]] table with chain_id = {chain_id}",
                config.display()
            )
        })?;
    let mut contracts = toml_edit::InlineTable::new();
    for (name, address) in [
        ("stablecoin", deployed.stablecoin),
        ("wallet_approver", deployed.wallet_approver),
        ("issuer", deployed.issuer),
        ("faucet", deployed.faucet),
        ("invest_service", deployed.invest_service),
        ("campaign", deployed.campaign),
    ] {
        contracts.insert(name, format!("{address:#x}").into());
    }
    table.insert("contracts", toml_edit::value(contracts));
    std::fs::write(config, document.to_string())
        .with_context(|| format!("write {}", config.display()))?;
    Ok(())
}
