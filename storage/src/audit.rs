//! The audit log: one row per session, role, key or token change, written in the same
//! transaction as the change it describes. Rows are never updated or deleted by the server.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
};

use crate::entities::audit_events;
use crate::keyset::{Keyset, Order};
use crate::{AuditRepo, Context, Result, StorageError};
use ampflow_types::UnixMillis;

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditActor {
    /// A dashboard user (`usr_…`), through a session.
    User(String),
    /// An organisation's API key (`key_…`), once API keys exist.
    ApiKey(String),
    /// An operator command (`ampflow …`) or the server itself.
    System,
    /// Nobody proven, e.g. a failed login.
    Anonymous,
}

impl AuditActor {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::ApiKey(_) => "api_key",
            Self::System => "system",
            Self::Anonymous => "anonymous",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Self::User(id) | Self::ApiKey(id) => Some(id),
            Self::System | Self::Anonymous => None,
        }
    }

    fn from_row(kind: &str, id: Option<String>) -> Result<Self> {
        match (kind, id) {
            ("user", Some(id)) => Ok(Self::User(id)),
            ("api_key", Some(id)) => Ok(Self::ApiKey(id)),
            ("system", _) => Ok(Self::System),
            ("anonymous", _) => Ok(Self::Anonymous),
            (kind, _) => Err(StorageError::Corrupt(format!("audit actor {kind}"))),
        }
    }
}

/// One audit row. `details` is a small JSON object and never holds a secret (no password,
/// token, hash or key material).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// `aud_<32 hex>`
    pub id: String,
    pub occurred_at_ms: UnixMillis,
    pub actor: AuditActor,
    /// e.g. `session.login`, `membership.role_changed`.
    pub action: String,
    /// What was acted on: (`user`, `usr_…`), (`session`, `ses_…`), (`organisation`, `org_…`)…
    pub target: Option<(String, String)>,
    pub organisation_id: Option<String>,
    pub ip_address: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// A new event at `now` with no target, organisation, client or details.
    pub fn new(actor: AuditActor, action: &str, now: UnixMillis) -> Self {
        Self {
            // Time-ordered (UUIDv7), so events in one millisecond list in the order written.
            id: format!("aud_{}", uuid::Uuid::now_v7().simple()),
            occurred_at_ms: now,
            actor,
            action: action.to_string(),
            target: None,
            organisation_id: None,
            ip_address: None,
            request_id: None,
            details: serde_json::json!({}),
        }
    }

    pub fn target(mut self, kind: &str, id: &str) -> Self {
        self.target = Some((kind.to_string(), id.to_string()));
        self
    }

    pub fn organisation(mut self, id: &str) -> Self {
        self.organisation_id = Some(id.to_string());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Adds one field to the details object.
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if let Some(map) = self.details.as_object_mut() {
            map.insert(key.to_string(), value.into());
        }
        self
    }
}

/// Whose events a listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditScope {
    /// Every event of one organisation.
    Organisation(String),
    /// Events a user did or that were done to them (`actor_id` or `target_id` is theirs).
    Subject(String),
}

/// Writes `event` on `db`, which is the transaction of the change it describes.
pub(crate) async fn write_audit(db: &impl ConnectionTrait, event: &AuditEvent) -> Result<()> {
    let (target_type, target_id) = match &event.target {
        Some((kind, id)) => (Some(kind.clone()), Some(id.clone())),
        None => (None, None),
    };
    audit_events::Entity::insert(audit_events::ActiveModel {
        id: Set(event.id.clone()),
        occurred_at_ms: Set(event.occurred_at_ms),
        actor_type: Set(event.actor.kind().to_string()),
        actor_id: Set(event.actor.id().map(str::to_string)),
        action: Set(event.action.clone()),
        target_type: Set(target_type),
        target_id: Set(target_id),
        organisation_id: Set(event.organisation_id.clone()),
        ip_address: Set(event.ip_address.clone()),
        request_id: Set(event.request_id.clone()),
        details: Set(event.details.to_string()),
    })
    .exec_without_returning(db)
    .await
    .context("write audit event")?;
    Ok(())
}

impl AuditRepo {
    /// Writes an event that goes with no other database change.
    pub async fn record_audit_event(&self, event: &AuditEvent) -> Result<()> {
        write_audit(&self.db, event).await
    }

    /// Events in `scope`, newest first, after `cursor`.
    pub async fn audit_events(
        &self,
        scope: &AuditScope,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>> {
        use audit_events::Column as C;
        let mut query = audit_events::Entity::find();
        query = match scope {
            AuditScope::Organisation(id) => query.filter(C::OrganisationId.eq(id.as_str())),
            AuditScope::Subject(id) => query.filter(
                Condition::any()
                    .add(C::ActorId.eq(id.as_str()))
                    .add(C::TargetId.eq(id.as_str())),
            ),
        };
        crate::keyset::page(
            query,
            (C::OccurredAtMs, C::Id),
            Order::NewestFirst,
            cursor,
            limit,
        )
        .all(&self.reader)
        .await
        .context("list audit events")?
        .into_iter()
        .map(audit_record)
        .collect()
    }
}

fn audit_record(m: audit_events::Model) -> Result<AuditEvent> {
    let details = serde_json::from_str(&m.details)
        .map_err(|e| StorageError::Corrupt(format!("audit event {}: details: {e}", m.id)))?;
    Ok(AuditEvent {
        actor: AuditActor::from_row(&m.actor_type, m.actor_id)?,
        target: m.target_type.zip(m.target_id),
        id: m.id,
        occurred_at_ms: m.occurred_at_ms,
        action: m.action,
        organisation_id: m.organisation_id,
        ip_address: m.ip_address,
        request_id: m.request_id,
        details,
    })
}
