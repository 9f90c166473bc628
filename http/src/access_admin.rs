//! Operator commands for dashboard access: `ampflow user create` and `ampflow org
//! add-member` / `remove-member`. Each writes its audit row (actor `system`).

use ampflow_storage::{
    AuditActor, AuditEvent, DashboardUserRecord, IpBinding, Role, Storage, prefixed_id,
};
use ampflow_types::Clock;
use anyhow::{Context, bail};

use crate::auth::{new_security_stamp, normalise_email};
use crate::config::AuthConfig;

/// The environment variable `ampflow user create` reads the password from (else stdin).
pub const PASSWORD_ENV: &str = "AMPFLOW_USER_PASSWORD";

/// Creates a dashboard user with the configured defaults (IP binding `country`, the default
/// session lifetime, new-device notices on).
pub async fn create_user(
    storage: &Storage,
    clock: &dyn Clock,
    config: &AuthConfig,
    email: &str,
    name: Option<&str>,
    password: &str,
) -> anyhow::Result<DashboardUserRecord> {
    let email = normalise_email(email);
    if email.len() > 254 || !email_address::EmailAddress::is_valid(&email) {
        bail!("{email:?} is not a valid email address");
    }
    let name = name
        .map(|n| ampflow_actors::organisations::name(n, "the name"))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    config.validate().map_err(anyhow::Error::msg)?;
    let passwords = ampflow_actors::accounts::Passwords::new(config.account_settings().passwords)
        .map_err(anyhow::Error::msg)?;
    passwords.check_new(password)?;
    let password_hash = passwords.hash_now(password)?;
    let now = clock.now_ms();
    let user = DashboardUserRecord {
        id: prefixed_id("usr"),
        email,
        name,
        password_hash,
        security_stamp: new_security_stamp(),
        ip_binding: IpBinding::Country,
        session_timeout_days: config.session_timeout_days_default as i32,
        notify_new_device: true,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let audit = AuditEvent::new(AuditActor::System, "user.created", now)
        .target("user", &user.id)
        .detail("email", user.email.as_str());
    storage.insert_dashboard_user(&user, &audit).await?;
    Ok(user)
}

async fn member_ids(
    storage: &Storage,
    organisation_id: &str,
    email: &str,
) -> anyhow::Result<DashboardUserRecord> {
    if storage.organisation(organisation_id).await?.is_none() {
        bail!("no organisation has the id {organisation_id}");
    }
    storage
        .dashboard_user_by_email(&normalise_email(email))
        .await?
        .with_context(|| format!("no user has the email {email}"))
}

/// Gives the user `role` (member or admin) in the organisation; answers the previous role.
pub async fn set_member(
    storage: &Storage,
    clock: &dyn Clock,
    organisation_id: &str,
    email: &str,
    role: &str,
) -> anyhow::Result<(DashboardUserRecord, Option<Role>)> {
    let role = Role::parse(role).context("the role must be member or admin")?;
    let user = member_ids(storage, organisation_id, email).await?;
    let now = clock.now_ms();
    let audit = AuditEvent::new(AuditActor::System, "membership.added", now)
        .target("user", &user.id)
        .organisation(organisation_id);
    let previous = storage
        .set_membership(organisation_id, &user.id, role, now, &audit)
        .await?;
    Ok((user, previous))
}

pub async fn remove_member(
    storage: &Storage,
    clock: &dyn Clock,
    organisation_id: &str,
    email: &str,
) -> anyhow::Result<()> {
    let user = member_ids(storage, organisation_id, email).await?;
    let audit = AuditEvent::new(AuditActor::System, "membership.removed", clock.now_ms())
        .target("user", &user.id)
        .organisation(organisation_id);
    if !storage
        .remove_membership(organisation_id, &user.id, &audit)
        .await?
    {
        bail!("{email} is not a member of {organisation_id}");
    }
    Ok(())
}

/// The new user's password: from [`PASSWORD_ENV`] when set, else the first line of stdin
/// (never from the command line, where other users could read it).
pub fn read_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var(PASSWORD_ENV) {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("no password: set {PASSWORD_ENV} or write it on stdin");
    }
    Ok(password)
}
