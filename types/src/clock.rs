use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch: how every timestamp is stored, so that SQLite and
/// PostgreSQL hold the same values and comparisons are plain integer comparisons.
pub type UnixMillis = i64;

/// Where the current time comes from. Production uses [`SystemClock`]; tests inject a
/// [`ManualClock`] so that expiry can be tested without waiting.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now_ms(&self) -> UnixMillis;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMillis {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn starting_now() -> Self {
        Self(Arc::new(AtomicI64::new(SystemClock.now_ms())))
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMillis {
        self.0.load(Ordering::SeqCst)
    }
}
