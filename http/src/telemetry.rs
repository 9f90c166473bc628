//! Structured logs: human-readable by default, JSON lines with `AMPFLOW_LOG_FORMAT=json`. The
//! level comes from `RUST_LOG` (default `info`, with noisy dependencies at `warn`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

const DEFAULT_FILTER: &str =
    "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,ractor=warn,hyper=warn";

pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
