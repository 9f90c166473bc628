//! The records repositories hand out. They are plain data: the actors own the rules.

use ampflow_types::{ChainId, UnixMillis, WalletAddress};
use chrono::NaiveDate;

/// A wallet's user record, created on its first login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub address: WalletAddress,
    pub email: Option<String>,
    pub email_verified: bool,
    pub kyc_completed: bool,
    pub kyc_first_name: Option<String>,
    pub kyc_last_name: Option<String>,
    /// The Veriff session whose approval completed KYC (`None` for test KYC).
    pub kyc_session_id: Option<String>,
    /// The verified identity document, from Veriff's approved decision.
    pub kyc_document_type: Option<String>,
    pub kyc_document_country: Option<String>,
    /// The document's last valid day; `None` when Veriff did not give one.
    pub kyc_document_valid_until: Option<NaiveDate>,
    pub kyc_verified_at_ms: Option<UnixMillis>,
    /// Bumped by every update; an update names the version it read (optimistic concurrency).
    pub version: i64,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
}

impl UserRecord {
    pub fn new(address: WalletAddress, now: UnixMillis) -> Self {
        Self {
            address,
            email: None,
            email_verified: false,
            kyc_completed: false,
            kyc_first_name: None,
            kyc_last_name: None,
            kyc_session_id: None,
            kyc_document_type: None,
            kyc_document_country: None,
            kyc_document_valid_until: None,
            kyc_verified_at_ms: None,
            version: 0,
            created_at_ms: now,
            updated_at_ms: now,
        }
    }

    /// Where the wallet's KYC stands, as whitelisting needs it.
    pub fn kyc_status(&self) -> KycStatus {
        KycStatus {
            completed: self.kyc_completed,
            first_name: self.kyc_first_name.clone(),
            last_name: self.kyc_last_name.clone(),
            session_id: self.kyc_session_id.clone(),
            document_type: self.kyc_document_type.clone(),
            document_country: self.kyc_document_country.clone(),
            document_valid_until: self.kyc_document_valid_until,
            verified_at_ms: self.kyc_verified_at_ms,
        }
    }
}

/// A wallet's KYC: whether it was completed and the verified document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KycStatus {
    pub completed: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The approved Veriff session (`None` for test KYC).
    pub session_id: Option<String>,
    pub document_type: Option<String>,
    pub document_country: Option<String>,
    /// The document's last valid day (inclusive); `None` when Veriff gave none.
    pub document_valid_until: Option<NaiveDate>,
    pub verified_at_ms: Option<UnixMillis>,
}

impl KycStatus {
    /// True when KYC is completed and the document is still valid on `today` (its last valid
    /// day included). A document without an expiry date (or test KYC) does not expire.
    pub fn is_valid_on(&self, today: NaiveDate) -> bool {
        self.completed && self.document_valid_until.is_none_or(|until| today <= until)
    }

    /// True when KYC is completed but the document expired before `today`.
    pub fn is_expired_on(&self, today: NaiveDate) -> bool {
        self.completed && self.document_valid_until.is_some_and(|until| until < today)
    }
}

/// Veriff's decision statuses (its `verification.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VeriffDecisionStatus {
    Approved,
    Declined,
    ResubmissionRequested,
    Expired,
    Abandoned,
    Review,
}

impl VeriffDecisionStatus {
    pub const ALL: [Self; 6] = [
        Self::Approved,
        Self::Declined,
        Self::ResubmissionRequested,
        Self::Expired,
        Self::Abandoned,
        Self::Review,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::ResubmissionRequested => "resubmission_requested",
            Self::Expired => "expired",
            Self::Abandoned => "abandoned",
            Self::Review => "review",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What Veriff decided about a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeriffDecision {
    pub status: VeriffDecisionStatus,
    /// Veriff's decision code: 9001 approved, 9102 declined, 9103 resubmission requested,
    /// 9104 expired or abandoned, 9121 review.
    pub code: i32,
    pub reason: Option<String>,
    pub reason_code: Option<i32>,
    /// Veriff's timestamps, as it sent them (ISO 8601).
    pub decision_time: Option<String>,
    pub acceptance_time: Option<String>,
    pub person_first_name: Option<String>,
    pub person_last_name: Option<String>,
    pub document_type: Option<String>,
    pub document_country: Option<String>,
    pub document_valid_until: Option<NaiveDate>,
}

/// A Veriff verification session of one wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeriffSessionRecord {
    /// Veriff's verification id.
    pub id: String,
    pub address: WalletAddress,
    /// Where the user goes to verify.
    pub url: String,
    pub created_at_ms: UnixMillis,
    /// The last event webhook's action (`started`, `submitted`) and code (7001, 7002).
    pub last_event: Option<String>,
    pub last_event_code: Option<i32>,
    pub last_event_at_ms: Option<UnixMillis>,
    pub decision: Option<VeriffDecision>,
    pub decided_at_ms: Option<UnixMillis>,
    /// Bumped by every update; an update names the version it read.
    pub version: i64,
}

/// A message handed out for signing. `address` is set for the `/authorize` kind and empty for
/// the by-message kind, which is bound to an address only when it is redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    pub id: String,
    pub address: Option<WalletAddress>,
    pub message: String,
    pub created_at_ms: UnixMillis,
    pub expires_at_ms: UnixMillis,
    pub used_at_ms: Option<UnixMillis>,
}

impl ChallengeRecord {
    pub fn is_redeemable(&self, now: UnixMillis) -> bool {
        self.used_at_ms.is_none() && now < self.expires_at_ms
    }
}

/// A login session: the family of refresh tokens one login started, and the `sid` claim of
/// every access token minted in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub address: WalletAddress,
    pub created_at_ms: UnixMillis,
    pub expires_at_ms: UnixMillis,
    pub revoked_at_ms: Option<UnixMillis>,
    pub revoked_reason: Option<String>,
    /// SHA-256 (hex) of the session's current refresh token.
    pub refresh_token_hash: String,
    /// The chain a contract wallet's (EIP-1271) signature was checked on: the session acts for
    /// the address on that chain only. `None` for an EOA signature, valid on every chain.
    pub chain_id: Option<ChainId>,
}

impl SessionRecord {
    pub fn is_active(&self, now: UnixMillis) -> bool {
        self.revoked_at_ms.is_none() && now < self.expires_at_ms
    }
}

/// Where a presented refresh token stands in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshTokenState {
    /// The session's current token: it may be rotated.
    Current,
    /// A token rotated away earlier: presenting it again means it leaked.
    Spent,
}

/// An entity whose actor kept crashing and was given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityFailure {
    pub kind: String,
    pub entity_key: String,
    pub reason: String,
    pub restarts: i32,
    pub failed_at_ms: UnixMillis,
}

/// Everything a wallet actor loads when it starts.
#[derive(Debug, Clone, Default)]
pub struct WalletSnapshot {
    pub user: Option<UserRecord>,
    /// Unused, unexpired `/authorize` challenges, newest first.
    pub challenges: Vec<ChallengeRecord>,
}

/// What a login writes in one transaction.
#[derive(Debug, Clone)]
pub struct LoginWrite {
    pub challenge_id: String,
    /// The user to create, when the caller does not know the wallet to have one yet. `None`
    /// when it does (users are never deleted), which saves the insert and the read-back.
    pub create_user: Option<UserRecord>,
    /// The new session, carrying the hash of its first refresh token.
    pub session: SessionRecord,
}

/// How a login's transaction ended.
// One lives only as long as a login's reply: boxing the user would add an allocation to save
// stack bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The challenge was consumed. Carries the wallet's user when the login was asked to
    /// create it (the new user, or the existing one if another login created it first).
    LoggedIn(Option<UserRecord>),
    /// The challenge was already used, had expired, or never existed.
    ChallengeUnavailable,
}

/// How rotating a refresh token ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated,
    /// The presented token had been used before: the caller must revoke its family.
    AlreadySpent,
}
