//! Auto-invest (seed 002 §7). An investor queues an investment in a campaign; the platform
//! carries it out on chain once the investor's wallet is ready (whitelisted on the campaign's
//! issuer, with a stablecoin balance and an allowance to the campaign).
//!
//! - **One `AutoInvestActor` per (chain, wallet, campaign)** takes the triple's requests in
//!   order: a new task, a merge into the pending one (new amount, expiry restarted), or a
//!   cancellation; a task in process is left alone. Actors exist only while requests arrive
//!   (the registry retires idle ones), so pending tasks cost rows, not memory.
//! - Only campaigns in the platform's registry of trusted contracts take tasks (see
//!   [`crate::trusted`]): a campaign reports its own stablecoin and issuer, so an unknown
//!   contract could claim any investor is ready and make the platform pay for `investFor`.
//! - **One executor per chain**, holding the chain's lease (so one process at a time executes),
//!   looks at due pending tasks each tick: it expires the overdue ones, parks those whose
//!   campaign left the registry (they wait with the reason, and expire unless it comes back),
//!   asks `getStatus` for a batch in one `eth_call`, records why the others are not ready, and
//!   claims the ready ones into one `investFor` transaction intent (split when its gas
//!   estimate is above the cap).
//! - The transaction goes through the chain's `TxSender`; once it has its confirmations, the
//!   per-record `InvestFor` events settle each task (success with the amount invested, or back
//!   to pending with the reason until the attempts run out), in the same storage transaction
//!   that ends the intent. A refusal by the campaign itself, or a transaction that reverted on
//!   chain, fails the task at once: another attempt would pay again for the same refusal.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::rpc::types::Log;
use ampflow_chain::contracts::InvestService;
use ampflow_chain::invest::{InvestRecord, invest_for_calldata};
use ampflow_chain::tx::TxError;
use ampflow_chain::{AutoInvestSettings, Chain, Chains};
pub use ampflow_storage::TaskFilter;
use ampflow_storage::{
    AutoInvestRepo, AutoInvestSubmit, AutoInvestTask, CancelOutcome, Deferral, InvestOutcome,
    Keyset, LeaseHolder, NewTxIntent, RetryPolicy, Storage, StorageError, SubmitOutcome, TxFinal,
    TxIntentRecord,
};
use ampflow_types::{ChainId, Clock, TokenAmount, TrustedKind, WalletAddress};
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::lease::Lease;

use crate::registry::{EntityActor, Registry, RegistryError};
use crate::trusted::TrustedContracts;
use crate::tx_sender::{Settler, TxSenders};

/// The intents' purpose.
pub const PURPOSE: &str = "auto_invest";
/// The shortest time between two ticks started by new tasks.
const WAKE_GAP: Duration = Duration::from_millis(250);
/// Why a parked task waits.
const NOT_REGISTERED_REASON: &str = "the campaign is not in the platform's registry of \
    campaigns; it is not invested unless an operator adds it again";
/// The reasons `InvestFor` gives for a record that was not ready when `investFor` ran (the
/// contract's `_evaluate`): the wallet or the campaign changed since `getStatus`, which is
/// asked again before another attempt. Any other reason is the campaign's own refusal.
const NOT_READY_REASONS: [&str; 10] = [
    "campaign not registered",
    "campaign is not a contract",
    "campaign stablecoin unavailable",
    "campaign issuer unavailable",
    "stablecoin query failed",
    "issuer query failed",
    "wallet not approved",
    "requested amount is zero",
    "insufficient balance",
    "insufficient allowance",
];

/// A (chain, wallet, campaign) triple: the key of a task's actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Triple {
    pub chain_id: ChainId,
    pub wallet: WalletAddress,
    pub campaign: WalletAddress,
}

impl std::fmt::Display for Triple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.chain_id, self.wallet, self.campaign)
    }
}

/// Why an auto-invest request was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AutoInvestError {
    #[error("chain {0} is not supported")]
    UnsupportedChain(ChainId),
    #[error("chain {0} does not run auto-invest")]
    NotEnabled(ChainId),
    #[error("campaign {0:#x} is not in this platform's registry of campaigns on this chain")]
    CampaignNotRegistered(Address),
    #[error(
        "the auto-invest for this wallet and campaign is already in process; wait for its outcome"
    )]
    InProcess,
    #[error("this wallet has {open} open auto-invest tasks on the chain, the most allowed")]
    TooMany { open: u64 },
    #[error("no pending auto-invest for this wallet and campaign")]
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

impl From<StorageError> for AutoInvestError {
    fn from(error: StorageError) -> Self {
        if error.is_unavailable() {
            Self::Unavailable(error.to_string())
        } else {
            Self::Storage(error.to_string())
        }
    }
}

/// What a submit did.
#[derive(Debug, Clone)]
pub enum Submitted {
    Created(AutoInvestTask),
    Merged(AutoInvestTask),
}

/// The chain's auto-invest settings, when it runs auto-invest: configured with the contracts
/// and a transaction signer.
fn enabled<'a>(
    chains: &'a Chains,
    senders: &TxSenders,
    chain_id: ChainId,
) -> Result<(&'a Chain, &'a AutoInvestSettings, Address), AutoInvestError> {
    let chain = chains
        .get(chain_id)
        .ok_or(AutoInvestError::UnsupportedChain(chain_id))?;
    let settings = chain
        .settings
        .auto_invest
        .as_ref()
        .ok_or(AutoInvestError::NotEnabled(chain_id))?;
    let service = chain
        .settings
        .contracts
        .as_ref()
        .map(|c| c.invest_service)
        .filter(|_| senders.signer_address(chain_id).is_some())
        .ok_or(AutoInvestError::NotEnabled(chain_id))?;
    Ok((chain, settings, service))
}

fn retry_policy(settings: &AutoInvestSettings) -> RetryPolicy {
    RetryPolicy {
        attempts_max: settings.attempts_max.max(1),
        backoff_base_ms: settings.retry_backoff_ms as i64,
        backoff_max_ms: settings.retry_backoff_max_ms as i64,
    }
}

/// The auto-invest front the HTTP layer calls.
pub struct AutoInvest {
    chains: Chains,
    repo: AutoInvestRepo,
    senders: Arc<TxSenders>,
    trusted: Arc<TrustedContracts>,
    tasks: Arc<Registry<AutoInvestActor>>,
    executors: Arc<Executors>,
}

impl AutoInvest {
    pub(crate) fn new(
        chains: Chains,
        repo: AutoInvestRepo,
        senders: Arc<TxSenders>,
        trusted: Arc<TrustedContracts>,
        tasks: Arc<Registry<AutoInvestActor>>,
        executors: Arc<Executors>,
    ) -> Self {
        Self {
            chains,
            repo,
            senders,
            trusted,
            tasks,
            executors,
        }
    }

    /// How many triples' actors are running now (they retire when idle).
    pub fn live_actors(&self) -> usize {
        self.tasks.live_count()
    }

    /// Whether the chain runs auto-invest.
    pub fn check_chain(&self, chain_id: ChainId) -> Result<(), AutoInvestError> {
        enabled(&self.chains, &self.senders, chain_id).map(|_| ())
    }

    /// Queues `amount` (stablecoin base units, > 0) for the triple, or merges it into the
    /// triple's pending task. The campaign must be in the registry of trusted contracts.
    pub async fn submit(
        &self,
        triple: Triple,
        amount: TokenAmount,
    ) -> Result<Submitted, AutoInvestError> {
        self.check_chain(triple.chain_id)?;
        let campaign = triple.campaign.as_alloy();
        if !self
            .trusted
            .is_trusted(triple.chain_id, TrustedKind::Campaign, campaign)
            .await?
        {
            return Err(AutoInvestError::CampaignNotRegistered(campaign));
        }
        let submitted = self
            .tasks
            .call(&triple, |reply| AutoInvestMsg::Submit { amount, reply })
            .await??;
        self.executors.wake(triple.chain_id);
        Ok(submitted)
    }

    /// Cancels the triple's pending task.
    pub async fn cancel(&self, triple: Triple) -> Result<AutoInvestTask, AutoInvestError> {
        self.check_chain(triple.chain_id)?;
        self.tasks
            .call(&triple, |reply| AutoInvestMsg::Cancel { reply })
            .await?
    }

    /// Tasks of a wallet or a campaign on the chain, open or finished, newest first.
    pub async fn list(
        &self,
        chain_id: ChainId,
        filter: TaskFilter,
        open: bool,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<AutoInvestTask>, AutoInvestError> {
        self.check_chain(chain_id)?;
        Ok(self
            .repo
            .list_auto_invests(chain_id, filter, open, cursor, limit)
            .await?)
    }
}

/// One triple's actor: it takes the triple's requests one at a time. Storage holds the task
/// (every change is a conditional update, so the executor — possibly in another process —
/// and this actor never both win).
#[derive(Clone)]
pub struct AutoInvestActor {
    repo: AutoInvestRepo,
    clock: Arc<dyn Clock>,
    chains: Chains,
}

impl AutoInvestActor {
    pub(crate) fn new(repo: AutoInvestRepo, clock: Arc<dyn Clock>, chains: Chains) -> Self {
        Self {
            repo,
            clock,
            chains,
        }
    }

    async fn submit(
        &self,
        triple: &Triple,
        amount: TokenAmount,
    ) -> Result<Submitted, AutoInvestError> {
        let settings = self
            .chains
            .get(triple.chain_id)
            .and_then(|c| c.settings.auto_invest.clone())
            .ok_or(AutoInvestError::NotEnabled(triple.chain_id))?;
        let now = self.clock.now_ms();
        let submit = AutoInvestSubmit {
            chain_id: triple.chain_id,
            wallet: triple.wallet,
            campaign: triple.campaign,
            amount,
            now,
            expires_at_ms: now.saturating_add((settings.timeout_secs as i64).saturating_mul(1000)),
            max_open_per_wallet: settings.max_open_per_wallet,
        };
        match self.repo.submit_auto_invest(&submit).await? {
            SubmitOutcome::Created(task) => {
                tracing::info!(task = %task.id, %triple, amount = %task.amount, "auto-invest queued");
                Ok(Submitted::Created(task))
            }
            SubmitOutcome::Merged(task) => {
                tracing::info!(task = %task.id, %triple, amount = %task.amount, "auto-invest merged");
                Ok(Submitted::Merged(task))
            }
            SubmitOutcome::InProcess(_) => Err(AutoInvestError::InProcess),
            SubmitOutcome::TooMany(open) => Err(AutoInvestError::TooMany { open }),
        }
    }

    async fn cancel(&self, triple: &Triple) -> Result<AutoInvestTask, AutoInvestError> {
        let outcome = self
            .repo
            .cancel_auto_invest(
                triple.chain_id,
                &triple.wallet,
                &triple.campaign,
                self.clock.now_ms(),
            )
            .await?;
        match outcome {
            CancelOutcome::Cancelled(task) => {
                tracing::info!(task = %task.id, %triple, "auto-invest cancelled");
                Ok(task)
            }
            CancelOutcome::InProcess(_) => Err(AutoInvestError::InProcess),
            CancelOutcome::NotFound => Err(AutoInvestError::NotFound),
        }
    }
}

pub enum AutoInvestMsg {
    Submit {
        amount: TokenAmount,
        reply: RpcReplyPort<Result<Submitted, AutoInvestError>>,
    },
    Cancel {
        reply: RpcReplyPort<Result<AutoInvestTask, AutoInvestError>>,
    },
    Retire,
}

impl EntityActor for AutoInvestActor {
    const KIND: &'static str = "auto_invest";
    type Key = Triple;

    fn retire() -> AutoInvestMsg {
        AutoInvestMsg::Retire
    }
}

impl Actor for AutoInvestActor {
    type Msg = AutoInvestMsg;
    type State = Triple;
    type Arguments = Triple;

    async fn pre_start(
        &self,
        _: ActorRef<AutoInvestMsg>,
        triple: Triple,
    ) -> Result<Triple, ActorProcessingErr> {
        Ok(triple)
    }

    async fn handle(
        &self,
        myself: ActorRef<AutoInvestMsg>,
        message: AutoInvestMsg,
        triple: &mut Triple,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            // Boxed, so the idle actor's task stays small (see `WalletActor::handle`).
            AutoInvestMsg::Submit { amount, reply } => {
                let _ = reply.send(Box::pin(self.submit(triple, amount)).await);
            }
            AutoInvestMsg::Cancel { reply } => {
                let _ = reply.send(Box::pin(self.cancel(triple)).await);
            }
            AutoInvestMsg::Retire => myself.stop(Some("idle".into())),
        }
        Ok(())
    }
}

/// A running executor: its chain, its wake-up signal and its task.
type Running = (ChainId, Arc<Notify>, JoinHandle<()>);

/// The executors: one task per chain that runs auto-invest.
pub struct Executors {
    inner: Arc<ExecutorShared>,
    running: Mutex<Vec<Running>>,
}

struct ExecutorShared {
    storage: Storage,
    clock: Arc<dyn Clock>,
    chains: Chains,
    senders: Arc<TxSenders>,
    trusted: Arc<TrustedContracts>,
    /// This run of the node, as lease holder.
    holder: LeaseHolder,
}

#[derive(Debug, thiserror::Error)]
enum TickError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Chain(#[from] TxError),
}

impl Executors {
    /// Registers the settler and starts an executor for every chain that runs auto-invest.
    pub(crate) fn start(
        storage: Storage,
        clock: Arc<dyn Clock>,
        chains: Chains,
        senders: Arc<TxSenders>,
        trusted: Arc<TrustedContracts>,
        holder: LeaseHolder,
        chain_ids: impl IntoIterator<Item = ChainId>,
    ) -> Arc<Self> {
        let inner = Arc::new(ExecutorShared {
            storage,
            clock,
            chains,
            senders: senders.clone(),
            trusted,
            holder,
        });
        senders.register_settler(
            PURPOSE,
            Arc::new(AutoInvestSettler {
                shared: Arc::downgrade(&inner),
            }),
        );
        let mut running = Vec::new();
        for chain_id in chain_ids {
            if enabled(&inner.chains, &inner.senders, chain_id).is_err() {
                continue;
            }
            let notify = Arc::new(Notify::new());
            let (shared, wake) = (inner.clone(), notify.clone());
            let handle = inner.storage.supervisor().spawn(
                "executor",
                format!("auto-invest executor chain {chain_id}"),
                move || shared.clone().run(chain_id, wake.clone()),
            );
            running.push((chain_id, notify, handle));
        }
        Arc::new(Self {
            inner,
            running: Mutex::new(running),
        })
    }

    /// Makes the chain's executor look at its tasks now.
    pub fn wake(&self, chain_id: ChainId) {
        for (id, notify, _) in self.running.lock().iter() {
            if *id == chain_id {
                notify.notify_one();
            }
        }
    }

    /// Stops the executors and gives their leases up, so another process (or the next run of
    /// this one) takes over at once.
    pub(crate) async fn shutdown(&self) {
        let running: Vec<_> = self.running.lock().drain(..).collect();
        for (chain_id, _, handle) in running {
            handle.abort();
            let _ = handle.await;
            if let Err(error) = self
                .inner
                .storage
                .leases()
                .release_lease(&lease_name(chain_id), &self.inner.holder)
                .await
            {
                tracing::warn!(%chain_id, %error, "could not release the auto-invest lease");
            }
        }
    }
}

fn lease_name(chain_id: ChainId) -> String {
    format!("auto_invest:{chain_id}")
}

impl ExecutorShared {
    async fn run(self: Arc<Self>, chain_id: ChainId, wake: Arc<Notify>) {
        let Ok((_, settings, _)) = enabled(&self.chains, &self.senders, chain_id) else {
            return;
        };
        // One process at a time executes a chain's tasks.
        let lease = Lease::new(
            lease_name(chain_id),
            "the auto-invest lease",
            self.holder.clone(),
            settings.lease_ttl_ms as i64,
            self.storage.clone(),
            self.clock.clone(),
        );
        loop {
            let Ok((_, settings, _)) = enabled(&self.chains, &self.senders, chain_id) else {
                return;
            };
            let tick = Duration::from_millis(settings.tick_interval_ms.max(10));
            let started = tokio::time::Instant::now();
            if let Err(error) = self.tick(chain_id, &lease).await {
                tracing::warn!(%chain_id, %error, "auto-invest tick failed; trying again next tick");
            }
            tokio::select! {
                () = tokio::time::sleep_until(started + tick) => {}
                () = wake.notified() => {
                    // New tasks look at the chain soon, not at every request: a burst of
                    // them shares one tick.
                    tokio::time::sleep_until(started + tick.min(WAKE_GAP)).await;
                }
            }
        }
    }

    async fn tick(&self, chain_id: ChainId, lease: &Lease) -> Result<(), TickError> {
        fail::fail_point!("executor_panic");
        let Ok((chain, settings, service)) = enabled(&self.chains, &self.senders, chain_id) else {
            return Ok(());
        };
        if !lease.take().await?.is_held() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let limit = settings.tasks_per_tick.max(1) as u64;
        let expired = self
            .storage
            .auto_invest()
            .expire_auto_invests(chain_id, now, limit)
            .await?;
        if expired > 0 {
            tracing::info!(%chain_id, expired, "auto-invest tasks expired");
        }
        let due = self
            .storage
            .auto_invest()
            .due_auto_invests(chain_id, now, limit)
            .await?;
        let due = self.park_untrusted(chain_id, settings, due, now).await?;
        for batch in due.chunks(settings.batch_size.max(1)) {
            self.look_at(chain, settings, service, batch).await?;
        }
        Ok(())
    }

    /// Parks the tasks whose campaign is not in the registry now (read from the database, not
    /// the cache: it may have been removed since they were queued): they wait with the reason,
    /// and expire unless the campaign is added again. Answers the others.
    async fn park_untrusted(
        &self,
        chain_id: ChainId,
        settings: &AutoInvestSettings,
        due: Vec<AutoInvestTask>,
        now: i64,
    ) -> Result<Vec<AutoInvestTask>, TickError> {
        let campaigns: HashSet<Address> = due.iter().map(|t| t.campaign.as_alloy()).collect();
        let campaigns: Vec<Address> = campaigns.into_iter().collect();
        let trusted = self
            .trusted
            .trusted_among(chain_id, TrustedKind::Campaign, &campaigns)
            .await?;
        let (keep, park): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|task| trusted.contains(&task.campaign.as_alloy()));
        if !park.is_empty() {
            let deferrals: Vec<Deferral> = park
                .iter()
                .map(|task| Deferral {
                    id: task.id.clone(),
                    version: task.version,
                    reason: NOT_REGISTERED_REASON.into(),
                    next_check_at_ms: now + settings.recheck_interval_ms as i64,
                })
                .collect();
            self.storage
                .auto_invest()
                .defer_auto_invests(&deferrals, now)
                .await?;
            tracing::info!(
                %chain_id,
                parked = park.len(),
                "auto-invest tasks wait: their campaign is not in the registry"
            );
        }
        Ok(keep)
    }

    /// Asks `getStatus` for a batch of pending tasks, records why the unready ones wait, and
    /// invests the ready ones.
    async fn look_at(
        &self,
        chain: &Chain,
        settings: &AutoInvestSettings,
        service: Address,
        batch: &[AutoInvestTask],
    ) -> Result<(), TickError> {
        let tasks: Vec<(&AutoInvestTask, InvestRecord)> =
            batch.iter().map(|task| (task, record_of(task))).collect();
        let records: Vec<InvestRecord> = tasks.iter().map(|(_, r)| *r).collect();
        let statuses = chain.invest_status(service, &records).await?;
        let now = self.clock.now_ms();
        let (ready, waiting): (Vec<_>, Vec<_>) = tasks
            .into_iter()
            .zip(statuses)
            .partition(|(_, status)| status.ready);
        if !waiting.is_empty() {
            let records: Vec<InvestRecord> = waiting.iter().map(|((_, r), _)| *r).collect();
            let reasons = chain.invest_status_reasons(service, &records).await?;
            let deferrals: Vec<Deferral> = waiting
                .iter()
                .zip(reasons)
                .map(|(((task, _), _), reason)| Deferral {
                    id: task.id.clone(),
                    version: task.version,
                    reason: not_ready_reason(&reason),
                    next_check_at_ms: now + settings.recheck_interval_ms as i64,
                })
                .collect();
            self.storage
                .auto_invest()
                .defer_auto_invests(&deferrals, now)
                .await?;
        }
        let ready: Vec<(&AutoInvestTask, InvestRecord)> =
            ready.into_iter().map(|(pair, _)| pair).collect();
        self.invest(chain, settings, service, ready).await
    }

    /// Claims `ready` into `investFor` intents of at most `gas_limit_per_batch` gas each.
    async fn invest(
        &self,
        chain: &Chain,
        settings: &AutoInvestSettings,
        service: Address,
        ready: Vec<(&AutoInvestTask, InvestRecord)>,
    ) -> Result<(), TickError> {
        let chain_id = chain.settings.chain_id;
        let Some(signer) = self.senders.signer_address(chain_id) else {
            return Ok(());
        };
        // Batches still to send; a batch over the gas cap is split in two.
        let mut pending = vec![ready];
        while let Some(batch) = pending.pop() {
            if batch.is_empty() {
                continue;
            }
            let records: Vec<InvestRecord> = batch.iter().map(|(_, r)| *r).collect();
            let data = invest_for_calldata(&records);
            let now = self.clock.now_ms();
            match chain
                .estimate_gas(signer, service, data.clone(), U256::ZERO)
                .await
            {
                Ok(gas) if gas > settings.gas_limit_per_batch && batch.len() > 1 => {
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    pending.push(second);
                    pending.push(first);
                    continue;
                }
                Ok(gas) if gas > settings.gas_limit_per_batch => {
                    let reason = format!(
                        "investing needs {gas} gas, above gas_limit_per_batch ({})",
                        settings.gas_limit_per_batch
                    );
                    self.defer(&batch, &reason, settings, now).await?;
                    continue;
                }
                Ok(_) => {}
                Err(TxError::Reverted(cause)) => {
                    // investFor never reverts for one record; a revert means the platform
                    // cannot call it (e.g. its signer is not an allowed caller).
                    tracing::error!(%chain_id, %cause, "investFor would revert; check the InvestService's allowed callers");
                    let reason = format!("investFor would revert: {cause}");
                    self.defer(&batch, &reason, settings, now).await?;
                    continue;
                }
                Err(other) => return Err(other.into()),
            }
            let intent = invest_intent(chain_id, signer, service, &batch, &data);
            self.claim(chain_id, &batch, intent, now).await?;
        }
        Ok(())
    }

    /// Moves the batch's tasks into `intent`, and wakes the chain's sender. A task changed
    /// since it was read leaves the whole batch for the next tick.
    async fn claim(
        &self,
        chain_id: ChainId,
        batch: &[(&AutoInvestTask, InvestRecord)],
        intent: NewTxIntent,
        now: i64,
    ) -> Result<(), StorageError> {
        let claimed: Vec<(String, i64)> = batch
            .iter()
            .map(|(task, _)| (task.id.clone(), task.version))
            .collect();
        match self
            .storage
            .auto_invest()
            .claim_auto_invests(&claimed, intent, now)
            .await?
        {
            Some(intent) => {
                tracing::info!(%chain_id, intent = %intent.id, tasks = claimed.len(), "auto-invest batch queued for sending");
                self.senders.wake(chain_id);
            }
            None => tracing::debug!(
                %chain_id,
                "a task changed while its batch was built; it is looked at again next tick"
            ),
        }
        Ok(())
    }

    async fn defer(
        &self,
        batch: &[(&AutoInvestTask, InvestRecord)],
        reason: &str,
        settings: &AutoInvestSettings,
        now: i64,
    ) -> Result<(), StorageError> {
        let deferrals: Vec<Deferral> = batch
            .iter()
            .map(|(task, _)| Deferral {
                id: task.id.clone(),
                version: task.version,
                reason: reason.to_string(),
                next_check_at_ms: now + settings.retry_backoff_ms as i64,
            })
            .collect();
        self.storage
            .auto_invest()
            .defer_auto_invests(&deferrals, now)
            .await
    }
}

/// The `investFor` transaction of a batch. Its business key is the tasks at their versions
/// and attempts: the same batch can never be written down (and so sent) twice.
fn invest_intent(
    chain_id: ChainId,
    signer: Address,
    service: Address,
    batch: &[(&AutoInvestTask, InvestRecord)],
    data: &[u8],
) -> NewTxIntent {
    let mut key = Sha256::new();
    for (task, _) in batch {
        key.update(task.id.as_bytes());
        key.update(task.version.to_be_bytes());
        key.update(task.attempts.to_be_bytes());
    }
    NewTxIntent {
        idempotency_key: format!("{PURPOSE}:{chain_id}:{}", hex::encode(key.finalize())),
        purpose: PURPOSE.to_string(),
        chain_id,
        signer: WalletAddress::from_alloy(signer),
        to: WalletAddress::from_alloy(service),
        calldata: format!("0x{}", hex::encode(data)),
        value_wei: TokenAmount::ZERO,
        gas_limit: None,
    }
}

/// A task's `investFor` record.
fn record_of(task: &AutoInvestTask) -> InvestRecord {
    InvestRecord {
        investor: task.wallet.as_alloy(),
        campaign: task.campaign.as_alloy(),
        amount: task.amount.as_u256(),
    }
}

/// The contract's reason, in the words users see.
fn not_ready_reason(reason: &str) -> String {
    match reason {
        "" => "not ready to invest yet".into(),
        "wallet not approved" => {
            "wallet not approved (whitelisted) on the campaign's issuer".into()
        }
        "insufficient allowance" => "no stablecoin allowance to the campaign".into(),
        "insufficient balance" => "no stablecoin balance".into(),
        "campaign not registered" => {
            "the campaign is not registered on the InvestService on chain (an operator must \
             register it there too)"
                .into()
        }
        other => other.to_string(),
    }
}

/// Settles `investFor` intents from their `InvestFor` events.
struct AutoInvestSettler {
    shared: std::sync::Weak<ExecutorShared>,
}

#[async_trait::async_trait]
impl Settler for AutoInvestSettler {
    async fn settle(
        &self,
        intent: &TxIntentRecord,
        outcome: &TxFinal,
        logs: &[Log],
    ) -> Result<(), StorageError> {
        let Some(shared) = self.shared.upgrade() else {
            return Err(StorageError::Batch {
                name: "settle",
                message: "the auto-invest executors are shut down".into(),
            });
        };
        let settings = shared
            .chains
            .get(intent.chain_id)
            .and_then(|c| c.settings.auto_invest.clone())
            .unwrap_or_default();
        let service = Some(intent.to.as_alloy());
        let mut outcomes = HashMap::new();
        if matches!(outcome, TxFinal::Confirmed { .. }) {
            for log in logs.iter().filter(|l| Some(l.address()) == service) {
                if let Ok(event) = log.log_decode::<InvestService::InvestFor>() {
                    let event = event.inner.data;
                    outcomes.insert(
                        (
                            WalletAddress::from_alloy(event.investor),
                            WalletAddress::from_alloy(event.campaign),
                        ),
                        InvestOutcome {
                            success: event.success,
                            invested: TokenAmount::from_u256(event.invested),
                            retry: NOT_READY_REASONS.contains(&event.reason.as_str()),
                            reason: (!event.success).then_some(event.reason),
                        },
                    );
                }
            }
        }
        let settled = shared
            .storage
            .auto_invest()
            .settle_auto_invests(
                &intent.id,
                outcome,
                &outcomes,
                retry_policy(&settings),
                shared.clock.now_ms(),
            )
            .await?;
        if settled {
            let succeeded = outcomes.values().filter(|o| o.success).count();
            tracing::info!(
                chain_id = %intent.chain_id,
                intent = %intent.id,
                succeeded,
                refused = outcomes.len() - succeeded,
                transaction_failed = matches!(outcome, TxFinal::Failed { .. }),
                "auto-invest batch settled"
            );
        }
        Ok(())
    }
}
