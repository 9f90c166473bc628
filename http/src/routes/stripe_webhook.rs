//! Stripe's webhooks (`POST /webhooks/stripe`): the `Stripe-Signature` is checked over the raw
//! body before anything is parsed; the event is then applied to its donation. The answer is
//! 200 only once the change (and its ledger entries) is durable, so Stripe redelivers until
//! then; a bad or stale signature answers 400 and changes nothing.

use axum::extract::State;
use axum::http::HeaderMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::RawBody;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stripe_webhook))
}

/// Stripe's webhook: `payment_intent.succeeded` completes the donation and appends a
/// `donation_received` ledger entry, `payment_intent.payment_failed` fails it (never after a
/// success), `charge.refunded` refunds it with a negative `donation_refunded` entry; other
/// event types are acknowledged and ignored. A redelivered event changes nothing.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "donations",
    security(("stripe_signature" = [])),
    request_body(content = Object, description = "A Stripe Event, signed in `Stripe-Signature`"),
    responses((status = 200, description = "Applied, already applied, or ignored (a success whose amount or currency differs from its donation's is not applied, and is recorded once per event id in `stripe_amount_mismatches`)"),
        (status = 400, description = "`invalid_signature` (bad or stale), or a malformed event or livemode mismatch", body = ErrorBody),
        (status = 503, description = "`stripe_not_configured`, or the change could not be made durable; Stripe retries", body = ErrorBody)))]
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(), ApiError> {
    let signature = headers.get("stripe-signature").map(|v| v.as_bytes());
    state
        .actors()
        .donations()
        .apply_webhook(signature, &body)
        .await?;
    Ok(())
}
