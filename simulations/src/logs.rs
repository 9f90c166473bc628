//! The server's log, for benchmarks that run it in process: printed to stderr at the level
//! `RUST_LOG` asks for (warn by default), and every warning and error counted by message, so a
//! run can report what went wrong without anyone reading the scroll-back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Warnings and errors seen, by (level, message).
#[derive(Default)]
pub struct LogCounts {
    seen: Mutex<BTreeMap<(String, String), usize>>,
}

impl LogCounts {
    /// What was seen since the last call, and forget it.
    pub fn take(&self) -> BTreeMap<(String, String), usize> {
        self.seen
            .lock()
            .map(|mut seen| std::mem::take(&mut *seen))
            .unwrap_or_default()
    }

    /// One line per (level, message), or "none".
    pub fn summary(seen: &BTreeMap<(String, String), usize>) -> String {
        if seen.is_empty() {
            return "no warnings, no errors".into();
        }
        seen.iter()
            .map(|((level, message), n)| format!("{n} x {level} \"{message}\""))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

struct CountLayer(Arc<LogCounts>);

#[derive(Default)]
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for CountLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let level = *event.metadata().level();
        if level > tracing::Level::WARN {
            return;
        }
        let mut message = Message::default();
        event.record(&mut message);
        if let Ok(mut seen) = self.0.seen.lock() {
            *seen.entry((level.to_string(), message.0)).or_default() += 1;
        }
    }
}

/// Installs the subscriber; answers the counter.
pub fn init() -> Arc<LogCounts> {
    let counts = Arc::new(LogCounts::default());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(CountLayer(counts.clone()).with_filter(tracing_subscriber::filter::LevelFilter::WARN))
        .try_init();
    counts
}
