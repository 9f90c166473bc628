//! The one lease loop of the background workers that must run in one process at a time (the
//! transaction sender of a signer, the auto-invest executor of a chain, the checkpoint
//! builder): each round takes or renews the lease, tells a fresh hold from a renewal, and logs
//! each change once.
//!
//! A hold is fresh when this worker did not hold the lease at its last look, or did but the
//! lease ran out in between (a pause, or an idle spell): another process may have held it and
//! acted meanwhile, so whatever the worker keeps from before (a nonce) must be read again.

use std::sync::Arc;

use ampflow_storage::{LeaseHolder, LeaseState, Storage, StorageError};
use ampflow_types::{Clock, UnixMillis};
use parking_lot::Mutex;

/// What a round may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Held, and freshly: read again what was kept from before.
    Taken,
    /// Held, as at the last look and without a gap.
    Renewed,
    /// Another process holds it (or a later run of this node): do nothing.
    NotHeld,
}

impl Turn {
    pub(crate) fn is_held(self) -> bool {
        self != Turn::NotHeld
    }
}

pub(crate) struct Lease {
    name: String,
    /// For the logs, e.g. "the sender's lease".
    what: &'static str,
    holder: LeaseHolder,
    ttl_ms: i64,
    storage: Storage,
    clock: Arc<dyn Clock>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// The state at the last look (`None` before the first).
    last: Option<LeaseState>,
    /// When the lease last taken runs out, by this process's clock.
    until: UnixMillis,
}

impl Lease {
    pub(crate) fn new(
        name: String,
        what: &'static str,
        holder: LeaseHolder,
        ttl_ms: i64,
        storage: Storage,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            name,
            what,
            holder,
            ttl_ms,
            storage,
            clock,
            seen: Mutex::default(),
        }
    }

    /// Takes or renews the lease for another TTL from now.
    pub(crate) async fn take(&self) -> Result<Turn, StorageError> {
        let now = self.clock.now_ms();
        let until = now.saturating_add(self.ttl_ms);
        let state = self
            .storage
            .leases()
            .acquire_lease(&self.name, &self.holder, now, until)
            .await?;
        let (changed, lapsed) = {
            let mut seen = self.seen.lock();
            let lapsed =
                state.is_held() && seen.last == Some(LeaseState::Held) && now >= seen.until;
            if state.is_held() {
                seen.until = until;
            }
            let changed = seen.last != Some(state) || lapsed;
            seen.last = Some(state);
            (changed, lapsed)
        };
        if changed {
            let (lease, holder, what) = (&self.name, &self.holder, self.what);
            match state {
                LeaseState::Held if lapsed => {
                    tracing::info!(%lease, %holder, "took {what} again after it lapsed")
                }
                LeaseState::Held => tracing::info!(%lease, %holder, "took {what}"),
                LeaseState::Busy => {
                    tracing::info!(%lease, "another process holds {what}; waiting")
                }
                LeaseState::HeldByLaterRun => tracing::error!(
                    %lease,
                    %holder,
                    "a later run of this node holds {what}: two processes share this node id (node.id), which they must never do; this one does nothing with it"
                ),
            }
        }
        Ok(match state {
            LeaseState::Held if changed => Turn::Taken,
            LeaseState::Held => Turn::Renewed,
            LeaseState::Busy | LeaseState::HeldByLaterRun => Turn::NotHeld,
        })
    }

    /// Gives the lease up (if held), so another process takes over at once.
    pub(crate) async fn release(&self) {
        if let Err(error) = self
            .storage
            .leases()
            .release_lease(&self.name, &self.holder)
            .await
        {
            tracing::warn!(lease = %self.name, %error, "could not release {}", self.what);
        }
        *self.seen.lock() = Seen::default();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ampflow_storage::testdb::TestDatabase;
    use ampflow_types::ManualClock;

    use super::*;

    #[tokio::test]
    async fn a_hold_is_fresh_after_another_holder_and_after_a_lapse() {
        let db = TestDatabase::sqlite();
        let storage = Storage::connect(&db.settings()).await.unwrap();
        storage.migrate().await.unwrap();
        let clock = ManualClock::starting_now();
        let lease = |what| {
            Lease::new(
                "work".into(),
                what,
                LeaseHolder::one_off(),
                1_000,
                storage.clone(),
                Arc::new(clock.clone()),
            )
        };
        let (a, b) = (lease("a's lease"), lease("b's lease"));

        assert_eq!(a.take().await.unwrap(), Turn::Taken);
        clock.advance_ms(500);
        assert_eq!(a.take().await.unwrap(), Turn::Renewed);
        assert_eq!(b.take().await.unwrap(), Turn::NotHeld);

        // a stops looking; its lease runs out and b takes it.
        clock.advance_ms(1_500);
        assert_eq!(b.take().await.unwrap(), Turn::Taken);
        assert_eq!(a.take().await.unwrap(), Turn::NotHeld);
        b.release().await;
        assert_eq!(a.take().await.unwrap(), Turn::Taken, "after another holder");
        assert_eq!(a.take().await.unwrap(), Turn::Renewed);

        // Free again when a looks, but it lapsed in between: b could have held it meanwhile.
        clock.advance_ms(1_000);
        assert_eq!(a.take().await.unwrap(), Turn::Taken, "after a lapse");
        assert_eq!(a.take().await.unwrap(), Turn::Renewed);
    }
}
