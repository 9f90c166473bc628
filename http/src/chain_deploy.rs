//! `ampflow chain deploy`: deploys the contract set to a development node and records the
//! addresses in the chain's `[[chains]]` table of the configuration file, keeping the rest of
//! the file (comments, order) as it was. The sample Campaign and the Issuer are registered as
//! trusted, on chain (by the deployment) and in the database.
//!
//! The deployer owns the contracts, and with them the registries of trusted contracts: the
//! chain's `operator_key_env` key when it names one (the server's signer is then only allowed
//! to send the platform's transactions), else its `signer_key_env` key (a development setup
//! with one key for everything).

use std::path::Path;

use alloy::signers::local::PrivateKeySigner;
use ampflow_chain::deploy::{DeployedContracts, FaucetFunding, allow_executor, deploy_platform};
use ampflow_http::config::Settings;
use ampflow_types::TrustedKind;
use anyhow::{Context, bail};

use crate::chain_trust;

pub async fn run(
    settings: &Settings,
    config: &Path,
    chain_id: ampflow_types::ChainId,
    funding: FaucetFunding,
) -> anyhow::Result<()> {
    let chain = chain_trust::chain_settings(settings, chain_id)
        .with_context(|| format!("in {}", config.display()))?;
    let signer = chain
        .signer_key_env
        .as_deref()
        .map(chain_trust::read_key)
        .transpose()?;
    let operator = chain_trust::operator_key(chain)?;
    let Some(deployer) = operator.clone().or_else(|| signer.clone()) else {
        bail!(
            "chain {chain_id} has neither operator_key_env nor signer_key_env naming the deployer \
             key's variable"
        );
    };
    tracing::info!(%chain_id, deployer = %deployer.address(), "deploying the contract set");
    let deployed = deploy_platform(&chain.rpc_url, deployer.clone(), funding).await?;
    if let Some(executor) = signer.as_ref().map(PrivateKeySigner::address)
        && executor != deployer.address()
    {
        allow_executor(&chain.rpc_url, deployer, &deployed, executor).await?;
        println!("allowed the signer {executor:#x} to send the platform's transactions");
    }
    let trusted = chain_trust::registry(settings).await?;
    trusted
        .record(chain_id, TrustedKind::Campaign, &[deployed.campaign])
        .await?;
    trusted
        .record(chain_id, TrustedKind::Issuer, &[deployed.issuer])
        .await?;
    write_addresses(config, chain_id, &deployed)?;
    println!(
        "deployed to chain {chain_id} and wrote the addresses into {}; the sample campaign and \
         the issuer are registered as trusted:",
        config.display()
    );
    println!("{}", serde_json::to_string_pretty(&deployed)?);
    Ok(())
}

fn write_addresses(
    config: &Path,
    chain_id: ampflow_types::ChainId,
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
        .find(|table| {
            table.get("chain_id").and_then(|v| v.as_integer()) == Some(chain_id.get() as i64)
        })
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
