//! `ampflow ledger verify <export> --checkpoint <file>`: checks an organisation's export
//! against a signed checkpoint.
//!
//! The checkpoint file is `{"checkpoint": …, "proofs": [ … ]}`: the `data` of
//! `GET /public/checkpoints/{id}` and, for entries of the export, the `data` of
//! `GET /public/ledger/entries/{entry id}/proof?checkpoint={id}` — which is what
//! `GET /public/organisations/{id}/ledger/proofs?checkpoint={id}` answers in one request. An
//! organisation's entries are only some of the tree's leaves, so each is checked by its own
//! inclusion proof against the signed root. Entries newer than the checkpoint have no proof; they are counted, not failed.

use std::collections::{HashMap, HashSet};

use ampflow_types::ledger::LedgerExport;
use ampflow_types::merkle::{self, Hash};
use ampflow_types::note::{CheckpointBody, NoteVerifier};
use serde::Deserialize;

use crate::routes::checkpoints::{CheckpointView, InclusionProofView};

/// Proofs read from one file at most (an export may hold millions of entries).
const PROOFS_MAX: usize = 10_000_000;

#[derive(Debug, Deserialize)]
pub struct CheckpointFile {
    pub checkpoint: CheckpointView,
    #[serde(default)]
    pub proofs: Vec<InclusionProofView>,
}

/// What a successful check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSummary {
    pub checkpoint_id: String,
    pub origin: String,
    pub tree_size: u64,
    pub verifier_key: String,
    /// Entries of the export proven to be in the tree.
    pub proven: u64,
    /// Entries of the export without a proof (newer than the checkpoint).
    pub unproven: u64,
}

/// The first thing wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointCheckError {
    #[error("the checkpoint file is not `{{checkpoint, proofs}}`: {0}")]
    NotACheckpointFile(String),
    #[error("the verifier key: {0}")]
    Key(String),
    #[error("checkpoint {id}: the signed note: {problem}")]
    Note { id: String, problem: String },
    #[error("checkpoint {id}: {problem}")]
    Checkpoint { id: String, problem: String },
    #[error("proof {index} ({entry_id}): {problem}")]
    Proof {
        /// 0-based position in `proofs`.
        index: usize,
        entry_id: String,
        problem: String,
    },
}

fn hex_hash(text: &str) -> Option<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

/// Checks the signed note (with `key`, else the key the file names), that the file's fields
/// agree with it, and every proof against its root and the export's entries. The export itself
/// must already have been verified (its hashes and links).
pub fn verify_checkpoint(
    export: &LedgerExport,
    file_bytes: &[u8],
    key: Option<&str>,
) -> Result<CheckpointSummary, CheckpointCheckError> {
    let file: CheckpointFile = serde_json::from_slice(file_bytes)
        .map_err(|e| CheckpointCheckError::NotACheckpointFile(e.to_string()))?;
    let (verifier, body) = signed_head(&file.checkpoint, key)?;
    if file.proofs.len() > PROOFS_MAX {
        return Err(CheckpointCheckError::Checkpoint {
            id: file.checkpoint.id.clone(),
            problem: format!("more than {PROOFS_MAX} proofs"),
        });
    }
    let entries: HashMap<&str, &str> = export
        .entries
        .iter()
        .map(|e| (e.id.as_str(), e.entry_hash.as_str()))
        .collect();
    let mut proven_leaves = HashSet::new();
    let mut proven_entries = HashSet::new();
    for (index, proof) in file.proofs.iter().enumerate() {
        let fail = |problem: String| CheckpointCheckError::Proof {
            index,
            entry_id: proof.entry_id.clone(),
            problem,
        };
        let entry_hash = entries
            .get(proof.entry_id.as_str())
            .ok_or_else(|| fail("the export holds no entry with this id".into()))?;
        check_proof(proof, entry_hash, &body, &file.checkpoint.id).map_err(fail)?;
        if !proven_leaves.insert(proof.leaf_index) {
            return Err(fail(format!("leaf {} is proven twice", proof.leaf_index)));
        }
        proven_entries.insert(proof.entry_id.as_str());
    }
    let proven = proven_entries.len() as u64;
    Ok(CheckpointSummary {
        checkpoint_id: file.checkpoint.id.clone(),
        origin: body.origin,
        tree_size: body.tree_size,
        verifier_key: verifier.vkey(),
        proven,
        unproven: export.entries.len() as u64 - proven,
    })
}

/// The checkpoint's signed body, once its note verifies and its fields agree with it.
fn signed_head(
    checkpoint: &CheckpointView,
    key: Option<&str>,
) -> Result<(NoteVerifier, CheckpointBody), CheckpointCheckError> {
    let vkey = key.unwrap_or(&checkpoint.verifier_key);
    let verifier =
        NoteVerifier::parse(vkey).map_err(|e| CheckpointCheckError::Key(e.to_string()))?;
    let note_error = |problem: String| CheckpointCheckError::Note {
        id: checkpoint.id.clone(),
        problem,
    };
    let body = verifier
        .verify(&checkpoint.signed_note)
        .map_err(|e| note_error(e.to_string()))?;
    let body = CheckpointBody::parse(body).map_err(|e| note_error(e.to_string()))?;
    let checkpoint_error = |problem: String| CheckpointCheckError::Checkpoint {
        id: checkpoint.id.clone(),
        problem,
    };
    if checkpoint.entry_count != body.tree_size {
        return Err(checkpoint_error(format!(
            "entry_count is {}, but the signed tree size is {}",
            checkpoint.entry_count, body.tree_size
        )));
    }
    let signed_root = format!("sha256:{}", hex::encode(body.root_hash));
    if checkpoint.cumulative_hash != signed_root {
        return Err(checkpoint_error(format!(
            "cumulative_hash is {}, but the signed root is {signed_root}",
            checkpoint.cumulative_hash
        )));
    }
    Ok((verifier, body))
}

/// Checks one proof of the entry whose (verified) hash is `entry_hash` against the signed head.
fn check_proof(
    proof: &InclusionProofView,
    entry_hash: &str,
    body: &CheckpointBody,
    checkpoint_id: &str,
) -> Result<(), String> {
    if proof.tree_size != body.tree_size {
        return Err(format!(
            "proves against a tree of {}, but the checkpoint's has {} (fetch proofs with ?checkpoint={checkpoint_id})",
            proof.tree_size, body.tree_size
        ));
    }
    // The leaf comes from the export's entry, whose hash the chain check recomputed.
    let leaf = merkle::entry_leaf_hash(entry_hash)
        .ok_or_else(|| "the entry's hash is not sha256:<64 hex>".to_string())?;
    let path = proof
        .audit_path
        .iter()
        .map(|h| hex_hash(h))
        .collect::<Option<Vec<Hash>>>()
        .ok_or_else(|| "an audit path hash is not 64 hex digits".to_string())?;
    merkle::verify_inclusion(
        &leaf,
        proof.leaf_index,
        body.tree_size,
        &path,
        &body.root_hash,
    )
    .map_err(|e| e.to_string())
}
