//! The wallet actor's KYC: its Veriff sessions and the KYC fields of its user record.
//!
//! Rules (seed 002 §3 and issue 3):
//! - `POST /veriff/session` reuses the latest session unless it is older than
//!   [`SESSION_REUSE_MS`] or Veriff declined it, or it expired or was abandoned; then a new
//!   one is created at Veriff. The call to Veriff runs in a spawned task whose result comes
//!   back as [`WalletMsg::KycSessionCreated`], so the mailbox never waits on Veriff; requests
//!   arriving meanwhile wait for the same session instead of creating another.
//! - A decision is final once approved, declined, expired or abandoned; resubmission_requested
//!   and review are followed by another decision on the same session. A repeated delivery, or
//!   a different decision after a final one, changes nothing.
//! - Approved completes the user's KYC with the person's name and the document, written in the
//!   same transaction as the session.
//!
//! Creating a Veriff session is not recorded as an intent first: an unused session has no
//! lasting effect (Veriff expires it after 7 days), so a duplicate after a crash is harmless.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use ampflow_storage::{KycStatus, VeriffDecision, VeriffDecisionStatus, VeriffSessionRecord};
use chrono::NaiveDate;
use futures::FutureExt;
use ractor::ActorRef;

use super::{Reply, WalletActor, WalletMsg, WalletState};
use crate::identity_error::IdentityError;
use crate::veriff::{CreatedSession, VeriffClient};

/// Why a wallet's KYC does not let it be whitelisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KycRefusal {
    /// Not done (or declined).
    Required,
    /// Done with a document that expired.
    Expired { valid_until: NaiveDate },
}

/// Why the wallet refused to queue a whitelisting request.
#[derive(Debug, Clone)]
pub enum QueueRefused {
    Kyc(KycRefusal),
    Identity(IdentityError),
}

impl<E: Into<IdentityError>> From<E> for QueueRefused {
    fn from(error: E) -> Self {
        Self::Identity(error.into())
    }
}

/// Whether KYC lets a wallet be whitelisted on `today`.
pub fn kyc_gate(status: Option<&KycStatus>, today: NaiveDate) -> Result<(), KycRefusal> {
    match status {
        Some(status) if status.is_valid_on(today) => Ok(()),
        Some(status) if status.is_expired_on(today) => Err(KycRefusal::Expired {
            // is_expired_on implies a date.
            valid_until: status.document_valid_until.unwrap_or(today),
        }),
        _ => Err(KycRefusal::Required),
    }
}

/// The UTC day of a Unix-millisecond instant.
pub fn utc_day(now_ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .date_naive()
}

/// A session older than this is replaced (Veriff's own session lifetime is 7 days).
pub const SESSION_REUSE_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Requests waiting for one session to be created at Veriff; more are refused until it is.
const KYC_WAITERS_MAX: usize = 32;

/// What `POST /veriff/session` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KycSessionView {
    pub session: VeriffSessionRecord,
    /// The decision to show: the session's own, or, for a new session that replaced a decided
    /// one, that one's (so the client can say why a new verification is needed).
    pub decision: Option<ShownDecision>,
}

/// A decision and the session it was made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownDecision {
    pub session_id: String,
    pub decision: VeriffDecision,
}

impl ShownDecision {
    fn of(session: &VeriffSessionRecord) -> Option<Self> {
        session.decision.clone().map(|decision| Self {
            session_id: session.id.clone(),
            decision,
        })
    }
}

/// What a webhook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KycWebhookOutcome {
    Applied,
    /// The same delivery was applied before.
    Duplicate,
    /// The session already had a final decision; this one was not applied.
    Ignored,
}

/// An event webhook: Veriff's `action` (`started`, `submitted`) and `code` (7001, 7002).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KycEvent {
    pub action: String,
    pub code: i32,
}

fn is_final(status: VeriffDecisionStatus) -> bool {
    use VeriffDecisionStatus::*;
    matches!(status, Approved | Declined | Expired | Abandoned)
}

fn is_reusable(session: &VeriffSessionRecord, now: i64) -> bool {
    use VeriffDecisionStatus::*;
    let fresh = now - session.created_at_ms < SESSION_REUSE_MS;
    let open = session
        .decision
        .as_ref()
        .is_none_or(|d| matches!(d.status, Approved | ResubmissionRequested | Review));
    fresh && open
}

impl WalletActor {
    /// Answers the latest session when it may be reused, or starts creating a new one at
    /// Veriff (the answer is sent when it arrives).
    pub(super) async fn start_kyc(
        &self,
        myself: ActorRef<WalletMsg>,
        state: &mut WalletState,
        session_id: &str,
        reply: Reply<KycSessionView>,
    ) {
        if let Err(error) = self.check_session(state, session_id).await {
            let _ = reply.send(Err(error));
            return;
        }
        if !state.kyc_waiters.is_empty() {
            if state.kyc_waiters.len() >= KYC_WAITERS_MAX {
                let _ = reply.send(Err(IdentityError::Conflict));
            } else {
                state.kyc_waiters.push(reply);
            }
            return;
        }
        let address = state.address;
        let latest = match self
            .deps
            .storage
            .identity()
            .latest_veriff_session(&address)
            .await
        {
            Ok(latest) => latest,
            Err(error) => {
                let _ = reply.send(Err(error.into()));
                return;
            }
        };
        if let Some(session) = latest.as_ref().filter(|s| is_reusable(s, self.now())) {
            let view = KycSessionView {
                session: session.clone(),
                decision: ShownDecision::of(session),
            };
            let _ = reply.send(Ok(view));
            return;
        }
        let Some(veriff) = self.deps.veriff.clone() else {
            let _ = reply.send(Err(IdentityError::VeriffNotConfigured));
            return;
        };
        state.kyc_waiters.push(reply);
        let previous = latest.as_ref().and_then(ShownDecision::of);
        // Sessions are ordered by creation time: a new one must sort after the one it replaces
        // even within one millisecond (or if the clock stepped back).
        let created_not_before_ms = latest.map_or(0, |s| s.created_at_ms + 1);
        let request = SessionRequest::of(state, self.now());
        tokio::spawn(create_session(
            veriff,
            request,
            myself,
            previous,
            created_not_before_ms,
        ));
    }

    /// Stores the session Veriff created, then answers everyone waiting for it.
    pub(super) async fn kyc_session_created(
        &self,
        state: &mut WalletState,
        result: Result<CreatedSession, IdentityError>,
        previous: Option<ShownDecision>,
        created_not_before_ms: i64,
    ) {
        let waiters = std::mem::take(&mut state.kyc_waiters);
        let answer = match result {
            Ok(created) => {
                let session = VeriffSessionRecord {
                    id: created.id,
                    address: state.address,
                    url: created.url,
                    created_at_ms: self.now().max(created_not_before_ms),
                    last_event: None,
                    last_event_code: None,
                    last_event_at_ms: None,
                    decision: None,
                    decided_at_ms: None,
                    version: 0,
                };
                match self
                    .deps
                    .storage
                    .identity()
                    .insert_veriff_session(&session)
                    .await
                {
                    Ok(()) => Ok(KycSessionView {
                        session,
                        decision: previous,
                    }),
                    Err(error) => Err(error.into()),
                }
            }
            Err(error) => {
                tracing::warn!(address = %state.address, %error, "creating a Veriff session failed");
                Err(error)
            }
        };
        for waiter in waiters {
            let _ = waiter.send(answer.clone());
        }
    }

    /// Applies Veriff's decision to the session and, when approved, to the user.
    pub(super) async fn apply_kyc_decision(
        &self,
        state: &mut WalletState,
        verification_id: &str,
        decision: VeriffDecision,
    ) -> Result<KycWebhookOutcome, IdentityError> {
        for _ in 0..2 {
            self.reload(state).await?;
            let mut session = self.own_veriff_session(state, verification_id).await?;
            if let Some(current) = &session.decision {
                if *current == decision {
                    return Ok(KycWebhookOutcome::Duplicate);
                }
                if is_final(current.status) {
                    tracing::warn!(address = %state.address, session = %session.id,
                        current = current.status.as_str(), received = decision.status.as_str(),
                        "a decision arrived for a session already decided; ignored");
                    return Ok(KycWebhookOutcome::Ignored);
                }
            }
            let now = self.now();
            session.decision = Some(decision.clone());
            session.decided_at_ms = Some(now);
            session.version += 1;
            let user = match decision.status {
                VeriffDecisionStatus::Approved => {
                    let mut user = state.user.clone().ok_or_else(|| {
                        IdentityError::Internal("a Veriff session of a wallet with no user".into())
                    })?;
                    user.kyc_completed = true;
                    if decision.person_first_name.is_some() || decision.person_last_name.is_some() {
                        user.kyc_first_name = decision.person_first_name.clone();
                        user.kyc_last_name = decision.person_last_name.clone();
                    }
                    user.kyc_session_id = Some(session.id.clone());
                    user.kyc_document_type = decision.document_type.clone();
                    user.kyc_document_country = decision.document_country.clone();
                    user.kyc_document_valid_until = decision.document_valid_until;
                    user.kyc_verified_at_ms = Some(now);
                    user.version += 1;
                    user.updated_at_ms = now;
                    Some(user)
                }
                _ => None,
            };
            if self
                .deps
                .storage
                .identity()
                .update_veriff_session(&session, user.as_ref())
                .await?
            {
                if let Some(user) = user {
                    state.user = Some(user);
                }
                tracing::info!(address = %state.address, session = %session.id,
                    decision = decision.status.as_str(), "KYC decision applied");
                return Ok(KycWebhookOutcome::Applied);
            }
        }
        Err(IdentityError::Conflict)
    }

    /// Records an event (the user started or submitted the flow) on the session.
    pub(super) async fn record_kyc_event(
        &self,
        state: &mut WalletState,
        verification_id: &str,
        event: KycEvent,
    ) -> Result<KycWebhookOutcome, IdentityError> {
        for _ in 0..2 {
            let mut session = self.own_veriff_session(state, verification_id).await?;
            if session.last_event_code == Some(event.code)
                && session.last_event.as_deref() == Some(event.action.as_str())
            {
                return Ok(KycWebhookOutcome::Duplicate);
            }
            session.last_event = Some(event.action.clone());
            session.last_event_code = Some(event.code);
            session.last_event_at_ms = Some(self.now());
            session.version += 1;
            if self
                .deps
                .storage
                .identity()
                .update_veriff_session(&session, None)
                .await?
            {
                return Ok(KycWebhookOutcome::Applied);
            }
        }
        Err(IdentityError::Conflict)
    }

    /// The stored session `id`, which must belong to this wallet.
    async fn own_veriff_session(
        &self,
        state: &WalletState,
        id: &str,
    ) -> Result<VeriffSessionRecord, IdentityError> {
        self.deps
            .storage
            .identity()
            .find_veriff_session(id)
            .await?
            .filter(|s| s.address == state.address)
            .ok_or(IdentityError::KycSessionUnknown)
    }
}

/// What Veriff is asked to create a session for.
struct SessionRequest {
    address: String,
    first_name: Option<String>,
    last_name: Option<String>,
    /// RFC 3339, milliseconds.
    timestamp: String,
}

impl SessionRequest {
    /// The wallet's session request now: its address and the names its user gave, if any.
    fn of(state: &WalletState, now: i64) -> Self {
        let (first_name, last_name) = state
            .user
            .as_ref()
            .map(|u| (u.kyc_first_name.clone(), u.kyc_last_name.clone()))
            .unwrap_or_default();
        Self {
            address: state.address.to_string(),
            first_name,
            last_name,
            timestamp: chrono::DateTime::from_timestamp_millis(now)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// Asks Veriff for a session, then hands the result to the wallet's actor. A one-off call, not
/// restarted (creating a session is not idempotent): a panic answers the waiters with an
/// error, who may ask again.
async fn create_session(
    veriff: Arc<VeriffClient>,
    request: SessionRequest,
    myself: ActorRef<WalletMsg>,
    previous: Option<ShownDecision>,
    created_not_before_ms: i64,
) {
    let address = &request.address;
    let call = veriff.create_session(
        address,
        request.first_name.as_deref(),
        request.last_name.as_deref(),
        &request.timestamp,
    );
    let result = match AssertUnwindSafe(call).catch_unwind().await {
        Ok(result) => result.map_err(IdentityError::from),
        Err(_) => {
            tracing::error!(%address, "creating the Veriff session panicked");
            Err(IdentityError::VeriffUnavailable("the call panicked".into()))
        }
    };
    // If the actor stopped meanwhile, its waiters were answered by the registry.
    let _ = myself.cast(WalletMsg::KycSessionCreated {
        result,
        previous,
        created_not_before_ms,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kyc_gate_lets_through_a_done_kyc_with_a_valid_or_no_document() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 12, d).unwrap_or_default();
        let status = |completed: bool, until: Option<NaiveDate>| KycStatus {
            completed,
            first_name: None,
            last_name: None,
            session_id: None,
            document_type: None,
            document_country: None,
            document_valid_until: until,
            verified_at_ms: None,
        };
        let today = day(7);
        assert_eq!(kyc_gate(None, today), Err(KycRefusal::Required));
        assert_eq!(
            kyc_gate(Some(&status(false, Some(day(9)))), today),
            Err(KycRefusal::Required)
        );
        assert_eq!(kyc_gate(Some(&status(true, None)), today), Ok(()));
        assert_eq!(kyc_gate(Some(&status(true, Some(day(7)))), today), Ok(()));
        assert_eq!(
            kyc_gate(Some(&status(true, Some(day(6)))), today),
            Err(KycRefusal::Expired {
                valid_until: day(6)
            })
        );
        // 2026-12-08T00:00:00Z, less a millisecond.
        assert_eq!(utc_day(1_796_688_000_000 - 1), day(7));
        assert_eq!(utc_day(1_796_688_000_000), day(8));
    }

    fn session(created_at_ms: i64, status: Option<VeriffDecisionStatus>) -> VeriffSessionRecord {
        VeriffSessionRecord {
            id: "s".into(),
            address: ampflow_types::WalletAddress::from_alloy(alloy::primitives::Address::ZERO),
            url: "https://veriff".into(),
            created_at_ms,
            last_event: None,
            last_event_code: None,
            last_event_at_ms: None,
            decision: status.map(|status| VeriffDecision {
                status,
                code: 9001,
                reason: None,
                reason_code: None,
                decision_time: None,
                acceptance_time: None,
                person_first_name: None,
                person_last_name: None,
                document_type: None,
                document_country: None,
                document_valid_until: None,
            }),
            decided_at_ms: None,
            version: 0,
        }
    }

    #[test]
    fn reuse_follows_the_decision_and_the_age() {
        use VeriffDecisionStatus::*;
        let now = SESSION_REUSE_MS * 2;
        for (status, reusable) in [
            (None, true),
            (Some(Approved), true),
            (Some(ResubmissionRequested), true),
            (Some(Review), true),
            (Some(Declined), false),
            (Some(Expired), false),
            (Some(Abandoned), false),
        ] {
            assert_eq!(is_reusable(&session(now - 1000, status), now), reusable);
            assert!(!is_reusable(&session(now - SESSION_REUSE_MS, status), now));
        }
    }
}
