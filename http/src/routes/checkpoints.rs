//! The ledger's daily checkpoints (seed 000, "Get Checkpoint", "List Checkpoints") and the
//! inclusion proofs behind them: signed RFC 6962 tree heads over every organisation's entries,
//! in the C2SP checkpoint format. `docs/ledger.md` says how to check them without our code.

use ampflow_actors::checkpoints::{CheckpointRecord, InclusionProofRecord, ProofLookupError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::RequestId;
use crate::params;
use crate::routes::public::{Envelope, rfc3339};
use crate::state::AppState;

/// Checkpoints per page by default, and at most.
const PAGE_DEFAULT: u64 = 20;
const PAGE_MAX: u64 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_checkpoints))
        .routes(routes!(checkpoint_key))
        .routes(routes!(get_checkpoint))
        .routes(routes!(entry_proof))
        .routes(routes!(organisation_proofs))
}

/// Entries per page of an organisation's proofs by default, and at most.
const PROOF_PAGE_DEFAULT: u64 = 1_000;
const PROOF_PAGE_MAX: u64 = 10_000;

/// A signed daily checkpoint: the head of the ledger's Merkle tree at the end of a UTC day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    /// `chk_YYYY-MM-DD`
    pub id: String,
    /// The UTC day it closes, `YYYY-MM-DD`.
    pub checkpoint_date: String,
    /// `sha256:<hex>` of the RFC 6962 tree head over every entry so far.
    pub cumulative_hash: String,
    /// The tree size: entries covered, across all organisations.
    pub entry_count: u64,
    /// Net sum of the covered entries' amounts in minor units (refunds are negative), all
    /// currencies together; `volume_by_currency` splits it.
    pub total_volume: i64,
    #[schema(value_type = Object)]
    pub volume_by_currency: std::collections::BTreeMap<String, i64>,
    /// The C2SP tlog checkpoint (origin, size, base64 root), signed as a C2SP note.
    pub signed_note: String,
    /// The note's verifier key, `<name>+<hex key id>+<base64(0x01 || Ed25519 public key)>`.
    pub verifier_key: String,
    /// RFC 3339: when it was built.
    pub created_at: String,
}

impl From<CheckpointRecord> for CheckpointView {
    fn from(c: CheckpointRecord) -> Self {
        Self {
            id: c.id,
            checkpoint_date: c.checkpoint_date,
            cumulative_hash: format!("sha256:{}", hex::encode(c.root_hash)),
            entry_count: c.tree_size,
            total_volume: c.total_volume,
            volume_by_currency: c.volume_by_currency,
            signed_note: c.signed_note,
            verifier_key: c.verifier_key,
            created_at: rfc3339(c.created_at_ms),
        }
    }
}

/// A page of checkpoints, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointPage {
    pub data: Vec<CheckpointView>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CheckpointQuery {
    /// Results per page: 20 by default, at most 100.
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The key checkpoints are signed with.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointKeyView {
    /// `<name>+<hex key id>+<base64(0x01 || public key)>`, as note verifiers take it.
    pub verifier_key: String,
    pub name: String,
    /// 8 hex digits.
    pub key_id: String,
    /// Base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// The first line of every checkpoint body.
    pub origin: String,
}

/// An inclusion proof of one ledger entry in a checkpoint's tree.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InclusionProofView {
    /// `led_…`
    pub entry_id: String,
    /// The entry's `sha256:<hex>`; the leaf is `SHA-256(0x00 || those 32 bytes)`.
    pub entry_hash: String,
    /// The entry's place in the global tree, from 0.
    pub leaf_index: u64,
    /// Lowercase hex of the leaf hash.
    pub leaf_hash: String,
    /// The size of the checkpoint's tree.
    pub tree_size: u64,
    /// Lowercase hex hashes from the leaf's sibling up to the root (RFC 9162 inclusion path).
    pub audit_path: Vec<String>,
    pub checkpoint_id: String,
    /// The checkpoint's `sha256:<hex>` tree head.
    pub cumulative_hash: String,
    /// The checkpoint's signed note.
    pub signed_note: String,
}

impl From<InclusionProofRecord> for InclusionProofView {
    fn from(p: InclusionProofRecord) -> Self {
        let leaf = ampflow_types::merkle::entry_leaf_hash(&p.entry_hash).unwrap_or_default();
        Self {
            entry_id: p.entry_id,
            entry_hash: p.entry_hash,
            leaf_index: p.leaf_index,
            leaf_hash: hex::encode(leaf),
            tree_size: p.checkpoint.tree_size,
            audit_path: p.audit_path.iter().map(hex::encode).collect(),
            checkpoint_id: p.checkpoint.id,
            cumulative_hash: format!("sha256:{}", hex::encode(p.checkpoint.root_hash)),
            signed_note: p.checkpoint.signed_note,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ProofQuery {
    /// Prove against this checkpoint (`chk_YYYY-MM-DD`) instead of the newest.
    pub checkpoint: Option<String>,
}

/// An organisation's entries proven against one checkpoint: the file
/// `ampflow ledger verify --checkpoint` reads (pages merge by concatenating `proofs`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProofBundle {
    pub checkpoint: CheckpointView,
    /// One per entry of the page that the checkpoint covers, in chain order.
    pub proofs: Vec<InclusionProofView>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ProofBundleQuery {
    /// Prove against this checkpoint (`chk_YYYY-MM-DD`) instead of the newest.
    pub checkpoint: Option<String>,
    /// Entries per page: 1,000 by default, at most 10,000.
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `chk_YYYY-MM-DD` with a real date.
fn checkpoint_date(id: &str) -> Option<&str> {
    let date = id.strip_prefix("chk_")?;
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .filter(|_| date.len() == 10)?;
    Some(date)
}

/// List checkpoints, newest first.
#[utoipa::path(get, path = "/public/checkpoints", tag = "public",
    params(CheckpointQuery),
    responses((status = 200, body = CheckpointPage), (status = 400, body = ErrorBody)))]
async fn list_checkpoints(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<CheckpointQuery>,
) -> Result<Json<CheckpointPage>, ApiError> {
    let limit = params::page_limit(query.limit, PAGE_DEFAULT, PAGE_MAX)?;
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            params::decode_cursor(c, |position| {
                let date = position.strip_prefix("date:")?;
                checkpoint_date(&format!("chk_{date}")).map(str::to_string)
            })
        })
        .transpose()?;
    let mut page = state
        .actors()
        .checkpoints()
        .page(before.as_deref(), limit + 1)
        .await
        .map_err(ApiError::storage)?;
    let has_more = params::split_page(&mut page, limit);
    let next_cursor = has_more
        .then(|| page.last())
        .flatten()
        .map(|c| params::encode_cursor(&format!("date:{}", c.checkpoint_date)));
    Ok(Json(CheckpointPage {
        data: page.into_iter().map(Into::into).collect(),
        has_more,
        next_cursor,
    }))
}

/// The key checkpoints are signed with.
#[utoipa::path(get, path = "/public/checkpoints/key", tag = "public",
    responses((status = 200, body = inline(Envelope<CheckpointKeyView>))))]
async fn checkpoint_key(
    State(state): State<AppState>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Json<Envelope<CheckpointKeyView>> {
    use base64::Engine;
    let checkpoints = state.actors().checkpoints();
    let verifier = checkpoints.verifier();
    Envelope::new(
        CheckpointKeyView {
            verifier_key: verifier.vkey(),
            name: verifier.name().to_string(),
            key_id: format!("{:08x}", verifier.key_id()),
            public_key: base64::engine::general_purpose::STANDARD.encode(verifier.public_key()),
            origin: checkpoints.origin().to_string(),
        },
        &request_id,
    )
}

/// One checkpoint.
#[utoipa::path(get, path = "/public/checkpoints/{id}", tag = "public",
    params(("id" = String, Path, description = "The checkpoint's id, chk_YYYY-MM-DD")),
    responses((status = 200, body = inline(Envelope<CheckpointView>)), (status = 404, body = ErrorBody)))]
async fn get_checkpoint(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<CheckpointView>>, ApiError> {
    let not_found = || ApiError::not_found("no checkpoint has this id");
    checkpoint_date(&id).ok_or_else(not_found)?;
    let checkpoint = state
        .actors()
        .checkpoints()
        .get(&id)
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(not_found)?;
    Ok(Envelope::new(checkpoint.into(), &request_id))
}

/// The inclusion proof of a ledger entry in the newest checkpoint (or the one named).
#[utoipa::path(get, path = "/public/ledger/entries/{id}/proof", tag = "public",
    params(("id" = String, Path, description = "The entry's id (led_…)"), ProofQuery),
    responses((status = 200, body = inline(Envelope<InclusionProofView>)),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`not_checkpointed`: the entry is newer than the checkpoint", body = ErrorBody)))]
async fn entry_proof(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ProofQuery>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<InclusionProofView>>, ApiError> {
    if !id.starts_with("led_") || id.len() > 40 {
        return Err(ApiError::not_found("no ledger entry has this id"));
    }
    if let Some(checkpoint) = query.checkpoint.as_deref()
        && checkpoint_date(checkpoint).is_none()
    {
        return Err(ApiError::invalid_param(
            "checkpoint",
            "checkpoint must be a checkpoint id, chk_YYYY-MM-DD",
        ));
    }
    let proof = state
        .actors()
        .checkpoints()
        .inclusion_proof(&id, query.checkpoint.as_deref())
        .await
        .map_err(proof_error)?;
    Ok(Envelope::new(proof.into(), &request_id))
}

/// Inclusion proofs of an organisation's entries, in chain order, against one checkpoint.
#[utoipa::path(get, path = "/public/organisations/{id}/ledger/proofs", tag = "public",
    params(("id" = String, Path, description = "The organisation's id (org_…)"), ProofBundleQuery),
    responses((status = 200, body = ProofBundle), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`not_checkpointed`: there is no checkpoint yet", body = ErrorBody)))]
async fn organisation_proofs(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ProofBundleQuery>,
) -> Result<Json<ProofBundle>, ApiError> {
    let limit = params::page_limit(query.limit, PROOF_PAGE_DEFAULT, PROOF_PAGE_MAX)?;
    let after_seq = match query.cursor.as_deref() {
        None => 0,
        Some(cursor) => params::decode_cursor(cursor, |position| {
            position.strip_prefix("seq:")?.parse::<u64>().ok()
        })?,
    };
    if let Some(checkpoint) = query.checkpoint.as_deref()
        && checkpoint_date(checkpoint).is_none()
    {
        return Err(ApiError::invalid_param(
            "checkpoint",
            "checkpoint must be a checkpoint id, chk_YYYY-MM-DD",
        ));
    }
    let org = crate::routes::public::known_organisation(&state, &id).await?;
    let page = state
        .actors()
        .checkpoints()
        .organisation_proofs(&org.id, query.checkpoint.as_deref(), after_seq, limit)
        .await
        .map_err(proof_error)?;
    Ok(Json(ProofBundle {
        checkpoint: page.checkpoint.into(),
        proofs: page.proofs.into_iter().map(Into::into).collect(),
        has_more: page.next_after_seq.is_some(),
        next_cursor: page
            .next_after_seq
            .map(|seq| params::encode_cursor(&format!("seq:{seq}"))),
    }))
}

fn proof_error(e: ProofLookupError) -> ApiError {
    match e {
        ProofLookupError::UnknownEntry => ApiError::not_found("no ledger entry has this id"),
        ProofLookupError::UnknownCheckpoint => {
            ApiError::not_found("no checkpoint has this id").with_param("checkpoint")
        }
        ProofLookupError::NotCheckpointed | ProofLookupError::NotInCheckpoint => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NotCheckpointed,
            format!("{e}: entries enter the first daily checkpoint built after their day ends"),
        ),
        ProofLookupError::Storage(cause) => ApiError::storage(cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_ids_are_dates() {
        assert_eq!(checkpoint_date("chk_2025-01-15"), Some("2025-01-15"));
        for bad in [
            "2025-01-15",
            "chk_2025-1-15",
            "chk_2025-02-30",
            "chk_",
            "chk_x",
        ] {
            assert_eq!(checkpoint_date(bad), None, "{bad}");
        }
    }
}
