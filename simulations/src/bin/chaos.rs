//! The seeded whole-system fault campaign: `ampflow serve` nodes on one database, anvil behind
//! a proxy the campaign controls, the Stripe, Veriff and reCAPTCHA stand-ins, a workload and
//! overlapping faults drawn from one seed, then every invariant with its counts and a verdict
//! (exit status 1 on FAIL). Everything runs on loopback and stops by itself; the seed is
//! printed first, so any run can be replayed. See docs/reliability.md.
//!
//! ```sh
//! cargo build --release -p ampflow-http --bin ampflow --features failpoints
//! cargo run --release -p ampflow-simulations --bin chaos -- --seed 42 --minutes 2 --nodes 2
//! ```

use std::path::PathBuf;
use std::time::Duration;

use ampflow_simulations::chaos::{self, Config, infra};
use ampflow_simulations::pgdb::{self, DbKind};
use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Seeded whole-system fault campaign")]
struct Args {
    /// The seed; a random one when absent (always printed first).
    #[arg(long)]
    seed: Option<u64>,
    /// How long the workload and the faults run, in minutes (overridden by --seconds).
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    #[arg(long)]
    seconds: Option<u64>,
    /// `ampflow serve` processes sharing the database (1 on SQLite).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    #[arg(long, value_enum, default_value_t = DbKind::Postgres)]
    database: DbKind,
    /// The PostgreSQL server a fresh database is made on (and dropped at the end).
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://root@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// The `ampflow` binary, built with `--features failpoints` so FAILPOINTS works.
    #[arg(long, default_value = "target/release/ampflow")]
    binary: PathBuf,
    /// Where node logs, exports and the timeline go (default target/chaos/<seed>).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The timeline file (default <dir>/timeline.txt).
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// Wallets asking the faucet (each signs in, refreshes and moves on to a new wallet).
    #[arg(long, default_value_t = 4)]
    wallets: usize,
    /// Donors paying through the Stripe stand-in.
    #[arg(long, default_value_t = 3)]
    donors: usize,
    /// Investors (KYC, whitelisting, auto-invest).
    #[arg(long, default_value_t = 4)]
    investors: usize,
    /// Campaigns in the registry.
    #[arg(long, default_value_t = 3)]
    campaigns: usize,
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    println!("seed {seed}");
    let nodes = if args.database == DbKind::Sqlite {
        1
    } else {
        args.nodes.max(1)
    };
    if nodes != args.nodes {
        println!("SQLite: one node (a SQLite file is not shared between processes)");
    }
    let binary = std::fs::canonicalize(&args.binary).with_context(|| {
        format!(
            "no ampflow binary at {}: cargo build --release -p ampflow-http --bin ampflow --features failpoints",
            args.binary.display()
        )
    })?;
    let dir = args
        .dir
        .unwrap_or_else(|| PathBuf::from(format!("target/chaos/{seed}")));
    let config = Config {
        seed,
        duration: Duration::from_secs(
            args.seconds
                .unwrap_or((args.minutes * 60.0).round() as u64)
                .max(10),
        ),
        nodes,
        database: args.database,
        postgres_url: args.postgres_url,
        binary,
        timeline: args.timeline.unwrap_or_else(|| dir.join("timeline.txt")),
        dir,
        wallets: args.wallets,
        donors: args.donors,
        investors: args.investors,
        campaigns: args.campaigns.max(1),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let passed = runtime.block_on(async {
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping every process of the run");
                infra::kill_all_children();
                pgdb::drop_on_ctrl_c();
                std::process::exit(130);
            }
        });
        chaos::run(&config).await
    });
    let passed = match passed {
        Ok(passed) => passed,
        Err(e) => {
            println!("FAIL seed {seed}: the campaign could not run: {e:#}");
            false
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(5));
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}
