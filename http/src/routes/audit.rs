//! `GET /audit-events`: the audit log, newest first, in cursor pages. With `organisation_id`,
//! an admin of that organisation (or one of its API keys holding `audit:read`, for which it is
//! the default) reads its events (membership and role changes, organisation changes, its API
//! keys and tokens). Without it, any signed-in user reads the
//! events about themselves: those they did or that were done to their account (logins,
//! failed logins, sessions, password and security settings). Nobody reads another user's
//! personal events through the API.

use ampflow_actors::Audit;
use ampflow_actors::audit::AuditEvent;
use ampflow_types::Keyset;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::api_keys::Policy;
use crate::auth::{Caller, DashboardAuth};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::params;
use crate::routes::public::rfc3339;
use crate::state::AppState;

const PAGE_DEFAULT: u64 = 50;
const PAGE_MAX: u64 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_events))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// The organisation whose events to read (admins only); absent: your own events.
    pub organisation_id: Option<String>,
    /// Events per page: 50 by default, at most 200.
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActorView {
    /// user, api_key, system or anonymous.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TargetView {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// `aud_…`
    pub id: String,
    /// RFC 3339, with milliseconds.
    pub occurred_at: String,
    pub actor: ActorView,
    /// e.g. `session.login`, `session.login_failed`, `membership.added`.
    pub action: String,
    pub target: Option<TargetView>,
    pub organisation_id: Option<String>,
    pub ip_address: Option<String>,
    pub request_id: Option<String>,
    /// A small object; never a secret.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditEventView>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

fn view(event: AuditEvent) -> AuditEventView {
    AuditEventView {
        occurred_at: chrono::DateTime::from_timestamp_millis(event.occurred_at_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| rfc3339(event.occurred_at_ms)),
        actor: ActorView {
            kind: event.actor.kind(),
            id: event.actor.id().map(str::to_string),
        },
        target: event.target.map(|(kind, id)| TargetView { kind, id }),
        id: event.id,
        action: event.action,
        organisation_id: event.organisation_id,
        ip_address: event.ip_address,
        request_id: event.request_id,
        details: event.details,
    }
}

/// The audit log, newest first: an organisation's (admins of it) or your own.
#[utoipa::path(get, path = "/audit-events", tag = "audit", security(("cookie" = ["audit:read"]), ("api_key" = ["audit:read"])),
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_audit_events(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = params::page_limit(query.limit, PAGE_DEFAULT, PAGE_MAX)?;
    let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let organisation_id = query
        .organisation_id
        .or_else(|| caller.key_organisation().map(str::to_string));
    if let Some(organisation_id) = &organisation_id {
        caller
            .require(&state, organisation_id, Policy::AuditRead)
            .await?;
    }
    let user_id = match &caller {
        Caller::Session(session) => Some(session.user.id.as_str()),
        Caller::Key(_) => None,
    };
    let scope = Audit::scope(organisation_id, user_id)?;
    let mut events = state
        .actors()
        .audit()
        .page(&scope, cursor.as_ref(), limit + 1)
        .await?;
    let has_more = params::split_page(&mut events, limit);
    let next_cursor = has_more
        .then(|| {
            events
                .last()
                .map(|e| params::encode_keyset(e.occurred_at_ms, &e.id))
        })
        .flatten();
    Ok(Json(AuditPage {
        data: events.into_iter().map(view).collect(),
        has_more,
        next_cursor,
    }))
}

fn decode_cursor(text: &str) -> Result<Keyset, ApiError> {
    params::decode_keyset(text, |id| id.starts_with("aud_").then(|| id.to_string()))
}
