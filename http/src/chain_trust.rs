//! `ampflow chain campaign|issuer add|remove|list`: the operator's view of the registry of
//! trusted contracts (the only campaigns and issuers the platform spends gas on). A change is
//! made in the database and, with the chain's `operator_key_env` key (the owner of the
//! InvestService and the WalletApprover), in the contract's own registry too; without that key
//! the command says which call the owner must make.

use std::sync::Arc;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use ampflow_actors::trusted::{Change, OnChain, TrustedContracts};
use ampflow_chain::{ChainSettings, Chains};
use ampflow_http::config::Settings;
use ampflow_types::{SystemClock, TrustedKind};
use anyhow::Context;

/// What to do with the registry.
pub enum Action {
    Add(String),
    Remove(String),
    List,
}

pub async fn run(
    settings: &Settings,
    chain_id: ampflow_types::ChainId,
    kind: TrustedKind,
    action: Action,
) -> anyhow::Result<()> {
    let chain = chain_settings(settings, chain_id)?;
    let trusted = registry(settings).await?;
    match action {
        Action::Add(text) => {
            let address = parse_address(&text)?;
            let operator = operator_key(chain)?;
            let change = trusted.add(chain_id, kind, address, operator).await?;
            report(kind, address, true, &change);
        }
        Action::Remove(text) => {
            let address = parse_address(&text)?;
            let operator = operator_key(chain)?;
            let change = trusted.remove(chain_id, kind, address, operator).await?;
            report(kind, address, false, &change);
        }
        Action::List => {
            for listed in trusted.list(chain_id, kind).await? {
                let on_chain = match listed.on_chain {
                    Some(true) => "registered on chain",
                    Some(false) => "NOT registered on chain",
                    None => "on-chain registry not readable",
                };
                println!(
                    "{}\tadded {}\t{on_chain}",
                    listed.contract.address,
                    chrono::DateTime::from_timestamp_millis(listed.contract.added_at_ms)
                        .map(|at| at.to_rfc3339())
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// The registry's façade over this configuration's database and chains.
pub async fn registry(settings: &Settings) -> anyhow::Result<Arc<TrustedContracts>> {
    let storage = ampflow_http::app::open_storage(settings).await?;
    let chains = Chains::new(&settings.chains).context("configure the chains")?;
    Ok(TrustedContracts::new(
        storage.trusted().clone(),
        Arc::new(SystemClock),
        chains,
    ))
}

pub fn chain_settings(
    settings: &Settings,
    chain_id: ampflow_types::ChainId,
) -> anyhow::Result<&ChainSettings> {
    settings
        .chains
        .iter()
        .find(|c| c.chain_id == chain_id)
        .with_context(|| format!("chain {chain_id} is not configured under [[chains]]"))
}

/// The key in the environment variable the chain's `operator_key_env` names; `None` when the
/// chain names none.
pub fn operator_key(chain: &ChainSettings) -> anyhow::Result<Option<PrivateKeySigner>> {
    let Some(variable) = chain.operator_key_env.as_deref() else {
        return Ok(None);
    };
    read_key(variable).map(Some)
}

/// A private key from the environment variable `variable` (never printed).
pub fn read_key(variable: &str) -> anyhow::Result<PrivateKeySigner> {
    let key = std::env::var(variable)
        .with_context(|| format!("the environment variable {variable} is not set"))?;
    key.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{variable} does not hold a valid private key"))
}

fn parse_address(text: &str) -> anyhow::Result<Address> {
    ampflow_types::WalletAddress::parse(text)
        .map(|a| a.as_alloy())
        .map_err(|e| anyhow::anyhow!("{text:?} is not an address: {e}"))
}

fn report(kind: TrustedKind, address: Address, adding: bool, change: &Change) {
    let (verb, done, already) = if adding {
        ("registered", "added to", "already in")
    } else {
        ("unregistered", "removed from", "was not in")
    };
    let database = if change.in_database { done } else { already };
    println!("{kind} {address:#x}: {database} the database registry");
    match &change.on_chain {
        OnChain::Sent(hash) => println!("{kind} {address:#x}: {verb} on chain in {hash:#x}"),
        OnChain::AlreadySo => println!("{kind} {address:#x}: already {verb} on chain"),
        OnChain::OwnerMustCall {
            registry,
            contract,
            function,
        } => println!(
            "{kind} {address:#x}: NOT {verb} on chain (no operator_key_env for this chain): the \
             {contract}'s owner must call {function} on {registry:#x} with ({address:#x}, {adding})"
        ),
        OnChain::NoContracts => println!(
            "{kind} {address:#x}: the chain has no contracts configured, so no on-chain registry"
        ),
    }
}
