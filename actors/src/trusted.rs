//! The platform's registry of trusted contracts: per chain, the campaigns auto-invest may invest
//! in and the issuers whitelisting may approve wallets on. The platform spends gas only on
//! these, never on an address a user names or on what a contract says about itself.
//!
//! - The database holds the registry every process shares. The HTTP front asks it before
//!   anything is queued (a positive answer is remembered for [`CACHE_TTL`], so a removal
//!   reaches new requests within that time); the auto-invest executor and the whitelisting
//!   batcher ask it again, uncached, before each batch, so work queued for a contract removed
//!   since is never sent.
//! - The contracts keep their own registry (the InvestService's campaigns, the WalletApprover's
//!   issuers) and never call an unregistered address, so a compromised server cannot spend gas
//!   elsewhere either. Only the registries' owner changes them: operators, through
//!   [`TrustedContracts::add`] and [`TrustedContracts::remove`] (the CLI), which send the
//!   change when given the owner's key and otherwise say which call the owner must make.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use ampflow_chain::trust::{TrustWriteError, registry_function, registry_name};
use ampflow_chain::{Chain, Chains};
use ampflow_storage::{StorageError, TrustedContract, TrustedRepo};
use ampflow_types::{ChainId, Clock, TrustedKind, WalletAddress};
use parking_lot::Mutex;

/// How long a positive answer of the registry is remembered by this process.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Positive answers remembered at most; the cache starts empty again when full.
const CACHE_ENTRIES_MAX: usize = 100_000;
/// Contracts a listing shows at most.
pub const LIST_MAX: u64 = 10_000;

/// Why a registry change or listing failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("chain {0} is not configured")]
    UnsupportedChain(ChainId),
    #[error("{address:#x} has no code on chain {chain_id}: it is not a contract")]
    NoCode { chain_id: ChainId, address: Address },
    #[error("chain {chain_id}: {reason}")]
    Chain { chain_id: ChainId, reason: String },
    #[error(transparent)]
    Write(#[from] TrustWriteError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// What a registry change did on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnChain {
    /// The operator's key sent the change: its transaction.
    Sent(B256),
    /// The contract's registry said so already.
    AlreadySo,
    /// Not changed: the registry's owner must make this call (no operator key was given).
    OwnerMustCall {
        registry: Address,
        contract: &'static str,
        function: &'static str,
    },
    /// The chain has no contracts configured, so there is no on-chain registry.
    NoContracts,
}

/// What an `add` or `remove` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// False when the database said so already.
    pub in_database: bool,
    pub on_chain: OnChain,
}

/// A registry entry with what the contract's registry says about it (`None` when it could not
/// be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub contract: TrustedContract,
    pub on_chain: Option<bool>,
}

type CacheKey = (ChainId, TrustedKind, Address);

/// The registry's façade, shared by the HTTP front, the executors and the CLI.
pub struct TrustedContracts {
    registry: TrustedRepo,
    clock: Arc<dyn Clock>,
    chains: Chains,
    /// Positive answers, and when they were read.
    cache: Mutex<HashMap<CacheKey, Instant>>,
}

impl TrustedContracts {
    pub fn new(registry: TrustedRepo, clock: Arc<dyn Clock>, chains: Chains) -> Arc<Self> {
        Arc::new(Self {
            registry,
            clock,
            chains,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `address` is trusted as `kind` on the chain. A positive answer read less than
    /// [`CACHE_TTL`] ago is reused; a negative one is always read again, so an addition is
    /// seen at once.
    pub async fn is_trusted(
        &self,
        chain_id: ChainId,
        kind: TrustedKind,
        address: Address,
    ) -> Result<bool, StorageError> {
        let key = (chain_id, kind, address);
        if let Some(read) = self.cache.lock().get(&key)
            && read.elapsed() < CACHE_TTL
        {
            return Ok(true);
        }
        let trusted = !self
            .registry
            .trusted_among(chain_id, kind, &[WalletAddress::from_alloy(address)])
            .await?
            .is_empty();
        let mut cache = self.cache.lock();
        if trusted {
            if cache.len() >= CACHE_ENTRIES_MAX {
                cache.clear();
            }
            cache.insert(key, Instant::now());
        } else {
            cache.remove(&key);
        }
        Ok(trusted)
    }

    /// Which of `addresses` are trusted as `kind` on the chain, read from the database now
    /// (the executors' check before each batch).
    pub async fn trusted_among(
        &self,
        chain_id: ChainId,
        kind: TrustedKind,
        addresses: &[Address],
    ) -> Result<HashSet<Address>, StorageError> {
        let wanted: Vec<WalletAddress> = addresses
            .iter()
            .map(|a| WalletAddress::from_alloy(*a))
            .collect();
        let found = self.registry.trusted_among(chain_id, kind, &wanted).await?;
        Ok(found.into_iter().map(|a| a.as_alloy()).collect())
    }

    /// Records `addresses` in the database only; answers how many were new. For contracts
    /// already registered on chain (`ampflow chain deploy`) and for tests and benchmarks.
    pub async fn record(
        &self,
        chain_id: ChainId,
        kind: TrustedKind,
        addresses: &[Address],
    ) -> Result<u64, TrustError> {
        self.chain(chain_id)?;
        let addresses: Vec<WalletAddress> = addresses
            .iter()
            .map(|a| WalletAddress::from_alloy(*a))
            .collect();
        let now = self.clock.now_ms();
        Ok(self
            .registry
            .add_trusted_contracts(chain_id, kind, &addresses, now)
            .await?)
    }

    /// Trusts a contract as `kind` on the chain: on chain first (sent with `operator`, the
    /// registry's owner, when given), then in the database. An address without code is
    /// refused (a typo, or a contract not deployed yet).
    pub async fn add(
        &self,
        chain_id: ChainId,
        kind: TrustedKind,
        address: Address,
        operator: Option<PrivateKeySigner>,
    ) -> Result<Change, TrustError> {
        let chain = self.chain(chain_id)?;
        let code = chain
            .code_size(address)
            .await
            .map_err(|e| TrustError::Chain {
                chain_id,
                reason: e.to_string(),
            })?;
        if code == 0 {
            return Err(TrustError::NoCode { chain_id, address });
        }
        let on_chain = self
            .set_on_chain(chain, kind, address, true, operator)
            .await?;
        let added = self.record(chain_id, kind, &[address]).await?;
        Ok(Change {
            in_database: added > 0,
            on_chain,
        })
    }

    /// Stops trusting a contract: in the database first (no new work is queued for it, and
    /// queued work is not sent), then on chain (sent with `operator` when given).
    pub async fn remove(
        &self,
        chain_id: ChainId,
        kind: TrustedKind,
        address: Address,
        operator: Option<PrivateKeySigner>,
    ) -> Result<Change, TrustError> {
        let chain = self.chain(chain_id)?;
        let removed = self
            .registry
            .remove_trusted_contract(chain_id, kind, &WalletAddress::from_alloy(address))
            .await?;
        self.cache.lock().remove(&(chain_id, kind, address));
        let on_chain = self
            .set_on_chain(chain, kind, address, false, operator)
            .await?;
        Ok(Change {
            in_database: removed,
            on_chain,
        })
    }

    /// The chain's trusted contracts of `kind` (at most [`LIST_MAX`]), oldest first, each with
    /// what the contract's registry says.
    pub async fn list(
        &self,
        chain_id: ChainId,
        kind: TrustedKind,
    ) -> Result<Vec<Listed>, TrustError> {
        let chain = self.chain(chain_id)?;
        let registry = chain.registry_contract(kind);
        let mut listed = Vec::new();
        for contract in self
            .registry
            .trusted_contracts(chain_id, kind, LIST_MAX)
            .await?
        {
            let on_chain = match registry {
                Some(registry) => chain
                    .is_registered(registry, kind, contract.address.as_alloy())
                    .await
                    .ok(),
                None => None,
            };
            listed.push(Listed { contract, on_chain });
        }
        Ok(listed)
    }

    fn chain(&self, chain_id: ChainId) -> Result<&Chain, TrustError> {
        self.chains
            .get(chain_id)
            .ok_or(TrustError::UnsupportedChain(chain_id))
    }

    /// Makes the contract's registry say `registered` for `address`, if it does not already.
    async fn set_on_chain(
        &self,
        chain: &Chain,
        kind: TrustedKind,
        address: Address,
        registered: bool,
        operator: Option<PrivateKeySigner>,
    ) -> Result<OnChain, TrustError> {
        let chain_id = chain.settings.chain_id;
        let Some(registry) = chain.registry_contract(kind) else {
            return Ok(OnChain::NoContracts);
        };
        let current = chain
            .is_registered(registry, kind, address)
            .await
            .map_err(|e| TrustError::Chain {
                chain_id,
                reason: e.to_string(),
            })?;
        if current == registered {
            return Ok(OnChain::AlreadySo);
        }
        match operator {
            Some(owner) => Ok(OnChain::Sent(
                chain
                    .set_registered(owner, registry, kind, address, registered)
                    .await?,
            )),
            None => Ok(OnChain::OwnerMustCall {
                registry,
                contract: registry_name(kind),
                function: registry_function(kind),
            }),
        }
    }
}
