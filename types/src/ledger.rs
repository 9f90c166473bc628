//! The public ledger's entry format and its hash chain. `docs/ledger.md` describes the same
//! bytes for anyone who wants to recompute them without this code.
//!
//! An entry's hash is `sha256:` + the lowercase hex SHA-256 of its canonical bytes: the JSON
//! object below, keys in this (lexicographic) order, no whitespace, strings escaped as
//! `serde_json` (and RFC 8785) do, integers in decimal:
//!
//! ```text
//! {"amount":5000,"currency":"EUR","id":"led_…","metadata":{"donation_id":"don_…","donor_name":"Jane Donor","stripe_payment_intent_id":"pi_…"},"organisation_id":"org_…","prev_entry_hash":null,"timestamp":"2025-01-01T00:00:00.000Z","type":"donation_received"}
//! ```
//!
//! `prev_entry_hash` is the previous entry's `entry_hash` (null for an organisation's first
//! entry), so changing any byte of any entry changes every hash after it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What an entry records about where its money came from. Every field is a string or null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerMetadata {
    // Keys in lexicographic order: the canonical bytes follow the declaration order.
    pub donation_id: Option<String>,
    pub donor_name: Option<String>,
    pub stripe_payment_intent_id: Option<String>,
}

/// The hashed fields of an entry, in canonical (lexicographic) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntryContent {
    /// Minor units (cents); a refund is negative.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    /// `led_…`
    pub id: String,
    pub metadata: LedgerMetadata,
    pub organisation_id: String,
    pub prev_entry_hash: Option<String>,
    /// RFC 3339, UTC, milliseconds: `2025-01-01T00:00:00.000Z`.
    pub timestamp: String,
    /// `donation_received`, `donation_refunded`, …
    #[serde(rename = "type")]
    pub entry_type: String,
}

impl LedgerEntryContent {
    /// The canonical bytes that are hashed.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // A struct of strings, integers, nulls and a nested struct cannot fail to serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `sha256:<hex>` of the canonical bytes.
    pub fn entry_hash(&self) -> String {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(self.canonical_bytes()))
        )
    }
}

/// The RFC 3339 timestamp an entry created at `ms` (Unix milliseconds) carries.
pub fn ledger_timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One entry of an export (`GET /public/organisations/{id}/ledger/export`), in the seed's
/// format: the hashed fields, plus the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEntry {
    pub id: String,
    pub timestamp: String,
    pub organisation_id: String,
    #[serde(rename = "type")]
    pub entry_type: String,
    pub amount: i64,
    pub currency: String,
    pub metadata: LedgerMetadata,
    pub prev_entry_hash: Option<String>,
    pub entry_hash: String,
}

impl ExportEntry {
    pub fn new(content: LedgerEntryContent, entry_hash: String) -> Self {
        Self {
            id: content.id,
            timestamp: content.timestamp,
            organisation_id: content.organisation_id,
            entry_type: content.entry_type,
            amount: content.amount,
            currency: content.currency,
            metadata: content.metadata,
            prev_entry_hash: content.prev_entry_hash,
            entry_hash,
        }
    }
}

/// A whole ledger, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerExport {
    pub downloaded_at: String,
    pub organisation_id: String,
    pub entry_count: u64,
    pub entries: Vec<ExportEntry>,
}

/// The first thing wrong with an export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("entry_count says {stated}, but the export holds {found} entries")]
    Count { stated: u64, found: u64 },
    #[error("entry {index} ({id}): {problem}")]
    Entry {
        /// 0-based position in `entries`.
        index: usize,
        id: String,
        problem: String,
    },
}

/// An export entry borrowed from the export's bytes (strings without escapes are not copied),
/// serialising to exactly the canonical bytes when `entry_hash` is skipped.
#[derive(Debug, Serialize, Deserialize)]
struct EntryRef<'a> {
    // Canonical (lexicographic) order; `entry_hash` is not part of the canonical bytes.
    amount: i64,
    #[serde(borrow)]
    currency: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    metadata: MetadataRef<'a>,
    #[serde(borrow)]
    organisation_id: Cow<'a, str>,
    #[serde(borrow)]
    prev_entry_hash: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    entry_type: Cow<'a, str>,
    #[serde(borrow, skip_serializing)]
    entry_hash: Cow<'a, str>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MetadataRef<'a> {
    #[serde(borrow)]
    donation_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    donor_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stripe_payment_intent_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct ExportRef<'a> {
    #[serde(borrow)]
    organisation_id: Cow<'a, str>,
    entry_count: u64,
    #[serde(borrow)]
    entries: Vec<EntryRef<'a>>,
}

impl<'a> EntryRef<'a> {
    fn of(e: &'a ExportEntry) -> Self {
        let borrowed = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        Self {
            amount: e.amount,
            currency: Cow::Borrowed(&e.currency),
            id: Cow::Borrowed(&e.id),
            metadata: MetadataRef {
                donation_id: borrowed(&e.metadata.donation_id),
                donor_name: borrowed(&e.metadata.donor_name),
                stripe_payment_intent_id: borrowed(&e.metadata.stripe_payment_intent_id),
            },
            organisation_id: Cow::Borrowed(&e.organisation_id),
            prev_entry_hash: borrowed(&e.prev_entry_hash),
            timestamp: Cow::Borrowed(&e.timestamp),
            entry_type: Cow::Borrowed(&e.entry_type),
            entry_hash: Cow::Borrowed(&e.entry_hash),
        }
    }

    /// The hex SHA-256 of the entry's canonical bytes; `buffer` is reused scratch.
    fn hex_digest(&self, buffer: &mut Vec<u8>) -> [u8; 64] {
        buffer.clear();
        // Strings, integers and nulls cannot fail to serialise.
        let _ = serde_json::to_writer(&mut *buffer, self);
        let mut hex_digest = [0u8; 64];
        let _ = hex::encode_to_slice(Sha256::digest(&buffer[..]), &mut hex_digest);
        hex_digest
    }

    fn hash_matches(&self, buffer: &mut Vec<u8>) -> bool {
        self.entry_hash
            .strip_prefix("sha256:")
            .is_some_and(|stated| stated.as_bytes() == self.hex_digest(buffer))
    }
}

/// Why an export file could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFileError {
    #[error("this is not a ledger export (its JSON does not have the export's shape): {0}")]
    NotAnExport(serde_json::Error),
    #[error(transparent)]
    Broken(#[from] VerifyError),
}

/// Recomputes every hash and checks every link; answers the entry count.
pub fn verify_export(export: &LedgerExport) -> Result<u64, VerifyError> {
    let entries: Vec<EntryRef<'_>> = export.entries.iter().map(EntryRef::of).collect();
    verify_entries(&export.organisation_id, export.entry_count, &entries)
}

/// Parses an export's bytes (borrowing its strings) and verifies it; answers the organisation
/// and the entry count.
pub fn verify_export_json(bytes: &[u8]) -> Result<(String, u64), VerifyFileError> {
    let export: ExportRef<'_> =
        serde_json::from_slice(bytes).map_err(VerifyFileError::NotAnExport)?;
    let count = verify_entries(&export.organisation_id, export.entry_count, &export.entries)?;
    Ok((export.organisation_id.into_owned(), count))
}

/// The checks, in order of the entries; hashes are recomputed on every core, and the error is
/// always the first broken entry.
fn verify_entries(
    organisation_id: &str,
    entry_count: u64,
    entries: &[EntryRef<'_>],
) -> Result<u64, VerifyError> {
    if entry_count != entries.len() as u64 {
        return Err(VerifyError::Count {
            stated: entry_count,
            found: entries.len() as u64,
        });
    }
    let first_link_break = first_link_break(organisation_id, entries);
    // Hashes, on every core, up to the first link break (nothing after it matters).
    let checked = first_link_break.as_ref().map_or(entries.len(), |(i, _)| *i);
    let first_hash_break = first_hash_break(&entries[..checked]);
    let broken = match (first_hash_break, first_link_break) {
        (Some(index), _) => Some((
            index,
            format!(
                "its fields hash to sha256:{}, not to the stated {}",
                String::from_utf8_lossy(&entries[index].hex_digest(&mut Vec::new())),
                entries[index].entry_hash
            ),
        )),
        (None, link) => link,
    };
    match broken {
        Some((index, problem)) => Err(VerifyError::Entry {
            index,
            id: entries[index].id.to_string(),
            problem,
        }),
        None => Ok(entries.len() as u64),
    }
}

/// The first entry (index, and what is wrong) that belongs to another organisation or does not
/// link to the one before: cheap, in order.
fn first_link_break(organisation_id: &str, entries: &[EntryRef<'_>]) -> Option<(usize, String)> {
    let mut prev: Option<&str> = None;
    for (index, entry) in entries.iter().enumerate() {
        if entry.organisation_id != organisation_id {
            return Some((
                index,
                format!(
                    "belongs to {}, not {organisation_id}",
                    entry.organisation_id
                ),
            ));
        }
        if entry.prev_entry_hash.as_deref() != prev {
            return Some((
                index,
                format!(
                    "prev_entry_hash is {:?}, but the entry before hashes to {:?}",
                    entry.prev_entry_hash, prev
                ),
            ));
        }
        prev = Some(&entry.entry_hash);
    }
    None
}

/// The index of the first entry whose fields do not hash to its stated hash, recomputed on
/// every core (each takes a contiguous part; the smallest index found wins).
fn first_hash_break(entries: &[EntryRef<'_>]) -> Option<usize> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let chunk = entries.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = entries
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| {
                scope.spawn(move || {
                    let mut buffer = Vec::with_capacity(1024);
                    part.iter()
                        .position(|e| !e.hash_matches(&mut buffer))
                        .map(|at| n * chunk + at)
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().ok().flatten())
            .min()
    })
}

/// What a running-total entry adds to a ledger. Stripe reports a charge's refunded amount as
/// a running total (partial refunds included), so a refund entry is given the total so far
/// (`total`, negative) and records only the part the entries so far (`recorded`, their sum)
/// do not cover, with `total`'s sign; `None` when they cover it already. Totals that arrive
/// twice, concurrently or out of order therefore add up to the largest one.
pub fn running_total_addition(total: i64, recorded: i64) -> Option<i64> {
    let missing = total.abs() - recorded.abs();
    (missing > 0).then(|| total.signum() * missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_total_adds_only_what_is_not_recorded_yet() {
        // A first partial refund of 300, then the total of 500: 200 more.
        assert_eq!(running_total_addition(-300, 0), Some(-300));
        assert_eq!(running_total_addition(-500, -300), Some(-200));
        // The same total again, or an older smaller one arriving late: nothing.
        assert_eq!(running_total_addition(-500, -500), None);
        assert_eq!(running_total_addition(-300, -500), None);
        assert_eq!(running_total_addition(0, 0), None);
    }

    fn entry() -> LedgerEntryContent {
        LedgerEntryContent {
            amount: 5000,
            currency: "EUR".into(),
            id: "led_1".into(),
            metadata: LedgerMetadata {
                donation_id: Some("don_1".into()),
                donor_name: Some("Jane \"JD\" Dönor".into()),
                stripe_payment_intent_id: Some("pi_1".into()),
            },
            organisation_id: "org_1".into(),
            prev_entry_hash: None,
            timestamp: ledger_timestamp(1_735_689_600_000),
            entry_type: "donation_received".into(),
        }
    }

    #[test]
    fn the_canonical_bytes_are_sorted_compact_json() {
        assert_eq!(
            String::from_utf8(entry().canonical_bytes()).unwrap(),
            r#"{"amount":5000,"currency":"EUR","id":"led_1","metadata":{"donation_id":"don_1","donor_name":"Jane \"JD\" Dönor","stripe_payment_intent_id":"pi_1"},"organisation_id":"org_1","prev_entry_hash":null,"timestamp":"2025-01-01T00:00:00.000Z","type":"donation_received"}"#
        );
    }

    fn export(n: usize) -> LedgerExport {
        let mut entries = Vec::new();
        let mut prev = None;
        for i in 0..n {
            let mut content = entry();
            content.id = format!("led_{i}");
            content.prev_entry_hash = prev.clone();
            let hash = content.entry_hash();
            prev = Some(hash.clone());
            entries.push(ExportEntry::new(content, hash));
        }
        LedgerExport {
            downloaded_at: ledger_timestamp(0),
            organisation_id: "org_1".into(),
            entry_count: n as u64,
            entries,
        }
    }

    #[test]
    fn an_export_verifies_and_any_change_is_located() {
        let good = export(5);
        assert_eq!(verify_export(&good), Ok(5));
        let mut bad = good.clone();
        bad.entries[3].amount += 1;
        assert!(matches!(
            verify_export(&bad),
            Err(VerifyError::Entry { index: 3, .. })
        ));
        let mut bad = good.clone();
        bad.entries.remove(2);
        bad.entry_count = 4;
        assert!(matches!(
            verify_export(&bad),
            Err(VerifyError::Entry { index: 2, .. })
        ));
        let mut bad = good.clone();
        bad.entry_count = 6;
        assert!(matches!(
            verify_export(&bad),
            Err(VerifyError::Count { .. })
        ));
        let mut bad = good;
        bad.entries[0].metadata.donor_name = Some("Mallory".into());
        assert!(matches!(
            verify_export(&bad),
            Err(VerifyError::Entry { index: 0, .. })
        ));
    }

    #[test]
    fn the_hash_is_sha256_of_the_canonical_bytes_and_covers_every_field() {
        let hash = entry().entry_hash();
        assert!(hash.starts_with("sha256:") && hash.len() == 7 + 64);
        let mut changed = entry();
        changed.amount = 5001;
        assert_ne!(changed.entry_hash(), hash);
        let mut changed = entry();
        changed.prev_entry_hash = Some(hash.clone());
        assert_ne!(changed.entry_hash(), hash);
        let mut changed = entry();
        changed.metadata.donor_name = None;
        assert_ne!(changed.entry_hash(), hash);
    }
}
