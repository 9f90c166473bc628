//! The configured chains and their JSON-RPC providers. A chain id that is not configured is
//! "unsupported": callers answer 400.

use std::collections::HashMap;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, FixedBytes, eip191_hash_message};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use ampflow_types::ChainId;
use serde::{Deserialize, Serialize};

/// The value `isValidSignature` returns for a valid signature (EIP-1271).
pub const EIP1271_MAGIC_VALUE: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];
/// How long one read-only RPC call may take.
const RPC_READ_TIMEOUT: Duration = Duration::from_secs(5);

alloy::sol! {
    #[sol(rpc)]
    interface IERC1271 {
        function isValidSignature(bytes32 hash, bytes signature) external view returns (bytes4 magicValue);
    }
}

/// One chain, as configured under `[[chains]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChainSettings {
    pub chain_id: ChainId,
    pub name: String,
    /// JSON-RPC endpoint (http or https).
    pub rpc_url: String,
    /// Name of the environment variable holding the private key that deploys and signs on
    /// this chain. The key itself never goes in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_key_env: Option<String>,
    /// Name of the environment variable holding the operator's key: the owner of the
    /// contracts' registries of trusted campaigns and issuers. Only the operator commands
    /// (`ampflow chain deploy`, `ampflow chain campaign|issuer add|remove`) read it; the server
    /// never does, so a compromised server cannot register contracts. Unset: the operator
    /// changes the on-chain registries separately (the commands say how).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_key_env: Option<String>,
    /// The platform's contracts on this chain, as written by `ampflow chain deploy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts: Option<crate::deploy::DeployedContracts>,
    /// How transactions are sent: confirmations, fee caps, gas margin, replacement.
    #[serde(default)]
    pub tx: crate::tx::TxSettings,
    /// The testnet faucet (`[chains.faucet]`); without it the chain has no faucet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faucet: Option<FaucetSettings>,
    /// How whitelisting approvals are batched (`[chains.whitelist]`).
    #[serde(default)]
    pub whitelist: BatchSettings,
    /// Auto-invest (`[chains.auto_invest]`); without it the chain takes no auto-invest tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_invest: Option<AutoInvestSettings>,
}

/// Auto-invest on one chain, through the `contracts.invest_service` contract. Every limit of
/// the executor is here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoInvestSettings {
    /// Records per `getStatus` call and per `investFor` transaction at most.
    pub batch_size: usize,
    /// The most gas one `investFor` transaction may use; a batch estimated above it is split.
    pub gas_limit_per_batch: u64,
    /// How often the executor looks at pending tasks.
    pub tick_interval_ms: u64,
    /// Pending tasks looked at per tick at most (the rest wait for the next tick).
    pub tasks_per_tick: usize,
    /// A task still pending this long after it was queued (or last merged) expires.
    pub timeout_secs: u64,
    /// A task that is not ready (not whitelisted, no balance or allowance) is looked at again
    /// after this long.
    pub recheck_interval_ms: u64,
    /// Failed investment attempts before a task is failed for good.
    pub attempts_max: u32,
    /// The wait after a failed attempt; it doubles for each later one.
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// Open tasks one wallet may have on the chain.
    pub max_open_per_wallet: u64,
    /// How long the executor's lease lasts without renewal; another process takes over after.
    pub lease_ttl_ms: u64,
}

impl Default for AutoInvestSettings {
    fn default() -> Self {
        Self {
            batch_size: 50,
            gas_limit_per_batch: 10_000_000,
            tick_interval_ms: 5_000,
            tasks_per_tick: 1_000,
            timeout_secs: 7 * 24 * 60 * 60,
            recheck_interval_ms: 30_000,
            attempts_max: 5,
            retry_backoff_ms: 30_000,
            retry_backoff_max_ms: 60 * 60 * 1000,
            max_open_per_wallet: 100,
            lease_ttl_ms: 30_000,
        }
    }
}

/// How requests are gathered into one transaction, and retried when it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettings {
    /// Requests per transaction at most.
    pub batch_size: usize,
    /// The longest a due request waits for the batch to fill.
    pub max_wait_ms: u64,
    /// Transactions a request may ride in before it is marked failed.
    pub attempts_max: u32,
    /// The wait before a request's second attempt; it doubles for each later one.
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            batch_size: 10,
            max_wait_ms: 2_000,
            attempts_max: 5,
            retry_backoff_ms: 5_000,
            retry_backoff_max_ms: 300_000,
        }
    }
}

/// The faucet of one chain. It pays through the `contracts.faucet` contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaucetSettings {
    /// Payouts per faucet transaction at most.
    pub batch_size: usize,
    /// The longest a request waits for the batch to fill.
    pub max_wait_ms: u64,
    /// Transactions a request may ride in before it is marked failed.
    pub attempts_max: u32,
    /// The wait before a request's second attempt; it doubles for each later one.
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// After a payout, the wallet waits this long before it may ask again.
    pub cooldown_secs: u64,
    /// Requests one IP address may make in `per_ip_window_secs`.
    pub per_ip_max: u32,
    pub per_ip_window_secs: u64,
}

impl Default for FaucetSettings {
    fn default() -> Self {
        let batch = BatchSettings::default();
        Self {
            batch_size: batch.batch_size,
            max_wait_ms: batch.max_wait_ms,
            attempts_max: batch.attempts_max,
            retry_backoff_ms: batch.retry_backoff_ms,
            retry_backoff_max_ms: batch.retry_backoff_max_ms,
            cooldown_secs: 24 * 60 * 60,
            per_ip_max: 20,
            per_ip_window_secs: 60 * 60,
        }
    }
}

impl FaucetSettings {
    pub fn batch(&self) -> BatchSettings {
        BatchSettings {
            batch_size: self.batch_size,
            max_wait_ms: self.max_wait_ms,
            attempts_max: self.attempts_max,
            retry_backoff_ms: self.retry_backoff_ms,
            retry_backoff_max_ms: self.retry_backoff_max_ms,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("chain {chain_id}: the RPC URL is not valid: {reason}")]
    BadUrl { chain_id: ChainId, reason: String },
    #[error("chain {0} is configured twice")]
    Duplicate(ChainId),
    #[error("chain {chain_id}: RPC call failed: {reason}")]
    Rpc { chain_id: ChainId, reason: String },
}

/// Where a wallet stands on an issuer's whitelist, read before an approval is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerWallet {
    /// The address holds no issuer (no code, or it does not answer `walletApprover()`).
    NotAnIssuer,
    /// The issuer's wallet approver is not the platform's WalletApprover, so an approval sent
    /// through it would fail.
    ApprovedBy(Address),
    /// The wallet is on the whitelist already.
    Approved,
    NotApproved,
}

/// A configured chain with its provider.
#[derive(Clone)]
pub struct Chain {
    pub settings: ChainSettings,
    provider: DynProvider,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("chain_id", &self.settings.chain_id)
            .field("name", &self.settings.name)
            .finish()
    }
}

/// Every configured chain, by id.
#[derive(Clone, Debug, Default)]
pub struct Chains {
    by_id: HashMap<ChainId, Chain>,
}

impl Chains {
    pub fn new(settings: &[ChainSettings]) -> Result<Self, ChainError> {
        let mut by_id = HashMap::new();
        for chain in settings {
            let url = chain
                .rpc_url
                .parse()
                .map_err(|e: url::ParseError| ChainError::BadUrl {
                    chain_id: chain.chain_id,
                    reason: e.to_string(),
                })?;
            let provider = ProviderBuilder::new().connect_http(url).erased();
            let handle = Chain {
                settings: chain.clone(),
                provider,
            };
            if by_id.insert(chain.chain_id, handle).is_some() {
                return Err(ChainError::Duplicate(chain.chain_id));
            }
        }
        Ok(Self { by_id })
    }

    pub fn get(&self, chain_id: ChainId) -> Option<&Chain> {
        self.by_id.get(&chain_id)
    }

    /// Every configured chain id, in no particular order.
    pub fn ids(&self) -> Vec<ChainId> {
        self.by_id.keys().copied().collect()
    }
}

impl Chain {
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// Whether `wallet` is on `issuer`'s whitelist, and whether `approver` (the platform's
    /// WalletApprover) may change it. A contract that reverts or answers garbage is not an
    /// issuer; an unreachable node is an error.
    pub async fn issuer_wallet(
        &self,
        issuer: Address,
        wallet: Address,
        approver: Address,
    ) -> Result<IssuerWallet, ChainError> {
        let chain_id = self.settings.chain_id;
        let rpc = |e: &dyn std::fmt::Display| ChainError::Rpc {
            chain_id,
            reason: e.to_string(),
        };
        let code = tokio::time::timeout(RPC_READ_TIMEOUT, self.provider.get_code_at(issuer))
            .await
            .map_err(|e| rpc(&e))?
            .map_err(|e| rpc(&e))?;
        if code.is_empty() {
            return Ok(IssuerWallet::NotAnIssuer);
        }
        let contract = crate::contracts::Issuer::new(issuer, &self.provider);
        let current = match tokio::time::timeout(RPC_READ_TIMEOUT, contract.walletApprover().call())
            .await
            .map_err(|e| rpc(&e))?
        {
            Ok(current) => current,
            Err(alloy::contract::Error::TransportError(e)) if !e.is_error_resp() => {
                return Err(rpc(&e));
            }
            Err(_) => return Ok(IssuerWallet::NotAnIssuer),
        };
        if current != approver {
            return Ok(IssuerWallet::ApprovedBy(current));
        }
        match tokio::time::timeout(RPC_READ_TIMEOUT, contract.isWalletApproved(wallet).call())
            .await
            .map_err(|e| rpc(&e))?
        {
            Ok(true) => Ok(IssuerWallet::Approved),
            Ok(false) => Ok(IssuerWallet::NotApproved),
            Err(alloy::contract::Error::TransportError(e)) if !e.is_error_resp() => Err(rpc(&e)),
            Err(_) => Ok(IssuerWallet::NotAnIssuer),
        }
    }

    /// Which of `messages` the contract at `wallet` says `signature` signs (EIP-1271, each
    /// message hashed the EIP-191 `personal_sign` way): the index of the first it accepts. A
    /// wallet without code, or one that reverts, accepts none; an unreachable node is an error.
    pub async fn eip1271_signed_message(
        &self,
        wallet: Address,
        messages: &[&str],
        signature: &[u8],
    ) -> Result<Option<usize>, ChainError> {
        let chain_id = self.settings.chain_id;
        let rpc = |e: &dyn std::fmt::Display| ChainError::Rpc {
            chain_id,
            reason: e.to_string(),
        };
        let code = tokio::time::timeout(RPC_READ_TIMEOUT, self.provider.get_code_at(wallet))
            .await
            .map_err(|e| rpc(&e))?
            .map_err(|e| rpc(&e))?;
        if code.is_empty() {
            return Ok(None);
        }
        let contract = IERC1271::new(wallet, &self.provider);
        let signature = Bytes::copy_from_slice(signature);
        for (index, message) in messages.iter().enumerate() {
            let hash = eip191_hash_message(message.as_bytes());
            let call = contract.isValidSignature(hash, signature.clone());
            match tokio::time::timeout(RPC_READ_TIMEOUT, call.call())
                .await
                .map_err(|e| rpc(&e))?
            {
                Ok(magic) if magic == FixedBytes(EIP1271_MAGIC_VALUE) => return Ok(Some(index)),
                Ok(_) => {}
                // A revert is the contract's "no"; transport failures are errors.
                Err(alloy::contract::Error::TransportError(e)) if !e.is_error_resp() => {
                    return Err(rpc(&e));
                }
                Err(_) => {}
            }
        }
        Ok(None)
    }
}
