//! The records repositories hand out. They are plain data: the actors own the rules.

use ampflow_types::UnixMillis;

/// A wallet's user record, created on its first login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Lowercase `0x…` address.
    pub address: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub kyc_completed: bool,
    pub kyc_first_name: Option<String>,
    pub kyc_last_name: Option<String>,
    /// Bumped by every update; an update names the version it read (optimistic concurrency).
    pub version: i64,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
}

impl UserRecord {
    pub fn new(address: String, now: UnixMillis) -> Self {
        Self {
            address,
            email: None,
            email_verified: false,
            kyc_completed: false,
            kyc_first_name: None,
            kyc_last_name: None,
            version: 0,
            created_at_ms: now,
            updated_at_ms: now,
        }
    }
}

/// A message handed out for signing. `address` is set for the `/authorize` kind and empty for
/// the by-message kind, which is bound to an address only when it is redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    pub id: String,
    pub address: Option<String>,
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
    pub address: String,
    pub created_at_ms: UnixMillis,
    pub expires_at_ms: UnixMillis,
    pub revoked_at_ms: Option<UnixMillis>,
    pub revoked_reason: Option<String>,
    /// SHA-256 (hex) of the session's current refresh token.
    pub refresh_token_hash: String,
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
