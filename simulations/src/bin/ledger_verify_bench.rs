//! `ledger verify` benchmark (issue 5): builds a valid export of N entries (1,000,000 by
//! default) with realistic field sizes, writes it to a temporary file, then times what
//! `ampflow ledger verify` does — read the file, parse it, recompute every hash and check every
//! link — and prints entries per second against the 500,000/s target. It also runs the real
//! binary on the same file when it is built (`--binary target/release/ampflow`), and checks
//! that one flipped byte is caught.
//!
//!     cargo run --release -p ampflow-simulations --bin ledger_verify_bench -- --entries 1000000

use std::path::PathBuf;
use std::time::Instant;

use ampflow_types::ledger::{
    ExportEntry, LedgerEntryContent, LedgerExport, LedgerMetadata, ledger_timestamp, verify_export,
    verify_export_json,
};
use anyhow::{Context, bail};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Entries in the export.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Also time this `ampflow` binary on the file (e.g. target/release/ampflow).
    #[arg(long)]
    binary: Option<PathBuf>,
}

const TARGET_ENTRIES_PER_SEC: f64 = 500_000.0;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let organisation_id = "org_0123456789abcdef0123456789abcdef".to_string();

    let built = Instant::now();
    let mut entries = Vec::with_capacity(args.entries as usize);
    let mut prev: Option<String> = None;
    for i in 0..args.entries {
        let content = LedgerEntryContent {
            amount: 500 + (i % 10_000) as i64,
            currency: "EUR".into(),
            id: format!("led_{:032x}", i),
            metadata: LedgerMetadata {
                donation_id: Some(format!("don_{:032x}", i)),
                donor_name: Some(format!("Donor Number {i}")),
                stripe_payment_intent_id: Some(format!("pi_3Q{:022x}", i)),
            },
            organisation_id: organisation_id.clone(),
            prev_entry_hash: prev.take(),
            timestamp: ledger_timestamp(1_735_689_600_000 + i as i64 * 1_000),
            entry_type: "donation_received".into(),
        };
        let hash = content.entry_hash();
        prev = Some(hash.clone());
        entries.push(ExportEntry::new(content, hash));
    }
    let export = LedgerExport {
        downloaded_at: ledger_timestamp(1_800_000_000_000),
        organisation_id,
        entry_count: args.entries,
        entries,
    };
    let bytes = serde_json::to_vec(&export).context("serialise the export")?;
    drop(export);
    let folder = tempfile::tempdir()?;
    let file = folder.path().join("export.json");
    std::fs::write(&file, &bytes)?;
    let size = bytes.len();
    drop(bytes);
    println!(
        "export: {} entries, {:.1} MB, built in {:.1} s",
        args.entries,
        size as f64 / 1e6,
        built.elapsed().as_secs_f64()
    );

    // What `ampflow ledger verify` does, in process.
    let started = Instant::now();
    let read = std::fs::read(&file)?;
    let read_secs = started.elapsed().as_secs_f64();
    let (_, count) = verify_export_json(&read).map_err(|e| anyhow::anyhow!("{e}"))?;
    let total = started.elapsed().as_secs_f64();
    let rate = count as f64 / total;
    println!(
        "verify (in process): {count} entries in {total:.2} s (read {read_secs:.2} s, parse, hashes and links {:.2} s): {rate:.0} entries/s; target >= {TARGET_ENTRIES_PER_SEC:.0}/s: {}",
        total - read_secs,
        if rate >= TARGET_ENTRIES_PER_SEC {
            "met"
        } else {
            "MISSED"
        }
    );
    let parsed: LedgerExport = serde_json::from_slice(&read).context("parse the export")?;

    // One flipped byte in the middle is caught at its entry.
    let middle = (args.entries / 2) as usize;
    let mut tampered = parsed;
    tampered.entries[middle].amount += 1;
    match verify_export(&tampered) {
        Err(ampflow_types::ledger::VerifyError::Entry { index, .. }) if index == middle => {
            println!("tampering with entry {middle}: caught at entry {index}");
        }
        other => bail!("tampering with entry {middle} was not located: {other:?}"),
    }

    if let Some(binary) = args.binary {
        let started = Instant::now();
        let output = std::process::Command::new(&binary)
            .args(["ledger", "verify"])
            .arg(&file)
            .env_clear()
            .output()
            .with_context(|| format!("run {}", binary.display()))?;
        let secs = started.elapsed().as_secs_f64();
        let said = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("the binary refused a valid export: {said}");
        }
        println!(
            "verify (binary, process start included): {:.2} s, {:.0} entries/s: {}",
            secs,
            args.entries as f64 / secs,
            said.trim()
        );
    }
    Ok(())
}
