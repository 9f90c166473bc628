//! The `ampflow` binary: `serve`, `migrate` and operator subcommands.

use std::path::PathBuf;

use ampflow_http::config::Settings;
use ampflow_http::{StartOptions, app, telemetry};
use anyhow::Context;
use clap::{Parser, Subcommand};

mod chain_deploy;

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
    /// and check every link. Prints "ok" with the entry count, or the first broken entry (and
    /// exits with status 1).
    Verify {
        /// The export, as downloaded.
        export: PathBuf,
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
    /// Deploy the platform's contracts to a development node and write their addresses into
    /// the configuration file (needs --config; the chain's `signer_key_env` names the
    /// environment variable holding the deployer's key).
    Deploy {
        /// The chain id, as configured under [[chains]].
        #[arg(long)]
        chain: u64,
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
        Command::Chain(ChainCommand::Deploy {
            chain,
            faucet_reward_wei,
            faucet_threshold_wei,
            faucet_funding_wei,
        }) => {
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
            chain_deploy::run(&settings, &config, chain, funding).await
        }
        Command::Org(OrgCommand::Create {
            name,
            country,
            status,
            description,
            website,
            logo_url,
        }) => {
            let storage = app::open_storage(&settings).await?;
            let new = ampflow_http::admin::NewOrganisation {
                name,
                country,
                status,
                description,
                website,
                logo_url,
            };
            let org = ampflow_http::admin::create_organisation(
                &storage,
                &ampflow_types::SystemClock,
                &new,
            )
            .await?;
            println!("{}", org.id);
            Ok(())
        }
        Command::Org(OrgCommand::AddFund {
            organisation,
            name,
            description,
        }) => {
            let storage = app::open_storage(&settings).await?;
            let fund = ampflow_http::admin::add_fund(
                &storage,
                &ampflow_types::SystemClock,
                &organisation,
                &name,
                description.as_deref(),
            )
            .await?;
            println!("{}", fund.id);
            Ok(())
        }
        Command::Ledger(LedgerCommand::Verify { export }) => {
            let bytes =
                std::fs::read(&export).with_context(|| format!("read {}", export.display()))?;
            match ampflow_types::ledger::verify_export_json(&bytes) {
                Ok((organisation, count)) => {
                    println!("ok: {count} entries of {organisation} verified");
                    Ok(())
                }
                Err(ampflow_types::ledger::VerifyFileError::Broken(broken)) => {
                    println!("broken: {broken}");
                    std::process::exit(1);
                }
                Err(not_an_export) => Err(not_an_export.into()),
            }
        }
        Command::Partner(command) => partner(command, &settings).await,
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let storage = ampflow_storage::Storage::connect(&settings.database_settings()).await?;
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
        Command::Entities(EntitiesCommand::Failed { limit }) => {
            let storage = app::open_storage(&settings).await?;
            for failure in storage.list_entity_failures(limit).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    failure.kind, failure.entity_key, failure.failed_at_ms, failure.reason
                );
            }
            Ok(())
        }
        Command::Entities(EntitiesCommand::Clear { kind, key }) => {
            let storage = app::open_storage(&settings).await?;
            let key = if kind == "wallet" {
                key.to_ascii_lowercase()
            } else {
                key
            };
            if storage.clear_entity_failure(&kind, &key).await? {
                println!("cleared {kind} {key}");
                Ok(())
            } else {
                anyhow::bail!("{kind} {key} is not marked failed")
            }
        }
        Command::Openapi => {
            println!("{}", app::openapi_json()?);
            Ok(())
        }
    }
}

async fn partner(command: PartnerCommand, settings: &Settings) -> anyhow::Result<()> {
    use ampflow_http::partner_admin;
    let storage = app::open_storage(settings).await?;
    let clock = ampflow_types::SystemClock;
    match command {
        PartnerCommand::Create {
            org,
            allow_ip,
            name,
        } => {
            let key = partner_admin::create_partner_key(
                &storage,
                &clock,
                &org,
                &allow_ip,
                name.as_deref(),
            )
            .await?;
            println!("access key id: {}", key.id);
            println!("secret: {}", key.secret);
            println!("(the secret is shown only this once)");
        }
        PartnerCommand::Revoke { id } => {
            partner_admin::revoke_partner_key(&storage, &clock, &id).await?;
            println!("revoked {id}");
        }
        PartnerCommand::AddAd {
            publisher_campaign,
            ad,
        } => {
            let json =
                std::fs::read_to_string(&ad).with_context(|| format!("read {}", ad.display()))?;
            let record =
                partner_admin::add_ad(&storage, &clock, publisher_campaign.as_deref(), &json)
                    .await?;
            println!("{}", record.id);
        }
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let database = ampflow_storage::DatabaseSettings::clone(&settings.database_settings());
    tracing::info!(database = ?database, test_mode = settings.test_mode, "starting");
    let running = app::start(settings, StartOptions::default()).await?;
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
