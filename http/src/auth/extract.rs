//! The dashboard caller: who a request comes from, proven by the session cookie or by an
//! organisation API key (`Authorization: Bearer sk_…` or one of its access tokens), with the
//! check every dashboard endpoint makes (does the caller hold this policy in this
//! organisation?) and the audit rows it writes.

use std::net::IpAddr;

use ampflow_actors::accounts::{
    AuditActor, AuditEvent, DashboardSessionRecord, DashboardUserRecord,
};
use ampflow_actors::organisations::Role;
use ampflow_types::UnixMillis;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use crate::auth::api_keys::{KeyBearer, KeyCredential, Policy, VerifiedKey, key_bearer_of};
use crate::auth::split_cookie;
use crate::error::ApiError;
use crate::extract::{bearer_of, client_ip};
use crate::middleware::RequestId;
use crate::state::AppState;

/// A signed-in dashboard user and the session the request came with.
#[derive(Debug, Clone)]
pub struct DashboardCaller {
    pub user: DashboardUserRecord,
    pub session: DashboardSessionRecord,
    /// The client's address (see [`client_ip`]).
    pub ip: IpAddr,
    pub request_id: Option<String>,
}

/// The extractor: a valid session cookie, or 401 `authentication_error`.
pub struct SessionAuth(pub DashboardCaller);

impl FromRequestParts<AppState> for SessionAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(VerifiedSession(caller)) = parts.extensions.remove::<VerifiedSession>() {
            return Ok(SessionAuth(caller));
        }
        let context = RequestContext::of(parts, state);
        authenticate_session(state, &parts.headers, &context)
            .await
            .map(SessionAuth)
    }
}

/// A caller proven by an organisation API key.
#[derive(Debug, Clone)]
pub struct KeyCaller {
    pub key: ampflow_actors::api_keys::ApiKeyRecord,
    pub credential: KeyCredential,
    pub ip: IpAddr,
    pub request_id: Option<String>,
}

/// Who called a dashboard endpoint: a signed-in user or an API key.
#[derive(Debug, Clone)]
pub enum Caller {
    Session(Box<DashboardCaller>),
    Key(Box<KeyCaller>),
}

/// The extractor for endpoints that both sessions and API keys may call: an API key
/// credential in `Authorization` (which wins), else a valid session cookie, else 401.
pub struct DashboardAuth(pub Caller);

impl FromRequestParts<AppState> for DashboardAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = match parts.extensions.remove::<VerifiedKey>() {
            Some(verified) => Some(verified),
            None => match key_bearer(&parts.headers) {
                Some(bearer) => Some(crate::auth::api_keys::verify_bearer(state, bearer).await?),
                None => None,
            },
        };
        if let Some(verified) = key {
            let context = RequestContext::of(parts, state);
            return Ok(DashboardAuth(key_caller(state, verified, context).await?));
        }
        if !has_session_cookie(state, &parts.headers) {
            return Err(ApiError::authentication(
                "this endpoint needs a session cookie or an API key (Authorization: Bearer sk_…)",
            ));
        }
        let SessionAuth(caller) = SessionAuth::from_request_parts(parts, state).await?;
        Ok(DashboardAuth(Caller::Session(Box::new(caller))))
    }
}

/// The caller of an endpoint that donors' wallets, dashboard users and API keys all use.
pub enum AnyCaller {
    Dashboard(Caller),
    Wallet(ampflow_actors::Principal),
}

/// The extractor for such endpoints: an API key credential, else a wallet access token, else
/// a session cookie (401 when the one given does not verify).
pub struct AnyAuth(pub AnyCaller);

impl FromRequestParts<AppState> for AnyAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key =
            parts.extensions.get::<VerifiedKey>().is_some() || key_bearer(&parts.headers).is_some();
        let dashboard = key
            || (!parts.headers.contains_key(header::AUTHORIZATION)
                && has_session_cookie(state, &parts.headers));
        if dashboard {
            let DashboardAuth(caller) = DashboardAuth::from_request_parts(parts, state).await?;
            return Ok(AnyAuth(AnyCaller::Dashboard(caller)));
        }
        crate::extract::wallet_of(parts, state)
            .await
            .map(|principal| AnyAuth(AnyCaller::Wallet(principal)))
    }
}

/// On public endpoints: the API key caller when the request carries a key credential (401
/// when it does not verify), `None` for an anonymous request. A key caller is held to its
/// policies (and gets the API-key rate tier).
pub struct MaybeKey(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.extensions.get::<VerifiedKey>().is_none() && key_bearer(&parts.headers).is_none() {
            return Ok(MaybeKey(None));
        }
        let DashboardAuth(caller) = DashboardAuth::from_request_parts(parts, state).await?;
        Ok(MaybeKey(Some(caller)))
    }
}

/// The bearer credential of the request if it is an API key's (a key or one of its tokens).
pub fn key_bearer(headers: &HeaderMap) -> Option<KeyBearer<'_>> {
    key_bearer_of(bearer_of(
        headers.get(header::AUTHORIZATION)?.to_str().ok()?,
    )?)
}

/// The caller for a verified key; moves its `last_used_at` at most once per
/// `auth.activity_write_interval_secs`.
async fn key_caller(
    state: &AppState,
    verified: VerifiedKey,
    context: RequestContext,
) -> Result<Caller, ApiError> {
    let now = state.clock().now_ms();
    let interval_ms = (state.auth().config().activity_write_interval_secs as i64) * 1000;
    if verified
        .key
        .last_used_at_ms
        .is_none_or(|at| now - at >= interval_ms)
    {
        state
            .actors()
            .api_keys()
            .touch(&verified.key.id, now, interval_ms)
            .await
            .map_err(ApiError::storage)?;
    }
    Ok(Caller::Key(Box::new(KeyCaller {
        key: verified.key,
        credential: verified.credential,
        ip: context.ip,
        request_id: context.request_id,
    })))
}

impl Caller {
    /// Who the audit log names.
    pub fn actor(&self) -> AuditActor {
        match self {
            Caller::Session(caller) => caller.actor(),
            Caller::Key(caller) => AuditActor::ApiKey(caller.key.id.clone()),
        }
    }

    /// An audit event by this caller from this request.
    pub fn audit(&self, action: &str, now: UnixMillis) -> AuditEvent {
        let (ip, request_id) = match self {
            Caller::Session(c) => (c.ip, c.request_id.clone()),
            Caller::Key(c) => (c.ip, c.request_id.clone()),
        };
        let event = RequestContext { ip, request_id }.audit(self.actor(), action, now);
        match self {
            Caller::Key(c) => match &c.credential {
                KeyCredential::Direct => event.detail("credential", "key"),
                KeyCredential::Token { id, .. } => event
                    .detail("credential", "access_token")
                    .detail("token_id", id.as_str()),
            },
            Caller::Session(c) => event.detail("session_id", c.session.id.as_str()),
        }
    }

    /// The organisation an API key belongs to; `None` for a session.
    pub fn key_organisation(&self) -> Option<&str> {
        match self {
            Caller::Key(c) => Some(&c.key.organisation_id),
            Caller::Session(_) => None,
        }
    }

    /// 403 `authorization_error` unless the caller holds `policy` in the organisation: a
    /// session through its member's role (404 when there is no such organisation), a key
    /// through its own policies, and only in its own organisation.
    pub async fn require(
        &self,
        state: &AppState,
        organisation_id: &str,
        policy: Policy,
    ) -> Result<(), ApiError> {
        self.require_any(state, organisation_id, &[policy]).await
    }

    /// Like [`require`](Self::require), for a caller holding any one of `policies`.
    pub async fn require_any(
        &self,
        state: &AppState,
        organisation_id: &str,
        policies: &[Policy],
    ) -> Result<(), ApiError> {
        let names = || {
            policies
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        };
        match self {
            Caller::Session(caller) => {
                let role = caller.role_in(state, organisation_id).await?;
                if policies.iter().any(|p| p.granted_to(role)) {
                    Ok(())
                } else {
                    Err(ApiError::authorization(
                        "only admins of this organisation may do this",
                    ))
                }
            }
            Caller::Key(caller) => {
                if caller.key.organisation_id != organisation_id {
                    return Err(ApiError::authorization(
                        "this API key belongs to another organisation",
                    ));
                }
                if policies
                    .iter()
                    .any(|p| caller.credential.grants(&caller.key, *p))
                {
                    Ok(())
                } else {
                    Err(ApiError::authorization(format!(
                        "this API key lacks the {} policy",
                        names()
                    )))
                }
            }
        }
    }
}

/// The client address and request id of a request, for audit rows.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub ip: IpAddr,
    pub request_id: Option<String>,
}

impl RequestContext {
    pub fn of(parts: &Parts, state: &AppState) -> Self {
        Self::from(&parts.extensions, &parts.headers, state)
    }

    pub fn from(
        extensions: &axum::http::Extensions,
        headers: &HeaderMap,
        state: &AppState,
    ) -> Self {
        let peer = crate::extract::peer(extensions);
        Self {
            ip: client_ip(state, peer, headers),
            request_id: extensions
                .get::<RequestId>()
                .and_then(|id| id.0.to_str().ok())
                .map(str::to_string),
        }
    }

    /// An audit event by `actor` from this request.
    pub fn audit(&self, actor: AuditActor, action: &str, now: UnixMillis) -> AuditEvent {
        let mut event = AuditEvent::new(actor, action, now);
        event.ip_address = Some(self.ip.to_string());
        event.request_id = self.request_id.clone();
        event
    }
}

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts, state))
    }
}

/// Whether the request carries a session cookie at all (valid or not).
pub fn has_session_cookie(state: &AppState, headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| state.auth().cookie_value(v).is_some())
}

fn unauthenticated() -> ApiError {
    ApiError::authentication(
        "the session is missing, expired, idle for too long or revoked; log in again",
    )
}

/// A caller whose session [`authenticate_session`] accepted earlier in this request (the rate
/// limiter's, which counts the request against its user), so the extractor does not check it
/// again.
#[derive(Debug, Clone)]
pub struct VerifiedSession(pub DashboardCaller);

/// The session whose id and secret the request's cookie carries, if it has one that verifies
/// (constant-time comparison of the secret's hash). Says nothing about expiry or revocation:
/// [`authenticate_session`] checks those against the user.
async fn session_of_cookie(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<DashboardSessionRecord>, ApiError> {
    let Some(value) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| state.auth().cookie_value(v))
    else {
        return Ok(None);
    };
    let Some((session_id, secret)) = split_cookie(value) else {
        return Ok(None);
    };
    state
        .actors()
        .accounts()
        .session_of(session_id, secret)
        .await
        .map_err(ApiError::storage)
}

/// The one check of a dashboard session cookie, for the extractors and the rate limiter
/// alike: the secret matches (constant time), and the session is not revoked, expired, idle
/// for `auth.session_idle_timeout_mins` or from before the user's security stamp changed.
/// Also flags a session whose request breaks the user's IP binding (once, with an audit row)
/// and moves `last_activity` at most once per `auth.activity_write_interval_secs`.
pub async fn authenticate_session(
    state: &AppState,
    headers: &HeaderMap,
    context: &RequestContext,
) -> Result<DashboardCaller, ApiError> {
    if !has_session_cookie(state, headers) {
        return Err(ApiError::authentication(
            "this endpoint needs a session cookie; log in",
        ));
    }
    let session = session_of_cookie(state, headers)
        .await?
        .ok_or_else(unauthenticated)?;
    let now = state.clock().now_ms();
    let locate = |ip| {
        state
            .auth()
            .geoip
            .as_ref()
            .and_then(|g| g.locate(ip).country)
    };
    let (user, session) = state
        .actors()
        .accounts()
        .authenticate(session, context.ip, locate, |actor, action| {
            context.audit(actor, action, now)
        })
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(unauthenticated)?;
    Ok(DashboardCaller {
        user,
        session,
        ip: context.ip,
        request_id: context.request_id.clone(),
    })
}

impl DashboardCaller {
    /// Who the audit log names.
    pub fn actor(&self) -> AuditActor {
        AuditActor::User(self.user.id.clone())
    }

    /// An audit event by this caller from this request.
    pub fn audit(&self, action: &str, now: UnixMillis) -> AuditEvent {
        RequestContext {
            ip: self.ip,
            request_id: self.request_id.clone(),
        }
        .audit(self.actor(), action, now)
    }

    /// The caller's role in the organisation: 404 when there is no such organisation, 403
    /// `authorization_error` when the caller is not a member.
    pub async fn role_in(&self, state: &AppState, organisation_id: &str) -> Result<Role, ApiError> {
        Ok(state
            .actors()
            .organisations()
            .role_of(organisation_id, &self.user.id)
            .await?)
    }

    /// Like [`role_in`](Self::role_in), and 403 unless the role is admin.
    pub async fn require_admin(
        &self,
        state: &AppState,
        organisation_id: &str,
    ) -> Result<(), ApiError> {
        match self.role_in(state, organisation_id).await? {
            Role::Admin => Ok(()),
            Role::Member => Err(ApiError::authorization(
                "only admins of this organisation may do this",
            )),
        }
    }
}
