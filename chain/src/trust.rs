//! The contracts' half of the platform's registry of trusted contracts: the InvestService's
//! registered campaigns and the WalletApprover's registered issuers. The contracts never call an
//! address that is not registered, so even a compromised server cannot make them invest in, or
//! approve wallets on, a contract the operator did not register. The executor and the batchers
//! read the registries before each batch; only the operator CLI writes them, signing with the
//! contracts' owner (an operator key, not the server's transaction signer).

use alloy::network::{EthereumWallet, ReceiptResponse};
use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use ampflow_types::TrustedKind;

use crate::Chain;
use crate::contracts::{InvestService, WalletApprover};
use crate::invest::contract_call;
use crate::tx::{TxError, timed};

/// Why registering a contract on chain failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustWriteError {
    #[error("the RPC URL is not valid: {0}")]
    BadUrl(String),
    #[error("reading the registry: {0}")]
    Read(#[from] TxError),
    #[error(
        "the key {key:#x} is not the owner ({owner:#x}) of the {kind} registry at {registry:#x}"
    )]
    NotOwner {
        key: Address,
        owner: Address,
        kind: TrustedKind,
        registry: Address,
    },
    #[error("sending the registry change: {0}")]
    Send(String),
    #[error("the registry change {0:#x} reverted")]
    Reverted(B256),
}

/// The name of the contract holding the on-chain registry of `kind`.
pub fn registry_name(kind: TrustedKind) -> &'static str {
    match kind {
        TrustedKind::Campaign => "InvestService",
        TrustedKind::Issuer => "WalletApprover",
    }
}

/// The function the registry's owner calls to register (or unregister) an address.
pub fn registry_function(kind: TrustedKind) -> &'static str {
    match kind {
        TrustedKind::Campaign => "setCampaignStatus(address,bool)",
        TrustedKind::Issuer => "setIssuerStatus(address,bool)",
    }
}

impl Chain {
    /// The size of the code at `address` (0 for an account without code).
    pub async fn code_size(&self, address: Address) -> Result<usize, TxError> {
        Ok(timed(self.provider().get_code_at(address)).await?.len())
    }

    /// The contract holding the on-chain registry of `kind` (the InvestService for campaigns,
    /// the WalletApprover for issuers), when the chain's contracts are configured.
    pub fn registry_contract(&self, kind: TrustedKind) -> Option<Address> {
        let contracts = self.settings.contracts.as_ref()?;
        Some(match kind {
            TrustedKind::Campaign => contracts.invest_service,
            TrustedKind::Issuer => contracts.wallet_approver,
        })
    }

    /// Whether `address` is registered in the `kind` registry at `registry` (one `eth_call`).
    pub async fn is_registered(
        &self,
        registry: Address,
        kind: TrustedKind,
        address: Address,
    ) -> Result<bool, TxError> {
        match kind {
            TrustedKind::Campaign => {
                let contract = InvestService::new(registry, self.provider());
                contract_call(contract.isRegisteredCampaign(address).call()).await
            }
            TrustedKind::Issuer => {
                let contract = WalletApprover::new(registry, self.provider());
                contract_call(contract.isRegisteredIssuer(address).call()).await
            }
        }
    }

    /// The owner of the registry contract: the only key that may change it.
    pub async fn registry_owner(
        &self,
        registry: Address,
        kind: TrustedKind,
    ) -> Result<Address, TxError> {
        match kind {
            TrustedKind::Campaign => {
                let contract = InvestService::new(registry, self.provider());
                contract_call(contract.owner().call()).await
            }
            TrustedKind::Issuer => {
                let contract = WalletApprover::new(registry, self.provider());
                contract_call(contract.owner().call()).await
            }
        }
    }

    /// Registers (or unregisters) `address` in the `kind` registry at `registry`, signed by
    /// `owner`, and waits for the receipt; answers the transaction's hash. The key is checked
    /// against the registry's owner first, so a wrong key spends nothing.
    pub async fn set_registered(
        &self,
        owner: PrivateKeySigner,
        registry: Address,
        kind: TrustedKind,
        address: Address,
        registered: bool,
    ) -> Result<B256, TrustWriteError> {
        let current = self.registry_owner(registry, kind).await?;
        if current != owner.address() {
            return Err(TrustWriteError::NotOwner {
                key: owner.address(),
                owner: current,
                kind,
                registry,
            });
        }
        let url = self
            .settings
            .rpc_url
            .parse()
            .map_err(|e: url::ParseError| TrustWriteError::BadUrl(e.to_string()))?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(owner))
            .connect_http(url);
        let send = |e: &dyn std::fmt::Display| TrustWriteError::Send(e.to_string());
        let pending = match kind {
            TrustedKind::Campaign => InvestService::new(registry, &provider)
                .setCampaignStatus(address, registered)
                .send()
                .await
                .map_err(|e| send(&e))?,
            TrustedKind::Issuer => WalletApprover::new(registry, &provider)
                .setIssuerStatus(address, registered)
                .send()
                .await
                .map_err(|e| send(&e))?,
        };
        let receipt = pending.get_receipt().await.map_err(|e| send(&e))?;
        if !receipt.status() {
            return Err(TrustWriteError::Reverted(receipt.transaction_hash()));
        }
        Ok(receipt.transaction_hash())
    }
}
