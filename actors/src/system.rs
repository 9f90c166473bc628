//! The supervision tree: a root supervisor with one supervisor per entity kind under it, plus
//! the background chores (retiring idle actors, deleting expired identity rows).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ampflow_runtime::{RestartPolicy, Supervisor};
use ampflow_storage::Storage;
use ampflow_types::Clock;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use secrecy::SecretString;
use tokio::task::JoinHandle;

use crate::accounts::{AccountSettings, Accounts};
use crate::api_keys::{ApiKeySettings, ApiKeys};
use crate::audit::Audit;
use crate::auto_invest::{AutoInvest, AutoInvestActor, Executors};
use crate::batcher::Batchers;
use crate::checkpoints::{CheckpointError, CheckpointSettings, Checkpoints};
use crate::donation::{DonationActor, Donations};
use crate::faucet::{Faucet, FaucetRequestActor};
use crate::identity::Identity;
use crate::kyc::Kyc;
use crate::ledger::Ledger;
use crate::organisations::Organisations;
use crate::partners::Partners;
use crate::registry::EntityActor;
use crate::registry::{KindSupervisor, Registry, RuntimeSettings};
use crate::stripe::{StripeClient, StripeSettings};
use crate::tokens::{TokenError, TokenService};
use crate::trusted::TrustedContracts;
use crate::tx_sender::TxSenders;
use crate::veriff::{VeriffClient, VeriffSettings};
use crate::wallet::{IdentitySettings, WalletActor, WalletDeps};
use crate::whitelist::Whitelisting;

/// How often each registry re-reads which entities are marked failed (by any process).
const FAILURES_REFRESH_PERIOD: Duration = Duration::from_secs(10);
/// Auto-invest actors retire after this long without a request.
const AUTO_INVEST_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often expired challenges and sessions are deleted.
const JANITOR_PERIOD: Duration = Duration::from_secs(600);
/// How often donations left without a PaymentIntent are looked for.
const ORPHAN_SWEEP_PERIOD: Duration = Duration::from_secs(60);
/// Rows are kept this long after they expire, for investigation.
const EXPIRED_ROW_GRACE_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("token keys: {0}")]
    Tokens(#[from] TokenError),
    #[error("spawning {0}: {1}")]
    Spawn(String, String),
    #[error("resuming open chain work: {0}")]
    Resume(#[from] ampflow_storage::StorageError),
    #[error("registering this node's run: {0}")]
    Node(ampflow_storage::StorageError),
    #[error("Veriff: {0}")]
    Veriff(String),
    #[error("Stripe: {0}")]
    Stripe(String),
    #[error("ledger checkpoints: {0}")]
    Checkpoints(#[from] CheckpointError),
    #[error("accounts: {0}")]
    Accounts(String),
}

/// Everything the actor system needs to start.
pub struct SystemConfig {
    pub storage: Storage,
    pub clock: Arc<dyn Clock>,
    pub runtime: RuntimeSettings,
    /// Ledger entries an organisation's writer hands to storage as one group at most; 1
    /// makes each entry a group of its own (with `group_commit` off in storage: the
    /// benchmarks' naive baseline). `crate::ledger::BATCH_MAX_DEFAULT` by default.
    pub ledger_batch_max: usize,
    pub identity: IdentitySettings,
    pub jwt_private_key_pem: Option<SecretString>,
    pub chains: ampflow_chain::Chains,
    /// The transaction signer of each chain that sends transactions.
    pub signers:
        std::collections::HashMap<ampflow_types::ChainId, alloy::signers::local::PrivateKeySigner>,
    /// `None` when Veriff is not configured.
    pub veriff: Option<VeriffSettings>,
    /// `None` when Stripe is not configured: donations are then refused.
    pub stripe: Option<StripeSettings>,
    pub checkpoints: CheckpointSettings,
    pub accounts: AccountSettings,
    pub api_keys: ApiKeySettings,
    /// This node's stable id (`node.id`, or the one kept beside its data). Its leases are
    /// taken back at once when it starts again; `None`: every lease waits for its expiry.
    /// Two live processes must never share one.
    pub node_id: Option<String>,
}

pub struct ActorSystem {
    root: ActorRef<RootMsg>,
    wallets: Arc<Registry<WalletActor>>,
    faucet_requests: Arc<Registry<FaucetRequestActor>>,
    auto_invest_tasks: Arc<Registry<AutoInvestActor>>,
    donation_actors: Arc<Registry<DonationActor>>,
    donations: Donations,
    executors: Arc<Executors>,
    auto_invest: AutoInvest,
    ledger: Arc<Ledger>,
    checkpoints: Checkpoints,
    records: RecordFacades,
    storage: Storage,
    identity: Identity,
    faucet: Faucet,
    senders: Arc<TxSenders>,
    kyc: Kyc,
    whitelisting: Whitelisting,
    trusted: Arc<TrustedContracts>,
    stripe: Option<Arc<StripeClient>>,
    clock: Arc<dyn Clock>,
    chores: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    supervisor: Supervisor,
}

impl ActorSystem {
    /// Starts every part in dependency order. (Long because it is the composition root: it
    /// only wires each part to the ones it needs, in the order they must start; the parts with
    /// logic of their own are `wallet_deps`, `Kinds::start_all`, `chain_work`, `spawn_chores`
    /// and `RecordFacades::new`.)
    pub async fn start(mut config: SystemConfig) -> Result<Self, StartError> {
        // Background tasks get the entity actors' restart budget.
        config.storage.supervisor().set_policy(RestartPolicy {
            restarts_max: config.runtime.restarts_max,
            window: config.runtime.restart_window,
            ..RestartPolicy::default()
        });
        let deps = wallet_deps(&mut config).await?;
        // This run of the node, as the holder of every lease it takes.
        let holder = crate::node::start_run(
            &config.storage,
            config.clock.as_ref(),
            config.node_id.as_deref(),
        )
        .await
        .map_err(StartError::Node)?;
        // Before anything is spawned: a bad key or a renamed origin stops the start cleanly.
        let checkpoints = Checkpoints::load(
            config.storage.clone(),
            config.clock.clone(),
            config.checkpoints.clone(),
            holder.clone(),
        )
        .await?;
        let stripe = match config.stripe.take() {
            Some(settings) => Some(Arc::new(
                StripeClient::new(settings).map_err(StartError::Stripe)?,
            )),
            None => None,
        };
        let (root, _) = Actor::spawn(None, RootSupervisor, ())
            .await
            .map_err(|e| StartError::Spawn("root supervisor".into(), e.to_string()))?;
        let kinds = Kinds {
            storage: config.storage.clone(),
            clock: config.clock.clone(),
            root: root.get_cell(),
        };
        let Registries {
            wallets,
            faucet_requests,
            auto_invest_tasks,
            donation_actors,
        } = kinds.start_all(&config, &deps).await?;
        let ledger = Arc::new(Ledger::new(
            config.storage.clone(),
            config.clock.clone(),
            config.ledger_batch_max,
        ));
        let donations = Donations::new(
            config.storage.clone(),
            config.clock.clone(),
            stripe.clone(),
            donation_actors.clone(),
            ledger.clone(),
        );

        let ChainWork {
            senders,
            trusted,
            faucet_batchers,
            whitelist_batchers,
            executors,
        } = chain_work(&mut config, holder).await?;
        let faucet = Faucet::new(
            config.chains.clone(),
            faucet_requests.clone(),
            faucet_batchers,
        );

        let supervisor = config.storage.supervisor();
        let chores = spawn_chores(
            &config,
            &Registries {
                wallets: wallets.clone(),
                faucet_requests: faucet_requests.clone(),
                auto_invest_tasks: auto_invest_tasks.clone(),
                donation_actors: donation_actors.clone(),
            },
            &checkpoints,
            &donations,
        );
        let whitelisting = Whitelisting::new(
            config.chains.clone(),
            config.storage.chain().clone(),
            config.clock.clone(),
            wallets.clone(),
            senders.clone(),
            trusted.clone(),
            whitelist_batchers,
        );
        let auto_invest = AutoInvest::new(
            config.chains.clone(),
            config.storage.auto_invest().clone(),
            senders.clone(),
            trusted.clone(),
            auto_invest_tasks.clone(),
            executors.clone(),
        );
        let kyc = Kyc::new(wallets.clone(), deps.clone());
        let identity = Identity::new(wallets.clone(), deps, config.chains.clone());
        let records = RecordFacades::new(&config)?;
        Ok(Self {
            root,
            wallets,
            faucet_requests,
            auto_invest_tasks,
            donation_actors,
            donations,
            executors,
            auto_invest,
            ledger,
            checkpoints,
            records,
            storage: config.storage.clone(),
            identity,
            faucet,
            senders,
            kyc,
            whitelisting,
            trusted,
            stripe,
            clock: config.clock.clone(),
            chores: parking_lot::Mutex::new(chores),
            supervisor: supervisor.clone(),
        })
    }

    /// The clock every actor reads (injected in tests).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn faucet(&self) -> &Faucet {
        &self.faucet
    }

    /// The transaction senders (tests wake them after writing intents directly).
    pub fn tx_senders(&self) -> &Arc<TxSenders> {
        &self.senders
    }

    /// Veriff sessions, Veriff's webhooks and the KYC status whitelisting checks.
    pub fn kyc(&self) -> &Kyc {
        &self.kyc
    }

    /// The organisations' public ledgers.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The ledger's daily signed checkpoints.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// Auto-invest tasks and their execution.
    pub fn auto_invest(&self) -> &AutoInvest {
        &self.auto_invest
    }

    /// On-chain whitelisting of KYC'd wallets on issuers.
    pub fn whitelisting(&self) -> &Whitelisting {
        &self.whitelisting
    }

    /// The registry of trusted campaigns and issuers (the only contracts the platform spends
    /// gas on).
    pub fn trusted(&self) -> &Arc<TrustedContracts> {
        &self.trusted
    }

    /// Organisations and their funds.
    pub fn organisations(&self) -> &Organisations {
        &self.records.organisations
    }

    /// Dashboard users' passwords and the login throttle.
    pub fn accounts(&self) -> &Accounts {
        &self.records.accounts
    }

    /// Whether the database answers (readiness).
    pub async fn ping_storage(&self) -> Result<(), ampflow_storage::StorageError> {
        self.storage.ping().await
    }

    /// Partner keys and the widget's ads.
    pub fn partners(&self) -> &Partners {
        &self.records.partners
    }

    /// Organisations' API keys.
    pub fn api_keys(&self) -> &ApiKeys {
        &self.records.api_keys
    }

    /// The audit log's reading side.
    pub fn audit(&self) -> &Audit {
        &self.records.audit
    }

    /// Donations through Stripe.
    pub fn donations(&self) -> &Donations {
        &self.donations
    }

    /// The Stripe client, when Stripe is configured.
    pub fn stripe(&self) -> Option<&Arc<StripeClient>> {
        self.stripe.as_ref()
    }

    /// The wallet registry (tests use it to find and kill actors).
    pub fn wallets(&self) -> &Arc<Registry<WalletActor>> {
        &self.wallets
    }

    /// The supervisor of the background tasks (batchers, writers, senders, executors, jobs).
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// True while the supervision tree runs.
    pub fn is_running(&self) -> bool {
        matches!(self.root.get_status(), ractor::ActorStatus::Running)
    }

    /// Stops every actor (each finishes the message it is handling) and the chores.
    pub async fn shutdown(&self, wait: Duration) {
        for chore in self.chores.lock().drain(..) {
            chore.abort();
        }
        self.ledger.shutdown();
        self.checkpoints.release().await;
        self.executors.shutdown().await;
        self.senders.shutdown().await;
        self.wallets.shutdown(wait).await;
        self.faucet_requests.shutdown(wait).await;
        self.auto_invest_tasks.shutdown(wait).await;
        self.donation_actors.shutdown(wait).await;
        self.root
            .stop_children_and_wait(Some("shutdown".into()), Some(wait))
            .await;
        let _ = self
            .root
            .stop_and_wait(Some("shutdown".into()), Some(wait))
            .await;
    }
}

/// The wallet actors' shared dependencies: the JWT signing key (configured, stored, or
/// generated and stored), Veriff's client, the session gate.
async fn wallet_deps(config: &mut SystemConfig) -> Result<Arc<WalletDeps>, StartError> {
    let tokens = TokenService::load_or_create(
        &config.storage,
        config.jwt_private_key_pem.as_ref(),
        config.clock.as_ref(),
        config.identity.access_token_ttl_ms,
    )
    .await?;
    let veriff = match config.veriff.take() {
        Some(settings) => Some(Arc::new(
            VeriffClient::new(settings).map_err(StartError::Veriff)?,
        )),
        None => None,
    };
    Ok(Arc::new(WalletDeps {
        storage: config.storage.clone(),
        tokens: Arc::new(tokens),
        clock: config.clock.clone(),
        settings: config.identity.clone(),
        veriff,
        sessions: Arc::new(crate::sessions::SessionGate::new(
            config.storage.identity().clone(),
            config.identity.state_recheck_ms,
        )),
    }))
}

/// What sends and settles on chains: the transaction senders, the trusted-contract registry,
/// the faucet and whitelisting batchers and the auto-invest executors, each resumed from
/// storage.
struct ChainWork {
    senders: Arc<TxSenders>,
    trusted: Arc<TrustedContracts>,
    faucet_batchers: Arc<Batchers<crate::faucet::FaucetSpec>>,
    whitelist_batchers: Arc<Batchers<crate::whitelist::WhitelistSpec>>,
    executors: Arc<Executors>,
}

async fn chain_work(
    config: &mut SystemConfig,
    holder: ampflow_storage::LeaseHolder,
) -> Result<ChainWork, StartError> {
    let (storage, clock, chains) = (&config.storage, &config.clock, &config.chains);
    let senders = TxSenders::new(
        storage.clone(),
        clock.clone(),
        chains.clone(),
        std::mem::take(&mut config.signers),
        holder.clone(),
    );
    let trusted = TrustedContracts::new(storage.trusted().clone(), clock.clone(), chains.clone());
    let faucet_batchers = Batchers::new(
        Faucet::spec(chains.clone()),
        storage.clone(),
        clock.clone(),
        senders.clone(),
    );
    let whitelist_batchers = Batchers::new(
        Whitelisting::spec(chains.clone(), trusted.clone()),
        storage.clone(),
        clock.clone(),
        senders.clone(),
    );
    let executors = Executors::start(
        storage.clone(),
        clock.clone(),
        chains.clone(),
        senders.clone(),
        trusted.clone(),
        holder,
        chains.ids(),
    );
    senders.resume().await?;
    faucet_batchers.resume().await?;
    whitelist_batchers.resume().await?;
    Ok(ChainWork {
        senders,
        trusted,
        faucet_batchers,
        whitelist_batchers,
        executors,
    })
}

/// Starts each kind of entity actor the same way: its registry (with the failed entities
/// read), its supervisor under the root.
struct Kinds {
    storage: Storage,
    clock: Arc<dyn Clock>,
    root: ractor::ActorCell,
}

/// The façades over records without a lifecycle of their own: they call storage directly.
struct RecordFacades {
    organisations: Organisations,
    audit: Audit,
    accounts: Accounts,
    api_keys: ApiKeys,
    partners: Partners,
}

impl RecordFacades {
    fn new(config: &SystemConfig) -> Result<Self, StartError> {
        let (storage, clock) = (&config.storage, &config.clock);
        Ok(Self {
            organisations: Organisations::new(storage.clone(), clock.clone()),
            audit: Audit::new(storage.audit().clone()),
            accounts: Accounts::new(storage.clone(), clock.clone(), config.accounts.clone())
                .map_err(StartError::Accounts)?,
            api_keys: ApiKeys::new(storage.clone(), clock.clone(), config.api_keys.clone()),
            partners: Partners::new(storage.clone(), clock.clone()),
        })
    }
}

/// The registry of each kind of entity actor.
struct Registries {
    wallets: Arc<Registry<WalletActor>>,
    faucet_requests: Arc<Registry<FaucetRequestActor>>,
    auto_invest_tasks: Arc<Registry<AutoInvestActor>>,
    donation_actors: Arc<Registry<DonationActor>>,
}

/// The sweepers of every kind, the janitor, the checkpoint job and, when donations are taken,
/// the orphaned-donation sweeper.
fn spawn_chores(
    config: &SystemConfig,
    kinds: &Registries,
    checkpoints: &Checkpoints,
    donations: &Donations,
) -> Vec<JoinHandle<()>> {
    let supervisor = config.storage.supervisor();
    let mut chores = vec![
        spawn_sweeper(supervisor, kinds.wallets.clone()),
        spawn_sweeper(supervisor, kinds.faucet_requests.clone()),
        spawn_sweeper(supervisor, kinds.auto_invest_tasks.clone()),
        spawn_sweeper(supervisor, kinds.donation_actors.clone()),
        spawn_janitor(config.storage.clone(), config.clock.clone()),
    ];
    chores.extend(checkpoints.spawn_job());
    if donations.takes_donations() {
        chores.push(spawn_orphaned_donation_sweeper(
            supervisor,
            donations.clone(),
        ));
    }
    chores
}

impl Kinds {
    /// Every kind of entity actor, each under its supervisor.
    async fn start_all(
        &self,
        config: &SystemConfig,
        deps: &Arc<WalletDeps>,
    ) -> Result<Registries, StartError> {
        let (storage, clock) = (&config.storage, &config.clock);
        Ok(Registries {
            wallets: self
                .start(WalletActor::new(deps.clone()), config.runtime.clone())
                .await?,
            faucet_requests: self
                .start(
                    FaucetRequestActor::new(
                        storage.chain().clone(),
                        clock.clone(),
                        config.chains.clone(),
                    ),
                    config.runtime.clone(),
                )
                .await?,
            auto_invest_tasks: self
                .start(
                    AutoInvestActor::new(
                        storage.auto_invest().clone(),
                        clock.clone(),
                        config.chains.clone(),
                    ),
                    // A triple's actor holds no state of its own (storage has the task), so it
                    // retires soon after its last request: a burst of new tasks must not leave
                    // one actor per task behind (100,000 would cost about 2 GB).
                    RuntimeSettings {
                        idle_timeout: config.runtime.idle_timeout.min(AUTO_INVEST_IDLE_TIMEOUT),
                        ..config.runtime.clone()
                    },
                )
                .await?,
            donation_actors: self
                .start(
                    DonationActor::new(storage.clone(), clock.clone()),
                    config.runtime.clone(),
                )
                .await?,
        })
    }

    async fn start<A: EntityActor>(
        &self,
        prototype: A,
        runtime: RuntimeSettings,
    ) -> Result<Arc<Registry<A>>, StartError> {
        let registry = Registry::new(prototype, self.storage.clone(), self.clock.clone(), runtime);
        registry.refresh_failures().await;
        Actor::spawn_linked(
            None,
            KindSupervisor::<A>::new(),
            registry.clone(),
            self.root.clone(),
        )
        .await
        .map_err(|e| StartError::Spawn(format!("{} supervisor", A::KIND), e.to_string()))?;
        Ok(registry)
    }
}

fn spawn_sweeper<A: EntityActor>(
    supervisor: &Supervisor,
    wallets: Arc<Registry<A>>,
) -> JoinHandle<()> {
    let period = (wallets.settings().idle_timeout / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(30));
    supervisor.spawn("sweeper", format!("{} sweeper", A::KIND), move || {
        let wallets = wallets.clone();
        async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failures_read = Instant::now();
            loop {
                ticker.tick().await;
                fail::fail_point!("sweeper_panic");
                if failures_read.elapsed() >= FAILURES_REFRESH_PERIOD {
                    wallets.refresh_failures().await;
                    failures_read = Instant::now();
                }
                let retired = wallets.retire_idle();
                if retired > 0 {
                    tracing::debug!(kind = A::KIND, retired, "retired idle actors");
                }
            }
        }
    })
}

/// Every [`ORPHAN_SWEEP_PERIOD`], donations a crash left without their PaymentIntent get
/// it (same idempotency key), or are failed once too old.
fn spawn_orphaned_donation_sweeper(
    supervisor: &Supervisor,
    donations: Donations,
) -> JoinHandle<()> {
    supervisor.spawn("orphan_sweeper", "orphaned donation sweeper", move || {
        let donations = donations.clone();
        async move {
            let mut ticker = tokio::time::interval(ORPHAN_SWEEP_PERIOD);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                fail::fail_point!("orphan_sweeper_panic");
                match donations.resume_orphaned().await {
                    Ok(sweep) if sweep == Default::default() => {}
                    Ok(sweep) => {
                        tracing::info!(?sweep, "swept donations left without a PaymentIntent")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not sweep donations left without a PaymentIntent")
                    }
                }
            }
        }
    })
}

fn spawn_janitor(storage: Storage, clock: Arc<dyn Clock>) -> JoinHandle<()> {
    let supervisor = storage.supervisor().clone();
    supervisor.spawn("janitor", "janitor", move || {
        let (storage, clock) = (storage.clone(), clock.clone());
        async move {
            let mut ticker = tokio::time::interval(JANITOR_PERIOD);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                fail::fail_point!("janitor_panic");
                let before = clock.now_ms() - EXPIRED_ROW_GRACE_MS;
                match storage
                    .identity()
                    .delete_expired_identity_rows(before)
                    .await
                {
                    Ok(0) => {}
                    Ok(rows) => tracing::info!(rows, "deleted expired challenges and sessions"),
                    Err(error) => tracing::warn!(%error, "could not delete expired identity rows"),
                }
            }
        }
    })
}

/// The root of the tree. Kind supervisors only forward events, so one failing is a bug: it is
/// logged loudly and `/ready` reports the system down.
struct RootSupervisor;

enum RootMsg {}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            tracing::error!(supervisor = %cell.get_id(), %error, "a kind supervisor failed; stopping the actor system");
            myself.stop(Some(format!("kind supervisor failed: {error}")));
        }
        Ok(())
    }
}
