//! Donations (seed 000, "Donations"): create one, which sets up its Stripe PaymentIntent, and
//! read the caller's donations. Platform envelopes: `{data, meta:{request_id}}` for one record,
//! `{data, has_more, next_cursor}` for a page. Donors sign in with the wallet JWT and see their
//! own donations. An organisation's members (session cookie) and API keys see the
//! organisation's, with `donations:read`, and create donations for it with `donations:write`.

use ampflow_actors::donation::DonationRecord;
use ampflow_actors::donation::{DonationError, NewDonation};
use ampflow_actors::stripe::StripeError;
use ampflow_types::Keyset;
use ampflow_types::{Currency, DonationId};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::api_keys::Policy;
use crate::auth::extract::{AnyAuth, AnyCaller};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::middleware::RequestId;
use crate::params;
use crate::routes::public::{Envelope, rfc3339};
use crate::state::AppState;

/// Donations per page by default, and at most.
const PAGE_DEFAULT: u64 = 20;
const PAGE_MAX: u64 = 100;
/// Stripe's largest amount (99,999,999 minor units, e.g. €999,999.99).
const AMOUNT_MAX: i64 = 99_999_999;
const EMAIL_LENGTH_MAX: usize = 254;
const NAME_LENGTH_MAX: usize = 200;
/// Organisation and fund ids are `org_`/`fund_` and 32 hex characters.
const RECORD_ID_LENGTH_MAX: usize = 40;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_donation, list_donations))
        .routes(routes!(get_donation))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DonationBody {
    /// `org_…`
    pub organisation_id: String,
    /// `fund_…`, one of the organisation's funds; absent for the organisation as a whole.
    pub fund_id: Option<String>,
    /// Minor units (cents), an integer above 0.
    #[schema(example = 5000)]
    pub amount: i64,
    /// ISO 4217, e.g. `EUR`.
    #[schema(example = "EUR")]
    pub currency: String,
    pub donor_email: String,
    pub donor_name: Option<String>,
}

/// `POST /donations`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedDonationView {
    /// `don_…`
    pub id: String,
    /// `pending` until Stripe reports the payment.
    pub status: &'static str,
    /// For Stripe.js (`stripe.confirmPayment`); shown once, never stored.
    pub client_secret: String,
}

/// A donation.
#[derive(Debug, Serialize, ToSchema)]
pub struct DonationView {
    /// `don_…`
    pub id: String,
    pub organisation_id: String,
    pub fund_id: Option<String>,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    pub donor_email: String,
    pub donor_name: Option<String>,
    /// pending, succeeded, failed, cancelled or refunded.
    pub status: &'static str,
    pub stripe_payment_intent_id: Option<String>,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

impl From<DonationRecord> for DonationView {
    fn from(d: DonationRecord) -> Self {
        Self {
            id: d.id,
            organisation_id: d.organisation_id,
            fund_id: d.fund_id,
            amount: d.amount,
            currency: d.currency,
            donor_email: d.donor_email,
            donor_name: d.donor_name,
            status: d.status.as_str(),
            stripe_payment_intent_id: d.stripe_payment_intent_id,
            failure_reason: d.failure_reason,
            created_at: rfc3339(d.created_at_ms),
            updated_at: rfc3339(d.updated_at_ms),
        }
    }
}

/// A page of donations, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DonationPage {
    pub data: Vec<DonationView>,
    pub has_more: bool,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DonationQuery {
    /// An organisation's donations instead of the wallet's: for its members, signed in with
    /// the session cookie.
    pub organisation_id: Option<String>,
    /// Donations per page: 20 by default, at most 100.
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl From<DonationError> for ApiError {
    fn from(error: DonationError) -> Self {
        let message = error.to_string();
        match error {
            DonationError::NotConfigured => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StripeNotConfigured,
                message,
            ),
            DonationError::OrganisationUnknown | DonationError::OrganisationSuspended => {
                Self::invalid_param("organisation_id", message)
            }
            DonationError::FundUnknown => Self::invalid_param("fund_id", message),
            DonationError::NotFound => Self::not_found(message),
            DonationError::Payment(stripe) => payment_error(*stripe),
            DonationError::TransactionIdReused => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::IdempotencyConflict,
                message,
            ),
            DonationError::IllegalTransition { .. } | DonationError::Conflict => {
                Self::conflict(message)
            }
            DonationError::Signature(_) => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidSignature,
                message,
            ),
            DonationError::EventMalformed(_) => Self::invalid_request(message),
            DonationError::LivemodeMismatch => Self::invalid_param("livemode", message),
            DonationError::Ledger(cause) => {
                tracing::warn!(%cause, "a donation's ledger entry could not be appended");
                Self::unavailable("the ledger could not be written; retry")
            }
            DonationError::Storage(cause) => Self::internal(cause),
            DonationError::Unavailable(cause) => Self::storage_unavailable(cause),
            DonationError::Actor(registry) => registry.into(),
        }
    }
}

/// `payment_error`: a decline is 402, parameters Stripe refused are 400 (naming ours), and
/// anything on Stripe's side or ours (outage, a refused key) is 502 with the cause logged.
fn payment_error(error: StripeError) -> ApiError {
    const CODE: ErrorCode = ErrorCode::PaymentError;
    match error {
        StripeError::Api {
            kind,
            message,
            param,
            status,
            ..
        } if kind == "card_error" || (kind == "invalid_request_error" && status != 401) => {
            let status = if kind == "card_error" {
                StatusCode::PAYMENT_REQUIRED
            } else {
                StatusCode::BAD_REQUEST
            };
            let error = ApiError::new(status, CODE, format!("the payment was refused: {message}"));
            match param.as_deref() {
                Some("amount" | "currency") => error.with_param(param.unwrap_or_default()),
                Some("receipt_email") => error.with_param("donor_email"),
                _ => error,
            }
        }
        other => {
            tracing::warn!(error = %other, "Stripe could not create the PaymentIntent");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                CODE,
                "the payment provider could not set up the payment; retry",
            )
        }
    }
}

/// Create a donation and its Stripe PaymentIntent; pay it in the browser with the answered
/// `client_secret`. A donor signs in with their wallet; an organisation's API key (or admin
/// session) needs `donations:write` for the body's organisation.
#[utoipa::path(post, path = "/donations", tag = "donations", security(("wallet" = []), ("cookie" = ["donations:write"]), ("api_key" = ["donations:write"])),
    request_body = DonationBody,
    responses((status = 201, body = inline(Envelope<CreatedDonationView>)), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 402, description = "`payment_error`: Stripe declined", body = ErrorBody),
        (status = 502, description = "`payment_error`: Stripe could not be reached or failed", body = ErrorBody),
        (status = 503, description = "`stripe_not_configured`", body = ErrorBody)))]
async fn create_donation(
    State(state): State<AppState>,
    AnyAuth(caller): AnyAuth,
    axum::Extension(request_id): axum::Extension<RequestId>,
    ApiJson(body): ApiJson<DonationBody>,
) -> Result<(StatusCode, Json<Envelope<CreatedDonationView>>), ApiError> {
    let wallet = match &caller {
        AnyCaller::Wallet(principal) => Some(principal.address),
        AnyCaller::Dashboard(_) => None,
    };
    let new = parse_donation(body, wallet)?;
    if let AnyCaller::Dashboard(caller) = &caller {
        caller
            .require(&state, &new.organisation_id, Policy::DonationsWrite)
            .await?;
    }
    let created = state.actors().donations().create(new).await?;
    let view = CreatedDonationView {
        id: created.donation.id,
        status: created.donation.status.as_str(),
        client_secret: created.client_secret.expose_secret().to_string(),
    };
    Ok((StatusCode::CREATED, Envelope::new(view, &request_id)))
}

/// The donor email of a `POST /donations` body that the handler would accept (the card-testing
/// defence counts only valid donations); `None` for any other body.
pub(crate) fn validated_donor_email(bytes: &[u8]) -> Option<String> {
    let body = crate::extract::parse_json::<DonationBody>(bytes).ok()?;
    parse_donation(body, None).ok().map(|d| d.donor_email)
}

fn parse_donation(
    body: DonationBody,
    wallet: Option<ampflow_types::WalletAddress>,
) -> Result<NewDonation, ApiError> {
    let record_id = |param: &str, prefix: &str, text: &str| {
        let text = text.trim();
        if !text.starts_with(prefix) || text.len() > RECORD_ID_LENGTH_MAX {
            return Err(ApiError::invalid_param(
                param,
                format!("{param} must be an id starting with {prefix}"),
            ));
        }
        Ok(text.to_string())
    };
    let organisation_id = record_id("organisation_id", "org_", &body.organisation_id)?;
    let fund_id = body
        .fund_id
        .as_deref()
        .map(|f| record_id("fund_id", "fund_", f))
        .transpose()?;
    if !(1..=AMOUNT_MAX).contains(&body.amount) {
        return Err(ApiError::invalid_param(
            "amount",
            format!("amount must be an integer number of minor units from 1 to {AMOUNT_MAX}"),
        ));
    }
    let currency = Currency::parse(body.currency.trim())
        .map_err(|e| ApiError::invalid_param("currency", e.to_string()))?;
    let donor_email = body.donor_email.trim();
    if donor_email.len() > EMAIL_LENGTH_MAX || !email_address::EmailAddress::is_valid(donor_email) {
        return Err(ApiError::invalid_param(
            "donor_email",
            "donor_email is not a valid address",
        ));
    }
    let donor_name = body
        .donor_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if donor_name.is_some_and(|n| n.chars().count() > NAME_LENGTH_MAX) {
        return Err(ApiError::invalid_param(
            "donor_name",
            format!("donor_name is longer than {NAME_LENGTH_MAX} characters"),
        ));
    }
    Ok(NewDonation {
        organisation_id,
        fund_id,
        wallet,
        amount: body.amount,
        currency,
        donor_email: donor_email.to_string(),
        donor_name: donor_name.map(str::to_string),
    })
}

/// One donation: a wallet's own, or (with `donations:read`) one of the organisation's.
#[utoipa::path(get, path = "/donations/{id}", tag = "donations", security(("wallet" = []), ("cookie" = ["donations:read"]), ("api_key" = ["donations:read"])),
    params(("id" = String, Path, description = "The donation's id (don_…)")),
    responses((status = 200, body = inline(Envelope<DonationView>)), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_donation(
    State(state): State<AppState>,
    AnyAuth(caller): AnyAuth,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<DonationView>>, ApiError> {
    let id = DonationId::parse(&id).map_err(|_| ApiError::not_found("no donation has this id"))?;
    let donations = state.actors().donations();
    let donation = match caller {
        AnyCaller::Wallet(principal) => donations.get(&id, &principal.address).await?,
        AnyCaller::Dashboard(caller) => {
            let organisation_id = match caller.key_organisation() {
                Some(organisation_id) => organisation_id.to_string(),
                // A user may belong to several organisations: read the donation, then check.
                None => donations.organisation_of(&id).await?,
            };
            caller
                .require(&state, &organisation_id, Policy::DonationsRead)
                .await?;
            donations.get_of_organisation(&id, &organisation_id).await?
        }
    };
    Ok(Envelope::new(donation.into(), &request_id))
}

/// Donations, newest first: a wallet's own (wallet token), or an organisation's (a member's
/// session cookie with `organisation_id`, or an API key with `donations:read`, whose own
/// organisation is the default).
#[utoipa::path(get, path = "/donations", tag = "donations", security(("wallet" = []), ("cookie" = ["donations:read"]), ("api_key" = ["donations:read"])),
    params(DonationQuery),
    responses((status = 200, body = DonationPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_donations(
    State(state): State<AppState>,
    AnyAuth(caller): AnyAuth,
    ApiQuery(query): ApiQuery<DonationQuery>,
) -> Result<Json<DonationPage>, ApiError> {
    let limit = params::page_limit(query.limit, PAGE_DEFAULT, PAGE_MAX)?;
    let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut donations = match caller {
        AnyCaller::Dashboard(caller) => {
            let organisation_id = query
                .organisation_id
                .or_else(|| caller.key_organisation().map(str::to_string))
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "organisation_id",
                        "give the organisation_id whose donations to list",
                    )
                })?;
            caller
                .require(&state, &organisation_id, Policy::DonationsRead)
                .await?;
            state
                .actors()
                .donations()
                .list_of_organisation(&organisation_id, cursor.as_ref(), limit + 1)
                .await?
        }
        AnyCaller::Wallet(principal) => {
            if query.organisation_id.is_some() {
                return Err(ApiError::authentication(
                    "an organisation's donations need a session cookie or an API key",
                ));
            }
            state
                .actors()
                .donations()
                .list(&principal.address, cursor.as_ref(), limit + 1)
                .await?
        }
    };
    let has_more = params::split_page(&mut donations, limit);
    let next_cursor = has_more
        .then(|| donations.last().map(encode_cursor))
        .flatten();
    Ok(Json(DonationPage {
        data: donations.into_iter().map(Into::into).collect(),
        has_more,
        next_cursor,
    }))
}

/// A cursor over `<created_at_ms>:<id>`.
fn encode_cursor(d: &DonationRecord) -> String {
    params::encode_keyset(d.created_at_ms, &d.id)
}

fn decode_cursor(text: &str) -> Result<Keyset, ApiError> {
    params::decode_keyset(text, |id| Some(DonationId::parse(id).ok()?.to_string()))
}
