//! Dashboard sign-in (seed 000, "Auth"): login with email and password into a session cookie,
//! logout (this session or all), the current user, the active sessions, a password change and
//! the security settings. Every change writes an audit row in the same transaction.

use ampflow_actors::accounts::{DashboardSessionRecord, DashboardUserRecord};
use ampflow_actors::accounts::{LoggedIn, Origin, SecurityPatch, parse_user_agent};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{AppendHeaders, IntoResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::client::USER_AGENT_LENGTH_MAX;
use crate::auth::extract::RequestContext;
use crate::auth::{SessionAuth, normalise_email};
use crate::config::PASSWORD_LENGTH_MAX;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::middleware::RequestId;
use crate::routes::public::{Envelope, rfc3339};
use crate::state::AppState;

const EMAIL_LENGTH_MAX: usize = 254;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(me))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(change_password))
        .routes(routes!(update_security_settings))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("email", &self.email)
            .field("password", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserSummary {
    /// `usr_…`
    pub id: String,
    pub email: String,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionSummary {
    /// `ses_…`
    pub id: String,
    /// RFC 3339.
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginView {
    pub user: UserSummary,
    pub session: SessionSummary,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecuritySettingsView {
    /// none, country, subnet or strict.
    pub ip_binding: &'static str,
    pub session_timeout_days: i32,
    pub notify_new_device: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub security_settings: SecuritySettingsView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    pub ip_address: String,
    /// Null without a GeoIP database.
    pub ip_country: Option<String>,
    pub ip_city: Option<String>,
    pub browser_family: Option<String>,
    pub os_family: Option<String>,
    /// desktop, mobile, tablet, bot or other.
    pub device_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BindingViolationView {
    /// RFC 3339: the first request that broke the user's IP binding.
    pub detected_at: String,
    pub ip_address: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_activity: String,
    pub expires_at: String,
    pub client: ClientView,
    pub is_current: bool,
    /// Set once a request from another address broke the user's `ip_binding`; the session
    /// keeps working (the binding alerts, it does not refuse).
    pub binding_violation: Option<BindingViolationView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoggedOutView {
    pub logged_out: bool,
    pub session_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogoutAllView {
    pub sessions_revoked: u64,
    pub message: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedView {
    pub revoked: bool,
    pub session_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub current_password: String,
    pub new_password: String,
}

impl std::fmt::Debug for PasswordBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordBody { [redacted] }")
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordChangedView {
    pub changed: bool,
    /// The other sessions, now ended.
    pub sessions_revoked: u64,
    pub message: &'static str,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettingsBody {
    /// none, country, subnet or strict.
    pub ip_binding: Option<String>,
    /// 1 to `auth.session_timeout_days_max`; applies to sessions started afterwards.
    pub session_timeout_days: Option<u32>,
    pub notify_new_device: Option<bool>,
}

fn settings_view(user: &DashboardUserRecord) -> SecuritySettingsView {
    SecuritySettingsView {
        ip_binding: user.ip_binding.as_str(),
        session_timeout_days: user.session_timeout_days,
        notify_new_device: user.notify_new_device,
    }
}

/// Log in with email and password. Sets the session cookie (HttpOnly, SameSite=Lax, Path=/,
/// Secure when `auth.cookie_secure`). An unknown email and a wrong password answer the same
/// 401; failed attempts are throttled per account and per client IP (429).
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = inline(Envelope<LoginView>), headers(("Set-Cookie" = String))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 429, description = "`rate_limit_exceeded`: too many failed logins", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    axum::Extension(request_id): axum::Extension<RequestId>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    let email = normalise_email(&body.email);
    if email.is_empty() || email.len() > EMAIL_LENGTH_MAX {
        return Err(ApiError::invalid_param(
            "email",
            "email must be 1 to 254 characters",
        ));
    }
    if body.password.is_empty() || body.password.len() > PASSWORD_LENGTH_MAX {
        return Err(ApiError::invalid_param(
            "password",
            format!("password must be 1 to {PASSWORD_LENGTH_MAX} characters"),
        ));
    }
    let origin = origin(&state, &context, &headers);
    let now = state.clock().now_ms();
    let LoggedIn {
        user,
        session,
        cookie_value,
    } = state
        .actors()
        .accounts()
        .login(&email, body.password, &origin, |actor, action| {
            context.audit(actor, action, now)
        })
        .await?;
    let cookie = state
        .auth()
        .session_cookie(&cookie_value, (user.session_timeout_days as i64) * 86_400);
    let view = LoginView {
        user: UserSummary {
            id: user.id,
            email: user.email,
            name: user.name,
        },
        session: SessionSummary {
            id: session.id,
            expires_at: rfc3339(session.expires_at_ms),
        },
    };
    Ok((
        AppendHeaders([(header::SET_COOKIE, cookie)]),
        Envelope::new(view, &request_id),
    ))
}

/// Where the login comes from: the address, its group for the throttle, the `User-Agent`
/// (cut to its longest kept length) and where the address is, when GeoIP knows.
fn origin(state: &AppState, context: &RequestContext, headers: &HeaderMap) -> Origin {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(USER_AGENT_LENGTH_MAX).collect::<String>());
    let location = state
        .auth()
        .geoip
        .as_ref()
        .map(|g| g.locate(context.ip))
        .unwrap_or_default();
    Origin {
        ip: context.ip,
        ip_group: crate::net::ip_key(context.ip),
        user_agent,
        country: location.country,
        city: location.city,
    }
}

/// End this session; the cookie is cleared.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("cookie" = [])),
    responses((status = 200, body = inline(Envelope<LoggedOutView>)), (status = 401, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    SessionAuth(caller): SessionAuth,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<impl IntoResponse, ApiError> {
    let now = state.clock().now_ms();
    state
        .actors()
        .accounts()
        .logout(&caller.user, &caller.session.id, |action| {
            caller.audit(action, now)
        })
        .await?;
    let view = LoggedOutView {
        logged_out: true,
        session_id: caller.session.id,
    };
    Ok((
        AppendHeaders([(header::SET_COOKIE, state.auth().cleared_cookie())]),
        Envelope::new(view, &request_id),
    ))
}

/// End every session of the user by rotating their security stamp.
#[utoipa::path(post, path = "/auth/logout-all", tag = "auth", security(("cookie" = [])),
    responses((status = 200, body = inline(Envelope<LogoutAllView>)), (status = 401, body = ErrorBody)))]
async fn logout_all(
    State(state): State<AppState>,
    SessionAuth(caller): SessionAuth,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<impl IntoResponse, ApiError> {
    let now = state.clock().now_ms();
    let revoked = state
        .actors()
        .accounts()
        .logout_all(&caller.user, |action| caller.audit(action, now))
        .await?;
    let view = LogoutAllView {
        sessions_revoked: revoked,
        message: "All sessions have been revoked",
    };
    Ok((
        AppendHeaders([(header::SET_COOKIE, state.auth().cleared_cookie())]),
        Envelope::new(view, &request_id),
    ))
}

/// The signed-in user, with their security settings.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("cookie" = [])),
    responses((status = 200, body = inline(Envelope<MeView>)), (status = 401, body = ErrorBody)))]
async fn me(
    SessionAuth(caller): SessionAuth,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Json<Envelope<MeView>> {
    let user = caller.user;
    let view = MeView {
        security_settings: settings_view(&user),
        id: user.id,
        email: user.email,
        name: user.name,
    };
    Envelope::new(view, &request_id)
}

fn session_view(session: DashboardSessionRecord, current: &str) -> SessionView {
    let device = parse_user_agent(session.user_agent.as_deref());
    SessionView {
        is_current: session.id == current,
        created_at: rfc3339(session.created_at_ms),
        last_activity: rfc3339(session.last_activity_ms),
        expires_at: rfc3339(session.expires_at_ms),
        client: ClientView {
            ip_address: session.ip_address,
            ip_country: session.ip_country,
            ip_city: session.ip_city,
            browser_family: device.browser_family,
            os_family: device.os_family,
            device_type: device.device_type,
        },
        binding_violation: session
            .binding_violation_at_ms
            .map(|at| BindingViolationView {
                detected_at: rfc3339(at),
                ip_address: session.binding_violation_ip,
            }),
        id: session.id,
    }
}

/// The user's active sessions, newest first (at most 100).
#[utoipa::path(get, path = "/auth/sessions", tag = "auth", security(("cookie" = [])),
    responses((status = 200, body = inline(Envelope<Vec<SessionView>>)), (status = 401, body = ErrorBody)))]
async fn list_sessions(
    State(state): State<AppState>,
    SessionAuth(caller): SessionAuth,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<Vec<SessionView>>>, ApiError> {
    let sessions = state.actors().accounts().sessions(&caller.user).await?;
    let views = sessions
        .into_iter()
        .map(|s| session_view(s, &caller.session.id))
        .collect();
    Ok(Envelope::new(views, &request_id))
}

/// Revoke another of the user's sessions. The current one answers 400: use `POST
/// /auth/logout`.
#[utoipa::path(delete, path = "/auth/sessions/{session_id}", tag = "auth", security(("cookie" = [])),
    params(("session_id" = String, Path, description = "The session's id (ses_…)")),
    responses((status = 200, body = inline(Envelope<RevokedView>)), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_session(
    State(state): State<AppState>,
    SessionAuth(caller): SessionAuth,
    ApiPath(session_id): ApiPath<String>,
    axum::Extension(request_id): axum::Extension<RequestId>,
) -> Result<Json<Envelope<RevokedView>>, ApiError> {
    let now = state.clock().now_ms();
    state
        .actors()
        .accounts()
        .revoke_session(&caller.user, &caller.session.id, &session_id, |action| {
            caller.audit(action, now)
        })
        .await?;
    let view = RevokedView {
        revoked: true,
        session_id,
    };
    Ok(Envelope::new(view, &request_id))
}

/// Change the password: checks the current one, rotates the security stamp and ends every
/// other session (this one stays signed in). Wrong current passwords count as failed logins.
#[utoipa::path(post, path = "/auth/password", tag = "auth", security(("cookie" = [])),
    request_body = PasswordBody,
    responses((status = 200, body = inline(Envelope<PasswordChangedView>)),
        (status = 400, description = "`invalid_request`: the current password is wrong (param `current_password`) or the new one too short or long", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    SessionAuth(caller): SessionAuth,
    axum::Extension(request_id): axum::Extension<RequestId>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Json<Envelope<PasswordChangedView>>, ApiError> {
    let now = state.clock().now_ms();
    let revoked = state
        .actors()
        .accounts()
        .change_password(
            &caller.user,
            &caller.session.id,
            crate::net::ip_key(caller.ip),
            body.current_password,
            body.new_password,
            |action| caller.audit(action, now),
        )
        .await?;
    let view = PasswordChangedView {
        changed: true,
        sessions_revoked: revoked,
        message: "Password changed. Other sessions have been logged out.",
    };
    Ok(Envelope::new(view, &request_id))
}

/// Change the IP binding, the session lifetime (for sessions started afterwards) and
/// new-device notifications. A request that breaks the binding flags its session in `GET
/// /auth/sessions` and the audit log; it is not refused.
#[utoipa::path(patch, path = "/auth/security-settings", tag = "auth", security(("cookie" = [])),
    request_body = SecuritySettingsBody,
    responses((status = 200, body = inline(Envelope<SecuritySettingsView>)), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn update_security_settings(
    State(state): State<AppState>,
    SessionAuth(caller): SessionAuth,
    axum::Extension(request_id): axum::Extension<RequestId>,
    ApiJson(body): ApiJson<SecuritySettingsBody>,
) -> Result<Json<Envelope<SecuritySettingsView>>, ApiError> {
    let patch = SecurityPatch {
        ip_binding: body.ip_binding,
        session_timeout_days: body.session_timeout_days,
        notify_new_device: body.notify_new_device,
    };
    let now = state.clock().now_ms();
    let next = state
        .actors()
        .accounts()
        .update_security_settings(&caller.user, patch, |action| caller.audit(action, now))
        .await?;
    let view = SecuritySettingsView {
        ip_binding: next.ip_binding.as_str(),
        session_timeout_days: next.session_timeout_days,
        notify_new_device: next.notify_new_device,
    };
    Ok(Envelope::new(view, &request_id))
}
