//! The `ampflow` binary: `serve`, `migrate` and operator subcommands.

use ampflow_actors::EntityFailures;
use ampflow_actors::database::{DatabaseSettings, LeaseHolder, Storage};
use std::path::PathBuf;

use ampflow_http::config::Settings;
use ampflow_http::{StartOptions, app, telemetry};
use anyhow::Context;
use clap::{Parser, Subcommand};

mod chain_deploy;
mod chain_trust;

#[derive(Parser)]
#[command(
    name = "ampflow",
    version,
    about = "Backend for impact and crowdfunding platforms"
)]
struct Cli {
    /// TOML configuration file (overrides built-in defaults; environment variables override it).
    #[arg(long, global = true, env = "AMPFLOW_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations and serve the API until SIGTERM or SIGINT.
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Inspect and reset entities the supervisors gave up on.
    #[command(subcommand)]
    Entities(EntitiesCommand),
    /// Print the OpenAPI document and exit.
    Openapi,
    /// Work with the configured chains.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Create organisations and their funds.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Work with public ledgers.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Partner API keys and the ads served to partners' sites.
    #[command(subcommand)]
    Partner(PartnerCommand),
    /// Dashboard users.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a dashboard user and print its id. The password is read from the environment
    /// variable AMPFLOW_USER_PASSWORD, else from the first line of stdin (never from the
    /// command line).
    Create {
        #[arg(long)]
        email: String,
        /// The name shown in the dashboard.
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum PartnerCommand {
    /// Create a signing key for a partner acting for an organisation; prints the access key id
    /// and the secret (shown once).
    Create {
        /// The organisation the partner's donations go to (`org_…`).
        #[arg(long)]
        org: String,
        /// An address or CIDR requests may come from (repeat it); none = any address.
        #[arg(long = "allow-ip")]
        allow_ip: Vec<String>,
        /// The publisher's name, shown as `publisherName` on its donations.
        #[arg(long)]
        name: Option<String>,
    },
    /// Revoke a key: its requests then answer 403.
    Revoke {
        /// The access key id.
        id: String,
    },
    /// Add an ad (a JSON object in the seed's shape, read from a file) for a publisher
    /// campaign, or a default ad without --publisher-campaign; prints its guid.
    AddAd {
        #[arg(long)]
        publisher_campaign: Option<String>,
        /// The ad's JSON file.
        ad: PathBuf,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Recompute every hash of a ledger export (`GET /public/organisations/{id}/ledger/export`)
    /// and check every link; with --checkpoint, also the checkpoint's signature and the
    /// inclusion proof of every entry it lists. Prints "ok" with the entry count, or the first
    /// failure (and exits with status 1).
    Verify {
        /// The export, as downloaded.
        export: PathBuf,
        /// `{"checkpoint": …, "proofs": [ … ]}`, as `GET
        /// /public/organisations/{id}/ledger/proofs?checkpoint={id}` answers it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The verifier key to trust (`<name>+<hex id>+<base64>`, from
        /// `GET /public/checkpoints/key`); default: the one the checkpoint file names.
        #[arg(long, requires = "checkpoint")]
        key: Option<String>,
    },
    /// Build the daily checkpoints up to a day now (normally a periodic job does it after the
    /// day ends plus a grace period). Prints each checkpoint built.
    Checkpoint {
        /// The UTC day, YYYY-MM-DD; it must be over. Default: yesterday.
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organisation and print its id.
    Create {
        #[arg(long)]
        name: String,
        /// ISO 3166-1 alpha-2 code, e.g. DE.
        #[arg(long)]
        country: String,
        /// pending, verified or suspended.
        #[arg(long, default_value = "verified")]
        status: String,
        #[arg(long)]
        description: Option<String>,
        /// An https URL.
        #[arg(long)]
        website: Option<String>,
        /// An https URL.
        #[arg(long)]
        logo_url: Option<String>,
    },
    /// Make a dashboard user a member (or admin) of an organisation, or change their role.
    AddMember {
        /// The organisation's id (`org_…`).
        #[arg(long)]
        organisation: String,
        /// The user's email.
        #[arg(long)]
        email: String,
        /// member or admin.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Remove a dashboard user from an organisation.
    RemoveMember {
        #[arg(long)]
        organisation: String,
        #[arg(long)]
        email: String,
    },
    /// Add a fund to an organisation and print its id.
    AddFund {
        /// The organisation's id (`org_…`).
        #[arg(long)]
        organisation: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
}

#[derive(Subcommand)]
enum ChainCommand {
    /// The campaigns auto-invest may invest in: the registry of trusted campaigns.
    #[command(subcommand)]
    Campaign(TrustCommand),
    /// The issuers whitelisting may approve wallets on: the registry of trusted issuers.
    #[command(subcommand)]
    Issuer(TrustCommand),
    /// Deploy the platform's contracts to a development node and write their addresses into
    /// the configuration file (needs --config). The deployer, who owns the contracts, is the
    /// key named by the chain's `operator_key_env`, or else by its `signer_key_env`; an
    /// operator deploying for another signer allows that signer to send the platform's
    /// transactions. The sample Campaign and the Issuer are registered as trusted.
    Deploy {
        /// The chain id, as configured under [[chains]].
        #[arg(long)]
        chain: ampflow_types::ChainId,
        /// What the faucet pays per request, in wei (default 0.1 ETH).
        #[arg(long, default_value = "100000000000000000")]
        faucet_reward_wei: String,
        /// The faucet pays only wallets with less than this, in wei (default 0.05 ETH).
        #[arg(long, default_value = "50000000000000000")]
        faucet_threshold_wei: String,
        /// Sent to the faucet after deployment, in wei (default 100 ETH).
        #[arg(long, default_value = "100000000000000000000")]
        faucet_funding_wei: String,
    },
}

/// A change to, or a look at, one kind of the registry of trusted contracts.
#[derive(Subcommand)]
enum TrustCommand {
    /// Trust a contract: register it on chain (signed with the chain's `operator_key_env` key,
    /// the contract's owner; without one, the command prints the call the owner must make)
    /// and record it in the database.
    Add {
        /// The chain id, as configured under [[chains]].
        #[arg(long)]
        chain: ampflow_types::ChainId,
        /// The contract's address.
        address: String,
    },
    /// Stop trusting a contract: in the database first (nothing more is queued or sent for
    /// it), then on chain as for `add`.
    Remove {
        #[arg(long)]
        chain: ampflow_types::ChainId,
        address: String,
    },
    /// List the trusted contracts with their on-chain registration.
    List {
        #[arg(long)]
        chain: ampflow_types::ChainId,
    },
}

#[derive(Subcommand)]
enum EntitiesCommand {
    /// List entities marked failed, newest first.
    Failed {
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Let a failed entity start again, e.g. `ampflow entities clear wallet 0xabc…`.
    Clear { kind: String, key: String },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Crash tests' fail points, from FAILPOINTS; does nothing unless compiled in (test builds).
    let _fail_points = fail::FailScenario::setup();
    let cli = Cli::parse();
    let settings =
        Settings::load(cli.config.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    telemetry::init(settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    runtime.block_on(run(cli.command, settings, cli.config))
}

async fn run(command: Command, settings: Settings, config: Option<PathBuf>) -> anyhow::Result<()> {
    match command {
        Command::Chain(command) => chain(command, &settings, config).await,
        Command::Org(command) => org(command, &settings).await,
        Command::User(command) => user(command, &settings).await,
        Command::Ledger(LedgerCommand::Verify {
            export,
            checkpoint,
            key,
        }) => verify_ledger(&export, checkpoint.as_deref(), key.as_deref()),
        Command::Ledger(LedgerCommand::Checkpoint { date }) => {
            build_checkpoints(&settings, date.as_deref()).await
        }
        Command::Partner(command) => partner(command, &settings).await,
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::Entities(command) => entities(command, &settings).await,
        Command::Openapi => {
            println!("{}", app::openapi_json()?);
            Ok(())
        }
    }
}

async fn chain(
    command: ChainCommand,
    settings: &Settings,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    match command {
        ChainCommand::Campaign(command) => {
            trust(settings, ampflow_types::TrustedKind::Campaign, command).await
        }
        ChainCommand::Issuer(command) => {
            trust(settings, ampflow_types::TrustedKind::Issuer, command).await
        }
        ChainCommand::Deploy {
            chain,
            faucet_reward_wei,
            faucet_threshold_wei,
            faucet_funding_wei,
        } => {
            let config = config.context(
                "chain deploy writes the addresses into the configuration file: pass --config",
            )?;
            let wei = |text: &str, name: &str| {
                text.parse::<alloy_primitives::U256>()
                    .with_context(|| format!("{name} must be a whole number of wei"))
            };
            let funding = ampflow_chain::deploy::FaucetFunding {
                reward_wei: wei(&faucet_reward_wei, "--faucet-reward-wei")?,
                balance_threshold_wei: wei(&faucet_threshold_wei, "--faucet-threshold-wei")?,
                initial_balance_wei: wei(&faucet_funding_wei, "--faucet-funding-wei")?,
            };
            chain_deploy::run(settings, &config, chain, funding).await
        }
    }
}

/// The organisations façade on the configured database, for the `org` commands.
async fn organisations(settings: &Settings) -> anyhow::Result<ampflow_actors::Organisations> {
    let storage = app::open_storage(settings).await?;
    Ok(ampflow_actors::Organisations::new(
        storage,
        std::sync::Arc::new(ampflow_types::SystemClock),
    ))
}

async fn org(command: OrgCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create {
            name,
            country,
            status,
            description,
            website,
            logo_url,
        } => {
            let new = ampflow_actors::organisations::NewOrganisation {
                name,
                country,
                status,
                description,
                website,
                logo_url,
            };
            let org = organisations(settings).await?.create(&new).await?;
            println!("{}", org.id);
            Ok(())
        }
        OrgCommand::AddFund {
            organisation,
            name,
            description,
        } => {
            let fund = organisations(settings)
                .await?
                .add_fund(&organisation, &name, description.as_deref())
                .await
                .with_context(|| format!("add a fund to {organisation}"))?;
            println!("{}", fund.id);
            Ok(())
        }
        OrgCommand::AddMember {
            organisation,
            email,
            role,
        } => add_member(settings, &organisation, &email, &role).await,
        OrgCommand::RemoveMember {
            organisation,
            email,
        } => {
            organisations(settings)
                .await?
                .remove_member(&organisation, &email)
                .await?;
            println!("removed {email} from {organisation}");
            Ok(())
        }
    }
}

async fn add_member(
    settings: &Settings,
    organisation: &str,
    email: &str,
    role: &str,
) -> anyhow::Result<()> {
    let (user, previous) = organisations(settings)
        .await?
        .set_member(organisation, email, role)
        .await?;
    match previous {
        Some(previous) => println!(
            "{} in {organisation}: {} (was {})",
            user.id,
            role,
            previous.as_str()
        ),
        None => println!("{} in {organisation}: {role}", user.id),
    }
    Ok(())
}

async fn user(command: UserCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        UserCommand::Create { email, name } => {
            let password = ampflow_http::access_admin::read_password()?;
            settings.auth.validate().map_err(anyhow::Error::msg)?;
            let accounts = ampflow_actors::Accounts::new(
                app::open_storage(settings).await?,
                std::sync::Arc::new(ampflow_types::SystemClock),
                settings.auth.account_settings(),
            )
            .map_err(anyhow::Error::msg)?;
            let user = accounts
                .create_user(&email, name.as_deref(), password)
                .await?;
            println!("{}", user.id);
            Ok(())
        }
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let storage = Storage::connect(&settings.database_settings()).await?;
    let pending = storage.pending_migrations().await?;
    storage.migrate().await?;
    println!(
        "applied {} migration(s){}",
        pending.len(),
        if pending.is_empty() {
            String::new()
        } else {
            format!(": {}", pending.join(", "))
        }
    );
    Ok(())
}

async fn entities(command: EntitiesCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        EntitiesCommand::Failed { limit } => {
            let failures = EntityFailures::new(app::open_storage(settings).await?);
            for failure in failures.list(limit).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    failure.kind, failure.entity_key, failure.failed_at_ms, failure.reason
                );
            }
            Ok(())
        }
        EntitiesCommand::Clear { kind, key } => {
            let failures = EntityFailures::new(app::open_storage(settings).await?);
            if failures.clear(&kind, &key).await? {
                println!("cleared {kind} {key}");
                Ok(())
            } else {
                anyhow::bail!("{kind} {key} is not marked failed")
            }
        }
    }
}

async fn trust(
    settings: &Settings,
    kind: ampflow_types::TrustedKind,
    command: TrustCommand,
) -> anyhow::Result<()> {
    use chain_trust::Action;
    let (chain, action) = match command {
        TrustCommand::Add { chain, address } => (chain, Action::Add(address)),
        TrustCommand::Remove { chain, address } => (chain, Action::Remove(address)),
        TrustCommand::List { chain } => (chain, Action::List),
    };
    chain_trust::run(settings, chain, kind, action).await
}

fn broken(what: &dyn std::fmt::Display) -> ! {
    println!("broken: {what}");
    std::process::exit(1);
}

/// Prints "ok: …" or "broken: …" (and exits with status 1).
fn verify_ledger(
    export: &std::path::Path,
    checkpoint: Option<&std::path::Path>,
    key: Option<&str>,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(export).with_context(|| format!("read {}", export.display()))?;
    let (organisation, count) = match ampflow_types::ledger::verify_export_json(&bytes) {
        Ok(verified) => verified,
        Err(ampflow_types::ledger::VerifyFileError::Broken(problem)) => broken(&problem),
        Err(not_an_export) => return Err(not_an_export.into()),
    };
    let Some(checkpoint) = checkpoint else {
        println!("ok: {count} entries of {organisation} verified");
        return Ok(());
    };
    let parsed: ampflow_types::ledger::LedgerExport =
        serde_json::from_slice(&bytes).context("read the export's entries")?;
    let file =
        std::fs::read(checkpoint).with_context(|| format!("read {}", checkpoint.display()))?;
    match ampflow_http::checkpoint_verify::verify_checkpoint(&parsed, &file, key) {
        Ok(summary) => {
            println!(
                "ok: {count} entries of {organisation} verified; {} in checkpoint {} ({}, tree size {}, signed by {}){}",
                summary.proven,
                summary.checkpoint_id,
                summary.origin,
                summary.tree_size,
                summary.verifier_key,
                if summary.unproven > 0 {
                    format!(
                        "; {} without a proof (newer than the checkpoint?)",
                        summary.unproven
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Err(problem) => broken(&problem),
    }
}

async fn build_checkpoints(settings: &Settings, date: Option<&str>) -> anyhow::Result<()> {
    let clock = process_clock()?;
    let date = match date {
        Some(text) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .context("--date must be YYYY-MM-DD")?,
        None => chrono::DateTime::from_timestamp_millis(clock.now_ms())
            .context("the clock is out of range")?
            .date_naive()
            .pred_opt()
            .context("no day before today")?,
    };
    let storage = app::open_storage(settings).await?;
    let checkpoints = ampflow_actors::checkpoints::Checkpoints::load(
        storage,
        clock,
        settings.checkpoint_settings(),
        // A command is no node's run: it waits for a running server's lease to expire
        // rather than taking it.
        LeaseHolder::one_off(),
    )
    .await?;
    let built = checkpoints.build_through(date).await?;
    if built.is_empty() {
        println!(
            "nothing to build: checkpoints are up to date through {date}, or the ledger is empty"
        );
    }
    for checkpoint in built {
        println!(
            "built {}: {} entries, sha256:{}",
            checkpoint.id,
            checkpoint.tree_size,
            hex::encode(checkpoint.root_hash)
        );
    }
    Ok(())
}

async fn partner(command: PartnerCommand, settings: &Settings) -> anyhow::Result<()> {
    let storage = app::open_storage(settings).await?;
    let partners = ampflow_actors::partners::Partners::new(
        storage,
        std::sync::Arc::new(ampflow_types::SystemClock),
    );
    match command {
        PartnerCommand::Create {
            org,
            allow_ip,
            name,
        } => {
            let key = partners
                .create_key(&org, &allow_ip, name.as_deref())
                .await?;
            println!("access key id: {}", key.id);
            println!("secret: {}", key.secret);
            println!("(the secret is shown only this once)");
        }
        PartnerCommand::Revoke { id } => {
            partners.revoke_key(&id).await?;
            println!("revoked {id}");
        }
        PartnerCommand::AddAd {
            publisher_campaign,
            ad,
        } => {
            let json =
                std::fs::read_to_string(&ad).with_context(|| format!("read {}", ad.display()))?;
            let record = partners
                .add_ad(publisher_campaign.as_deref(), &json)
                .await?;
            println!("{}", record.id);
        }
    }
    Ok(())
}

/// The system clock; in a build with the `failpoints` feature, a clock the fault campaign
/// steps through the file named by `AMPFLOW_TEST_CLOCK_FILE`, when it is set.
fn process_clock() -> anyhow::Result<std::sync::Arc<dyn ampflow_types::Clock>> {
    #[cfg(feature = "failpoints")]
    if let Some(path) = std::env::var_os("AMPFLOW_TEST_CLOCK_FILE") {
        return Ok(std::sync::Arc::new(
            ampflow_http::clock_file::FileClock::watch(path.into())?,
        ));
    }
    Ok(std::sync::Arc::new(ampflow_types::SystemClock))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let database = DatabaseSettings::clone(&settings.database_settings());
    tracing::info!(database = ?database, test_mode = settings.test_mode, "starting");
    let options = StartOptions {
        clock: process_clock()?,
        ..StartOptions::default()
    };
    let running = app::start(settings, options).await?;
    tracing::info!(addr = %running.addr, "listening");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
