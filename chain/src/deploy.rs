//! Deploying the platform's contract set to a development node (`ampflow chain deploy`): the
//! test stablecoin, a WalletApprover that is the Issuer's approver, a funded Faucet, the
//! InvestService and one sample Campaign that trusts it. The sample Campaign is registered on
//! the InvestService and the Issuer on the WalletApprover, so the platform may use them.

use alloy::network::{EthereumWallet, Network, ReceiptResponse};
use alloy::primitives::{Address, U256};
use alloy::providers::{PendingTransactionBuilder, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

use crate::contracts::{Campaign, Faucet, InvestService, Issuer, TestStablecoin, WalletApprover};

/// What the faucet pays and when, in wei.
#[derive(Debug, Clone, Copy)]
pub struct FaucetFunding {
    pub reward_wei: U256,
    pub balance_threshold_wei: U256,
    /// Sent to the faucet right after it is deployed.
    pub initial_balance_wei: U256,
}

/// The addresses of a deployed contract set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedContracts {
    pub stablecoin: Address,
    pub wallet_approver: Address,
    pub issuer: Address,
    pub faucet: Address,
    pub invest_service: Address,
    pub campaign: Address,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the RPC URL is not valid: {0}")]
    BadUrl(String),
    #[error("deploying {contract}: {reason}")]
    Step {
        contract: &'static str,
        reason: String,
    },
}

fn step(contract: &'static str) -> impl Fn(&dyn std::fmt::Display) -> DeployError {
    move |e| DeployError::Step {
        contract,
        reason: e.to_string(),
    }
}

/// Waits for a sent call's receipt; a reverted one is an error.
async fn confirm<N: Network>(
    sent: Result<PendingTransactionBuilder<N>, alloy::contract::Error>,
    what: &'static str,
) -> Result<(), DeployError> {
    let receipt = sent
        .map_err(|e| step(what)(&e))?
        .get_receipt()
        .await
        .map_err(|e| step(what)(&e))?;
    if !receipt.status() {
        return Err(step(what)(&"the transaction reverted"));
    }
    Ok(())
}

/// Deploys and wires the contract set, signing with `deployer`, who becomes every contract's
/// owner. Each transaction waits for its receipt before the next is sent.
pub async fn deploy_platform(
    rpc_url: &str,
    deployer: PrivateKeySigner,
    faucet: FaucetFunding,
) -> Result<DeployedContracts, DeployError> {
    let url = rpc_url
        .parse()
        .map_err(|e: url::ParseError| DeployError::BadUrl(e.to_string()))?;
    let owner = deployer.address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(deployer))
        .connect_http(url);

    let stablecoin = TestStablecoin::deploy(&provider)
        .await
        .map_err(|e| step("TestStablecoin")(&e))?;
    let wallet_approver = WalletApprover::deploy(&provider)
        .await
        .map_err(|e| step("WalletApprover")(&e))?;
    let issuer = Issuer::deploy(&provider, *wallet_approver.address())
        .await
        .map_err(|e| step("Issuer")(&e))?;
    let faucet_contract =
        Faucet::deploy(&provider, faucet.reward_wei, faucet.balance_threshold_wei)
            .await
            .map_err(|e| step("Faucet")(&e))?;
    let invest_service = InvestService::deploy(&provider)
        .await
        .map_err(|e| step("InvestService")(&e))?;
    let campaign = Campaign::deploy(&provider, *stablecoin.address(), *issuer.address())
        .await
        .map_err(|e| step("Campaign")(&e))?;
    let deployed = DeployedContracts {
        stablecoin: *stablecoin.address(),
        wallet_approver: *wallet_approver.address(),
        issuer: *issuer.address(),
        faucet: *faucet_contract.address(),
        invest_service: *invest_service.address(),
        campaign: *campaign.address(),
    };
    trust_samples(&provider, &deployed).await?;
    if !faucet.initial_balance_wei.is_zero() {
        let funding = alloy::rpc::types::TransactionRequest::default()
            .from(owner)
            .to(deployed.faucet)
            .value(faucet.initial_balance_wei);
        provider
            .send_transaction(funding)
            .await
            .map_err(|e| step("Faucet funding")(&e))?
            .get_receipt()
            .await
            .map_err(|e| step("Faucet funding")(&e))?;
    }
    Ok(deployed)
}

/// Deploys one more campaign on the platform's stablecoin and issuer, made to trust its
/// InvestService, signed by `provider`'s wallet (its owner). Registering it on the
/// InvestService is a step of its own (`ampflow chain campaign add`).
pub async fn deploy_campaign<P: Provider>(
    provider: &P,
    contracts: &DeployedContracts,
) -> Result<Address, DeployError> {
    let campaign = Campaign::deploy(provider, contracts.stablecoin, contracts.issuer)
        .await
        .map_err(|e| step("Campaign")(&e))?;
    confirm(
        campaign
            .setInvestService(contracts.invest_service)
            .send()
            .await,
        "Campaign.setInvestService",
    )
    .await?;
    Ok(*campaign.address())
}

/// Makes the sample campaign trust the InvestService, and registers it on the InvestService
/// and the issuer on the WalletApprover, signed by their owner.
async fn trust_samples<P: Provider>(
    provider: &P,
    deployed: &DeployedContracts,
) -> Result<(), DeployError> {
    confirm(
        Campaign::new(deployed.campaign, provider)
            .setInvestService(deployed.invest_service)
            .send()
            .await,
        "Campaign.setInvestService",
    )
    .await?;
    confirm(
        InvestService::new(deployed.invest_service, provider)
            .setCampaignStatus(deployed.campaign, true)
            .send()
            .await,
        "InvestService.setCampaignStatus",
    )
    .await?;
    confirm(
        WalletApprover::new(deployed.wallet_approver, provider)
            .setIssuerStatus(deployed.issuer, true)
            .send()
            .await,
        "WalletApprover.setIssuerStatus",
    )
    .await
}

/// Lets `executor` (the server's transaction signer) send the platform's transactions on
/// contracts `owner` deployed: `investFor`, `approveWallets` and `faucet`. It gets no other
/// right: registering campaigns and issuers stays with the owner.
pub async fn allow_executor(
    rpc_url: &str,
    owner: PrivateKeySigner,
    contracts: &DeployedContracts,
    executor: Address,
) -> Result<(), DeployError> {
    let url = rpc_url
        .parse()
        .map_err(|e: url::ParseError| DeployError::BadUrl(e.to_string()))?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(owner))
        .connect_http(url);
    confirm(
        InvestService::new(contracts.invest_service, &provider)
            .updateCallerStatus(executor, true)
            .send()
            .await,
        "InvestService.updateCallerStatus",
    )
    .await?;
    confirm(
        WalletApprover::new(contracts.wallet_approver, &provider)
            .updateApproverStatus(executor, true)
            .send()
            .await,
        "WalletApprover.updateApproverStatus",
    )
    .await?;
    confirm(
        Faucet::new(contracts.faucet, &provider)
            .updateCallerStatus(executor, true)
            .send()
            .await,
        "Faucet.updateCallerStatus",
    )
    .await
}
