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

#[cfg(test)]
mod tests {
    use super::*;

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
