//! Donations through Stripe. Each donation is owned by a `DonationActor` (keyed by its id): it
//! writes the donation's row and owns its state machine. It may touch storage (its own row)
//! and nothing else; Stripe is called by the [`Donations`] front, outside any mailbox, and the
//! outcome comes back to the actor as a message.
//!
//! States: `pending` → `succeeded`, `failed` or `cancelled`; `succeeded` → `refunded`. One more
//! move is allowed, `failed` → `succeeded`: at Stripe a declined card is not the end of a
//! PaymentIntent (it returns to `requires_payment_method` and the donor may pay with another
//! card), and refusing that success would leave money that arrived out of the ledger. Every
//! other move is refused and logged, never applied; in particular a failure after a success
//! does not undo it.
//!
//! Durability: the donation is stored as `pending` before Stripe is called, and its id is the
//! call's idempotency key, so a retried call cannot create a second PaymentIntent.
//!
//! Partner donations (seed 003, [`partner`]) have source `partner` and no PaymentIntent; they
//! use the same actor and state machine.

use std::sync::Arc;

use ampflow_storage::{
    DonationSource, EventWrite, FundRecord, Keyset, OrganisationStatus, PartnerDonationRecord,
    Storage, StorageError, StripeEventRecord,
};
use ampflow_types::{Clock, Currency, DonationId, WalletAddress};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use secrecy::SecretString;

use crate::ledger::Ledger;
use crate::registry::{EntityActor, Registry, RegistryError};
use crate::stripe::{NewPaymentIntent, StripeClient, StripeError, StripeSignatureError};

mod events;
mod partner;
pub use ampflow_storage::{DonationRecord, DonationStatus};
pub use events::WebhookOutcome;
pub use partner::{NewPartnerDonation, PartnerDonation};

/// Attempts at a conditional update before answering `Conflict` (another process kept
/// winning).
const UPDATE_ATTEMPTS_MAX: usize = 3;
/// Longest failure reason stored.
const FAILURE_REASON_LENGTH_MAX: usize = 1000;

/// Why a donation request was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DonationError {
    #[error("donations are not available: Stripe is not configured")]
    NotConfigured,
    #[error("no organisation has this id")]
    OrganisationUnknown,
    #[error("this organisation does not take donations")]
    OrganisationSuspended,
    #[error("the organisation has no fund with this id")]
    FundUnknown,
    #[error("no donation has this id")]
    NotFound,
    /// Boxed: Stripe's error body is large, and this error travels in every `Result`.
    #[error("the payment could not be set up: {0}")]
    Payment(Box<StripeError>),
    #[error("a donation cannot go from {from} to {to}")]
    IllegalTransition {
        from: &'static str,
        to: &'static str,
    },
    #[error("the donation was changed concurrently; retry")]
    Conflict,
    #[error(
        "this publisher transaction id was used for another donation (a different amount or currency)"
    )]
    TransactionIdReused,
    #[error("the webhook signature is not valid: {0}")]
    Signature(StripeSignatureError),
    #[error("the webhook event is malformed: {0}")]
    EventMalformed(String),
    #[error("the event's livemode does not match the mode of the Stripe key")]
    LivemodeMismatch,
    /// Carries the cause for the logs.
    #[error("the ledger could not be written: {0}")]
    Ledger(String),
    #[error("storage: {0}")]
    Storage(String),
    /// Storage could not carry the request out now (see `StorageError::is_unavailable`);
    /// a retry may well succeed. Carries the cause for the logs.
    #[error("storage is unavailable; retry: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Actor(#[from] RegistryError),
}

impl From<StorageError> for DonationError {
    fn from(error: StorageError) -> Self {
        if error.is_unavailable() {
            Self::Unavailable(error.to_string())
        } else {
            Self::Storage(error.to_string())
        }
    }
}

/// Whether a donation may move from `from` to `to` (see the module documentation).
pub fn may_move(from: DonationStatus, to: DonationStatus) -> bool {
    use DonationStatus::*;
    matches!(
        (from, to),
        (Pending, Succeeded | Failed | Cancelled) | (Failed, Succeeded) | (Succeeded, Refunded)
    )
}

/// A donation a donor asks for, parsed and checked at the edge.
#[derive(Debug, Clone)]
pub struct NewDonation {
    pub organisation_id: String,
    pub fund_id: Option<String>,
    /// The signed-in donor; `None` when an organisation's API key or dashboard user creates
    /// the donation (then only the organisation reads it).
    pub wallet: Option<WalletAddress>,
    /// Minor units, > 0.
    pub amount: i64,
    pub currency: Currency,
    pub donor_email: String,
    pub donor_name: Option<String>,
}

/// A donation with a PaymentIntent: `client_secret` is for the donor's browser, answered once.
#[derive(Debug, Clone)]
pub struct CreatedDonation {
    pub donation: DonationRecord,
    pub client_secret: SecretString,
}

/// What a transition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    Applied(DonationRecord),
    /// The donation was in that state already.
    AlreadyThere(DonationRecord),
    /// The event that asked for the move was applied before; nothing was written.
    Duplicate(DonationRecord),
}

impl Moved {
    pub fn record(&self) -> &DonationRecord {
        match self {
            Self::Applied(r) | Self::AlreadyThere(r) | Self::Duplicate(r) => r,
        }
    }
}

/// The donations front the HTTP layer calls.
#[derive(Clone)]
pub struct Donations {
    storage: Storage,
    clock: Arc<dyn Clock>,
    stripe: Option<Arc<StripeClient>>,
    donations: Arc<Registry<DonationActor>>,
    ledger: Arc<Ledger>,
}

/// Donations younger than this may still be waiting for Stripe's answer to their own request.
pub const ORPHAN_GRACE_MS: i64 = 120_000;
/// A donation still without a PaymentIntent this long after it was stored is failed. Stripe
/// keeps idempotency keys for 24 hours; one hour stays well inside.
pub const ORPHAN_GIVE_UP_MS: i64 = 3_600_000;
/// Left-over donations handled per sweep at most.
const ORPHANS_PER_SWEEP: u64 = 100;

/// What one sweep of left-over donations did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrphanSweep {
    /// PaymentIntent created (or found again through the idempotency key) and recorded.
    pub attached: usize,
    /// Too old: marked failed.
    pub failed: usize,
    /// Stripe could not be reached or refused; retried on a later sweep.
    pub left: usize,
}

impl Donations {
    pub(crate) fn new(
        storage: Storage,
        clock: Arc<dyn Clock>,
        stripe: Option<Arc<StripeClient>>,
        donations: Arc<Registry<DonationActor>>,
        ledger: Arc<Ledger>,
    ) -> Self {
        Self {
            storage,
            clock,
            stripe,
            donations,
            ledger,
        }
    }

    /// Whether Stripe is configured (donations are taken).
    pub fn takes_donations(&self) -> bool {
        self.stripe.is_some()
    }

    /// The donation registry (tests use it to find and kill actors).
    pub fn registry(&self) -> &Arc<Registry<DonationActor>> {
        &self.donations
    }

    /// Stores the donation as pending, creates its PaymentIntent at Stripe (idempotency key:
    /// the donation id) and records it. A Stripe error marks the donation failed.
    pub async fn create(&self, new: NewDonation) -> Result<CreatedDonation, DonationError> {
        let stripe = self.stripe.clone().ok_or(DonationError::NotConfigured)?;
        let fund = self.check_recipient(&new).await?;
        let id = DonationId::from_bytes(*uuid::Uuid::new_v4().as_bytes());
        let now = self.clock.now_ms();
        let record = DonationRecord {
            id: id.to_string(),
            organisation_id: new.organisation_id.clone(),
            fund_id: fund.map(|f| f.id),
            wallet_address: new.wallet,
            amount: new.amount,
            currency: new.currency.as_str().to_string(),
            donor_email: new.donor_email.clone(),
            donor_name: new.donor_name.clone(),
            status: DonationStatus::Pending,
            stripe_payment_intent_id: None,
            failure_reason: None,
            created_at_ms: now,
            updated_at_ms: now,
            version: 0,
            source: DonationSource::Stripe,
        };
        let record = self
            .donations
            .call(&id, |reply| DonationMsg::Create {
                record: Box::new(record.clone()),
                reply,
            })
            .await??;
        let created = stripe
            .create_payment_intent(&NewPaymentIntent {
                donation_id: &id,
                amount: record.amount,
                currency: new.currency,
                receipt_email: &record.donor_email,
                organisation_id: &record.organisation_id,
                fund_id: record.fund_id.as_deref(),
            })
            .await;
        match created {
            Ok(intent) => {
                let donation = self
                    .donations
                    .call(&id, |reply| DonationMsg::AttachPaymentIntent {
                        payment_intent_id: intent.id.clone(),
                        reply,
                    })
                    .await??;
                tracing::info!(donation = %id, payment_intent = %intent.id, amount = donation.amount, currency = %donation.currency, "donation created");
                Ok(CreatedDonation {
                    donation,
                    client_secret: intent.client_secret,
                })
            }
            Err(error) => {
                tracing::warn!(donation = %id, %error, "creating the PaymentIntent failed; the donation is failed");
                let reason = format!("stripe: {error}");
                if let Err(marking) = self
                    .transition(&id, DonationStatus::Failed, Some(reason))
                    .await
                {
                    tracing::error!(donation = %id, error = %marking, "could not mark the donation failed");
                }
                Err(DonationError::Payment(Box::new(error)))
            }
        }
    }

    /// Finishes donations left `pending` without a PaymentIntent by a crash between storing
    /// them and recording Stripe's answer: the PaymentIntent is created again with the same
    /// idempotency key (the donation id), so Stripe answers the one it may already have made,
    /// and recorded. Attempts are bounded by age: a donation older than
    /// [`ORPHAN_GIVE_UP_MS`] (well inside Stripe's 24-hour idempotency window) is marked failed
    /// instead. Donations younger than [`ORPHAN_GRACE_MS`] may still have their request in
    /// flight and are left alone.
    pub async fn resume_orphaned(&self) -> Result<OrphanSweep, DonationError> {
        let stripe = self.stripe.clone().ok_or(DonationError::NotConfigured)?;
        let now = self.clock.now_ms();
        let orphans = self
            .storage
            .donations()
            .donations_without_payment_intent(now - ORPHAN_GRACE_MS, ORPHANS_PER_SWEEP)
            .await?;
        let mut sweep = OrphanSweep::default();
        for orphan in orphans {
            let id = events::donation_id(&orphan)?;
            if now - orphan.created_at_ms > ORPHAN_GIVE_UP_MS {
                let reason = "stripe: no PaymentIntent could be created in time".to_string();
                self.transition(&id, DonationStatus::Failed, Some(reason))
                    .await?;
                tracing::warn!(donation = %id, "a donation without a PaymentIntent is given up; failed");
                sweep.failed += 1;
                continue;
            }
            let Ok(currency) = Currency::parse(&orphan.currency) else {
                tracing::error!(donation = %id, currency = %orphan.currency, "stored donation with an unknown currency");
                sweep.left += 1;
                continue;
            };
            let created = stripe
                .create_payment_intent(&NewPaymentIntent {
                    donation_id: &id,
                    amount: orphan.amount,
                    currency,
                    receipt_email: &orphan.donor_email,
                    organisation_id: &orphan.organisation_id,
                    fund_id: orphan.fund_id.as_deref(),
                })
                .await;
            match created {
                Ok(intent) => {
                    self.donations
                        .call(&id, |reply| DonationMsg::AttachPaymentIntent {
                            payment_intent_id: intent.id.clone(),
                            reply,
                        })
                        .await??;
                    tracing::info!(donation = %id, payment_intent = %intent.id, "PaymentIntent recorded for a donation left without one");
                    sweep.attached += 1;
                }
                Err(error) => {
                    // Retried on a later sweep until the donation is too old.
                    tracing::warn!(donation = %id, %error, "creating a left-over donation's PaymentIntent failed; retried later");
                    sweep.left += 1;
                }
            }
        }
        Ok(sweep)
    }

    /// The organisation must exist and take donations; the fund, when given, must be one of
    /// its funds.
    async fn check_recipient(
        &self,
        new: &NewDonation,
    ) -> Result<Option<FundRecord>, DonationError> {
        let org = self
            .storage
            .organisations()
            .organisation(&new.organisation_id)
            .await?
            .ok_or(DonationError::OrganisationUnknown)?;
        if org.status == OrganisationStatus::Suspended {
            return Err(DonationError::OrganisationSuspended);
        }
        let Some(fund_id) = &new.fund_id else {
            return Ok(None);
        };
        let fund = self
            .storage
            .organisations()
            .fund(fund_id)
            .await?
            .filter(|f| f.organisation_id == org.id)
            .ok_or(DonationError::FundUnknown)?;
        Ok(Some(fund))
    }

    /// One of the wallet's donations.
    pub async fn get(
        &self,
        id: &DonationId,
        wallet: &WalletAddress,
    ) -> Result<DonationRecord, DonationError> {
        let donation = self
            .donations
            .call(id, |reply| DonationMsg::Get { reply })
            .await??;
        donation
            .filter(|d| d.wallet_address.as_ref() == Some(wallet))
            .ok_or(DonationError::NotFound)
    }

    /// One of the organisation's donations.
    pub async fn get_of_organisation(
        &self,
        id: &DonationId,
        organisation_id: &str,
    ) -> Result<DonationRecord, DonationError> {
        let donation = self
            .donations
            .call(id, |reply| DonationMsg::Get { reply })
            .await??;
        donation
            .filter(|d| d.organisation_id == organisation_id)
            .ok_or(DonationError::NotFound)
    }

    /// The wallet's donations, newest first.
    /// The organisation a donation is for, read without the donation's actor: the caller's
    /// authorisation is checked against it before the donation is shown.
    pub async fn organisation_of(&self, id: &DonationId) -> Result<String, DonationError> {
        self.storage
            .donations()
            .donation(id.as_str())
            .await?
            .map(|d| d.organisation_id)
            .ok_or(DonationError::NotFound)
    }

    /// An organisation's donations, newest first.
    pub async fn list_of_organisation(
        &self,
        organisation_id: &str,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<DonationRecord>, DonationError> {
        Ok(self
            .storage
            .donations()
            .list_organisation_donations(organisation_id, cursor, limit)
            .await?)
    }

    pub async fn list(
        &self,
        wallet: &WalletAddress,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<DonationRecord>, DonationError> {
        Ok(self
            .storage
            .donations()
            .list_donations(wallet, cursor, limit)
            .await?)
    }

    /// Moves the donation to `to` through its actor; an illegal move is refused.
    pub async fn transition(
        &self,
        id: &DonationId,
        to: DonationStatus,
        failure_reason: Option<String>,
    ) -> Result<Moved, DonationError> {
        self.donations
            .call(id, |reply| DonationMsg::Transition {
                to,
                failure_reason: failure_reason.clone(),
                event: None,
                reply,
            })
            .await?
    }
}

type Reply<T> = RpcReplyPort<Result<T, DonationError>>;

pub enum DonationMsg {
    /// Store a new pending donation.
    Create {
        record: Box<DonationRecord>,
        reply: Reply<DonationRecord>,
    },
    /// Store a new pending partner donation with its partner details, in one transaction.
    CreatePartner {
        record: Box<DonationRecord>,
        partner: Box<PartnerDonationRecord>,
        reply: Reply<DonationRecord>,
    },
    /// The donation as stored (`None` when there is none).
    Get {
        reply: Reply<Option<DonationRecord>>,
    },
    /// Record the PaymentIntent Stripe created for the pending donation.
    AttachPaymentIntent {
        payment_intent_id: String,
        reply: Reply<DonationRecord>,
    },
    /// Move the donation; with `event`, the Stripe event that asks for it is recorded in the
    /// same transaction (and a recorded one changes nothing).
    Transition {
        to: DonationStatus,
        failure_reason: Option<String>,
        event: Option<StripeEventRecord>,
        reply: Reply<Moved>,
    },
    Retire,
}

/// One donation's actor.
#[derive(Clone)]
pub struct DonationActor {
    storage: Storage,
    clock: Arc<dyn Clock>,
}

impl DonationActor {
    pub(crate) fn new(storage: Storage, clock: Arc<dyn Clock>) -> Self {
        Self { storage, clock }
    }
}

/// The actor's copy of its row (`None` until the donation is created).
pub struct DonationState {
    id: DonationId,
    donation: Option<DonationRecord>,
    /// When `donation` was last read from storage.
    read_at: std::time::Instant,
}

/// How stale the actor's copy may be when it answers a read: changes made in this process go
/// through the actor, so only another process's changes can be missed, for this long at most.
/// Moves never rely on it (they are conditional updates that re-read on a conflict).
const STATE_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

impl EntityActor for DonationActor {
    const KIND: &'static str = "donation";
    type Key = DonationId;

    fn retire() -> DonationMsg {
        DonationMsg::Retire
    }
}

impl Actor for DonationActor {
    type Msg = DonationMsg;
    type State = DonationState;
    type Arguments = DonationId;

    async fn pre_start(
        &self,
        _: ActorRef<DonationMsg>,
        id: DonationId,
    ) -> Result<DonationState, ActorProcessingErr> {
        let donation = self.storage.donations().donation(id.as_str()).await?;
        Ok(DonationState {
            id,
            donation,
            read_at: std::time::Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<DonationMsg>,
        message: DonationMsg,
        state: &mut DonationState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            DonationMsg::Create { record, reply } => {
                let _ = reply.send(self.create(state, *record).await);
            }
            DonationMsg::CreatePartner {
                record,
                partner,
                reply,
            } => {
                let _ = reply.send(self.create_partner(state, *record, &partner).await);
            }
            DonationMsg::Get { reply } => {
                let fresh = state.read_at.elapsed() < STATE_RECHECK;
                let read = if fresh {
                    Ok(())
                } else {
                    self.reload(state).await
                };
                let _ = reply.send(read.map(|()| state.donation.clone()));
            }
            DonationMsg::AttachPaymentIntent {
                payment_intent_id,
                reply,
            } => {
                let _ = reply.send(self.attach_payment_intent(state, payment_intent_id).await);
            }
            DonationMsg::Transition {
                to,
                failure_reason,
                event,
                reply,
            } => {
                let moved = self.transition(state, to, failure_reason, event).await;
                let _ = reply.send(moved);
            }
            DonationMsg::Retire => myself.stop(Some("idle".into())),
        }
        Ok(())
    }
}

impl DonationActor {
    async fn create(
        &self,
        state: &mut DonationState,
        record: DonationRecord,
    ) -> Result<DonationRecord, DonationError> {
        if state.donation.is_some() || record.id != state.id.as_str() {
            return Err(DonationError::Conflict);
        }
        self.storage.donations().insert_donation(&record).await?;
        state.donation = Some(record.clone());
        Ok(record)
    }

    async fn create_partner(
        &self,
        state: &mut DonationState,
        record: DonationRecord,
        partner: &PartnerDonationRecord,
    ) -> Result<DonationRecord, DonationError> {
        if state.donation.is_some()
            || record.id != state.id.as_str()
            || partner.donation_id != record.id
        {
            return Err(DonationError::Conflict);
        }
        self.storage
            .partners()
            .insert_partner_donation(&record, partner)
            .await?;
        state.donation = Some(record.clone());
        Ok(record)
    }

    /// Re-reads the row: another process may have moved the donation.
    async fn reload(&self, state: &mut DonationState) -> Result<(), DonationError> {
        state.donation = self.storage.donations().donation(state.id.as_str()).await?;
        state.read_at = std::time::Instant::now();
        Ok(())
    }

    async fn attach_payment_intent(
        &self,
        state: &mut DonationState,
        payment_intent_id: String,
    ) -> Result<DonationRecord, DonationError> {
        for _ in 0..UPDATE_ATTEMPTS_MAX {
            let current = state.donation.clone().ok_or(DonationError::NotFound)?;
            if current.stripe_payment_intent_id.as_deref() == Some(payment_intent_id.as_str()) {
                return Ok(current);
            }
            if current.stripe_payment_intent_id.is_some() {
                tracing::error!(donation = %state.id, stored = ?current.stripe_payment_intent_id, new = %payment_intent_id, "a second PaymentIntent for one donation; keeping the first");
                return Err(DonationError::Conflict);
            }
            let next = DonationRecord {
                stripe_payment_intent_id: Some(payment_intent_id.clone()),
                updated_at_ms: self.clock.now_ms(),
                version: current.version + 1,
                ..current.clone()
            };
            if self
                .storage
                .donations()
                .update_donation(current.status, &next)
                .await?
            {
                state.donation = Some(next.clone());
                return Ok(next);
            }
            self.reload(state).await?;
        }
        Err(DonationError::Conflict)
    }

    async fn transition(
        &self,
        state: &mut DonationState,
        to: DonationStatus,
        failure_reason: Option<String>,
        event: Option<StripeEventRecord>,
    ) -> Result<Moved, DonationError> {
        // A move is written with a version check, so a stale copy cannot apply a wrong one; but
        // a copy that says "already there" or "not allowed" decides without writing. Another
        // process may have moved the donation since this copy was read (the payment's event
        // delivered there, the refund's here): read the row before answering no.
        if let Some(current) = &state.donation
            && (current.status == to || !may_move(current.status, to))
        {
            self.reload(state).await?;
        }
        for _ in 0..UPDATE_ATTEMPTS_MAX {
            let current = state.donation.clone().ok_or(DonationError::NotFound)?;
            if current.status == to {
                return Ok(Moved::AlreadyThere(current));
            }
            if !may_move(current.status, to) {
                tracing::warn!(donation = %state.id, from = current.status.as_str(), to = to.as_str(), "illegal donation transition refused");
                return Err(DonationError::IllegalTransition {
                    from: current.status.as_str(),
                    to: to.as_str(),
                });
            }
            let failure_reason = match to {
                DonationStatus::Failed => failure_reason.clone().map(bounded_reason),
                _ => current.failure_reason.clone(),
            };
            let next = DonationRecord {
                status: to,
                failure_reason,
                updated_at_ms: self.clock.now_ms(),
                version: current.version + 1,
                ..current.clone()
            };
            match self
                .write_move(current.status, &next, event.as_ref())
                .await?
            {
                EventWrite::Applied => {
                    tracing::info!(donation = %state.id, from = current.status.as_str(), to = to.as_str(), "donation moved");
                    state.donation = Some(next.clone());
                    return Ok(Moved::Applied(next));
                }
                EventWrite::Duplicate => {
                    self.reload(state).await?;
                    let stored = state.donation.clone().ok_or(DonationError::NotFound)?;
                    return Ok(Moved::Duplicate(stored));
                }
                EventWrite::Conflict => {}
            }
            // Another process moved it: decide again on what it wrote.
            self.reload(state).await?;
        }
        Err(DonationError::Conflict)
    }

    /// Writes the move from `from` to `next`, conditional on the version read: with the
    /// Stripe event that caused it, in one transaction, when there is one.
    async fn write_move(
        &self,
        from: DonationStatus,
        next: &DonationRecord,
        event: Option<&StripeEventRecord>,
    ) -> Result<EventWrite, StorageError> {
        let donations = self.storage.donations();
        Ok(match event {
            None => match donations.update_donation(from, next).await? {
                true => EventWrite::Applied,
                false => EventWrite::Conflict,
            },
            Some(event) => {
                donations
                    .record_stripe_event(event, Some((from, next)))
                    .await?
            }
        })
    }
}

fn bounded_reason(mut reason: String) -> String {
    if reason.len() > FAILURE_REASON_LENGTH_MAX {
        let mut end = FAILURE_REASON_LENGTH_MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use DonationStatus::*;

    #[test]
    fn only_the_documented_moves_are_allowed() {
        let allowed = [
            (Pending, Succeeded),
            (Pending, Failed),
            (Pending, Cancelled),
            (Failed, Succeeded),
            (Succeeded, Refunded),
        ];
        for from in DonationStatus::ALL {
            for to in DonationStatus::ALL {
                assert_eq!(
                    may_move(from, to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }
}
