//! Public, read-only endpoints (seed 000, "Public Endpoints"): organisations, with the seed's
//! envelopes — `{data, meta:{request_id}}` for one record, `{data, has_more, next_cursor}` for
//! a page.

use ampflow_storage::{FundRecord, OrganisationCursor, OrganisationRecord};
use axum::Json;
use axum::extract::State;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::RequestId;
use crate::state::AppState;

/// Organisations per page by default, and at most.
const PAGE_DEFAULT: u64 = 20;
const PAGE_MAX: u64 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_organisations))
        .routes(routes!(get_organisation))
}

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
    fn new(org: OrganisationRecord, funds: Option<Vec<FundRecord>>) -> Self {
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

/// `cur_` + base64url of `<created_at_ms>:<id>`.
fn encode_cursor(org: &OrganisationRecord) -> String {
    format!(
        "cur_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", org.created_at_ms, org.id))
    )
}

fn decode_cursor(text: &str) -> Result<OrganisationCursor, ApiError> {
    let bad = || ApiError::invalid_param("cursor", "the cursor is not one this API gave");
    let encoded = text.strip_prefix("cur_").ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    if !id.starts_with("org_") || id.len() > 40 {
        return Err(bad());
    }
    Ok(OrganisationCursor {
        created_at_ms: at.parse().map_err(|_| bad())?,
        id: id.to_string(),
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
    let limit = match query.limit {
        None => PAGE_DEFAULT,
        Some(n) if (1..=PAGE_MAX).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "limit",
                format!("limit must be 1 to {PAGE_MAX}"),
            ));
        }
    };
    let country = query
        .country
        .as_deref()
        .map(|c| {
            crate::admin::country_code(c)
                .map_err(|e| ApiError::invalid_param("country", e.to_string()))
        })
        .transpose()?;
    let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut orgs = state
        .storage()
        .list_organisations(country.as_deref(), cursor.as_ref(), limit + 1)
        .await
        .map_err(ApiError::internal)?;
    let has_more = orgs.len() as u64 > limit;
    orgs.truncate(limit as usize);
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
    let not_found = || ApiError::not_found("no organisation has this id");
    if !id.starts_with("org_") || id.len() > 40 {
        return Err(not_found());
    }
    let org = state
        .storage()
        .organisation(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    let funds = state
        .storage()
        .funds_of(&org.id)
        .await
        .map_err(ApiError::internal)?;
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
            status: ampflow_storage::OrganisationStatus::Verified,
            description: None,
            website: None,
            logo_url: None,
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 0,
        };
        let cursor = decode_cursor(&encode_cursor(&org)).unwrap();
        assert_eq!(cursor.id, org.id);
        assert_eq!(cursor.created_at_ms, org.created_at_ms);
        for bad in ["", "cur_", "cur_!!", "abc", "cur_MTIzOmZvbw"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
        assert_eq!(rfc3339(1_736_951_400_000), "2025-01-15T14:30:00Z");
    }
}
