//! The dashboard accounts façade: dashboard users' passwords, the login throttle that guards
//! them, and their sessions (login, logout, logout everywhere, listing and revoking sessions,
//! a password change, the security settings). The `/auth/*` routes and `ampflow user …` call
//! it. The edge keeps what belongs to the request: parsing the body, locating the address,
//! the cookie, and stamping audit rows with the request's address and id (the `stamp`
//! closures below); the façade decides and writes, each change with its audit rows in one
//! transaction.

mod binding;
mod credentials;
mod device;
mod passwords;
mod throttle;

use std::net::IpAddr;
use std::sync::Arc;

use ampflow_storage::{StampRotation, Storage, StorageError};
use ampflow_types::{Clock, UnixMillis};

pub use ampflow_storage::{
    AuditActor, AuditEvent, DashboardSessionRecord, DashboardUserRecord, IpBinding,
    SecuritySettings,
};

pub use binding::breaks_binding;
pub use credentials::{
    NewSessionToken, new_security_stamp, new_session_token, normalise_email, secret_hash,
    secret_matches,
};
pub use device::{Device, parse_user_agent};
pub use passwords::{PASSWORD_LENGTH_MAX, PasswordError, PasswordSettings, Passwords};
pub use throttle::{Attempt, Keys, LoginThrottle, ThrottleError, ThrottleSettings};

const DAY_MS: i64 = 86_400_000;
/// Longest email address (RFC 5321's path limit).
const EMAIL_LENGTH_MAX: usize = 254;
/// Most sessions [`Accounts::sessions`] lists (newest first).
const SESSIONS_LISTED_MAX: u64 = 100;
/// Sessions looked at to recognise a login's device.
const DEVICES_REMEMBERED_MAX: u64 = 50;

/// `auth.*`, as far as accounts go.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub passwords: PasswordSettings,
    pub throttle: ThrottleSettings,
    /// A session with no request for this long ends; 0: never.
    pub session_idle_timeout_ms: i64,
    /// A new user's session lifetime, until they change it.
    pub session_timeout_days_default: u32,
    /// The longest session lifetime a user may choose.
    pub session_timeout_days_max: u32,
    /// A session's `last_activity` is written at most this often.
    pub activity_write_interval_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The same answer for an unknown email and a wrong password.
    #[error("the email or the password is wrong")]
    WrongCredentials,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("you have no active session with this id")]
    SessionNotFound,
    #[error("{message}")]
    Invalid {
        param: &'static str,
        message: String,
    },
    #[error(transparent)]
    Throttled(#[from] ThrottleError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Where a login comes from, as the edge saw it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub ip: IpAddr,
    /// `ip` grouped as the rate limits group it (IPv6 by /64): the throttle's address key.
    pub ip_group: IpAddr,
    pub user_agent: Option<String>,
    /// From the GeoIP database, when there is one.
    pub country: Option<String>,
    pub city: Option<String>,
}

/// A login that opened a session.
pub struct LoggedIn {
    pub user: DashboardUserRecord,
    pub session: DashboardSessionRecord,
    /// `<session id>.<secret>`, for the cookie: never stored.
    pub cookie_value: String,
}

/// Security settings a user asks to change; absent leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct SecurityPatch {
    pub ip_binding: Option<String>,
    pub session_timeout_days: Option<u32>,
    pub notify_new_device: Option<bool>,
}

#[derive(Clone)]
pub struct Accounts {
    storage: Storage,
    clock: Arc<dyn Clock>,
    settings: Arc<AccountSettings>,
    passwords: Arc<Passwords>,
    throttle: LoginThrottle,
}

impl Accounts {
    pub fn new(
        storage: Storage,
        clock: Arc<dyn Clock>,
        settings: AccountSettings,
    ) -> Result<Self, String> {
        Ok(Self {
            passwords: Arc::new(Passwords::new(settings.passwords.clone())?),
            throttle: LoginThrottle::new(storage.dashboard().clone(), settings.throttle.clone()),
            storage,
            clock,
            settings: Arc::new(settings),
        })
    }

    pub fn passwords(&self) -> &Arc<Passwords> {
        &self.passwords
    }

    /// `auth.session_idle_timeout_mins` in ms; 0 when off.
    pub fn idle_timeout_ms(&self) -> i64 {
        self.settings.session_idle_timeout_ms
    }

    /// Creates a dashboard user (`ampflow user create`; `user.created` by the system) with
    /// the configured defaults: IP binding `country`, the default session lifetime, new-device
    /// notices on.
    pub async fn create_user(
        &self,
        email: &str,
        name: Option<&str>,
        password: String,
    ) -> Result<DashboardUserRecord, AccountError> {
        let email = normalise_email(email);
        if email.len() > EMAIL_LENGTH_MAX || !email_address::EmailAddress::is_valid(&email) {
            return Err(AccountError::Invalid {
                param: "email",
                message: format!("{email:?} is not a valid email address"),
            });
        }
        let name = name
            .map(|n| crate::organisations::name(n, "the name"))
            .transpose()
            .map_err(|message| AccountError::Invalid {
                param: "name",
                message,
            })?;
        let password_hash = self.passwords.hash(password).await?;
        let now = self.clock.now_ms();
        let user = DashboardUserRecord {
            id: ampflow_types::prefixed_id("usr"),
            email,
            name,
            password_hash,
            security_stamp: new_security_stamp(),
            ip_binding: IpBinding::Country,
            session_timeout_days: self.settings.session_timeout_days_default as i32,
            notify_new_device: true,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let audit = AuditEvent::new(AuditActor::System, "user.created", now)
            .target("user", &user.id)
            .detail("email", user.email.as_str());
        self.storage
            .dashboard()
            .insert_dashboard_user(&user, &audit)
            .await?;
        Ok(user)
    }

    /// The session `session_id` names, when `secret` is its secret (compared in constant
    /// time); whether it is still good is [`Accounts::authenticate`]'s to say.
    pub async fn session_of(
        &self,
        session_id: &str,
        secret: &str,
    ) -> Result<Option<DashboardSessionRecord>, StorageError> {
        Ok(self
            .storage
            .dashboard()
            .dashboard_session(session_id)
            .await?
            .filter(|s| secret_matches(secret, &s.token_hash)))
    }

    /// The one check of a session, for every dashboard request: its user exists, and it is
    /// not revoked, expired, idle or from before the user's security stamp changed (`None`
    /// otherwise). A request from `ip` that breaks the user's IP binding flags the session
    /// (once, with `session.binding_violation`); `locate` answers an address's country when
    /// the edge can tell. `last_activity` moves at most once per write interval.
    pub async fn authenticate(
        &self,
        session: DashboardSessionRecord,
        ip: IpAddr,
        locate: impl Fn(IpAddr) -> Option<String>,
        stamp: impl Fn(AuditActor, &str) -> AuditEvent,
    ) -> Result<Option<(DashboardUserRecord, DashboardSessionRecord)>, StorageError> {
        let Some(user) = self
            .storage
            .dashboard()
            .dashboard_user(&session.user_id)
            .await?
        else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        if !session.is_active(&user.security_stamp, now)
            || session.is_idle(now, self.idle_timeout_ms())
        {
            return Ok(None);
        }
        self.check_binding(&user, &session, ip, locate, stamp, now)
            .await?;
        let interval_ms = self.settings.activity_write_interval_ms;
        if now - session.last_activity_ms >= interval_ms {
            self.storage
                .dashboard()
                .touch_dashboard_session(&session.id, now, interval_ms)
                .await?;
        }
        Ok(Some((user, session)))
    }

    /// Flags the session (and writes `session.binding_violation`) the first time a request
    /// breaks the user's IP binding. The request itself goes on.
    async fn check_binding(
        &self,
        user: &DashboardUserRecord,
        session: &DashboardSessionRecord,
        ip: IpAddr,
        locate: impl Fn(IpAddr) -> Option<String>,
        stamp: impl Fn(AuditActor, &str) -> AuditEvent,
        now: UnixMillis,
    ) -> Result<(), StorageError> {
        if user.ip_binding == IpBinding::None || session.binding_violation_at_ms.is_some() {
            return Ok(());
        }
        let Ok(login_ip) = session.ip_address.parse::<IpAddr>() else {
            return Ok(());
        };
        if login_ip == ip {
            return Ok(());
        }
        let now_country = locate(ip);
        if !breaks_binding(
            user.ip_binding,
            login_ip,
            session.ip_country.as_deref(),
            ip,
            now_country.as_deref(),
        ) {
            return Ok(());
        }
        tracing::warn!(session = %session.id, user = %user.id, "session broke its IP binding");
        let audit = stamp(
            AuditActor::User(user.id.clone()),
            "session.binding_violation",
        )
        .target("session", &session.id)
        .detail("ip_binding", user.ip_binding.as_str())
        .detail("login_ip", session.ip_address.clone())
        .detail("login_country", session.ip_country.clone())
        .detail("country", now_country);
        self.storage
            .dashboard()
            .flag_binding_violation(&session.id, &ip.to_string(), now, &audit)
            .await?;
        Ok(())
    }

    /// Logs `email` (normalised) in with `password`: throttled per account and address, the
    /// password checked (an unknown email takes as long and fails the same way), a session
    /// opened and its login written with `session.login` (and `session.new_device` when
    /// the user wants to know and none of their recent sessions ran on this device). A failure
    /// is counted and audited as `session.login_failed`. `stamp` makes an audit row of this
    /// request.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        origin: &Origin,
        stamp: impl Fn(AuditActor, &str) -> AuditEvent,
    ) -> Result<LoggedIn, AccountError> {
        let now = self.clock.now_ms();
        let attempt = self
            .throttle
            .reserve(Keys::new(email, origin.ip_group), now)
            .await?;
        let user = self
            .storage
            .dashboard()
            .dashboard_user_by_email(email)
            .await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let matches = self.passwords.verify(password, hash).await?;
        let user = match user {
            Some(user) if matches => user,
            known => {
                let audit =
                    stamp(AuditActor::Anonymous, "session.login_failed").detail("email", email);
                let audit = match &known {
                    Some(known) => audit.target("user", &known.id),
                    None => audit.detail("reason", "unknown_email"),
                };
                self.throttle.failed(attempt, now, &audit).await?;
                return Err(AccountError::WrongCredentials);
            }
        };
        let token = new_session_token();
        let session = new_session(&user, token.session_id, token.secret_hash, origin, now);
        let device = parse_user_agent(session.user_agent.as_deref());
        let by_user = || AuditActor::User(user.id.clone());
        let mut audits = vec![
            stamp(by_user(), "session.login")
                .target("session", &session.id)
                .detail("browser_family", device.browser_family.clone()),
        ];
        if user.notify_new_device && self.is_new_device(&user.id, &device).await? {
            audits.push(
                stamp(by_user(), "session.new_device")
                    .target("session", &session.id)
                    .detail("browser_family", device.browser_family.clone())
                    .detail("os_family", device.os_family.clone())
                    .detail("device_type", device.device_type.clone()),
            );
        }
        self.storage
            .dashboard()
            .insert_dashboard_session(&session, &attempt.success(), &audits)
            .await?;
        Ok(LoggedIn {
            user,
            session,
            cookie_value: token.cookie_value,
        })
    }

    /// Whether none of the user's recent sessions (the last [`DEVICES_REMEMBERED_MAX`]) ran
    /// on this browser, OS and device type. A user without any session has nothing to compare
    /// with: their first login is not "new".
    async fn is_new_device(&self, user_id: &str, device: &Device) -> Result<bool, StorageError> {
        let recent = self
            .storage
            .dashboard()
            .recent_dashboard_sessions(user_id, DEVICES_REMEMBERED_MAX)
            .await?;
        Ok(!recent.is_empty()
            && recent
                .iter()
                .all(|s| parse_user_agent(s.user_agent.as_deref()) != *device))
    }

    /// Ends one of the user's sessions (`reason`: `logout` or `revoked`), writing `audit`;
    /// false when it was not active.
    async fn end_session(
        &self,
        session_id: &str,
        user_id: &str,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StorageError> {
        self.storage
            .dashboard()
            .revoke_dashboard_session(session_id, user_id, reason, self.clock.now_ms(), audit)
            .await
    }

    /// Ends this session (`session.logout`).
    pub async fn logout(
        &self,
        user: &DashboardUserRecord,
        session_id: &str,
        stamp: impl Fn(&str) -> AuditEvent,
    ) -> Result<(), AccountError> {
        let audit = stamp("session.logout").target("session", session_id);
        self.end_session(session_id, &user.id, "logout", &audit)
            .await?;
        Ok(())
    }

    /// Ends every session of the user by rotating their security stamp
    /// (`session.logout_all`); answers how many were active.
    pub async fn logout_all(
        &self,
        user: &DashboardUserRecord,
        stamp: impl Fn(&str) -> AuditEvent,
    ) -> Result<u64, AccountError> {
        let audit = stamp("session.logout_all").target("user", &user.id);
        self.rotate_stamp(user, None, None, "logout_all", &audit)
            .await
    }

    /// Gives the user a new security stamp (and `new_password_hash`, when given), ending
    /// every session but `keep_session`, with `audit`; answers how many sessions ended.
    async fn rotate_stamp(
        &self,
        user: &DashboardUserRecord,
        new_password_hash: Option<&str>,
        keep_session: Option<&str>,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<u64, AccountError> {
        let new_stamp = new_security_stamp();
        let rotation = StampRotation {
            user_id: &user.id,
            new_stamp: &new_stamp,
            new_password_hash,
            keep_session,
            reason,
            now: self.clock.now_ms(),
        };
        Ok(self
            .storage
            .dashboard()
            .rotate_security_stamp(&rotation, audit)
            .await?)
    }

    /// The user's active sessions that are not idle, newest first (at most 100).
    pub async fn sessions(
        &self,
        user: &DashboardUserRecord,
    ) -> Result<Vec<DashboardSessionRecord>, AccountError> {
        let now = self.clock.now_ms();
        let sessions = self
            .storage
            .dashboard()
            .active_dashboard_sessions(&user.id, &user.security_stamp, now, SESSIONS_LISTED_MAX)
            .await?;
        let idle_timeout_ms = self.idle_timeout_ms();
        Ok(sessions
            .into_iter()
            .filter(|s| !s.is_idle(now, idle_timeout_ms))
            .collect())
    }

    /// Ends another of the user's sessions (`session.revoked`): `SessionNotFound` unless it
    /// is theirs and active. The current one is `Invalid`: it ends with a logout.
    pub async fn revoke_session(
        &self,
        user: &DashboardUserRecord,
        current_session_id: &str,
        session_id: &str,
        stamp: impl Fn(&str) -> AuditEvent,
    ) -> Result<(), AccountError> {
        if session_id == current_session_id {
            return Err(AccountError::Invalid {
                param: "session_id",
                message: "this is the current session; end it with POST /auth/logout".into(),
            });
        }
        let now = self.clock.now_ms();
        let session = self
            .storage
            .dashboard()
            .dashboard_session(session_id)
            .await?
            .filter(|s| {
                s.user_id == user.id
                    && s.is_active(&user.security_stamp, now)
                    && !s.is_idle(now, self.idle_timeout_ms())
            })
            .ok_or(AccountError::SessionNotFound)?;
        let audit = stamp("session.revoked").target("session", &session.id);
        if self
            .end_session(&session.id, &user.id, "revoked", &audit)
            .await?
        {
            Ok(())
        } else {
            Err(AccountError::SessionNotFound)
        }
    }

    /// Changes the password: the current one is checked (throttled like a login; a wrong one
    /// is counted and audited as `password.change_failed`), the new one must pass the rules,
    /// and the security stamp is rotated, ending every other session (`keep_session` stays
    /// signed in; `password.changed`). Answers how many sessions ended.
    pub async fn change_password(
        &self,
        user: &DashboardUserRecord,
        keep_session: &str,
        ip_group: IpAddr,
        current: String,
        new: String,
        stamp: impl Fn(&str) -> AuditEvent,
    ) -> Result<u64, AccountError> {
        let now = self.clock.now_ms();
        let attempt = self
            .throttle
            .reserve(Keys::new(&user.email, ip_group), now)
            .await?;
        if current.len() > PASSWORD_LENGTH_MAX
            || !self
                .passwords
                .verify(current, Some(user.password_hash.clone()))
                .await?
        {
            let audit = stamp("password.change_failed").target("user", &user.id);
            self.throttle.failed(attempt, now, &audit).await?;
            return Err(AccountError::WrongCurrentPassword);
        }
        self.throttle.succeeded(attempt).await?;
        let hash = self.passwords.hash(new).await?;
        let audit = stamp("password.changed").target("user", &user.id);
        self.rotate_stamp(
            user,
            Some(&hash),
            Some(keep_session),
            "password_changed",
            &audit,
        )
        .await
    }

    /// Applies a security-settings patch (`security_settings.updated`, with the settings
    /// before and after); answers the settings now in force.
    pub async fn update_security_settings(
        &self,
        user: &DashboardUserRecord,
        patch: SecurityPatch,
        stamp: impl Fn(&str) -> AuditEvent,
    ) -> Result<SecuritySettings, AccountError> {
        let next = self.patched(user, patch)?;
        let audit = stamp("security_settings.updated")
            .target("user", &user.id)
            .details(serde_json::json!({
                "before": {
                    "ip_binding": user.ip_binding.as_str(),
                    "session_timeout_days": user.session_timeout_days,
                    "notify_new_device": user.notify_new_device,
                },
                "after": {
                    "ip_binding": next.ip_binding.as_str(),
                    "session_timeout_days": next.session_timeout_days,
                    "notify_new_device": next.notify_new_device,
                },
            }));
        self.storage
            .dashboard()
            .update_security_settings(&user.id, next, self.clock.now_ms(), &audit)
            .await?;
        Ok(next)
    }

    /// The user's settings with `patch` applied, each field checked.
    fn patched(
        &self,
        user: &DashboardUserRecord,
        patch: SecurityPatch,
    ) -> Result<SecuritySettings, AccountError> {
        let mut next = SecuritySettings {
            ip_binding: user.ip_binding,
            session_timeout_days: user.session_timeout_days,
            notify_new_device: user.notify_new_device,
        };
        if let Some(binding) = patch.ip_binding.as_deref() {
            next.ip_binding = IpBinding::parse(binding).ok_or_else(|| AccountError::Invalid {
                param: "ip_binding",
                message: "ip_binding must be none, country, subnet or strict".into(),
            })?;
        }
        if let Some(days) = patch.session_timeout_days {
            let max = self.settings.session_timeout_days_max;
            if !(1..=max).contains(&days) {
                return Err(AccountError::Invalid {
                    param: "session_timeout_days",
                    message: format!("session_timeout_days must be 1 to {max}"),
                });
            }
            next.session_timeout_days = days as i32;
        }
        if let Some(notify) = patch.notify_new_device {
            next.notify_new_device = notify;
        }
        Ok(next)
    }
}

/// A session of `user` opened now from `origin`, expiring after the user's own timeout.
fn new_session(
    user: &DashboardUserRecord,
    id: String,
    token_hash: String,
    origin: &Origin,
    now: UnixMillis,
) -> DashboardSessionRecord {
    DashboardSessionRecord {
        id,
        user_id: user.id.clone(),
        token_hash,
        security_stamp: user.security_stamp.clone(),
        created_at_ms: now,
        last_activity_ms: now,
        expires_at_ms: now + (user.session_timeout_days as i64) * DAY_MS,
        revoked_at_ms: None,
        revoked_reason: None,
        ip_address: origin.ip.to_string(),
        user_agent: origin.user_agent.clone(),
        ip_country: origin.country.clone(),
        ip_city: origin.city.clone(),
        binding_violation_at_ms: None,
        binding_violation_ip: None,
    }
}
