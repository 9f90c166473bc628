//! The audit façade: who reads which part of the audit log, and the pages they read. Every
//! change writes its own audit row in its own transaction (storage does that with the
//! change); this is the reading side, for `GET /audit-events`. That the caller may read an
//! organisation's events is the trust boundary's check, made before the call.

use ampflow_storage::{AuditRepo, Keyset, StorageError};

pub use ampflow_storage::{AuditActor, AuditEvent, AuditScope};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An API key belongs to no user, so it has no events of its own to read.
    #[error("give the organisation_id whose events to read")]
    OrganisationNeeded,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Clone)]
pub struct Audit {
    events: AuditRepo,
}

impl Audit {
    pub fn new(events: AuditRepo) -> Self {
        Self { events }
    }

    /// Whose events a reader reads: the organisation's when one is named, otherwise the
    /// signed-in user's own (`user_id`; none for an API key, which must name one).
    pub fn scope(
        organisation_id: Option<String>,
        user_id: Option<&str>,
    ) -> Result<AuditScope, AuditError> {
        match (organisation_id, user_id) {
            (Some(organisation_id), _) => Ok(AuditScope::Organisation(organisation_id)),
            (None, Some(user_id)) => Ok(AuditScope::Subject(user_id.to_string())),
            (None, None) => Err(AuditError::OrganisationNeeded),
        }
    }

    /// One page of the scope's events, newest first, strictly after `cursor`.
    pub async fn page(
        &self,
        scope: &AuditScope,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        Ok(self.events.audit_events(scope, cursor, limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_organisation_wins_a_user_reads_their_own_and_a_key_must_name_one() {
        assert_eq!(
            Audit::scope(Some("org_1".into()), Some("usr_1")).unwrap(),
            AuditScope::Organisation("org_1".into())
        );
        assert_eq!(
            Audit::scope(None, Some("usr_1")).unwrap(),
            AuditScope::Subject("usr_1".into())
        );
        assert!(matches!(
            Audit::scope(None, None),
            Err(AuditError::OrganisationNeeded)
        ));
    }
}
