//! KYC through Veriff (seed 002 §3): the caller's Veriff session, and Veriff's decision and
//! event webhooks. Webhooks are authenticated (`X-AUTH-CLIENT` and a signature over the raw
//! body) before their JSON is parsed; then they are parsed into typed values here and applied
//! by the wallet's actor.

use ampflow_actors::wallet::{VeriffDecision, VeriffDecisionStatus};
use ampflow_actors::{KycEvent, WebhookHeaders};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::NaiveDate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{RawBody, WalletAuth, parse_json};
use crate::state::AppState;
use crate::wire::*;

const SESSION_ID_LENGTH_MAX: usize = 64;
const NAME_LENGTH_MAX: usize = 200;
const DOCUMENT_TYPE_LENGTH_MAX: usize = 64;
const COUNTRY_LENGTH_MAX: usize = 8;
const EVENT_ACTION_LENGTH_MAX: usize = 32;
const VERIFF_TIME_LENGTH_MAX: usize = 40;
const REASON_LENGTH_MAX: usize = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(veriff_session))
        .routes(routes!(decision_webhook))
        .routes(routes!(event_webhook))
}

/// The caller's Veriff session: the latest one while it is under 7 days old and undecided,
/// approved, in review or awaiting resubmission; otherwise a new one, created at Veriff.
#[utoipa::path(post, path = "/veriff/session", tag = "kyc", security(("wallet" = [])),
    responses((status = 200, body = VeriffSessionResponse), (status = 401, body = ErrorBody),
        (status = 503, description = "`veriff_not_configured`, or `veriff_unavailable` when Veriff cannot be reached", body = ErrorBody)))]
async fn veriff_session(
    State(state): State<AppState>,
    WalletAuth(principal): WalletAuth,
) -> Result<Json<VeriffSessionResponse>, ApiError> {
    let view = state.actors().kyc().start_session(&principal).await?;
    Ok(Json(view.into()))
}

/// Veriff's decision webhook. Needs `X-AUTH-CLIENT` (the API key) and `X-HMAC-SIGNATURE`
/// (hex HMAC-SHA256 of the body) or the legacy `X-SIGNATURE` (hex SHA-256 of body ‖ secret).
/// A repeated delivery changes nothing.
#[utoipa::path(post, path = "/veriff/webhook/decision", tag = "kyc",
    security(("veriff_signature" = [])),
    request_body = VeriffDecisionWebhook,
    responses((status = 200, description = "Applied (or already applied)"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn decision_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(), ApiError> {
    let kyc = state.actors().kyc();
    kyc.authenticate_webhook(webhook_headers(&headers), &body)?;
    let webhook: VeriffDecisionWebhook = parse_json(&body)?;
    let verification_id = session_id("verification.id", &webhook.verification.id)?.to_string();
    let decision = parse_decision(webhook.verification)?;
    let outcome = kyc.apply_decision(&verification_id, decision).await?;
    tracing::debug!(session = %verification_id, ?outcome, "Veriff decision webhook");
    Ok(())
}

/// Veriff's event webhook (7001 started, 7002 submitted), authenticated like the decision
/// webhook. The last event is recorded on the session.
#[utoipa::path(post, path = "/veriff/webhook/event", tag = "kyc",
    security(("veriff_signature" = [])),
    request_body = VeriffEventWebhook,
    responses((status = 200, description = "Recorded (or already recorded)"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn event_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(), ApiError> {
    let kyc = state.actors().kyc();
    kyc.authenticate_webhook(webhook_headers(&headers), &body)?;
    let webhook: VeriffEventWebhook = parse_json(&body)?;
    let verification_id = session_id("id", &webhook.id)?;
    let action = webhook.action.trim();
    if action.is_empty() || action.len() > EVENT_ACTION_LENGTH_MAX {
        return Err(ApiError::invalid_param(
            "action",
            format!("action must be 1 to {EVENT_ACTION_LENGTH_MAX} characters"),
        ));
    }
    let event = KycEvent {
        action: action.to_string(),
        code: webhook.code,
    };
    let outcome = kyc.record_event(verification_id, event).await?;
    tracing::debug!(session = verification_id, ?outcome, "Veriff event webhook");
    Ok(())
}

fn webhook_headers(headers: &HeaderMap) -> WebhookHeaders<'_> {
    let get = |name: &str| headers.get(name).map(|v| v.as_bytes());
    WebhookHeaders {
        auth_client: get("x-auth-client"),
        hmac_signature: get("x-hmac-signature"),
        legacy_signature: get("x-signature"),
    }
}

fn session_id<'a>(param: &str, id: &'a str) -> Result<&'a str, ApiError> {
    if id.is_empty() || id.len() > SESSION_ID_LENGTH_MAX {
        return Err(ApiError::invalid_param(
            param,
            format!("{param} must be 1 to {SESSION_ID_LENGTH_MAX} characters"),
        ));
    }
    Ok(id)
}

/// Veriff's verification, as a typed decision. Text fields are trimmed and bounded; an
/// empty one counts as absent.
fn parse_decision(v: VeriffVerification) -> Result<VeriffDecision, ApiError> {
    let status = VeriffDecisionStatus::parse(&v.status).ok_or_else(|| {
        ApiError::invalid_param(
            "verification.status",
            format!("unknown decision status {:?}", v.status),
        )
    })?;
    let (first_name, last_name) = v
        .person
        .map(|p| (p.first_name, p.last_name))
        .unwrap_or_default();
    let (document_type, country, valid_until) = v
        .document
        .map(|d| (d.document_type, d.country, d.valid_until))
        .unwrap_or_default();
    let document_valid_until = bounded("verification.document.validUntil", valid_until, 10)?
        .map(|text| {
            NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
                ApiError::invalid_param(
                    "verification.document.validUntil",
                    "validUntil must be a date, YYYY-MM-DD",
                )
            })
        })
        .transpose()?;
    Ok(VeriffDecision {
        status,
        code: v.code,
        reason: bounded("verification.reason", v.reason, REASON_LENGTH_MAX)?,
        reason_code: v.reason_code,
        decision_time: bounded(
            "verification.decisionTime",
            v.decision_time,
            VERIFF_TIME_LENGTH_MAX,
        )?,
        acceptance_time: bounded(
            "verification.acceptanceTime",
            v.acceptance_time,
            VERIFF_TIME_LENGTH_MAX,
        )?,
        person_first_name: bounded("verification.person.firstName", first_name, NAME_LENGTH_MAX)?,
        person_last_name: bounded("verification.person.lastName", last_name, NAME_LENGTH_MAX)?,
        document_type: bounded(
            "verification.document.type",
            document_type,
            DOCUMENT_TYPE_LENGTH_MAX,
        )?,
        document_country: bounded("verification.document.country", country, COUNTRY_LENGTH_MAX)?,
        document_valid_until,
    })
}

/// `value` trimmed, `None` when absent or empty, 400 when longer than `max` bytes.
fn bounded(param: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.trim();
    if value.len() > max {
        return Err(ApiError::invalid_param(
            param,
            format!("{param} is longer than {max} characters"),
        ));
    }
    Ok((!value.is_empty()).then(|| value.to_string()))
}
