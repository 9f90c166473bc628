//! Daily ledger checkpoints: the signing key, and the job that builds one checkpoint per UTC
//! day once the day is over (plus a grace period, so entries committed just after midnight
//! with an earlier timestamp still land in their day).
//!
//! Owns: the checkpoint signing key (from configuration, else generated once and stored in the
//! database so every process signs with the same key) and the `ledger_checkpoints` lease; only
//! the lease holder builds. Touches: storage only.

use std::sync::Arc;
use std::time::Duration;

pub use ampflow_storage::{CheckpointRecord, InclusionProofRecord, ProofLookupError, ProofPage};
use ampflow_storage::{CheckpointSpec, LeaseHolder, Storage, StorageError};
use ampflow_types::note::{NoteSigner, NoteVerifier};
use ampflow_types::{Clock, UnixMillis};
use chrono::{NaiveDate, TimeDelta};
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;

use crate::lease::Lease;

const LEASE: &str = "ledger_checkpoints";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Checkpoints built by one call at most; a longer gap is caught up over several calls.
const DAYS_PER_RUN_MAX: usize = 400;
/// How often a caller that wants to build now looks at the lease again.
const LEASE_POLL: Duration = Duration::from_millis(50);

/// `[checkpoints]` in the configuration.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// The log's name in every checkpoint body (e.g. `ledger.example.org`).
    pub origin: String,
    /// `PRIVATE+KEY+<name>+<hex id>+<base64>`; generated and stored when absent.
    pub signing_key: Option<SecretString>,
    /// Whether this process runs the daily job.
    pub job_enabled: bool,
    pub interval: Duration,
    /// A day's checkpoint is built this long after the day ends.
    pub grace_ms: i64,
    pub lease_ttl_ms: i64,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        Self {
            origin: "ampflow/ledger".into(),
            signing_key: None,
            job_enabled: true,
            interval: Duration::from_secs(60),
            grace_ms: 10 * 60 * 1000,
            lease_ttl_ms: 5 * 60 * 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint signing key: {0}")]
    Key(String),
    #[error("the day {0} is not over yet")]
    DayNotOver(NaiveDate),
    #[error("another process is building checkpoints")]
    Busy,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Builds and signs checkpoints. Cloning is cheap.
#[derive(Clone)]
pub struct Checkpoints(Arc<Inner>);

struct Inner {
    storage: Storage,
    clock: Arc<dyn Clock>,
    settings: CheckpointSettings,
    signer: NoteSigner,
    /// `ledger_checkpoints`, held by this run of the node (or a one-off holder, for a
    /// command): only its holder builds.
    lease: Lease,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("origin", &self.0.settings.origin)
            .field("verifier", &self.0.signer.verifier().vkey())
            .finish_non_exhaustive()
    }
}

fn lease_ttl_ms(settings: &CheckpointSettings) -> i64 {
    settings.lease_ttl_ms.max(1_000)
}

/// The first instant after `date`.
pub fn day_end_ms(date: NaiveDate) -> UnixMillis {
    date.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or_default()
        + DAY_MS
}

fn date_of(ms: UnixMillis) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

impl Checkpoints {
    /// Takes the configured key, else the stored one, else generates and stores one (every
    /// process converges on the oldest stored key).
    pub async fn load(
        storage: Storage,
        clock: Arc<dyn Clock>,
        settings: CheckpointSettings,
        holder: LeaseHolder,
    ) -> Result<Self, CheckpointError> {
        let key_error = |e: ampflow_types::note::NoteError| CheckpointError::Key(e.to_string());
        let signer = match &settings.signing_key {
            Some(key) => NoteSigner::parse(key.expose_secret()).map_err(key_error)?,
            None => {
                let stored = match storage.checkpoints().load_checkpoint_key().await? {
                    Some(stored) => stored,
                    None => {
                        let fresh = NoteSigner::generate(&settings.origin).map_err(key_error)?;
                        storage
                            .checkpoints()
                            .first_checkpoint_key(
                                &fresh.verifier().vkey(),
                                &fresh.private_key_text(),
                                clock.now_ms(),
                            )
                            .await?
                    }
                };
                NoteSigner::parse(&stored).map_err(key_error)?
            }
        };
        // One log, one name: a checkpoint's origin line and its key's name stay what they
        // were when the first checkpoint was signed.
        if signer.verifier().name() != settings.origin {
            return Err(CheckpointError::Key(format!(
                "the signing key is named {} but checkpoints.origin is {}; a log keeps its origin",
                signer.verifier().name(),
                settings.origin
            )));
        }
        let lease = Lease::new(
            LEASE.into(),
            "the checkpoint lease",
            holder,
            lease_ttl_ms(&settings),
            storage.clone(),
            clock.clone(),
        );
        Ok(Self(Arc::new(Inner {
            storage,
            clock,
            settings,
            signer,
            lease,
        })))
    }

    pub fn verifier(&self) -> &NoteVerifier {
        self.0.signer.verifier()
    }

    pub fn origin(&self) -> &str {
        &self.0.settings.origin
    }

    /// Signed checkpoints, newest first, those before the day `before` (YYYY-MM-DD) when given.
    pub async fn page(
        &self,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<CheckpointRecord>, StorageError> {
        self.0
            .storage
            .checkpoints()
            .list_checkpoints(before, limit)
            .await
    }

    /// One checkpoint by its id (`chk_YYYY-MM-DD`).
    pub async fn get(&self, id: &str) -> Result<Option<CheckpointRecord>, StorageError> {
        self.0.storage.checkpoints().checkpoint(id).await
    }

    /// The inclusion proof of a ledger entry in the checkpoint named, or the newest.
    pub async fn inclusion_proof(
        &self,
        entry_id: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<InclusionProofRecord, ProofLookupError> {
        self.0
            .storage
            .checkpoints()
            .inclusion_proof(entry_id, checkpoint_id)
            .await
    }

    /// Proofs of an organisation's entries after `after_seq`, in chain order, against the
    /// checkpoint named or the newest.
    pub async fn organisation_proofs(
        &self,
        organisation_id: &str,
        checkpoint_id: Option<&str>,
        after_seq: u64,
        limit: u64,
    ) -> Result<ProofPage, ProofLookupError> {
        self.0
            .storage
            .checkpoints()
            .organisation_proofs(organisation_id, checkpoint_id, after_seq, limit)
            .await
    }

    /// Builds every missing checkpoint through `date` (which must be over), oldest first,
    /// waiting up to the lease's lifetime for another builder to finish. Answers the
    /// checkpoints built.
    pub async fn build_through(
        &self,
        date: NaiveDate,
    ) -> Result<Vec<CheckpointRecord>, CheckpointError> {
        if day_end_ms(date) > self.0.clock.now_ms() {
            return Err(CheckpointError::DayNotOver(date));
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.lease_ttl_ms() as u64);
        while !self.take_lease().await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(CheckpointError::Busy);
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
        let built = self.build_missing(date, 0).await;
        self.0.lease.release().await;
        built
    }

    fn lease_ttl_ms(&self) -> i64 {
        lease_ttl_ms(&self.0.settings)
    }

    async fn take_lease(&self) -> Result<bool, CheckpointError> {
        Ok(self.0.lease.take().await?.is_held())
    }

    /// The days after the newest checkpoint (or from the oldest entry's day) through `date`,
    /// each only once it ended `grace_ms` ago by the clock read just before building it.
    async fn build_missing(
        &self,
        date: NaiveDate,
        grace_ms: i64,
    ) -> Result<Vec<CheckpointRecord>, CheckpointError> {
        let storage = &self.0.storage;
        let first = match storage.checkpoints().latest_checkpoint().await? {
            Some(latest) => NaiveDate::parse_from_str(&latest.checkpoint_date, "%Y-%m-%d")
                .map_err(|_| {
                    StorageError::Corrupt(format!("checkpoint date {}", latest.checkpoint_date))
                })?
                .succ_opt()
                .unwrap_or(date),
            // The first checkpoint is of the first entry's day; an empty ledger has none.
            None => match storage.checkpoints().oldest_unindexed_entry_ms().await? {
                Some(ms) => date_of(ms),
                None => return Ok(Vec::new()),
            },
        };
        let mut built = Vec::new();
        let mut day = first;
        while day <= date && built.len() < DAYS_PER_RUN_MAX {
            // Read the clock again: `date` may have been decided before entries arrived.
            if day_end_ms(day).saturating_add(grace_ms) > self.0.clock.now_ms() {
                break;
            }
            let text = day.format("%Y-%m-%d").to_string();
            let record = storage
                .checkpoints()
                .build_checkpoint(&CheckpointSpec {
                    date: &text,
                    day_end_ms: day_end_ms(day),
                    origin: &self.0.settings.origin,
                    signer: &self.0.signer,
                    now: self.0.clock.now_ms(),
                })
                .await?;
            tracing::info!(checkpoint = %record.id, tree_size = record.tree_size, "built a ledger checkpoint");
            built.push(record);
            // Keep the lease while a long catch-up runs.
            if !self.take_lease().await? {
                return Err(CheckpointError::Busy);
            }
            day += TimeDelta::days(1);
        }
        Ok(built)
    }

    /// Builds whatever is due now: every day that ended at least the grace period ago.
    pub async fn build_due(&self) -> Result<Vec<CheckpointRecord>, CheckpointError> {
        let now = self.0.clock.now_ms();
        let Some(due) = date_of(now - self.0.settings.grace_ms.max(0)).pred_opt() else {
            return Ok(Vec::new());
        };
        if let Some(latest) = self.0.storage.checkpoints().latest_checkpoint().await?
            && latest.checkpoint_date >= due.format("%Y-%m-%d").to_string()
        {
            return Ok(Vec::new());
        }
        if !self.take_lease().await? {
            return Ok(Vec::new());
        }
        let built = self
            .build_missing(due, self.0.settings.grace_ms.max(0))
            .await;
        self.0.lease.release().await;
        built
    }

    /// The periodic job, when enabled.
    pub(crate) fn spawn_job(&self) -> Option<JoinHandle<()>> {
        if !self.0.settings.job_enabled {
            return None;
        }
        let me = self.clone();
        let period = self.0.settings.interval.max(Duration::from_millis(10));
        let supervisor = self.0.storage.supervisor().clone();
        Some(supervisor.spawn("checkpoints", "checkpoint job", move || {
            let me = me.clone();
            async move {
                let mut ticker = tokio::time::interval(period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    fail::fail_point!("checkpoint_job_panic");
                    if let Err(error) = me.build_due().await {
                        tracing::warn!(%error, "building ledger checkpoints failed; trying again next tick");
                    }
                }
            }
        }))
    }

    /// Gives the lease up (at shutdown), so another process takes over at once.
    pub(crate) async fn release(&self) {
        self.0.lease.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_ends_at_the_next_utc_midnight() {
        let day = NaiveDate::from_ymd_opt(2025, 1, 15).unwrap();
        assert_eq!(day_end_ms(day), 1_736_985_600_000);
        assert_eq!(date_of(day_end_ms(day) - 1), day);
        assert_eq!(date_of(day_end_ms(day)), day.succ_opt().unwrap());
    }
}
