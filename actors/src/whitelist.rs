//! On-chain whitelisting (seed 002 §4.3): a wallet whose KYC is complete, with a document that
//! has not expired, asks to be approved on an issuer. The wallet's actor checks its KYC and
//! queues one approval per (chain, issuer, wallet) — asking again while one is open returns
//! that one. The batcher of each (chain, issuer) gathers due approvals into one
//! `WalletApprover.approveWallets(issuer, wallets)` transaction, and its per-wallet
//! `ApproveWallet(issuer, wallet, success)` events settle each request as confirmed or failed.
//!
//! Only issuers in the platform's registry of trusted contracts are served (see
//! [`crate::trusted`]): what an issuer contract says about itself (its `walletApprover`) is not
//! a reason to spend gas on it. A registered issuer is then read on chain: one that does not
//! answer as an issuer, or whose approver is not the platform's WalletApprover, is refused (an
//! approval sent to it could only fail, and would cost gas); a wallet already on the whitelist
//! is answered at once and nothing is sent. Before each batch the batcher checks the issuer
//! again, in the database and in the WalletApprover's own registry: requests for an issuer
//! removed since are failed with the reason, unsent.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use alloy::primitives::{Address, Bytes};
use alloy::rpc::types::Log;
use alloy::sol_types::SolCall;
use ampflow_chain::contracts::WalletApprover;
use ampflow_chain::{BatchSettings, Chains, IssuerWallet};
pub use ampflow_storage::WhitelistRequestRecord;
use ampflow_storage::{ChainRepo, ItemSettlement, Opened, SettledStatus, WorkGroup, WorkKind};
use ampflow_types::{ChainId, Clock, TrustedKind, WalletAddress};
use chrono::NaiveDate;

use crate::batcher::{BatchSpec, Batchers, Vetting};
use crate::identity_error::IdentityError;
use crate::registry::Registry;
use crate::trusted::TrustedContracts;
use crate::tx_sender::TxSenders;
use crate::wallet::{KycRefusal, QueueRefused, WalletActor, WalletMsg, kyc_gate, utc_day};

/// The most requests `GET /user/whitelist` lists.
pub const LIST_LIMIT: u64 = 100;

/// Why a whitelisting request was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WhitelistError {
    #[error("chain {0} is not supported")]
    UnsupportedChain(ChainId),
    #[error("chain {0} has no WalletApprover or no transaction signer configured")]
    NotSupported(ChainId),
    #[error("KYC is not complete for this wallet; complete it through POST /veriff/session")]
    KycRequired,
    #[error("the KYC document expired on {valid_until}; verify again through POST /veriff/session")]
    KycExpired { valid_until: NaiveDate },
    #[error("issuer {0:#x} is not in this platform's registry of issuers on this chain")]
    IssuerNotRegistered(Address),
    #[error("{0:#x} is registered as an issuer but does not answer as one on this chain")]
    NotAnIssuer(Address),
    #[error("issuer {issuer} is approved by {approver:#x}, not by this platform's WalletApprover")]
    IssuerNotManaged { issuer: Address, approver: Address },
    /// Carries the cause for the logs.
    #[error("chain {chain_id} could not be reached to read the issuer; retry")]
    ChainUnavailable { chain_id: ChainId, cause: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl From<ampflow_storage::StorageError> for WhitelistError {
    fn from(error: ampflow_storage::StorageError) -> Self {
        Self::Identity(error.into())
    }
}

impl From<crate::registry::RegistryError> for WhitelistError {
    fn from(error: crate::registry::RegistryError) -> Self {
        Self::Identity(error.into())
    }
}

impl From<KycRefusal> for WhitelistError {
    fn from(refusal: KycRefusal) -> Self {
        match refusal {
            KycRefusal::Required => Self::KycRequired,
            KycRefusal::Expired { valid_until } => Self::KycExpired { valid_until },
        }
    }
}

impl From<QueueRefused> for WhitelistError {
    fn from(refused: QueueRefused) -> Self {
        match refused {
            QueueRefused::Kyc(refusal) => refusal.into(),
            QueueRefused::Identity(error) => Self::Identity(error),
        }
    }
}

/// What `POST /user/whitelist` did.
#[derive(Debug, Clone)]
pub enum WhitelistAnswer {
    /// The wallet is on the issuer's whitelist already; nothing was queued.
    AlreadyApproved,
    /// A new approval was queued.
    Queued(WhitelistRequestRecord),
    /// An approval for the same (chain, issuer, wallet) is open: it is returned.
    Open(WhitelistRequestRecord),
}

/// What whitelisting sends: `approveWallets(issuer, wallets)` on the chain's WalletApprover.
pub struct WhitelistSpec {
    chains: Chains,
    trusted: Arc<TrustedContracts>,
}

impl WhitelistSpec {
    /// The issuer must still be trusted: in the database, and in the WalletApprover's own
    /// registry (without which `approveWallets` reverts).
    async fn vet_issuer(&self, group: &WorkGroup) -> Vetting {
        let chain_id = group.chain_id;
        let Some(issuer) = group.issuer.map(|i| i.as_alloy()) else {
            return Vetting::Refuse("the request names no valid issuer".into());
        };
        match self
            .trusted
            .trusted_among(chain_id, TrustedKind::Issuer, &[issuer])
            .await
        {
            Ok(found) if found.is_empty() => {
                return Vetting::Refuse(format!(
                    "issuer {issuer:#x} is no longer in the platform's registry of issuers; \
                     nothing was sent"
                ));
            }
            Ok(_) => {}
            Err(error) => return Vetting::Wait(error.to_string()),
        }
        let Some(chain) = self.chains.get(chain_id) else {
            return Vetting::Wait("the chain is no longer configured".into());
        };
        let Some(approver) = chain.registry_contract(TrustedKind::Issuer) else {
            return Vetting::Wait("the chain has no WalletApprover configured".into());
        };
        match chain
            .is_registered(approver, TrustedKind::Issuer, issuer)
            .await
        {
            Ok(true) => Vetting::Send,
            Ok(false) => Vetting::Refuse(format!(
                "issuer {issuer:#x} is not registered on the WalletApprover on chain (an \
                 operator must register it there too); nothing was sent"
            )),
            Err(error) => Vetting::Wait(error.to_string()),
        }
    }
}

impl BatchSpec for WhitelistSpec {
    fn kind(&self) -> WorkKind {
        WorkKind::Whitelist
    }

    fn purpose(&self) -> &'static str {
        "whitelist"
    }

    fn settings(&self, chain_id: ChainId) -> Option<BatchSettings> {
        let chain = self.chains.get(chain_id)?;
        chain
            .settings
            .contracts
            .as_ref()
            .map(|_| chain.settings.whitelist.clone())
    }

    fn call(&self, group: &WorkGroup, wallets: &[Address]) -> Option<(Address, Bytes)> {
        let chain = self.chains.get(group.chain_id)?;
        let approver = chain.settings.contracts.as_ref()?.wallet_approver;
        let issuer: Address = group.issuer?.as_alloy();
        let call = WalletApprover::approveWalletsCall {
            issuer,
            wallets: wallets.to_vec(),
        };
        Some((approver, Bytes::from(call.abi_encode())))
    }

    fn vet(&self, group: &WorkGroup) -> impl Future<Output = Vetting> + Send {
        self.vet_issuer(group)
    }

    fn outcomes(&self, logs: &[Log]) -> HashMap<WalletAddress, ItemSettlement> {
        let mut outcomes = HashMap::new();
        for log in logs {
            if let Ok(approved) = log.log_decode::<WalletApprover::ApproveWallet>() {
                let event = approved.inner.data;
                let settlement = if event.success {
                    ItemSettlement {
                        status: SettledStatus::Confirmed,
                        reason: None,
                        amount_wei: None,
                    }
                } else {
                    ItemSettlement {
                        status: SettledStatus::Failed,
                        reason: Some(format!(
                            "issuer {:#x} refused the approval (is the WalletApprover still its approver?)",
                            event.issuer
                        )),
                        amount_wei: None,
                    }
                };
                outcomes.insert(WalletAddress::from_alloy(event.wallet), settlement);
            }
        }
        outcomes
    }
}

/// The whitelisting front: chain and issuer checks, then the wallet's actor.
pub struct Whitelisting {
    chains: Chains,
    requests: ChainRepo,
    clock: Arc<dyn Clock>,
    wallets: Arc<Registry<WalletActor>>,
    senders: Arc<TxSenders>,
    trusted: Arc<TrustedContracts>,
    batchers: Arc<Batchers<WhitelistSpec>>,
}

impl Whitelisting {
    pub(crate) fn new(
        chains: Chains,
        requests: ChainRepo,
        clock: Arc<dyn Clock>,
        wallets: Arc<Registry<WalletActor>>,
        senders: Arc<TxSenders>,
        trusted: Arc<TrustedContracts>,
        batchers: Arc<Batchers<WhitelistSpec>>,
    ) -> Self {
        Self {
            chains,
            requests,
            clock,
            wallets,
            senders,
            trusted,
            batchers,
        }
    }

    pub(crate) fn spec(chains: Chains, trusted: Arc<TrustedContracts>) -> WhitelistSpec {
        WhitelistSpec { chains, trusted }
    }

    /// Asks for `wallet` to be approved on `issuer`. Checked in order: the chain, the issuer
    /// in the registry of trusted contracts, the wallet's KYC, the issuer on chain; then the
    /// wallet's actor queues the approval (checking KYC again, so a decision that lands
    /// meanwhile is respected).
    pub async fn request(
        &self,
        chain_id: ChainId,
        issuer: Address,
        wallet: &WalletAddress,
    ) -> Result<WhitelistAnswer, WhitelistError> {
        let chain = self
            .chains
            .get(chain_id)
            .ok_or(WhitelistError::UnsupportedChain(chain_id))?;
        let approver = chain
            .settings
            .contracts
            .as_ref()
            .map(|c| c.wallet_approver)
            .filter(|_| self.senders.signer_address(chain_id).is_some())
            .ok_or(WhitelistError::NotSupported(chain_id))?;
        if !self
            .trusted
            .is_trusted(chain_id, TrustedKind::Issuer, issuer)
            .await?
        {
            return Err(WhitelistError::IssuerNotRegistered(issuer));
        }

        let status = self.wallets.call(wallet, WalletMsg::KycStatus).await??;
        kyc_gate(status.as_ref(), utc_day(self.clock.now_ms()))?;

        let on_chain = chain
            .issuer_wallet(issuer, wallet.as_alloy(), approver)
            .await
            .map_err(|e| WhitelistError::ChainUnavailable {
                chain_id,
                cause: e.to_string(),
            })?;
        match on_chain {
            IssuerWallet::Approved => return Ok(WhitelistAnswer::AlreadyApproved),
            IssuerWallet::NotAnIssuer => return Err(WhitelistError::NotAnIssuer(issuer)),
            IssuerWallet::ApprovedBy(other) => {
                return Err(WhitelistError::IssuerNotManaged {
                    issuer,
                    approver: other,
                });
            }
            IssuerWallet::NotApproved => {}
        }

        let issuer = WalletAddress::from_alloy(issuer);
        let opened = self
            .wallets
            .call(wallet, |reply| WalletMsg::QueueWhitelist {
                chain_id,
                issuer,
                reply,
            })
            .await??;
        Ok(match opened {
            Opened::Created(request) => {
                self.batchers.wake(&WorkGroup {
                    chain_id,
                    issuer: Some(issuer),
                });
                WhitelistAnswer::Queued(request)
            }
            Opened::AlreadyOpen(request) => WhitelistAnswer::Open(request),
        })
    }

    /// The wallet's whitelisting requests, newest first (at most [`LIST_LIMIT`]).
    pub async fn list(
        &self,
        wallet: &WalletAddress,
    ) -> Result<Vec<WhitelistRequestRecord>, WhitelistError> {
        Ok(self
            .requests
            .whitelist_requests_for(wallet, LIST_LIMIT)
            .await?)
    }
}
