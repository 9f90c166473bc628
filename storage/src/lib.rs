//! Storage for ampflow: sea-orm entities and the repositories the actors use. The same code runs
//! on SQLite (the embedded default) and PostgreSQL. Every state change that must not race with
//! another process is a conditional update, so several `ampflow` processes can share one
//! PostgreSQL database.

mod amount_mismatches;
mod api_keys;
mod audit;
mod auto_invest;
mod batch;
mod chain;
mod checkpoint_proofs;
mod checkpoints;
mod connect;
mod current_tx;
mod dashboard;
mod donations;
pub mod entities;
mod failures;
mod identity;
mod keys;
mod keyset;
mod kyc;
mod leases;
mod ledger;
mod memberships;
mod organisations;
mod partners;
mod sql;
pub use keys::StoredJwtKey;
pub use keyset::Keyset;
pub mod records;
pub mod testdb;
mod throttle;
mod trusted;
mod typed;

pub use amount_mismatches::*;
use ampflow_runtime::Supervisor;
pub use api_keys::*;
pub use audit::*;
pub use auto_invest::*;
pub use chain::*;
pub use checkpoint_proofs::ProofPage;
pub use checkpoints::*;
pub use connect::{DatabaseSettings, SqliteSync, sqlite_file};
pub use dashboard::*;
pub use donations::*;
pub use leases::*;
pub use ledger::*;
pub use memberships::*;
pub use organisations::*;
pub use partners::*;
pub use records::*;
use sea_orm::DatabaseConnection;
pub use throttle::FailureCount;
pub use trusted::TrustedContract;

/// A storage failure. The message names the step that failed; driver details stay in the
/// source error for the logs.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{step}: {source}")]
    Database {
        step: &'static str,
        #[source]
        source: sea_orm::DbErr,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Another writer got there first, or the request does not fit what is stored.
    #[error("{0}")]
    Conflict(String),
    #[error("{name} batch: {message}")]
    Batch { name: &'static str, message: String },
    /// The request could not be carried out now: its batch was abandoned (the writer
    /// panicked and is being restarted), storage is closing, or the database connection was
    /// lost. A retry may well succeed. (Only a connection lost during a commit leaves it
    /// unknown whether the write was made, as for any database client.)
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
}

impl StorageError {
    /// Whether a retry may well succeed: [`StorageError::Unavailable`], or a database error
    /// that is about the connection rather than the request (no connection could be had, it
    /// broke, or the server is shutting it down).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database { source, .. } => connection_lost(source),
            _ => false,
        }
    }
}

fn connection_lost(error: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed => true,
                // PostgreSQL's classes 08 (connection exception) and 57P (operator
                // intervention: admin_shutdown, crash_shutdown, cannot_connect_now).
                Sqlx::Database(db) => db
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
                _ => false,
            }
        }
        _ => false,
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

pub(crate) trait Context<T> {
    fn context(self, step: &'static str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, sea_orm::DbErr> {
    fn context(self, step: &'static str) -> Result<T> {
        self.map_err(|source| StorageError::Database { step, source })
    }
}

/// The handle the composition root holds: the pools, the supervisor of the write batchers, and
/// one repository per entity family. An actor clones the repositories it uses (cheap: they
/// share the pools and batchers), so what it can touch is in its fields.
///
/// Writes go through `db`, reads through `reader`. On PostgreSQL both are one pool. On SQLite,
/// which allows one writer at a time, `db` holds a single connection: writers then queue fairly
/// in the pool instead of colliding on the database lock, where SQLite's busy handler would
/// make them sleep and retry.
#[derive(Clone, Debug)]
pub struct Storage {
    db: DatabaseConnection,
    reader: DatabaseConnection,
    /// Supervises the batchers, and (adopted by the actor system) every other background task
    /// of the process.
    supervisor: Supervisor,
    identity: IdentityRepo,
    chain: ChainRepo,
    trusted: TrustedRepo,
    auto_invest: AutoInvestRepo,
    donations: DonationRepo,
    ledger: LedgerRepo,
    checkpoints: CheckpointRepo,
    dashboard: DashboardRepo,
    api_keys: ApiKeyRepo,
    partners: PartnerRepo,
    audit: AuditRepo,
    organisations: OrganisationRepo,
    leases: LeaseRepo,
    failures: FailureRepo,
    signing_keys: SigningKeyRepo,
}

/// Declares a repository: the two pools, and the batchers its writes go through.
macro_rules! repository {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            db: DatabaseConnection,
            reader: DatabaseConnection,
            $($(#[$fdoc])* $field: $ty,)*
        }
    };
}

repository!(
    /// Wallet users, login challenges, sessions and refresh tokens, and KYC (Veriff sessions).
    IdentityRepo {
        /// Group commit for the two writes every login makes.
        challenge_batch: batch::Batcher<ChallengeRecord, ()>,
        login_batch: batch::Batcher<(LoginWrite, ampflow_types::UnixMillis), LoginOutcome>,
    }
);
repository!(
    /// Transaction intents, and the faucet and whitelisting request queues batched into them.
    ChainRepo {}
);
repository!(
    /// The registry of trusted contracts per chain, and the gas spent per chain.
    TrustedRepo {}
);
repository!(
    /// Auto-invest tasks and the wallets' open-task counts.
    AutoInvestRepo {
        /// Group commit for auto-invest submits.
        submit_batch: batch::Batcher<AutoInvestSubmit, SubmitOutcome>,
    }
);
repository!(
    /// Donations, the Stripe events that move them, and amount mismatches.
    DonationRepo {
        /// Group commit for Stripe webhook events and the donation moves they make.
        event_batch: batch::Batcher<donations::EventJob, EventWrite>,
        /// Donation reads by id that arrive together, answered by one query.
        donation_reads: batch::Batcher<String, Option<DonationRecord>>,
    }
);
repository!(
    /// The organisations' hash-chained ledgers.
    LedgerRepo {
        /// Group commit for ledger appends across organisations.
        ledger_batch: batch::Batcher<ledger::LedgerJob, Result<Vec<LedgerEntryRecord>>>,
    }
);
repository!(
    /// Signed ledger checkpoints and their inclusion proofs.
    CheckpointRepo {}
);
repository!(
    /// Dashboard users, their sessions, and login throttling.
    DashboardRepo {}
);
/// API keys, access tokens and delegations. Its reads go to the writer pool too (it has no
/// reader), so a revocation or rotation just committed is seen by the next lookup.
#[derive(Clone, Debug)]
pub struct ApiKeyRepo {
    db: DatabaseConnection,
}
repository!(
    /// Partners and their keys.
    PartnerRepo {}
);
repository!(
    /// The audit log.
    AuditRepo {}
);
repository!(
    /// Organisations, their funds and their members.
    OrganisationRepo {}
);
repository!(
    /// Leases: which process runs a singleton background job.
    LeaseRepo {}
);
repository!(
    /// Entities whose actor gave up, for operators.
    FailureRepo {}
);
repository!(
    /// The JWT signing keys every process shares.
    SigningKeyRepo {}
);

/// Most logins or challenges written in one batch.
const WRITE_BATCH_MAX: usize = 64;
/// Most auto-invest submits written in one batch.
const SUBMIT_BATCH_MAX: usize = 128;
/// Most Stripe events written in one batch.
const EVENT_BATCH_MAX: usize = 128;
/// Most organisations' ledger appends written in one batch.
const LEDGER_BATCH_MAX: usize = 64;
/// Most donations read in one query.
const DONATION_READ_BATCH_MAX: usize = 128;

impl Storage {
    /// Wraps the two pools and starts the write batchers.
    fn assemble(db: DatabaseConnection, reader: DatabaseConnection, group_commit: bool) -> Self {
        let most = |n: usize| if group_commit { n } else { 1 };
        let supervisor = Supervisor::default();
        // Each batcher writes through the writer pool with the function of its family.
        macro_rules! batcher {
            ($name:literal, $most:expr, $write:path) => {{
                let writer = db.clone();
                batch::Batcher::spawn(&supervisor, $name, most($most), move |batch| {
                    let writer = writer.clone();
                    async move { $write(&writer, batch).await }
                })
            }};
        }
        let challenge_batch = batcher!("challenge", WRITE_BATCH_MAX, identity::write_challenges);
        let login_batch = batcher!("login", WRITE_BATCH_MAX, identity::write_logins);
        let submit_batch = batcher!(
            "auto_invest_submit",
            SUBMIT_BATCH_MAX,
            auto_invest::write_submits
        );
        let event_batch = batcher!(
            "stripe_event",
            EVENT_BATCH_MAX,
            donations::write_stripe_events
        );
        let ledger_batch = batcher!("ledger", LEDGER_BATCH_MAX, ledger::write_ledger_groups);
        let donation_reads = batcher!(
            "donation_read",
            DONATION_READ_BATCH_MAX,
            donations::read_donations
        );
        // Each repository shares the pools, and takes the batchers of its own writes.
        macro_rules! repo {
            ($name:ident { $($field:ident),* }) => {
                $name { db: db.clone(), reader: reader.clone(), $($field),* }
            };
        }
        Self {
            identity: repo!(IdentityRepo {
                challenge_batch,
                login_batch
            }),
            chain: repo!(ChainRepo {}),
            trusted: repo!(TrustedRepo {}),
            auto_invest: repo!(AutoInvestRepo { submit_batch }),
            donations: repo!(DonationRepo {
                event_batch,
                donation_reads
            }),
            ledger: repo!(LedgerRepo { ledger_batch }),
            checkpoints: repo!(CheckpointRepo {}),
            dashboard: repo!(DashboardRepo {}),
            api_keys: ApiKeyRepo { db: db.clone() },
            partners: repo!(PartnerRepo {}),
            audit: repo!(AuditRepo {}),
            organisations: repo!(OrganisationRepo {}),
            leases: repo!(LeaseRepo {}),
            failures: repo!(FailureRepo {}),
            signing_keys: repo!(SigningKeyRepo {}),
            db,
            reader,
            supervisor,
        }
    }

    pub fn identity(&self) -> &IdentityRepo {
        &self.identity
    }

    pub fn chain(&self) -> &ChainRepo {
        &self.chain
    }

    pub fn trusted(&self) -> &TrustedRepo {
        &self.trusted
    }

    pub fn auto_invest(&self) -> &AutoInvestRepo {
        &self.auto_invest
    }

    pub fn donations(&self) -> &DonationRepo {
        &self.donations
    }

    pub fn ledger(&self) -> &LedgerRepo {
        &self.ledger
    }

    pub fn checkpoints(&self) -> &CheckpointRepo {
        &self.checkpoints
    }

    pub fn dashboard(&self) -> &DashboardRepo {
        &self.dashboard
    }

    pub fn api_keys(&self) -> &ApiKeyRepo {
        &self.api_keys
    }

    pub fn partners(&self) -> &PartnerRepo {
        &self.partners
    }

    pub fn audit(&self) -> &AuditRepo {
        &self.audit
    }

    pub fn organisations(&self) -> &OrganisationRepo {
        &self.organisations
    }

    pub fn leases(&self) -> &LeaseRepo {
        &self.leases
    }

    pub fn failures(&self) -> &FailureRepo {
        &self.failures
    }

    pub fn signing_keys(&self) -> &SigningKeyRepo {
        &self.signing_keys
    }

    /// The supervisor of this process's background tasks (see [`ampflow_runtime`]).
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<()> {
        use ampflow_migrations::MigratorTrait;
        ampflow_migrations::Migrator::up(&self.db, None)
            .await
            .context("apply migrations")
    }

    /// The migrations that are not applied yet, by name.
    pub async fn pending_migrations(&self) -> Result<Vec<String>> {
        use ampflow_migrations::MigratorTrait;
        let pending = ampflow_migrations::Migrator::get_pending_migrations(&self.db)
            .await
            .context("list pending migrations")?;
        Ok(pending.iter().map(|m| m.name().to_string()).collect())
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        self.reader.ping().await.context("ping database")
    }

    pub async fn close(self) -> Result<()> {
        self.db.close().await.context("close database")?;
        self.reader.close().await.context("close database")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

    use super::StorageError;

    fn database(source: DbErr) -> StorageError {
        StorageError::Database {
            step: "test",
            source,
        }
    }

    #[test]
    fn connection_failures_are_unavailable_and_request_failures_are_not() {
        let exec = |e: Sqlx| DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)));
        for unavailable in [
            StorageError::Unavailable("the batch was abandoned".into()),
            database(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
            database(exec(Sqlx::PoolTimedOut)),
            database(exec(Sqlx::Io(std::io::ErrorKind::ConnectionReset.into()))),
            database(DbErr::Query(RuntimeErr::SqlxError(Arc::new(
                Sqlx::WorkerCrashed,
            )))),
        ] {
            assert!(unavailable.is_unavailable(), "{unavailable}");
        }
        for other in [
            StorageError::Conflict("taken".into()),
            StorageError::Corrupt("bad row".into()),
            StorageError::Batch {
                name: "login",
                message: "constraint".into(),
            },
            database(DbErr::Custom("no".into())),
            database(exec(Sqlx::RowNotFound)),
        ] {
            assert!(!other.is_unavailable(), "{other}");
        }
    }
}
