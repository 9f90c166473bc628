//! Batchers: one task per request group (a chain's faucet, a chain and issuer's whitelisting)
//! that gathers due requests into one transaction. It waits until it has `batch_size`
//! requests or the oldest has waited `max_wait_ms`, then inserts the intent and claims the
//! requests into it in one storage transaction, and wakes the chain's `TxSender`. The queue
//! is the requests table itself, so a restart loses nothing: batchers start again for every
//! group with open requests. A batcher with nothing left to do exits; the next request starts
//! a new one. Before each batch the kind vets its group (whitelisting checks the issuer is
//! still trusted): refused requests fail with the reason, unsent.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes};
use alloy::rpc::types::Log;
use ampflow_chain::BatchSettings;
use ampflow_storage::{
    ItemSettlement, NewTxIntent, RetryPolicy, Storage, StorageError, TxFinal, TxIntentRecord,
    WorkGroup, WorkItem, WorkKind,
};
use ampflow_types::{ChainId, Clock, TokenAmount, WalletAddress};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::tx_sender::{Settler, TxSenders};

/// The wait after a storage failure before the batcher tries again.
const STORAGE_RETRY: Duration = Duration::from_secs(1);
/// The wait before a batch whose vetting could not be done (node or database down) is vetted
/// again.
const VET_RETRY: Duration = Duration::from_secs(5);

/// Whether a group's due requests may be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vetting {
    Send,
    /// Never: the requests are failed with this reason and nothing is sent.
    Refuse(String),
    /// Not now (the check itself failed, e.g. the node is down): look again after a while.
    Wait(String),
}

/// What a kind of batched request sends, and how its events settle each request.
pub trait BatchSpec: Send + Sync + 'static {
    fn kind(&self) -> WorkKind;
    /// The intents' purpose, which routes their outcomes back here.
    fn purpose(&self) -> &'static str;
    fn settings(&self, chain_id: ChainId) -> Option<BatchSettings>;
    /// The contract call paying or approving `wallets`; `None` if the group cannot be sent
    /// (its chain lost its configuration).
    fn call(&self, group: &WorkGroup, wallets: &[Address]) -> Option<(Address, Bytes)>;
    /// Checked before each batch of the group is sent.
    fn vet(&self, _group: &WorkGroup) -> impl Future<Output = Vetting> + Send {
        async { Vetting::Send }
    }
    /// Each wallet's outcome, read from the receipt's logs, keyed by lowercase address.
    fn outcomes(&self, logs: &[Log]) -> HashMap<WalletAddress, ItemSettlement>;
}

pub fn retry_policy(settings: &BatchSettings) -> RetryPolicy {
    RetryPolicy {
        attempts_max: settings.attempts_max.max(1),
        backoff_base_ms: settings.retry_backoff_ms as i64,
        backoff_max_ms: settings.retry_backoff_max_ms as i64,
    }
}

/// The batchers of one kind.
pub struct Batchers<S: BatchSpec> {
    spec: Arc<S>,
    storage: Storage,
    clock: Arc<dyn Clock>,
    senders: Arc<TxSenders>,
    running: Mutex<HashMap<WorkGroup, Arc<Notify>>>,
}

impl<S: BatchSpec> Batchers<S> {
    pub fn new(
        spec: S,
        storage: Storage,
        clock: Arc<dyn Clock>,
        senders: Arc<TxSenders>,
    ) -> Arc<Self> {
        let batchers = Arc::new(Self {
            spec: Arc::new(spec),
            storage,
            clock,
            senders: senders.clone(),
            running: Mutex::new(HashMap::new()),
        });
        senders.register_settler(
            batchers.spec.purpose(),
            Arc::new(SpecSettler {
                batchers: Arc::downgrade(&batchers),
            }),
        );
        batchers
    }

    /// Starts a batcher for every group with open requests (after a restart).
    pub async fn resume(self: &Arc<Self>) -> Result<(), StorageError> {
        for group in self
            .storage
            .chain()
            .open_work_groups(self.spec.kind())
            .await?
        {
            self.wake(&group);
        }
        Ok(())
    }

    /// Tells the group's batcher a request is due, starting it if needed. Call it after the
    /// request is stored.
    pub fn wake(self: &Arc<Self>, group: &WorkGroup) {
        let mut running = self.running.lock();
        if let Some(notify) = running.get(group) {
            notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        running.insert(group.clone(), notify.clone());
        let this = self.clone();
        let group = group.clone();
        let supervisor = self.storage.supervisor().clone();
        let name = format!(
            "{} batcher chain {} issuer {}",
            self.spec.purpose(),
            group.chain_id,
            group
                .issuer
                .map_or_else(|| "-".to_string(), |issuer| issuer.to_string())
        );
        tokio::spawn(async move {
            let (me, mine) = (this.clone(), notify.clone());
            let key = group.clone();
            supervisor
                .supervise("batcher", name, move || {
                    me.clone().run(key.clone(), mine.clone())
                })
                .await;
            // A batcher given up is forgotten, so the group's next request starts a new one. (A
            // batcher that finished has removed itself, and a successor it started stays.)
            let mut running = this.running.lock();
            if running.get(&group).is_some_and(|n| Arc::ptr_eq(n, &notify)) {
                running.remove(&group);
            }
        });
    }

    async fn run(self: Arc<Self>, group: WorkGroup, notify: Arc<Notify>) {
        let kind = self.spec.purpose();
        loop {
            match self.step(&group).await {
                Ok(Step::Again) => {}
                Ok(Step::WaitUntil(at)) => {
                    let wait = (at - self.clock.now_ms()).max(1) as u64;
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                        () = notify.notified() => {}
                    }
                }
                Ok(Step::Done) => {
                    self.running.lock().remove(&group);
                    // A request stored after the last look would have found this batcher
                    // still registered: look once more, and start over if there is one.
                    match self
                        .storage
                        .chain()
                        .next_work_due_at(self.spec.kind(), &group)
                        .await
                    {
                        Ok(None) => return,
                        _ => {
                            self.wake(&group);
                            return;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(kind, chain_id = %group.chain_id, %error, "batcher step failed");
                    tokio::time::sleep(STORAGE_RETRY).await;
                }
            }
        }
    }

    async fn step(&self, group: &WorkGroup) -> Result<Step, StorageError> {
        fail::fail_point!("batcher_panic");
        let Some(settings) = self.spec.settings(group.chain_id) else {
            tracing::error!(
                kind = self.spec.purpose(),
                chain_id = %group.chain_id,
                "requests wait for a chain that is no longer configured"
            );
            return Ok(Step::Done);
        };
        let kind = self.spec.kind();
        let now = self.clock.now_ms();
        let size = settings.batch_size.max(1);
        let due = self
            .storage
            .chain()
            .due_work(kind, group, now, size as u64)
            .await?;
        if due.is_empty() {
            return Ok(
                match self.storage.chain().next_work_due_at(kind, group).await? {
                    Some(at) => Step::WaitUntil(at),
                    None => Step::Done,
                },
            );
        }
        let oldest = due.iter().map(|i| i.due_at_ms).min().unwrap_or(now);
        let send_at = oldest + settings.max_wait_ms as i64;
        if due.len() < size && now < send_at {
            return Ok(Step::WaitUntil(send_at));
        }
        match self.spec.vet(group).await {
            Vetting::Send => {}
            Vetting::Refuse(reason) => {
                let failed = self
                    .storage
                    .chain()
                    .fail_work(kind, &due, &reason, now)
                    .await?;
                tracing::warn!(kind = self.spec.purpose(), chain_id = %group.chain_id, issuer = ?group.issuer, failed, %reason, "requests refused before sending");
                return Ok(Step::Again);
            }
            Vetting::Wait(cause) => {
                tracing::warn!(kind = self.spec.purpose(), chain_id = %group.chain_id, %cause, "could not vet the batch; trying again");
                return Ok(Step::WaitUntil(now + VET_RETRY.as_millis() as i64));
            }
        }
        let Some(intent) = self.intent(group, &due) else {
            return Ok(Step::Done);
        };
        match self
            .storage
            .chain()
            .claim_work(kind, &due, intent, now)
            .await?
        {
            Some(intent) => {
                tracing::info!(
                    kind = self.spec.purpose(),
                    chain_id = %group.chain_id,
                    intent = %intent.id,
                    requests = due.len(),
                    "batched requests into a transaction"
                );
                self.senders.wake(group.chain_id);
            }
            None => tracing::debug!("another process claimed some of the requests; retrying"),
        }
        Ok(Step::Again)
    }

    fn intent(&self, group: &WorkGroup, items: &[WorkItem]) -> Option<NewTxIntent> {
        let Some(signer) = self.senders.signer_address(group.chain_id) else {
            tracing::error!(chain_id = %group.chain_id, "no signer for the chain");
            return None;
        };
        let wallets: Vec<Address> = items.iter().map(|i| i.address.as_alloy()).collect();
        let (to, data) = self.spec.call(group, &wallets)?;
        // The business key: these requests, at these attempts. The same batch can never be
        // written down (and so sent) twice.
        let mut key = Sha256::new();
        for item in items {
            key.update(item.id.as_bytes());
            key.update(item.attempts.to_be_bytes());
        }
        Some(NewTxIntent {
            idempotency_key: format!(
                "{}:{}:{}",
                self.spec.purpose(),
                group.chain_id,
                hex::encode(key.finalize())
            ),
            purpose: self.spec.purpose().to_string(),
            chain_id: group.chain_id,
            signer: WalletAddress::from_alloy(signer),
            to: WalletAddress::from_alloy(to),
            calldata: format!("0x{}", hex::encode(&data)),
            value_wei: TokenAmount::ZERO,
            gas_limit: None,
        })
    }
}

enum Step {
    Again,
    WaitUntil(i64),
    Done,
}

struct SpecSettler<S: BatchSpec> {
    batchers: std::sync::Weak<Batchers<S>>,
}

#[async_trait::async_trait]
impl<S: BatchSpec> Settler for SpecSettler<S> {
    async fn settle(
        &self,
        intent: &TxIntentRecord,
        outcome: &TxFinal,
        logs: &[Log],
    ) -> Result<(), StorageError> {
        let Some(batchers) = self.batchers.upgrade() else {
            return Err(StorageError::Batch {
                name: "settle",
                message: "the batchers are shut down".into(),
            });
        };
        let spec = &batchers.spec;
        let settings = spec.settings(intent.chain_id).unwrap_or_default();
        let items = match outcome {
            TxFinal::Confirmed { .. } => spec.outcomes(logs),
            TxFinal::Failed { .. } => HashMap::new(),
        };
        batchers
            .storage
            .chain()
            .settle_work(
                spec.kind(),
                &intent.id,
                outcome,
                &items,
                retry_policy(&settings),
                batchers.clock.now_ms(),
            )
            .await?;
        if matches!(outcome, TxFinal::Failed { .. }) {
            // Its requests are pending again, behind a backoff: make sure a batcher waits
            // for them.
            batchers.resume().await?;
        }
        Ok(())
    }
}
