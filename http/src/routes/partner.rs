//! The partner API (seed 003): donations partners record on their own sites, through signed
//! requests (see [`crate::partner_auth`]), and the ads their sites show. Bodies keep the seed's
//! camelCase shapes; errors are `{"errors": [...]}` with the platform's `error` object beside
//! it.
//!
//! A partner donation is a donation of the key's organisation with source `partner` and no
//! Stripe PaymentIntent: the partner collects the money and settles it in batches, so it
//! stays `pending` (`PENDING_BATCH`) until then; `DELETE` cancels it through its actor.

use ampflow_actors::donation::DonationStatus;
use ampflow_actors::donation::{DonationError, NewPartnerDonation, PartnerDonation};
use ampflow_types::{Currency, DonationId};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorCode};
use crate::extract::{ApiPath, ApiQuery, parse_json};
use crate::partner_auth::{PartnerAuth, PartnerError, PartnerErrorBody};
use crate::routes::public::rfc3339;
use crate::state::AppState;

/// Amounts in USD up to 999,999.99 (the platform's largest donation).
const AMOUNT_CENTS_MAX: i64 = 99_999_999;
const TEXT_LENGTH_MAX: usize = 255;
const EMAIL_LENGTH_MAX: usize = 254;
/// Ads served per call.
const ADS_MAX: u64 = 100;
const CALLBACK_LENGTH_MAX: usize = 64;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_donation))
        .routes(routes!(get_donation, cancel_donation))
        .routes(routes!(nonprofit_ads))
        .route(
            "/igive-api/v1_0/donation",
            axum::routing::put(put_not_implemented),
        )
        .route(
            "/igive-api/v1_0/donation/{guid}",
            axum::routing::put(put_not_implemented),
        )
}

/// The donor, as the seed shapes it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerDonor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_donor_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub share_personal_info: bool,
    pub billing_address1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_address2: Option<String>,
    pub billing_city: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_zip: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub billing_country: String,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell_phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_phone_number: Option<String>,
}

/// `POST /igive-api/v1_0/donation`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerDonationBody {
    /// USD, at most two decimals.
    #[schema(example = 42.80)]
    pub amount: f64,
    /// The share of the donation a sponsor matches, a whole number from 0 to 100.
    pub sponsor_matching_percentage: Option<f64>,
    pub non_profit_campaign_guid: String,
    pub publisher_campaign_guid: String,
    pub sponsor_campaign_guid: Option<String>,
    pub publisher_transaction_id: Option<String>,
    pub publisher_account_guid: String,
    pub donor: PartnerDonor,
}

/// `POST`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedPartnerDonation {
    pub guid: String,
}

/// A partner donation, as the seed's `GET` shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerDonationView {
    pub guid: String,
    /// USD.
    pub amount: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sponsor_matching_percentage: Option<i32>,
    pub non_profit_campaign_guid: String,
    pub publisher_campaign_guid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sponsor_campaign_guid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_transaction_id: Option<String>,
    pub publisher_account_guid: String,
    #[schema(value_type = Object)]
    pub donor: serde_json::Value,
    /// PENDING_BATCH, PUBLISHER_BATCH_COMPLETED, PUBLISHER_PAYMENT_ERROR or CANCELLED.
    pub status: &'static str,
    /// RFC 3339, UTC.
    pub date_created: String,
    pub publisher_name: Option<String>,
    /// The seed's spelling of `publisherName`, sent too so clients written against it work.
    pub publiser_name: Option<String>,
    pub non_profit_name: String,
}

impl From<PartnerDonation> for PartnerDonationView {
    fn from(d: PartnerDonation) -> Self {
        Self {
            guid: guid_of(&d.donation.id),
            amount: d.donation.amount as f64 / 100.0,
            sponsor_matching_percentage: d.partner.sponsor_matching_percentage,
            non_profit_campaign_guid: d.partner.nonprofit_campaign_guid,
            publisher_campaign_guid: d.partner.publisher_campaign_guid,
            sponsor_campaign_guid: d.partner.sponsor_campaign_guid,
            publisher_transaction_id: d.partner.publisher_transaction_id,
            publisher_account_guid: d.partner.publisher_account_guid,
            donor: serde_json::from_str(&d.partner.donor_json).unwrap_or_default(),
            status: seed_status(d.donation.status),
            date_created: rfc3339(d.donation.created_at_ms),
            publisher_name: d.publisher_name.clone(),
            publiser_name: d.publisher_name,
            non_profit_name: d.organisation_name,
        }
    }
}

/// The seed's status for a donation's state.
fn seed_status(status: DonationStatus) -> &'static str {
    match status {
        DonationStatus::Pending => "PENDING_BATCH",
        DonationStatus::Succeeded => "PUBLISHER_BATCH_COMPLETED",
        DonationStatus::Failed => "PUBLISHER_PAYMENT_ERROR",
        DonationStatus::Cancelled | DonationStatus::Refunded => "CANCELLED",
    }
}

/// `don_<32 hex>` → the same 16 bytes as a 36-character guid.
fn guid_of(donation_id: &str) -> String {
    donation_id
        .strip_prefix("don_")
        .and_then(|hex| uuid::Uuid::try_parse(hex).ok())
        .map(|u| u.hyphenated().to_string())
        .unwrap_or_default()
}

fn donation_id_of(guid: &str) -> Result<DonationId, ApiError> {
    uuid::Uuid::try_parse(guid)
        .ok()
        .filter(|_| guid.len() == 36)
        .map(|u| DonationId::from_bytes(*u.as_bytes()))
        .ok_or_else(|| ApiError::not_found("no donation has this guid"))
}

/// A 36-character guid, kept lowercase.
fn guid(param: &str, text: &str) -> Result<String, ApiError> {
    uuid::Uuid::try_parse(text.trim())
        .ok()
        .filter(|_| text.trim().len() == 36)
        .map(|u| u.hyphenated().to_string())
        .ok_or_else(|| {
            ApiError::invalid_param(param, format!("{param} must be a 36-character guid"))
        })
}

fn bounded(param: &str, text: &str, required: bool) -> Result<Option<String>, ApiError> {
    let text = text.trim();
    if text.chars().count() > TEXT_LENGTH_MAX || (required && text.is_empty()) {
        return Err(ApiError::invalid_param(
            param,
            format!("{param} must be 1 to {TEXT_LENGTH_MAX} characters"),
        ));
    }
    Ok(Some(text.to_string()).filter(|t| !t.is_empty()))
}

fn amount_cents(amount: f64) -> Result<i64, ApiError> {
    let cents = (amount * 100.0).round();
    let whole_cents = (amount * 100.0 - cents).abs() < 1e-6;
    if !amount.is_finite() || !whole_cents || cents < 1.0 || cents > AMOUNT_CENTS_MAX as f64 {
        return Err(ApiError::invalid_param(
            "amount",
            "amount must be USD from 0.01 to 999999.99, with at most two decimals",
        ));
    }
    Ok(cents as i64)
}

fn matching_percentage(value: Option<f64>) -> Result<Option<i32>, ApiError> {
    match value {
        None => Ok(None),
        Some(p) if p.fract() == 0.0 && (0.0..=100.0).contains(&p) => Ok(Some(p as i32)),
        Some(_) => Err(ApiError::invalid_param(
            "sponsorMatchingPercentage",
            "sponsorMatchingPercentage must be a whole number from 0 to 100",
        )),
    }
}

/// Checks the body and turns it into the donation to record.
fn new_donation(
    body: PartnerDonationBody,
    auth: &PartnerAuth,
) -> Result<NewPartnerDonation, ApiError> {
    let donor = &body.donor;
    let email = donor.email.trim();
    if email.len() > EMAIL_LENGTH_MAX || !email_address::EmailAddress::is_valid(email) {
        return Err(ApiError::invalid_param(
            "donor.email",
            "donor.email is not a valid address",
        ));
    }
    bounded("donor.firstName", &donor.first_name, true)?;
    bounded("donor.lastName", &donor.last_name, true)?;
    bounded("donor.billingAddress1", &donor.billing_address1, true)?;
    bounded("donor.billingCity", &donor.billing_city, true)?;
    let country = donor.billing_country.trim();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ApiError::invalid_param(
            "donor.billingCountry",
            "donor.billingCountry must be an ISO 3166-1 alpha-2 code",
        ));
    }
    for (param, value) in [
        ("donor.publisherDonorId", &donor.publisher_donor_id),
        ("donor.billingAddress2", &donor.billing_address2),
        ("donor.billingState", &donor.billing_state),
        ("donor.billingZip", &donor.billing_zip),
        ("donor.cellPhoneNumber", &donor.cell_phone_number),
        ("donor.workPhoneNumber", &donor.work_phone_number),
        ("donor.homePhoneNumber", &donor.home_phone_number),
    ] {
        bounded(param, value.as_deref().unwrap_or_default(), false)?;
    }
    let donor_name = format!("{} {}", donor.first_name.trim(), donor.last_name.trim());
    let publisher_transaction_id = match &body.publisher_transaction_id {
        Some(id) => bounded("publisherTransactionId", id, false)?,
        None => None,
    };
    Ok(NewPartnerDonation {
        organisation_id: auth.key.organisation_id.clone(),
        partner_key_id: auth.key.id.clone(),
        amount: amount_cents(body.amount)?,
        currency: Currency::parse("USD").map_err(ApiError::internal)?,
        donor_email: email.to_string(),
        donor_name: Some(donor_name.chars().take(200).collect()),
        nonprofit_campaign_guid: guid("nonProfitCampaignGuid", &body.non_profit_campaign_guid)?,
        publisher_campaign_guid: guid("publisherCampaignGuid", &body.publisher_campaign_guid)?,
        publisher_account_guid: guid("publisherAccountGuid", &body.publisher_account_guid)?,
        sponsor_campaign_guid: body
            .sponsor_campaign_guid
            .as_deref()
            .map(|g| guid("sponsorCampaignGuid", g))
            .transpose()?,
        sponsor_matching_percentage: matching_percentage(body.sponsor_matching_percentage)?,
        publisher_transaction_id,
        donor_json: serde_json::to_string(&body.donor).map_err(ApiError::internal)?,
    })
}

fn donation_error(error: DonationError) -> PartnerError {
    let message = error.to_string();
    PartnerError(match error {
        DonationError::NotFound => ApiError::not_found("no donation has this guid"),
        DonationError::OrganisationUnknown | DonationError::OrganisationSuspended => {
            ApiError::authorization(format!(
                "this key's organisation cannot take donations: {message}"
            ))
        }
        DonationError::TransactionIdReused => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::IdempotencyConflict,
            message,
        ),
        DonationError::IllegalTransition { from, .. } => {
            ApiError::conflict(format!("a {from} donation cannot be cancelled"))
        }
        other => ApiError::from(other),
    })
}

/// Record a donation collected on the partner's site, for the key's organisation. It stays
/// `PENDING_BATCH` until the partner's batch is settled.
#[utoipa::path(post, path = "/igive-api/v1_0/donation", tag = "partner",
    security(("igf" = [])),
    request_body = PartnerDonationBody,
    responses(
        (status = 201, body = CreatedPartnerDonation, description = "Recorded"),
        (status = 400, body = PartnerErrorBody, description = "Malformed body"),
        (status = 401, body = PartnerErrorBody, description = "Missing or bad signature, unknown key, or a Date outside the allowed skew"),
        (status = 403, body = PartnerErrorBody, description = "Revoked key, or an address not on the key's list"),
    ))]
async fn create_donation(
    State(state): State<AppState>,
    auth: PartnerAuth,
) -> Result<(StatusCode, Json<CreatedPartnerDonation>), PartnerError> {
    let body: PartnerDonationBody = parse_json(&auth.body)?;
    let new = new_donation(body, &auth)?;
    let donation = state
        .actors()
        .donations()
        .create_partner(new)
        .await
        .map_err(donation_error)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedPartnerDonation {
            guid: guid_of(&donation.id),
        }),
    ))
}

/// One of the key's organisation's partner donations.
#[utoipa::path(get, path = "/igive-api/v1_0/donation/{guid}", tag = "partner",
    security(("igf" = [])),
    params(("guid" = String, Path, description = "The donation's guid")),
    responses(
        (status = 200, body = PartnerDonationView, description = "The donation"),
        (status = 401, body = PartnerErrorBody, description = "Not signed"),
        (status = 403, body = PartnerErrorBody, description = "Revoked key or address not allowed"),
        (status = 404, body = PartnerErrorBody, description = "No such donation for this organisation"),
    ))]
async fn get_donation(
    State(state): State<AppState>,
    ApiPath(guid): ApiPath<String>,
    auth: PartnerAuth,
) -> Result<Json<PartnerDonationView>, PartnerError> {
    let id = donation_id_of(&guid)?;
    let donation = state
        .actors()
        .donations()
        .partner_donation(&id, &auth.key.organisation_id)
        .await
        .map_err(donation_error)?;
    Ok(Json(donation.into()))
}

/// Cancel a pending partner donation. Answers 201 with the donation's guid (a JSON string), as
/// the seed does; cancelling a cancelled donation answers the same.
#[utoipa::path(delete, path = "/igive-api/v1_0/donation/{guid}", tag = "partner",
    security(("igf" = [])),
    params(("guid" = String, Path, description = "The donation's guid")),
    responses(
        (status = 201, body = String, description = "Cancelled: the donation's guid"),
        (status = 401, body = PartnerErrorBody, description = "Not signed"),
        (status = 403, body = PartnerErrorBody, description = "Revoked key or address not allowed"),
        (status = 404, body = PartnerErrorBody, description = "No such donation for this organisation"),
        (status = 409, body = PartnerErrorBody, description = "The donation is settled or failed and cannot be cancelled"),
    ))]
async fn cancel_donation(
    State(state): State<AppState>,
    ApiPath(guid): ApiPath<String>,
    auth: PartnerAuth,
) -> Result<(StatusCode, Json<String>), PartnerError> {
    let id = donation_id_of(&guid)?;
    let moved = state
        .actors()
        .donations()
        .cancel_partner(&id, &auth.key.organisation_id)
        .await
        .map_err(donation_error)?;
    Ok((StatusCode::CREATED, Json(guid_of(&moved.record().id))))
}

/// `PUT` is not implemented (seed: cancel with DELETE, then POST a new donation).
async fn put_not_implemented() -> Response {
    let mut response = PartnerError(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "PUT is not implemented: cancel the donation with DELETE, then POST a new one",
    ))
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
    response
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AdsQuery {
    /// A JavaScript function name: the answer is then JSONP, `callback([...]);`.
    pub callback: Option<String>,
}

/// A callback name that is a (dotted) JavaScript identifier: `^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$`.
pub fn valid_callback(name: &str) -> bool {
    let bytes = name.as_bytes();
    let first_ok = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b == b'$';
    !bytes.is_empty()
        && bytes.len() <= CALLBACK_LENGTH_MAX
        && first_ok(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| first_ok(b) || b.is_ascii_digit() || b == b'.')
}

/// The ads for a publisher campaign, as a JSON array (or JSONP with `callback`). An unknown
/// campaign gets the default ads.
#[utoipa::path(get, path = "/nonprofit-json/{publisher_campaign_guid}", tag = "partner",
    params(("publisher_campaign_guid" = String, Path, description = "The publisher campaign's guid"), AdsQuery),
    responses(
        (status = 200, body = Vec<Object>, description = "The ads (application/json), or `callback([...]);` (application/javascript)"),
        (status = 400, body = PartnerErrorBody, description = "The callback is not a JavaScript identifier"),
    ))]
async fn nonprofit_ads(
    State(state): State<AppState>,
    ApiPath(campaign): ApiPath<String>,
    ApiQuery(query): ApiQuery<AdsQuery>,
) -> Result<Response, PartnerError> {
    if let Some(callback) = &query.callback
        && !valid_callback(callback)
    {
        return Err(ApiError::invalid_param(
            "callback",
            "callback must be a JavaScript identifier of at most 64 characters ([A-Za-z_$][A-Za-z0-9_$.]*)",
        )
        .into());
    }
    let campaign = uuid::Uuid::try_parse(campaign.trim())
        .ok()
        .map(|u| u.hyphenated().to_string());
    let ads = state
        .actors()
        .donations()
        .partner_ads(campaign.as_deref(), ADS_MAX)
        .await
        .map_err(ApiError::from)?;
    let ads: Vec<serde_json::Value> = ads
        .iter()
        .filter_map(|ad| serde_json::from_str(&ad.ad_json).ok())
        .collect();
    let json = serde_json::to_string(&ads).map_err(ApiError::internal)?;
    let Some(callback) = query.callback else {
        return Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response());
    };
    // The leading comment keeps the body from starting with bytes a plugin could take for
    // another format (the Rosetta Flash attack).
    Ok((
        [
            (header::CONTENT_TYPE, "application/javascript"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("/**/{callback}({json});"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_are_javascript_identifiers() {
        for ok in ["cb", "_x", "$", "jQuery123_456", "a.b.c", &"a".repeat(64)] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            ".a",
            "a-b",
            "alert(1)",
            "a;b",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }

    #[test]
    fn amounts_are_cents() {
        assert_eq!(amount_cents(42.80).unwrap(), 4280);
        assert_eq!(amount_cents(0.01).unwrap(), 1);
        for bad in [0.0, -1.0, 0.001, 42.805, 1e9, f64::NAN] {
            assert!(amount_cents(bad).is_err(), "{bad}");
        }
        assert_eq!(matching_percentage(Some(20.0)).unwrap(), Some(20));
        assert!(matching_percentage(Some(20.5)).is_err());
        assert!(matching_percentage(Some(101.0)).is_err());
    }

    #[test]
    fn guids_and_donation_ids_are_the_same_bytes() {
        let id = DonationId::from_bytes([0xab; 16]);
        let guid = guid_of(id.as_str());
        assert_eq!(guid.len(), 36);
        assert_eq!(donation_id_of(&guid).unwrap(), id);
        assert!(donation_id_of("abababababababababababababababab").is_err());
    }
}
