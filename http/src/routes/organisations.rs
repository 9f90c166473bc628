//! Organisations for their members (seed 000, "Organisations (Authenticated)"): the caller's
//! organisations, one organisation (members only), changing it (admins only) and the Stripe
//! Connect onboarding URL (admins only). A caller who is not a member gets 403
//! `authorization_error` for an organisation that exists (organisations are public anyway, see
//! `/public/organisations`) and 404 for one that does not.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ampflow_actors::Organisations;

use crate::auth::api_keys::Policy;
use crate::auth::connect::onboarding_url;
use crate::auth::{Caller, DashboardAuth, SessionAuth};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiPath};
use crate::middleware::RequestId;
use crate::routes::public::{Envelope, OrganisationView, rfc3339};
use crate::state::AppState;

/// Most organisations `GET /me/organisations` lists.
const MY_ORGANISATIONS_MAX: u64 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_organisations))
        .routes(routes!(get_organisation, update_organisation))
        .routes(routes!(stripe_connect))
}

/// An organisation, with the caller's role in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberOrganisationView {
    #[serde(flatten)]
    pub organisation: OrganisationView,
    /// member or admin; `api_key` for a caller using one of the organisation's keys.
    pub role: &'static str,
}

/// The caller's role label once it holds `policy` in the organisation.
async fn role_for(
    state: &AppState,
    caller: &Caller,
    id: &str,
    policy: Policy,
) -> Result<&'static str, ApiError> {
    caller.require(state, id, policy).await?;
    Ok(match caller {
        Caller::Session(session) => session.role_in(state, id).await?.as_str(),
        Caller::Key(_) => "api_key",
    })
}

/// Absent leaves a field as it is; null (or an empty string) clears an optional one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganisationPatch {
    /// 1 to 200 characters.
    pub name: Option<String>,
    pub profile: Option<ProfilePatch>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    /// At most 5,000 characters.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// An https URL.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub website: Option<Option<String>>,
    /// An https URL.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub logo_url: Option<Option<String>>,
}

fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StripeConnectView {
    /// Send the organisation's admin here to connect their Stripe account.
    pub url: String,
    /// RFC 3339: the URL's `state` is refused after this.
    pub expires_at: String,
}

/// The organisations the signed-in user belongs to, with their role.
#[utoipa::path(get, path = "/me/organisations", tag = "organisations", security(("cookie" = [])),
    responses((status = 200, body = inline(Envelope<Vec<MemberOrganisationView>>)), (status = 401, body = ErrorBody)))]
async fn my_organisations(
    State(state): State<AppState>,
    SessionAuth(caller): SessionAuth,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<Vec<MemberOrganisationView>>>, ApiError> {
    let organisations = state
        .actors()
        .organisations()
        .of_user(&caller.user.id, MY_ORGANISATIONS_MAX)
        .await?;
    let views = organisations
        .into_iter()
        .map(|(org, role)| MemberOrganisationView {
            organisation: OrganisationView::new(org, None),
            role: role.as_str(),
        })
        .collect();
    Ok(Envelope::new(views, &request_id))
}

async fn member_view(
    state: &AppState,
    id: &str,
    role: &'static str,
) -> Result<MemberOrganisationView, ApiError> {
    let (org, funds) = state.actors().organisations().with_funds(id).await?;
    Ok(MemberOrganisationView {
        organisation: OrganisationView::new(org, Some(funds)),
        role,
    })
}

/// One organisation, with its funds; members and keys with `organisations:read`.
#[utoipa::path(get, path = "/organisations/{id}", tag = "organisations", security(("cookie" = ["organisations:read"]), ("api_key" = ["organisations:read"])),
    params(("id" = String, Path, description = "The organisation's id (org_…)")),
    responses((status = 200, body = inline(Envelope<MemberOrganisationView>)), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_organisation(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<MemberOrganisationView>>, ApiError> {
    let role = role_for(&state, &caller, &id, Policy::OrganisationsRead).await?;
    Ok(Envelope::new(
        member_view(&state, &id, role).await?,
        &request_id,
    ))
}

/// The patch the body asks for (the façade checks it).
fn patch(body: OrganisationPatch) -> ampflow_actors::organisations::OrganisationPatch {
    let profile = body.profile.unwrap_or_default();
    ampflow_actors::organisations::OrganisationPatch {
        name: body.name,
        description: profile.description,
        website: profile.website,
        logo_url: profile.logo_url,
    }
}

fn changes_json(changes: &ampflow_actors::organisations::OrganisationChanges) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Some(name) = &changes.name {
        map.insert("name".into(), name.clone().into());
    }
    for (key, value) in [
        ("description", &changes.description),
        ("website", &changes.website),
        ("logo_url", &changes.logo_url),
    ] {
        if let Some(value) = value {
            map.insert(key.into(), value.clone().into());
        }
    }
    serde_json::json!({ "changed": map })
}

/// Change the organisation's name and profile; admins and keys with `organisations:write`.
/// (Its country and verification status are the platform's to change.)
#[utoipa::path(patch, path = "/organisations/{id}", tag = "organisations", security(("cookie" = ["organisations:write"]), ("api_key" = ["organisations:write"])),
    params(("id" = String, Path, description = "The organisation's id (org_…)")),
    request_body = OrganisationPatch,
    responses((status = 200, body = inline(Envelope<MemberOrganisationView>)), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_organisation(
    State(state): State<AppState>,
    DashboardAuth(caller): DashboardAuth,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    ApiJson(body): ApiJson<OrganisationPatch>,
) -> Result<Json<Envelope<MemberOrganisationView>>, ApiError> {
    let role = role_for(&state, &caller, &id, Policy::OrganisationsWrite).await?;
    let changes = Organisations::check_patch(patch(body))?;
    let now = state.clock().now_ms();
    let audit = caller
        .audit("organisation.updated", now)
        .target("organisation", &id)
        .organisation(&id)
        .details(changes_json(&changes));
    state
        .actors()
        .organisations()
        .update(&id, &changes, &audit)
        .await?;
    Ok(Envelope::new(
        member_view(&state, &id, role).await?,
        &request_id,
    ))
}

/// The Stripe Connect onboarding URL for the organisation; admins only. Its `state` names the
/// organisation and the admin, expires after `stripe_connect.state_ttl_secs`, and is signed
/// (HMAC-SHA256) so the callback can check it.
#[utoipa::path(get, path = "/organisations/{id}/stripe/connect", tag = "organisations", security(("cookie" = ["organisations:write"])),
    params(("id" = String, Path, description = "The organisation's id (org_…)")),
    responses((status = 200, body = inline(Envelope<StripeConnectView>)), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "`stripe_connect_not_configured`", body = ErrorBody)))]
async fn stripe_connect(
    State(state): State<AppState>,
    SessionAuth(caller): SessionAuth,
    ApiPath(id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<StripeConnectView>>, ApiError> {
    caller.require_admin(&state, &id).await?;
    let now = state.clock().now_ms();
    let (url, expires_at_ms) =
        onboarding_url(&state.settings().stripe_connect, &id, &caller.user.id, now).ok_or_else(
            || {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StripeConnectNotConfigured,
                    "Stripe Connect is not configured on this server",
                )
            },
        )?;
    let view = StripeConnectView {
        url,
        expires_at: rfc3339(expires_at_ms),
    };
    Ok(Envelope::new(view, &request_id))
}
