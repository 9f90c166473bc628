//! The transaction pipeline: one `TxSender` per (chain, signer). It is an actor in the plain
//! sense: one task owns the signer's nonce and handles its work serially; its mailbox is a
//! wake-up signal, and its work list is the `tx_intents` table.
//!
//! Each round it reads the signer's open intents, oldest first:
//! - a **sent** intent is looked up by every hash it was sent under. A receipt with enough
//!   confirmations settles it (a reverted receipt is a failure); the purpose's [`Settler`]
//!   reads the events and settles the intent and its requests in one transaction. Without a
//!   receipt, the recorded bytes are rebroadcast once after a (re)start, and a transaction
//!   older than `stuck_after_secs` is replaced with bumped fees at the same nonce.
//! - a **queued** intent gets a gas estimate (a call that would revert fails the intent without
//!   using a nonce), EIP-1559 fees under the configured cap, and the next nonce. The signed
//!   bytes are recorded *before* they are broadcast, so a crash at any point leaves either
//!   nothing sent or a recorded transaction that the next round rebroadcasts: an intent is
//!   never signed twice with different nonces.
//!
//! Every chain has a gas budget per rolling hour (`tx.gas_budget_per_hour`), counted from the
//! recorded intents of every process (gas used, or the gas limit while in flight): a queued
//! intent that would go over it waits, unsigned, until older transactions leave the window,
//! so a bug can never drain the signer. One warning is logged per episode, and the
//! `chain_gas_*` metrics show it.
//!
//! The nonce is resynced from the chain at start and after any failure. RPC failures end the
//! round; the next one waits with exponential backoff and jitter (backon), capped at
//! `max_backoff_ms`, and work resumes when the node is back. A panic in a round is caught and
//! logged, and the sender starts over from storage, as a supervisor would restart it.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::types::Log;
use alloy::signers::local::PrivateKeySigner;
use ampflow_chain::tx::{self, Broadcast, GAS_BUDGET_WINDOW_MS, TxError, TxSettings, UnsignedTx};
use ampflow_chain::{Chain, Chains};
use ampflow_storage::{
    LeaseHolder, SignedTx, Storage, StorageError, TxFinal, TxIntentRecord, TxIntentStatus,
};
use ampflow_types::{ChainId, Clock, WalletAddress};
use backon::BackoffBuilder;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::lease::{Lease, Turn};

/// Open intents read per round; with more, the next round starts at once.
const INTENTS_PER_ROUND: u64 = 256;
/// Rounds in which a sent transaction's nonce is spent with no receipt for any of its hashes
/// before the intent is failed (another transaction used the nonce).
const NONCE_GONE_ROUNDS: u32 = 3;

/// Applies a final outcome: marks the intent final and updates the requests it carried, in
/// one storage transaction, reading per-item outcomes from the receipt's logs.
#[async_trait::async_trait]
pub trait Settler: Send + Sync {
    async fn settle(
        &self,
        intent: &TxIntentRecord,
        outcome: &TxFinal,
        logs: &[Log],
    ) -> Result<(), StorageError>;
}

#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Chain(#[from] TxError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("intent {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
}

/// A running sender: its wake-up signal and its task.
type Running = (Arc<Notify>, JoinHandle<()>);

/// Every sender, started on demand.
pub struct TxSenders {
    storage: Storage,
    clock: Arc<dyn Clock>,
    chains: Chains,
    signers: HashMap<ChainId, PrivateKeySigner>,
    settlers: Arc<RwLock<HashMap<&'static str, Arc<dyn Settler>>>>,
    running: Mutex<HashMap<ChainId, Running>>,
    /// This run of the node, as the holder of the senders' leases.
    holder: LeaseHolder,
}

impl TxSenders {
    pub fn new(
        storage: Storage,
        clock: Arc<dyn Clock>,
        chains: Chains,
        signers: HashMap<ChainId, PrivateKeySigner>,
        holder: LeaseHolder,
    ) -> Arc<Self> {
        Arc::new(Self {
            storage,
            clock,
            chains,
            signers,
            settlers: Arc::default(),
            running: Mutex::new(HashMap::new()),
            holder,
        })
    }

    /// Routes the outcomes of intents with this purpose to `settler`.
    pub fn register_settler(&self, purpose: &'static str, settler: Arc<dyn Settler>) {
        self.settlers.write().insert(purpose, settler);
    }

    /// The signing address on a chain, if the chain has a signer.
    pub fn signer_address(&self, chain_id: ChainId) -> Option<Address> {
        self.signers.get(&chain_id).map(PrivateKeySigner::address)
    }

    /// Starts the senders that have open intents (after a restart).
    pub async fn resume(&self) -> Result<(), StorageError> {
        for (chain_id, signer) in self.storage.chain().signers_with_open_intents().await? {
            match self.signer_address(chain_id) {
                Some(address) if address == signer.as_alloy() => self.wake(chain_id),
                _ => tracing::error!(
                    %chain_id,
                    %signer,
                    "open transaction intents belong to a signer that is not configured; they stay open"
                ),
            }
        }
        Ok(())
    }

    /// Tells the chain's sender to look at its intents now, starting it if needed.
    pub fn wake(&self, chain_id: ChainId) {
        let mut running = self.running.lock();
        if let Some((notify, handle)) = running.get(&chain_id)
            && !handle.is_finished()
        {
            notify.notify_one();
            return;
        }
        let (Some(chain), Some(signer)) = (self.chains.get(chain_id), self.signers.get(&chain_id))
        else {
            tracing::error!(%chain_id, "no signer configured for chain; cannot send");
            return;
        };
        let notify = Arc::new(Notify::new());
        let (chain, signer) = (chain.clone(), signer.clone());
        let storage = self.storage.clone();
        let clock = self.clock.clone();
        let settlers = self.settlers.clone();
        let holder = self.holder.clone();
        let wake = notify.clone();
        // After a panic the sender starts again from storage and the chain, as after a
        // restart of the process: nothing it knew in memory is trusted.
        let handle = self.storage.supervisor().spawn(
            "tx_sender",
            format!("tx sender chain {chain_id}"),
            move || {
                Sender {
                    chain: chain.clone(),
                    settings: chain.settings.tx.clone(),
                    address: signer.address(),
                    signer_text: format!("{:#x}", signer.address()),
                    signer: signer.clone(),
                    storage: storage.clone(),
                    clock: clock.clone(),
                    settlers: settlers.clone(),
                    next_nonce: None,
                    broadcast_since_start: HashSet::new(),
                    nonce_gone: HashMap::new(),
                    cap_warned: false,
                    round_gas: None,
                    over_budget: false,
                    lease: Lease::new(
                        lease_name(chain_id, &format!("{:#x}", signer.address())),
                        "the sender's lease",
                        holder.clone(),
                        chain.settings.tx.lease_ttl_ms as i64,
                        storage.clone(),
                        clock.clone(),
                    ),
                }
                .run(wake.clone())
            },
        );
        running.insert(chain_id, (notify, handle));
    }

    /// Stops every sender and gives its lease up, so the next process sends at once. Work in
    /// flight is safe: every step is recorded before it is taken.
    pub async fn shutdown(&self) {
        let running: Vec<(ChainId, Running)> = self.running.lock().drain().collect();
        for (chain_id, (_, handle)) in running {
            handle.abort();
            let _ = handle.await;
            let Some(address) = self.signer_address(chain_id) else {
                continue;
            };
            if let Err(error) = self
                .storage
                .leases()
                .release_lease(
                    &lease_name(chain_id, &format!("{address:#x}")),
                    &self.holder,
                )
                .await
            {
                tracing::warn!(%chain_id, %error, "could not release the sender's lease");
            }
        }
    }
}

fn lease_name(chain_id: ChainId, signer: &str) -> String {
    format!("tx_sender:{chain_id}:{signer}")
}

struct Sender {
    chain: Chain,
    settings: TxSettings,
    signer: PrivateKeySigner,
    address: Address,
    signer_text: String,
    storage: Storage,
    clock: Arc<dyn Clock>,
    settlers: Arc<RwLock<HashMap<&'static str, Arc<dyn Settler>>>>,
    next_nonce: Option<u64>,
    /// Sent intents rebroadcast (or first broadcast) by this run of the sender.
    broadcast_since_start: HashSet<String>,
    nonce_gone: HashMap<String, u32>,
    cap_warned: bool,
    /// The gas counted against the budget this round: read from storage at the round's first
    /// send, then added to as it sends.
    round_gas: Option<u64>,
    /// Whether transactions are waiting for the budget (one warning per episode).
    over_budget: bool,
    /// `tx_sender:<chain>:<signer>`: only its holder signs and sends.
    lease: Lease,
}

/// What a round left behind.
enum Round {
    Idle,
    MoreWork,
}

impl Sender {
    async fn run(mut self, wake: Arc<Notify>) {
        let chain_id = self.chain.settings.chain_id;
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(poll)
            .with_max_delay(Duration::from_millis(
                self.settings
                    .max_backoff_ms
                    .max(self.settings.poll_interval_ms),
            ))
            .with_jitter()
            .without_max_times();
        let mut failures: Option<backon::ExponentialBackoff> = None;
        loop {
            let delay = match self.round().await {
                Ok(Round::MoreWork) => {
                    failures = None;
                    Duration::ZERO
                }
                Ok(Round::Idle) => {
                    failures = None;
                    poll
                }
                Err(error) => {
                    self.next_nonce = None;
                    let delay = failures
                        .get_or_insert_with(|| backoff.build())
                        .next()
                        .unwrap_or(poll);
                    tracing::warn!(%chain_id, signer = %self.signer_text, %error, retry_in_ms = delay.as_millis() as u64, "transaction round failed");
                    delay
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = wake.notified() => {}
            }
        }
    }

    async fn round(&mut self) -> Result<Round, RoundError> {
        fail::fail_point!("tx_sender_panic");
        let chain_id = self.chain.settings.chain_id;
        let intents = self
            .storage
            .chain()
            .open_tx_intents(
                chain_id,
                &WalletAddress::from_alloy(self.address),
                INTENTS_PER_ROUND,
            )
            .await?;
        if intents.is_empty() {
            return Ok(Round::Idle);
        }
        // Another process sending for this signer would race this one for nonces.
        match self.lease.take().await? {
            Turn::NotHeld => return Ok(Round::Idle),
            // Whatever another process did meanwhile, start again from the chain and from
            // storage.
            Turn::Taken => {
                self.next_nonce = None;
                self.broadcast_since_start.clear();
            }
            Turn::Renewed => {}
        }
        self.round_gas = None;
        let head = self.chain.block_number().await?;
        // The signer's mined nonce, read once per round and only if some transaction has no
        // receipt.
        let mut mined_nonce = None;
        for intent in intents.iter().filter(|i| i.status == TxIntentStatus::Sent) {
            self.check_sent(intent, head, &mut mined_nonce).await?;
        }
        for intent in intents
            .iter()
            .filter(|i| i.status == TxIntentStatus::Queued)
        {
            if !self.send_queued(intent).await? {
                break;
            }
        }
        Ok(if intents.len() as u64 == INTENTS_PER_ROUND {
            Round::MoreWork
        } else {
            Round::Idle
        })
    }

    async fn nonce(&mut self) -> Result<u64, RoundError> {
        if let Some(nonce) = self.next_nonce {
            return Ok(nonce);
        }
        let chain_nonce = self.chain.pending_nonce(self.address).await?;
        let recorded = self
            .storage
            .chain()
            .highest_open_nonce(
                self.chain.settings.chain_id,
                &WalletAddress::from_alloy(self.address),
            )
            .await?
            .map_or(0, |n| n + 1);
        let nonce = chain_nonce.max(recorded);
        self.next_nonce = Some(nonce);
        Ok(nonce)
    }

    async fn check_sent(
        &mut self,
        intent: &TxIntentRecord,
        head: u64,
        mined_nonce: &mut Option<u64>,
    ) -> Result<(), RoundError> {
        let mut hashes: Vec<&String> = intent.tx_hash.iter().collect();
        hashes.extend(intent.replaced_hashes.iter().rev());
        for hash in hashes {
            let hash = parse_hash(intent, hash)?;
            let Some(receipt) = self.chain.receipt(hash).await? else {
                continue;
            };
            let block = receipt.block_number.unwrap_or(head);
            if head.saturating_add(1) < block.saturating_add(self.settings.confirmations) {
                return Ok(()); // mined, not final yet
            }
            let tx_hash = format!("{hash:#x}");
            let outcome = if receipt.status() {
                TxFinal::Confirmed {
                    tx_hash,
                    block_number: block,
                    gas_used: receipt.gas_used,
                }
            } else {
                TxFinal::Failed {
                    reason: format!("the transaction reverted in block {block}"),
                    tx_hash: Some(tx_hash),
                    block_number: Some(block),
                    gas_used: Some(receipt.gas_used),
                }
            };
            let logs = receipt.inner.logs().to_vec();
            self.settle(intent, &outcome, &logs).await?;
            tracing::info!(
                chain_id = %intent.chain_id,
                intent = %intent.id,
                purpose = %intent.purpose,
                outcome = if receipt.status() { "confirmed" } else { "reverted" },
                block,
                gas_used = receipt.gas_used,
                "transaction settled"
            );
            self.nonce_gone.remove(&intent.id);
            return Ok(());
        }

        self.check_unmined(intent, mined_nonce).await
    }

    /// An intent without a receipt: failed once its nonce has gone to another transaction for
    /// [`NONCE_GONE_ROUNDS`] rounds; otherwise broadcast again after a restart, and replaced
    /// with higher fees once it is stuck.
    async fn check_unmined(
        &mut self,
        intent: &TxIntentRecord,
        mined_nonce: &mut Option<u64>,
    ) -> Result<(), RoundError> {
        let nonce = intent.nonce.unwrap_or_default();
        let mined = match *mined_nonce {
            Some(mined) => mined,
            None => *mined_nonce.insert(self.chain.latest_nonce(self.address).await?),
        };
        if mined > nonce {
            let rounds = self.nonce_gone.entry(intent.id.clone()).or_default();
            *rounds += 1;
            if *rounds >= NONCE_GONE_ROUNDS {
                let outcome = TxFinal::Failed {
                    reason: format!("nonce {nonce} was used by another transaction"),
                    tx_hash: intent.tx_hash.clone(),
                    block_number: None,
                    gas_used: None,
                };
                self.settle(intent, &outcome, &[]).await?;
                self.nonce_gone.remove(&intent.id);
            }
            return Ok(());
        }
        if !self.broadcast_since_start.contains(&intent.id) {
            let raw = intent.raw_tx.as_deref().unwrap_or_default();
            let raw = hex_bytes(intent, raw)?;
            self.broadcast(intent, &raw).await?;
        }
        let now = self.clock.now_ms();
        let sent_at = intent.sent_at_ms.unwrap_or(now);
        if now - sent_at >= (self.settings.stuck_after_secs as i64) * 1000 {
            self.replace(intent).await?;
        }
        Ok(())
    }

    /// Broadcasts recorded bytes. A transport failure ends the round (the bytes stay recorded
    /// and go out again next round); a refusal is logged and retried next round.
    async fn broadcast(&mut self, intent: &TxIntentRecord, raw: &[u8]) -> Result<(), RoundError> {
        match self.chain.broadcast(raw).await {
            Ok(Broadcast::Accepted | Broadcast::AlreadyKnown) => {
                self.broadcast_since_start.insert(intent.id.clone());
                Ok(())
            }
            Ok(Broadcast::NonceTooLow) => {
                // Mined already, or the nonce went elsewhere: the receipt check decides.
                self.broadcast_since_start.insert(intent.id.clone());
                self.next_nonce = None;
                Ok(())
            }
            Err(TxError::Unavailable(reason)) => Err(TxError::Unavailable(reason).into()),
            Err(error) => {
                tracing::warn!(intent = %intent.id, %error, "the node refused the transaction; will rebroadcast");
                Ok(())
            }
        }
    }

    /// Replaces a stuck transaction with one at the same nonce and higher fees.
    async fn replace(&mut self, intent: &TxIntentRecord) -> Result<(), RoundError> {
        let (Some(old_max), Some(old_tip), Some(nonce), Some(gas_limit)) = (
            intent.max_fee_per_gas,
            intent.max_priority_fee_per_gas,
            intent.nonce,
            intent.gas_limit,
        ) else {
            return Ok(());
        };
        let bump = |fee: u128| fee + fee * u128::from(self.settings.fee_bump_percent) / 100 + 1;
        let (suggested_max, suggested_tip) = self.chain.suggested_fees().await?;
        let cap = self.settings.max_fee_per_gas_wei();
        let tip = bump(old_tip).max(suggested_tip);
        let max_fee = bump(old_max).max(suggested_max).max(tip);
        if max_fee > cap {
            if !self.cap_warned {
                tracing::warn!(intent = %intent.id, cap_wei = cap, "a stuck transaction cannot be bumped under the fee cap; waiting");
                self.cap_warned = true;
            }
            return Ok(());
        }
        let (to, data, value) = call_parts(intent)?;
        let signed = self.sign(intent, nonce, to, data, value, gas_limit, max_fee, tip)?;
        let now = self.clock.now_ms();
        if self
            .storage
            .chain()
            .record_replacement_tx(intent, &signed, now)
            .await?
        {
            tracing::info!(intent = %intent.id, nonce, max_fee_per_gas = max_fee, old_hash = ?intent.tx_hash, new_hash = %signed.tx_hash, "replaced a stuck transaction with higher fees");
            let raw = hex_bytes(intent, &signed.raw_tx)?;
            self.broadcast(intent, &raw).await?;
        }
        Ok(())
    }

    /// Signs, records and broadcasts a queued intent. False when sending must pause (fees
    /// above the cap).
    async fn send_queued(&mut self, intent: &TxIntentRecord) -> Result<bool, RoundError> {
        let (to, data, value) = call_parts(intent)?;
        let gas_limit = match intent.gas_limit {
            Some(limit) => limit,
            None => match self
                .chain
                .estimate_gas(self.address, to, data.clone(), value)
                .await
            {
                Ok(estimate) => estimate + estimate * self.settings.gas_margin_percent / 100,
                Err(TxError::Reverted(reason)) | Err(TxError::Rejected(reason)) => {
                    let outcome = TxFinal::Failed {
                        reason: format!("the call would revert: {reason}"),
                        tx_hash: None,
                        block_number: None,
                        gas_used: None,
                    };
                    self.settle(intent, &outcome, &[]).await?;
                    tracing::warn!(intent = %intent.id, purpose = %intent.purpose, %reason, "transaction not sent: it would revert");
                    return Ok(true);
                }
                Err(other) => return Err(other.into()),
            },
        };
        if !self.within_budget(gas_limit).await? {
            return Ok(false);
        }
        let Some((suggested_max, tip)) = self.fees_under_cap(intent).await? else {
            return Ok(false);
        };
        let nonce = self.nonce().await?;
        let signed = self.sign(
            intent,
            nonce,
            to,
            data,
            value,
            gas_limit,
            suggested_max,
            tip,
        )?;
        let now = self.clock.now_ms();
        if !self
            .storage
            .chain()
            .record_signed_tx(&intent.id, &signed, now)
            .await?
        {
            return Ok(true); // someone else moved it on; nothing was broadcast
        }
        self.next_nonce = Some(nonce + 1);
        tracing::info!(chain_id = %intent.chain_id, intent = %intent.id, purpose = %intent.purpose, nonce, gas_limit, tx_hash = %signed.tx_hash, "sending transaction");
        let raw = hex_bytes(intent, &signed.raw_tx)?;
        self.broadcast(intent, &raw).await?;
        Ok(true)
    }

    /// The network's suggested fee and tip (the tip capped), or `None` while the fee is above
    /// the configured cap: the transaction then waits (warned once per spell).
    async fn fees_under_cap(
        &mut self,
        intent: &TxIntentRecord,
    ) -> Result<Option<(u128, u128)>, RoundError> {
        let (suggested_max, suggested_tip) = self.chain.suggested_fees().await?;
        let cap = self.settings.max_fee_per_gas_wei();
        if suggested_max > cap {
            if !self.cap_warned {
                tracing::warn!(
                    chain_id = %intent.chain_id,
                    suggested_wei = suggested_max,
                    cap_wei = cap,
                    "network fees are above the cap; transactions wait"
                );
                self.cap_warned = true;
            }
            return Ok(None);
        }
        self.cap_warned = false;
        let tip = suggested_tip
            .min(self.settings.max_priority_fee_per_gas_wei())
            .min(suggested_max);
        Ok(Some((suggested_max, tip)))
    }

    /// Whether `gas_limit` more gas fits in the chain's budget for the last hour. A `false`
    /// leaves the intent queued: the work waits, it does not fail.
    async fn within_budget(&mut self, gas_limit: u64) -> Result<bool, RoundError> {
        let chain_id = self.chain.settings.chain_id;
        let budget = self.settings.gas_budget_per_hour;
        let used = match self.round_gas {
            Some(used) => used,
            None => {
                let since = self.clock.now_ms() - GAS_BUDGET_WINDOW_MS;
                let used = self
                    .storage
                    .trusted()
                    .gas_sent_since(chain_id, since)
                    .await?;
                *self.round_gas.insert(used)
            }
        };
        let labels = [("chain_id", chain_id.to_string())];
        metrics::gauge!("chain_gas_budget_per_hour", &labels).set(budget as f64);
        metrics::gauge!("chain_gas_used_last_hour", &labels).set(used as f64);
        let fits = used.saturating_add(gas_limit) <= budget;
        if fits {
            self.round_gas = Some(used + gas_limit);
            if self.over_budget {
                self.over_budget = false;
                metrics::gauge!("chain_gas_budget_exhausted", &labels).set(0.0);
                tracing::info!(
                    %chain_id,
                    used,
                    budget,
                    "gas budget available again; sending resumes"
                );
            }
        } else if !self.over_budget {
            self.over_budget = true;
            metrics::gauge!("chain_gas_budget_exhausted", &labels).set(1.0);
            metrics::counter!("chain_gas_budget_exhausted_total", &labels).increment(1);
            tracing::warn!(
                %chain_id,
                used_gas = used,
                next_transaction_gas = gas_limit,
                budget_gas = budget,
                "gas budget per hour used up (tx.gas_budget_per_hour): nothing more is sent on \
                 this chain until older transactions leave the hour; the work waits"
            );
        }
        Ok(fits)
    }

    #[allow(clippy::too_many_arguments)]
    fn sign(
        &self,
        intent: &TxIntentRecord,
        nonce: u64,
        to: Address,
        data: Bytes,
        value: U256,
        gas_limit: u64,
        max_fee_per_gas: u128,
        max_priority_fee_per_gas: u128,
    ) -> Result<SignedTx, RoundError> {
        let unsigned = UnsignedTx {
            chain_id: intent.chain_id.get(),
            nonce,
            to,
            data,
            value,
            gas_limit,
            max_fee_per_gas,
            max_priority_fee_per_gas,
        };
        let (raw, hash) = tx::sign(&self.signer, &unsigned)?;
        Ok(SignedTx {
            nonce,
            raw_tx: format!("0x{}", hex::encode(&raw)),
            tx_hash: format!("{hash:#x}"),
            gas_limit,
            max_fee_per_gas,
            max_priority_fee_per_gas,
        })
    }

    async fn settle(
        &self,
        intent: &TxIntentRecord,
        outcome: &TxFinal,
        logs: &[Log],
    ) -> Result<(), RoundError> {
        let settler = self.settlers.read().get(intent.purpose.as_str()).cloned();
        match settler {
            Some(settler) => settler.settle(intent, outcome, logs).await?,
            None => {
                self.storage
                    .chain()
                    .finalize_tx_intent(&intent.id, outcome, self.clock.now_ms())
                    .await?;
            }
        }
        Ok(())
    }
}

fn corrupt(intent: &TxIntentRecord, reason: impl std::fmt::Display) -> RoundError {
    RoundError::Corrupt {
        id: intent.id.clone(),
        reason: reason.to_string(),
    }
}

fn parse_hash(intent: &TxIntentRecord, hash: &str) -> Result<B256, RoundError> {
    B256::from_str(hash).map_err(|e| corrupt(intent, format!("hash: {e}")))
}

fn hex_bytes(intent: &TxIntentRecord, text: &str) -> Result<Bytes, RoundError> {
    Bytes::from_str(text).map_err(|e| corrupt(intent, format!("hex: {e}")))
}

fn call_parts(intent: &TxIntentRecord) -> Result<(Address, Bytes, U256), RoundError> {
    let data = hex_bytes(intent, &intent.calldata)?;
    Ok((intent.to.as_alloy(), data, intent.value_wei.as_u256()))
}
