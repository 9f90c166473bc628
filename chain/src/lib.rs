//! EVM access for ampflow: wallet signature checks (EIP-191 `personal_sign`, EIP-1271 contract
//! wallets), the configured chains and their providers, the RPC steps of sending a transaction,
//! contract bindings and deployment, and the contracts' registries of trusted campaigns and
//! issuers.

pub mod chains;
pub mod contracts;
pub mod deploy;
pub mod invest;
pub mod signature;
pub mod trust;
pub mod tx;

pub use chains::{
    AutoInvestSettings, BatchSettings, Chain, ChainError, ChainSettings, Chains, FaucetSettings,
    IssuerWallet,
};
pub use signature::{SignatureBytes, SignatureError, WalletSignature};
