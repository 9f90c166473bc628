//! The entity registry: one supervised actor per entity key, started on demand and retired
//! when idle.
//!
//! - A message for a key goes through [`Registry::call`]. If no actor runs for the key, one is
//!   spawned, linked to the kind's supervisor, and loads its state from storage in `pre_start`.
//!   Concurrent callers for one key share that start, so there is never more than one actor
//!   per key in a process.
//! - A sweeper retires actors that have not been called for the idle timeout: it removes the
//!   slot first (new callers start a fresh actor) and then queues [`EntityActor::retire`] behind
//!   whatever is already in the mailbox, so every message that was delivered is processed. A
//!   caller whose message landed behind the retire message sees the slot marked retired and
//!   retries on the fresh actor: retiring never loses a message.
//! - A crashed (or killed) actor is restarted with its state reloaded, at most
//!   `restarts_max` times in `restart_window`; after that the entity is marked failed in
//!   storage with the reason, and refused until an operator clears it.
//! - Idleness and the restart window are read on the injected [`Clock`], like every other
//!   time in the actors, so a test moves them with its manual clock instead of waiting (the
//!   sweeper's own tick is the runtime's timer).
//! - Which keys are failed is cached in memory (loaded at start, refreshed by the sweeper), so
//!   starting an actor costs no extra query; a cached refusal is confirmed against storage, so
//!   an operator's clear takes effect at once.

use std::collections::{HashMap, HashSet};
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ampflow_storage::{EntityFailure, Storage};
use ampflow_types::{Clock, UnixMillis};
use parking_lot::Mutex;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use tokio::sync::OnceCell;

/// An actor that owns one business entity.
pub trait EntityActor: Actor<Arguments = Self::Key> + Clone {
    /// The kind's name, as stored in `entity_failures.kind` and shown in logs.
    const KIND: &'static str;
    type Key: Clone + Eq + Hash + Display + Debug + Send + Sync + 'static;

    /// The message that makes the actor stop itself (`myself.stop(Some("idle"))`).
    fn retire() -> Self::Msg;
}

/// Limits of the runtime, shared by every kind.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// An actor not called for this long is retired.
    pub idle_timeout: Duration,
    /// Restarts allowed within `restart_window` before the entity is marked failed.
    pub restarts_max: u32,
    pub restart_window: Duration,
    /// How long a caller waits for an actor's reply.
    pub call_timeout: Duration,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(120),
            restarts_max: 5,
            restart_window: Duration::from_secs(60),
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a message could not be handled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("{kind} {key} kept failing and is disabled: {reason}")]
    EntityFailed {
        kind: &'static str,
        key: String,
        reason: String,
    },
    #[error("{kind} {key} could not start: {reason}")]
    StartFailed {
        kind: &'static str,
        key: String,
        reason: String,
    },
    /// The actor could not start because storage was unavailable (it could not read its
    /// rows); a retry may well succeed.
    #[error("{kind} {key} could not start now: {reason}")]
    StorageUnavailable {
        kind: &'static str,
        key: String,
        reason: String,
    },
    #[error("{kind} {key} did not answer in time")]
    Timeout { kind: &'static str, key: String },
    #[error("{kind} {key} stopped while handling the request")]
    Interrupted { kind: &'static str, key: String },
    #[error("the actor system is shutting down")]
    ShuttingDown,
}

/// Whether an actor's start failed only because storage was unavailable: its `pre_start`
/// read failed with such a storage error (as itself, or as an identity error).
fn storage_unavailable(cause: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(error) = cause.downcast_ref::<ampflow_storage::StorageError>() {
        return error.is_unavailable();
    }
    matches!(
        cause.downcast_ref::<crate::identity_error::IdentityError>(),
        Some(crate::identity_error::IdentityError::StorageUnavailable(_))
    )
}

/// Attempts for one call: the first, plus retries after a retire or a dead actor.
const CALL_ATTEMPTS_MAX: usize = 4;
/// Entries kept in the restart-history table, so a flood of crashing keys cannot grow it
/// without bound.
const RESTART_HISTORY_MAX: usize = 10_000;
/// Failed keys cached per kind. With more failures than this, every start asks storage.
const FAILED_KEYS_CACHED_MAX: u64 = 10_000;

struct Slot<A: EntityActor> {
    actor: OnceCell<ActorRef<A::Msg>>,
    retired: AtomicBool,
    /// The injected clock's time (Unix ms) at the last call.
    last_used_ms: AtomicI64,
}

struct Slots<A: EntityActor> {
    by_key: HashMap<A::Key, Arc<Slot<A>>>,
    key_by_id: HashMap<ActorId, A::Key>,
    /// Restarts of a key, and when (the clock's Unix ms) its window began.
    restarts: HashMap<A::Key, (u32, UnixMillis)>,
}

/// The registry of one entity kind. Shared behind an `Arc`.
pub struct Registry<A: EntityActor> {
    prototype: A,
    slots: Mutex<Slots<A>>,
    supervisor: OnceLock<ActorCell>,
    storage: Storage,
    clock: Arc<dyn Clock>,
    settings: RuntimeSettings,
    shutting_down: AtomicBool,
    /// Keys marked failed in storage, as last read; `None` until read, or when there were too
    /// many to cache.
    failed: Mutex<Option<HashSet<String>>>,
}

impl<A: EntityActor> Registry<A> {
    pub fn new(
        prototype: A,
        storage: Storage,
        clock: Arc<dyn Clock>,
        settings: RuntimeSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            prototype,
            slots: Mutex::new(Slots {
                by_key: HashMap::new(),
                key_by_id: HashMap::new(),
                restarts: HashMap::new(),
            }),
            supervisor: OnceLock::new(),
            storage,
            clock,
            settings,
            shutting_down: AtomicBool::new(false),
            failed: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    /// How many actors of this kind are alive in this process.
    pub fn live_count(&self) -> usize {
        self.slots.lock().by_key.len()
    }

    /// The running actor for `key`, if there is one (tests use it to kill actors).
    pub fn running(&self, key: &A::Key) -> Option<ActorRef<A::Msg>> {
        let slot = self.slots.lock().by_key.get(key).cloned()?;
        slot.actor.get().cloned()
    }

    /// Sends a request to the entity's actor and waits for the reply. `build` may be called
    /// more than once, when the first actor was retired before it saw the message.
    pub async fn call<R, F>(&self, key: &A::Key, build: F) -> Result<R, RegistryError>
    where
        R: Send + 'static,
        F: Fn(RpcReplyPort<R>) -> A::Msg,
    {
        for _ in 0..CALL_ATTEMPTS_MAX {
            let (slot, actor) = self.get_or_start(key).await?;
            slot.last_used_ms
                .store(self.clock.now_ms(), Ordering::Relaxed);
            match actor.call(&build, Some(self.settings.call_timeout)).await {
                Ok(CallResult::Success(reply)) => return Ok(reply),
                Ok(CallResult::Timeout) => {
                    return Err(RegistryError::Timeout {
                        kind: A::KIND,
                        key: key.to_string(),
                    });
                }
                Ok(CallResult::SenderError) if slot.retired.load(Ordering::SeqCst) => continue,
                Ok(CallResult::SenderError) => {
                    return Err(RegistryError::Interrupted {
                        kind: A::KIND,
                        key: key.to_string(),
                    });
                }
                Err(MessagingErr::SendErr(_) | MessagingErr::ChannelClosed) => {
                    // Never delivered: the actor had already stopped.
                    self.evict(key, &slot);
                    continue;
                }
                Err(MessagingErr::InvalidActorType) => {
                    return Err(RegistryError::StartFailed {
                        kind: A::KIND,
                        key: key.to_string(),
                        reason: "actor type mismatch".into(),
                    });
                }
            }
        }
        Err(RegistryError::Interrupted {
            kind: A::KIND,
            key: key.to_string(),
        })
    }

    async fn get_or_start(
        &self,
        key: &A::Key,
    ) -> Result<(Arc<Slot<A>>, ActorRef<A::Msg>), RegistryError> {
        for _ in 0..CALL_ATTEMPTS_MAX {
            if self.shutting_down.load(Ordering::SeqCst) {
                return Err(RegistryError::ShuttingDown);
            }
            let slot = {
                let mut slots = self.slots.lock();
                slots
                    .by_key
                    .entry(key.clone())
                    .or_insert_with(|| {
                        Arc::new(Slot {
                            actor: OnceCell::new(),
                            retired: AtomicBool::new(false),
                            last_used_ms: AtomicI64::new(self.clock.now_ms()),
                        })
                    })
                    .clone()
            };
            match slot.actor.get_or_try_init(|| self.spawn(key)).await {
                Ok(actor) if is_alive(actor) => {
                    let actor = actor.clone();
                    return Ok((slot, actor));
                }
                Ok(_) => self.evict(key, &slot),
                Err(error) => {
                    self.evict(key, &slot);
                    return Err(error);
                }
            }
        }
        Err(RegistryError::Interrupted {
            kind: A::KIND,
            key: key.to_string(),
        })
    }

    async fn spawn(&self, key: &A::Key) -> Result<ActorRef<A::Msg>, RegistryError> {
        let supervisor = self
            .supervisor
            .get()
            .cloned()
            .ok_or(RegistryError::ShuttingDown)?;
        let key_text = key.to_string();
        if let Some(reason) = self.failure_of(&key_text).await? {
            return Err(RegistryError::EntityFailed {
                kind: A::KIND,
                key: key_text,
                reason,
            });
        }
        let (actor, _) = Actor::spawn_linked(None, self.prototype.clone(), key.clone(), supervisor)
            .await
            .map_err(|e| {
                let unavailable = matches!(&e, ractor::SpawnErr::StartupFailed(cause) if storage_unavailable(cause.as_ref()));
                let (kind, reason) = (A::KIND, e.to_string());
                if unavailable {
                    RegistryError::StorageUnavailable { kind, key: key_text, reason }
                } else {
                    RegistryError::StartFailed { kind, key: key_text, reason }
                }
            })?;
        self.slots
            .lock()
            .key_by_id
            .insert(actor.get_id(), key.clone());
        Ok(actor)
    }

    /// Why `key` is marked failed, if it is. Answers from the cache when it can; a cached
    /// failure is confirmed in storage, so a cleared entity starts at once.
    async fn failure_of(&self, key: &str) -> Result<Option<String>, RegistryError> {
        let cached = self
            .failed
            .lock()
            .as_ref()
            .map(|failed| failed.contains(key));
        if cached == Some(false) {
            return Ok(None);
        }
        let failure = self
            .storage
            .failures()
            .entity_failure(A::KIND, key)
            .await
            .map_err(|e| {
                let (kind, key, reason) = (A::KIND, key.to_string(), e.to_string());
                if e.is_unavailable() {
                    RegistryError::StorageUnavailable { kind, key, reason }
                } else {
                    RegistryError::StartFailed { kind, key, reason }
                }
            })?;
        if failure.is_none()
            && let Some(failed) = self.failed.lock().as_mut()
        {
            failed.remove(key);
        }
        Ok(failure.map(|f| f.reason))
    }

    /// Re-reads which keys of this kind are marked failed.
    pub async fn refresh_failures(&self) {
        match self
            .storage
            .failures()
            .failed_entity_keys(A::KIND, FAILED_KEYS_CACHED_MAX)
            .await
        {
            Ok(keys) if (keys.len() as u64) < FAILED_KEYS_CACHED_MAX => {
                *self.failed.lock() = Some(keys.into_iter().collect());
            }
            Ok(_) => *self.failed.lock() = None,
            Err(error) => {
                tracing::warn!(kind = A::KIND, %error, "could not read failed entities; checking each start");
                *self.failed.lock() = None;
            }
        }
    }

    /// Removes `slot` for `key` if it is still the current one.
    fn evict(&self, key: &A::Key, slot: &Arc<Slot<A>>) {
        let mut slots = self.slots.lock();
        if slots
            .by_key
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, slot))
        {
            slots.by_key.remove(key);
        }
    }

    /// Whether a restart window that began at `since` is still open. Wall-clock time: a
    /// clock stepped back keeps the window open a little longer, the cautious side.
    fn within_window(&self, since: UnixMillis, now_ms: UnixMillis) -> bool {
        let window = i64::try_from(self.settings.restart_window.as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_sub(since) < window
    }

    /// Retires every actor idle for longer than the idle timeout. Returns how many.
    pub fn retire_idle(&self) -> usize {
        let idle_ms = i64::try_from(self.settings.idle_timeout.as_millis()).unwrap_or(i64::MAX);
        let now_ms = self.clock.now_ms();
        let mut retired = Vec::new();
        {
            let mut slots = self.slots.lock();
            slots.by_key.retain(|_, slot| {
                let idle = now_ms.saturating_sub(slot.last_used_ms.load(Ordering::Relaxed));
                let Some(actor) = slot.actor.get() else {
                    return true; // still starting
                };
                if idle < idle_ms {
                    return true;
                }
                slot.retired.store(true, Ordering::SeqCst);
                retired.push(actor.clone());
                false
            });
            slots
                .restarts
                .retain(|_, (_, since)| self.within_window(*since, now_ms));
        }
        for actor in &retired {
            // Queued behind the messages already delivered, so they are all handled first.
            let _ = actor.cast(A::retire());
        }
        retired.len()
    }

    /// Called by the supervisor when an actor of this kind stopped. `crash` carries the reason
    /// when it failed or was killed; a crashed entity is restarted unless it has used up its
    /// restarts.
    pub(crate) async fn on_actor_down(&self, id: ActorId, crash: Option<String>) {
        let key = {
            let mut slots = self.slots.lock();
            let Some(key) = slots.key_by_id.remove(&id) else {
                return;
            };
            let is_current = slots
                .by_key
                .get(&key)
                .and_then(|slot| slot.actor.get())
                .is_some_and(|actor| actor.get_id() == id);
            if is_current {
                slots.by_key.remove(&key);
            }
            key
        };
        let Some(reason) = crash else {
            return;
        };
        if self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let restarts = self.count_restart(&key);
        if restarts > self.settings.restarts_max {
            tracing::error!(kind = A::KIND, key = %key, restarts, %reason, "entity keeps failing; marking it failed");
            let failure = EntityFailure {
                kind: A::KIND.to_string(),
                entity_key: key.to_string(),
                reason: format!(
                    "restarted {} times within {:?}; last error: {reason}",
                    restarts - 1,
                    self.settings.restart_window
                ),
                restarts: restarts as i32,
                failed_at_ms: self.clock.now_ms(),
            };
            if let Err(error) = self.storage.failures().mark_entity_failed(&failure).await {
                tracing::error!(kind = A::KIND, key = %key, %error, "could not mark entity failed");
            }
            if let Some(failed) = self.failed.lock().as_mut() {
                failed.insert(key.to_string());
            }
            return;
        }
        tracing::warn!(kind = A::KIND, key = %key, restarts, %reason, "entity actor crashed; restarting it");
        if let Err(error) = self.get_or_start(&key).await {
            tracing::error!(kind = A::KIND, key = %key, %error, "restart failed");
        }
    }

    fn count_restart(&self, key: &A::Key) -> u32 {
        let now_ms = self.clock.now_ms();
        let mut slots = self.slots.lock();
        if slots.restarts.len() >= RESTART_HISTORY_MAX && !slots.restarts.contains_key(key) {
            slots
                .restarts
                .retain(|_, (_, since)| self.within_window(*since, now_ms));
        }
        let entry = slots.restarts.entry(key.clone()).or_insert((0, now_ms));
        if !self.within_window(entry.1, now_ms) {
            *entry = (0, now_ms);
        }
        entry.0 += 1;
        entry.0
    }

    pub(crate) fn set_supervisor(&self, supervisor: ActorCell) {
        let _ = self.supervisor.set(supervisor);
    }

    /// Stops every actor of this kind and refuses new work.
    pub async fn shutdown(&self, wait: Duration) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let actors: Vec<ActorRef<A::Msg>> = {
            let mut slots = self.slots.lock();
            let actors = slots
                .by_key
                .values()
                .filter_map(|s| s.actor.get().cloned())
                .collect();
            slots.by_key.clear();
            actors
        };
        let stops = actors
            .iter()
            .map(|a| a.stop_and_wait(Some("shutdown".into()), Some(wait)));
        futures::future::join_all(stops).await;
    }
}

fn is_alive<M>(actor: &ActorRef<M>) -> bool {
    use ractor::ActorStatus::*;
    matches!(
        actor.get_status(),
        Unstarted | Starting | Running | Upgrading
    )
}

/// The supervisor of one entity kind: it forwards its children's lifecycle events to the
/// registry, which restarts crashed entities.
pub struct KindSupervisor<A: EntityActor>(std::marker::PhantomData<A>);

impl<A: EntityActor> KindSupervisor<A> {
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<A: EntityActor> Default for KindSupervisor<A> {
    fn default() -> Self {
        Self::new()
    }
}

/// The kind supervisor takes no messages of its own.
pub enum SupervisorMsg {}

impl<A: EntityActor> Actor for KindSupervisor<A> {
    type Msg = SupervisorMsg;
    type State = Arc<Registry<A>>;
    type Arguments = Arc<Registry<A>>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        registry: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        registry.set_supervisor(myself.get_cell());
        Ok(registry)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: ractor::SupervisionEvent,
        registry: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        use ractor::SupervisionEvent::*;
        let (id, crash) = match event {
            ActorTerminated(cell, _, reason) => {
                let crash = (reason.as_deref() == Some("killed")).then(|| "killed".to_string());
                (cell.get_id(), crash)
            }
            ActorFailed(cell, error) => (cell.get_id(), Some(error.to_string())),
            _ => return Ok(()),
        };
        // Restarting loads state from storage: do it off the supervisor's mailbox.
        let registry = registry.clone();
        tokio::spawn(async move { registry.on_actor_down(id, crash).await });
        Ok(())
    }
}

/// Entities marked failed after repeated crashes, as the operator lists and clears them
/// (`ampflow entities failed`, `ampflow entities clear`). A cleared entity starts again on
/// its next request.
#[derive(Clone)]
pub struct EntityFailures {
    storage: Storage,
}

impl EntityFailures {
    pub fn new(storage: Storage) -> Self {
        Self { storage }
    }

    /// Up to `limit` failed entities.
    pub async fn list(
        &self,
        limit: u64,
    ) -> Result<Vec<EntityFailure>, ampflow_storage::StorageError> {
        self.storage.failures().list_entity_failures(limit).await
    }

    /// Clears the failure of the entity of `kind` with `key` (a wallet's key is its address,
    /// in any case); false when it was not marked failed.
    pub async fn clear(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<bool, ampflow_storage::StorageError> {
        let key = if kind == crate::wallet::WalletActor::KIND {
            key.to_ascii_lowercase()
        } else {
            key.to_string()
        };
        self.storage
            .failures()
            .clear_entity_failure(kind, &key)
            .await
    }
}

#[cfg(test)]
mod tests {
    use ampflow_storage::StorageError;

    use super::*;
    use crate::identity_error::IdentityError;

    /// An actor that cannot start: its `pre_start` fails with the error it is given.
    struct Refuses;

    impl Actor for Refuses {
        type Msg = ();
        type State = ();
        type Arguments = fn() -> ActorProcessingErr;

        async fn pre_start(
            &self,
            _: ActorRef<()>,
            error: Self::Arguments,
        ) -> Result<(), ActorProcessingErr> {
            Err(error())
        }
    }

    async fn start_error(error: fn() -> ActorProcessingErr) -> ractor::SpawnErr {
        match Actor::spawn(None, Refuses, error).await {
            Ok(_) => panic!("the actor started"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn a_start_that_failed_on_unavailable_storage_is_told_apart() {
        for (error, unavailable) in [
            (
                (|| StorageError::Unavailable("abandoned".into()).into())
                    as fn() -> ActorProcessingErr,
                true,
            ),
            (
                || IdentityError::StorageUnavailable("connection lost".into()).into(),
                true,
            ),
            (|| StorageError::Corrupt("bad row".into()).into(), false),
            (|| IdentityError::Internal("no".into()).into(), false),
        ] {
            let spawn = start_error(error).await;
            let ractor::SpawnErr::StartupFailed(cause) = &spawn else {
                panic!("{spawn}");
            };
            assert_eq!(storage_unavailable(cause.as_ref()), unavailable, "{spawn}");
        }
    }
}
