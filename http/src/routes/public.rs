//! Public, read-only endpoints (seed 000, "Public Endpoints"): organisations, with the seed's
//! envelopes — `{data, meta:{request_id}}` for one record, `{data, has_more, next_cursor}` for
//! a page.

use ampflow_actors::ledger::{LedgerEntryRecord, LedgerRange};
use ampflow_actors::organisations::{FundRecord, OrganisationRecord};
use ampflow_types::Keyset;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::api_keys::Policy;
use crate::auth::extract::MaybeKey;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::RequestId;
use crate::params;
use crate::state::AppState;
use futures::StreamExt;

/// Organisations per page by default, and at most.
const PAGE_DEFAULT: u64 = 20;
const PAGE_MAX: u64 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_organisations))
        .routes(routes!(get_organisation))
        .routes(routes!(ledger))
        .routes(routes!(ledger_export))
}

/// Ledger entries per page by default, and at most.
const LEDGER_PAGE_DEFAULT: u64 = 50;
const LEDGER_PAGE_MAX: u64 = 500;

/// `{data, meta: {request_id}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    pub data: T,
    pub meta: Meta,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Meta {
    pub request_id: String,
}

impl<T> Envelope<T> {
    pub fn new(data: T, request_id: &RequestId) -> Json<Self> {
        Json(Self {
            data,
            meta: Meta {
                request_id: request_id.0.to_str().unwrap_or_default().to_string(),
            },
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub description: Option<String>,
    pub website: Option<String>,
    pub logo_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FundView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
}

/// An organisation.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganisationView {
    /// `org_…`
    pub id: String,
    pub name: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// pending, verified or suspended.
    pub status: String,
    pub profile: Profile,
    /// RFC 3339.
    pub created_at: String,
    /// Only on `GET /public/organisations/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub funds: Option<Vec<FundView>>,
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl OrganisationView {
    pub(crate) fn new(org: OrganisationRecord, funds: Option<Vec<FundRecord>>) -> Self {
        Self {
            id: org.id,
            name: org.name,
            country: org.country,
            status: org.status.as_str().to_string(),
            profile: Profile {
                description: org.description,
                website: org.website,
                logo_url: org.logo_url,
            },
            created_at: rfc3339(org.created_at_ms),
            funds: funds.map(|funds| {
                funds
                    .into_iter()
                    .map(|f| FundView {
                        id: f.id,
                        name: f.name,
                        description: f.description,
                    })
                    .collect()
            }),
        }
    }
}

/// A page of organisations, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganisationPage {
    pub data: Vec<OrganisationView>,
    pub has_more: bool,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct OrganisationQuery {
    /// Results per page: 20 by default, at most 100.
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only organisations in this country (ISO 3166-1 alpha-2).
    pub country: Option<String>,
}

/// A cursor over `<created_at_ms>:<id>`.
fn encode_cursor(org: &OrganisationRecord) -> String {
    params::encode_keyset(org.created_at_ms, &org.id)
}

fn decode_cursor(text: &str) -> Result<Keyset, ApiError> {
    params::decode_keyset(text, |id| {
        (id.starts_with("org_") && id.len() <= 40).then(|| id.to_string())
    })
}

/// List organisations.
#[utoipa::path(get, path = "/public/organisations", tag = "public",
    params(OrganisationQuery),
    responses((status = 200, body = OrganisationPage), (status = 400, body = ErrorBody)))]
async fn list_organisations(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<OrganisationQuery>,
) -> Result<Json<OrganisationPage>, ApiError> {
    let limit = params::page_limit(query.limit, PAGE_DEFAULT, PAGE_MAX)?;
    let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut orgs = state
        .actors()
        .organisations()
        .page(query.country.as_deref(), cursor.as_ref(), limit + 1)
        .await?;
    let has_more = params::split_page(&mut orgs, limit);
    let next_cursor = has_more.then(|| orgs.last().map(encode_cursor)).flatten();
    Ok(Json(OrganisationPage {
        data: orgs
            .into_iter()
            .map(|o| OrganisationView::new(o, None))
            .collect(),
        has_more,
        next_cursor,
    }))
}

/// One organisation, with its funds.
#[utoipa::path(get, path = "/public/organisations/{id}", tag = "public",
    params(("id" = String, Path, description = "The organisation's id (org_…)")),
    responses((status = 200, body = inline(Envelope<OrganisationView>)), (status = 404, body = ErrorBody)))]
async fn get_organisation(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<OrganisationView>>, ApiError> {
    let (org, funds) = state.actors().organisations().with_funds(&id).await?;
    Ok(Envelope::new(
        OrganisationView::new(org, Some(funds)),
        &request_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_forgeries_are_refused() {
        let org = OrganisationRecord {
            id: "org_0123456789abcdef0123456789abcdef".into(),
            name: "n".into(),
            country: "DE".into(),
            status: ampflow_actors::organisations::OrganisationStatus::Verified,
            description: None,
            website: None,
            logo_url: None,
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 0,
        };
        let cursor = decode_cursor(&encode_cursor(&org)).unwrap();
        assert_eq!(cursor.id, org.id);
        assert_eq!(cursor.at_ms, org.created_at_ms);
        for bad in ["", "cur_", "cur_!!", "abc", "cur_MTIzOmZvbw"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
        assert_eq!(rfc3339(1_736_951_400_000), "2025-01-15T14:30:00Z");
    }
}

/// A ledger entry, as the seed shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntryView {
    /// `led_…`
    pub id: String,
    /// donation_received, donation_refunded, …
    #[serde(rename = "type")]
    pub entry_type: String,
    /// Minor units; refunds are negative.
    pub amount: i64,
    pub currency: String,
    /// RFC 3339 with milliseconds: the `timestamp` that is hashed.
    pub created_at: String,
    #[schema(value_type = Object)]
    pub metadata: ampflow_types::ledger::LedgerMetadata,
    /// `sha256:<hex>`
    pub entry_hash: String,
    pub prev_entry_hash: Option<String>,
}

impl From<LedgerEntryRecord> for LedgerEntryView {
    fn from(e: LedgerEntryRecord) -> Self {
        Self {
            id: e.content.id,
            entry_type: e.content.entry_type,
            amount: e.content.amount,
            currency: e.content.currency,
            created_at: e.content.timestamp,
            metadata: e.content.metadata,
            entry_hash: e.entry_hash,
            prev_entry_hash: e.content.prev_entry_hash,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerPage {
    pub data: Vec<LedgerEntryView>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LedgerQuery {
    /// Entries per page: 50 by default, at most 500.
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Entries from this UTC day on (YYYY-MM-DD).
    pub start_date: Option<String>,
    /// Entries up to the end of this UTC day (YYYY-MM-DD).
    pub end_date: Option<String>,
}

fn day_start_ms(param: &str, text: &str) -> Result<i64, ApiError> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            ApiError::invalid_param(param, format!("{param} must be a date, YYYY-MM-DD"))
        })
}

/// The organisation, or 404.
pub(crate) async fn known_organisation(
    state: &AppState,
    id: &str,
) -> Result<OrganisationRecord, ApiError> {
    Ok(state.actors().organisations().get(id).await?)
}

/// An organisation's public ledger, in chain order (oldest first).
#[utoipa::path(get, path = "/public/organisations/{id}/ledger", tag = "public",
    security((), ("api_key" = ["ledger:read"])),
    params(("id" = String, Path, description = "The organisation's id (org_…)"), LedgerQuery),
    responses((status = 200, body = LedgerPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "an API key without `ledger:read` for this organisation", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn ledger(
    State(state): State<AppState>,
    MaybeKey(key): MaybeKey,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LedgerQuery>,
) -> Result<Json<LedgerPage>, ApiError> {
    if let Some(caller) = key {
        caller.require(&state, &id, Policy::LedgerRead).await?;
    }
    let limit = params::page_limit(query.limit, LEDGER_PAGE_DEFAULT, LEDGER_PAGE_MAX)?;
    let after_seq = match query.cursor.as_deref() {
        None => 0,
        Some(cursor) => params::decode_cursor(cursor, |position| {
            position.strip_prefix("seq:")?.parse::<u64>().ok()
        })?,
    };
    let from_ms = query
        .start_date
        .as_deref()
        .map(|d| day_start_ms("start_date", d))
        .transpose()?;
    let until_ms = query
        .end_date
        .as_deref()
        .map(|d| day_start_ms("end_date", d).map(|ms| ms + 24 * 60 * 60 * 1000))
        .transpose()?;
    if let (Some(from), Some(until)) = (from_ms, until_ms)
        && from >= until
    {
        return Err(ApiError::invalid_param(
            "end_date",
            "end_date is before start_date",
        ));
    }
    let org = known_organisation(&state, &id).await?;
    let range = LedgerRange {
        after_seq,
        from_ms,
        until_ms,
    };
    let mut entries = state
        .actors()
        .ledger()
        .reader()
        .entries(&org.id, range, limit + 1)
        .await
        .map_err(ApiError::storage)?;
    let has_more = params::split_page(&mut entries, limit);
    let next_cursor = has_more
        .then(|| entries.last())
        .flatten()
        .map(|e| params::encode_cursor(&format!("seq:{}", e.seq)));
    Ok(Json(LedgerPage {
        data: entries.into_iter().map(Into::into).collect(),
        has_more,
        next_cursor,
    }))
}

/// The whole ledger, for independent verification (`ampflow ledger verify`): streamed, and
/// consistent — it holds exactly the `entry_count` entries the chain had when it started.
#[utoipa::path(get, path = "/public/organisations/{id}/ledger/export", tag = "public",
    security((), ("api_key" = ["ledger:read"])),
    params(("id" = String, Path, description = "The organisation's id (org_…)")),
    responses((status = 200, description = "`{downloaded_at, organisation_id, entry_count, entries}`", content_type = "application/json"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "an API key without `ledger:read` for this organisation", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn ledger_export(
    State(state): State<AppState>,
    MaybeKey(key): MaybeKey,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::response::Response, ApiError> {
    if let Some(caller) = key {
        caller.require(&state, &id, Policy::LedgerRead).await?;
    }
    let org = known_organisation(&state, &id).await?;
    let export = state
        .actors()
        .ledger()
        .reader()
        .export(&org.id)
        .await
        .map_err(ApiError::storage)?;
    let body = export.chunks.map(|chunk| chunk.map(bytes::Bytes::from));
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header(
            axum::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"ledger-{}.json\"", org.id),
        )
        .body(axum::body::Body::from_stream(body))
        .map_err(ApiError::internal)
}
