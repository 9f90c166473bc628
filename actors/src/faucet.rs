//! The testnet faucet. A wallet's requests on a chain are owned by one `FaucetRequestActor`
//! (keyed by the chain and the wallet): it takes the wallet's requests one at a time, applies
//! the rules and writes the request, and answers for the wallet's requests. The chain's faucet
//! batcher gathers pending requests into one `faucet(address[])` transaction, and the
//! transaction's `FaucetPaid` / `FaucetSkipped` events settle each request, in the same
//! storage transaction that marks the intent final. A request is therefore paid at most once:
//! it is in at most one open intent, and an intent is signed once and settled once.
//!
//! The rules, checked by the actor before a request is stored: a wallet with an open request
//! gets that request back; a wallet paid within the cooldown, or an IP address over its limit,
//! is told when to come back. (The façade checks first that the chain has a faucet.) Storage
//! holds one open request per (chain, wallet) with a unique key, so two processes' actors for
//! one wallet still open one request; and it counts the address's requests and inserts the new
//! one under the address's lock, since that limit spans every wallet (and every process).

use std::collections::HashMap;
use std::sync::Arc;

use alloy::primitives::{Address, Bytes};
use alloy::rpc::types::Log;
use alloy::sol_types::SolCall;
use ampflow_chain::contracts::Faucet as FaucetContract;
use ampflow_chain::{BatchSettings, Chains};
pub use ampflow_storage::FaucetRequestRecord;
use ampflow_storage::{
    ChainRepo, IpLimit, ItemSettlement, Opened, RequestStatus, SettledStatus, WorkGroup, WorkKind,
};
use ampflow_types::{ChainId, Clock, TokenAmount, WalletAddress};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::batcher::{BatchSpec, Batchers};
use crate::registry::{EntityActor, Registry, RegistryError};

/// Why a faucet request was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FaucetError {
    #[error("chain {0} is not supported")]
    UnsupportedChain(ChainId),
    #[error("chain {0} has no faucet")]
    NoFaucet(ChainId),
    #[error("this wallet was paid recently; ask again in {retry_after_secs} s")]
    CoolingDown { retry_after_secs: u64 },
    #[error("too many faucet requests from this address; try again in {retry_after_secs} s")]
    TooManyFromIp { retry_after_secs: u64 },
    #[error("faucet request not found")]
    NotFound,
    #[error("storage: {0}")]
    Storage(String),
    /// Storage could not carry the request out now (see `StorageError::is_unavailable`);
    /// a retry may well succeed. Carries the cause for the logs.
    #[error("storage is unavailable; retry: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Actor(#[from] RegistryError),
}

impl From<ampflow_storage::StorageError> for FaucetError {
    fn from(error: ampflow_storage::StorageError) -> Self {
        if error.is_unavailable() {
            Self::Unavailable(error.to_string())
        } else {
            Self::Storage(error.to_string())
        }
    }
}

/// What the faucet batcher sends: `faucet(address[])` on the chain's Faucet contract.
pub struct FaucetSpec {
    chains: Chains,
}

impl BatchSpec for FaucetSpec {
    fn kind(&self) -> WorkKind {
        WorkKind::Faucet
    }

    fn purpose(&self) -> &'static str {
        "faucet"
    }

    fn settings(&self, chain_id: ChainId) -> Option<BatchSettings> {
        let chain = self.chains.get(chain_id)?;
        chain.settings.faucet.as_ref().map(|f| f.batch())
    }

    fn call(&self, group: &WorkGroup, wallets: &[Address]) -> Option<(Address, Bytes)> {
        let chain = self.chains.get(group.chain_id)?;
        let faucet = chain.settings.contracts.as_ref()?.faucet;
        let call = FaucetContract::faucetCall {
            wallets: wallets.to_vec(),
        };
        Some((faucet, Bytes::from(call.abi_encode())))
    }

    fn outcomes(&self, logs: &[Log]) -> HashMap<WalletAddress, ItemSettlement> {
        let mut outcomes = HashMap::new();
        for log in logs {
            if let Ok(paid) = log.log_decode::<FaucetContract::FaucetPaid>() {
                let event = paid.inner.data;
                outcomes.insert(
                    WalletAddress::from_alloy(event.wallet),
                    ItemSettlement {
                        status: SettledStatus::Paid,
                        reason: None,
                        amount_wei: Some(TokenAmount::from_u256(event.amount)),
                    },
                );
            } else if let Ok(skipped) = log.log_decode::<FaucetContract::FaucetSkipped>() {
                let event = skipped.inner.data;
                outcomes.insert(
                    WalletAddress::from_alloy(event.wallet),
                    ItemSettlement {
                        status: SettledStatus::Skipped,
                        reason: Some(event.reason),
                        amount_wei: None,
                    },
                );
            }
        }
        outcomes
    }
}

/// The faucet's front: the chain must have a faucet; then the wallet's actor.
pub struct Faucet {
    chains: Chains,
    requests: Arc<Registry<FaucetRequestActor>>,
    batchers: Arc<Batchers<FaucetSpec>>,
}

/// A request the faucet accepted: `created` is false when the wallet's open request was
/// returned instead of a new one.
#[derive(Debug, Clone)]
pub struct FaucetAnswer {
    pub request: FaucetRequestRecord,
    pub created: bool,
}

impl Faucet {
    pub(crate) fn new(
        chains: Chains,
        requests: Arc<Registry<FaucetRequestActor>>,
        batchers: Arc<Batchers<FaucetSpec>>,
    ) -> Self {
        Self {
            chains,
            requests,
            batchers,
        }
    }

    pub(crate) fn spec(chains: Chains) -> FaucetSpec {
        FaucetSpec { chains }
    }

    /// Whether the chain is supported and has a faucet.
    pub fn check_chain(&self, chain_id: ChainId) -> Result<(), FaucetError> {
        self.settings(chain_id).map(|_| ())
    }

    /// The chain's faucet settings: the chain must be configured, with a faucet contract.
    fn settings(&self, chain_id: ChainId) -> Result<&ampflow_chain::FaucetSettings, FaucetError> {
        let chain = self
            .chains
            .get(chain_id)
            .ok_or(FaucetError::UnsupportedChain(chain_id))?;
        chain
            .settings
            .faucet
            .as_ref()
            .filter(|_| chain.settings.contracts.is_some())
            .ok_or(FaucetError::NoFaucet(chain_id))
    }

    /// Asks the chain's faucet to pay `wallet`, through the wallet's actor on the chain.
    pub async fn request(
        &self,
        chain_id: ChainId,
        wallet: &WalletAddress,
        client_ip: &str,
    ) -> Result<FaucetAnswer, FaucetError> {
        self.check_chain(chain_id)?;
        let key = FaucetKey {
            chain_id,
            wallet: *wallet,
        };
        let answer = self
            .requests
            .call(&key, |reply| FaucetMsg::Request {
                client_ip: client_ip.to_string(),
                reply,
            })
            .await??;
        if answer.created {
            self.batchers.wake(&WorkGroup {
                chain_id,
                issuer: None,
            });
        }
        Ok(answer)
    }

    /// One of the wallet's requests on the chain.
    pub async fn get(
        &self,
        chain_id: ChainId,
        id: &str,
        wallet: &WalletAddress,
    ) -> Result<FaucetRequestRecord, FaucetError> {
        if self.chains.get(chain_id).is_none() {
            return Err(FaucetError::UnsupportedChain(chain_id));
        }
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(FaucetError::NotFound);
        }
        let key = FaucetKey {
            chain_id,
            wallet: *wallet,
        };
        self.requests
            .call(&key, |reply| FaucetMsg::Get {
                id: id.to_string(),
                reply,
            })
            .await?
    }
}

fn seconds_until(now: i64, until: i64) -> u64 {
    ((until - now).max(0) as u64).div_ceil(1000).max(1)
}

/// The key of a wallet's faucet requests on a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaucetKey {
    pub chain_id: ChainId,
    pub wallet: WalletAddress,
}

impl std::fmt::Display for FaucetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.chain_id, self.wallet)
    }
}

/// The actor of a wallet's faucet requests on a chain: the rules, then the write.
#[derive(Clone)]
pub struct FaucetRequestActor {
    requests: ChainRepo,
    clock: Arc<dyn Clock>,
    chains: Chains,
}

impl FaucetRequestActor {
    pub(crate) fn new(requests: ChainRepo, clock: Arc<dyn Clock>, chains: Chains) -> Self {
        Self {
            requests,
            clock,
            chains,
        }
    }

    /// The wallet's open request, or a new one if the rules allow it.
    async fn request(
        &self,
        key: &FaucetKey,
        client_ip: String,
    ) -> Result<FaucetAnswer, FaucetError> {
        let settings = self
            .chains
            .get(key.chain_id)
            .and_then(|chain| chain.settings.faucet.clone())
            .ok_or(FaucetError::NoFaucet(key.chain_id))?;
        let address = key.wallet;
        if let Some(open) = self
            .requests
            .find_open_faucet_request(key.chain_id, &address)
            .await?
        {
            return Ok(FaucetAnswer {
                request: open,
                created: false,
            });
        }
        let now = self.clock.now_ms();
        self.check_cooldown(key, &settings, now).await?;
        let record = FaucetRequestRecord {
            id: uuid::Uuid::new_v4().to_string(),
            chain_id: key.chain_id,
            address,
            client_ip,
            status: RequestStatus::Pending,
            attempts: 0,
            tx_hash: None,
            amount_wei: None,
            reason: None,
            created_at_ms: now,
            updated_at_ms: now,
            settled_at_ms: None,
        };
        let window = (settings.per_ip_window_secs as i64) * 1000;
        let limit = (settings.per_ip_max > 0).then(|| IpLimit {
            since: now - window,
            max: u64::from(settings.per_ip_max),
        });
        Ok(
            match self
                .requests
                .open_faucet_request_within(&record, limit)
                .await?
            {
                Ok(Opened::Created(request)) => FaucetAnswer {
                    request,
                    created: true,
                },
                Ok(Opened::AlreadyOpen(request)) => FaucetAnswer {
                    request,
                    created: false,
                },
                Err(recent) => {
                    let oldest = recent.last().copied().unwrap_or(now);
                    return Err(FaucetError::TooManyFromIp {
                        retry_after_secs: seconds_until(now, oldest + window),
                    });
                }
            },
        )
    }

    /// The cooldown since the wallet's last payout. (The per-address limit is checked by
    /// storage with the insert, under the address's lock: it spans every wallet.)
    async fn check_cooldown(
        &self,
        key: &FaucetKey,
        settings: &ampflow_chain::FaucetSettings,
        now: i64,
    ) -> Result<(), FaucetError> {
        if let Some(paid_at) = self
            .requests
            .last_faucet_payout_at(key.chain_id, &key.wallet)
            .await?
        {
            let until = paid_at + (settings.cooldown_secs as i64) * 1000;
            if until > now {
                return Err(FaucetError::CoolingDown {
                    retry_after_secs: seconds_until(now, until),
                });
            }
        }
        Ok(())
    }

    /// One of the wallet's requests on the chain, as it stands now (the batcher and the
    /// settlement move it on).
    async fn get(&self, key: &FaucetKey, id: &str) -> Result<FaucetRequestRecord, FaucetError> {
        match self.requests.faucet_request(id).await? {
            Some(r) if r.chain_id == key.chain_id && r.address == key.wallet => Ok(r),
            _ => Err(FaucetError::NotFound),
        }
    }
}

pub enum FaucetMsg {
    Request {
        client_ip: String,
        reply: RpcReplyPort<Result<FaucetAnswer, FaucetError>>,
    },
    Get {
        id: String,
        reply: RpcReplyPort<Result<FaucetRequestRecord, FaucetError>>,
    },
    Retire,
}

impl EntityActor for FaucetRequestActor {
    const KIND: &'static str = "faucet_request";
    type Key = FaucetKey;

    fn retire() -> FaucetMsg {
        FaucetMsg::Retire
    }
}

impl Actor for FaucetRequestActor {
    type Msg = FaucetMsg;
    type State = FaucetKey;
    type Arguments = FaucetKey;

    async fn pre_start(
        &self,
        _: ActorRef<FaucetMsg>,
        key: FaucetKey,
    ) -> Result<FaucetKey, ActorProcessingErr> {
        Ok(key)
    }

    async fn handle(
        &self,
        myself: ActorRef<FaucetMsg>,
        message: FaucetMsg,
        key: &mut FaucetKey,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            // Boxed, so the idle actor's task stays small (see `WalletActor::handle`).
            FaucetMsg::Request { client_ip, reply } => {
                let _ = reply.send(Box::pin(self.request(key, client_ip)).await);
            }
            FaucetMsg::Get { id, reply } => {
                let _ = reply.send(Box::pin(self.get(key, &id)).await);
            }
            FaucetMsg::Retire => myself.stop(Some("idle".into())),
        }
        Ok(())
    }
}
