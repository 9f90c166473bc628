//! `SessionGate`: the one place a wallet session is checked. Every request that carries a
//! wallet access token (the HTTP extractor, the rate limiter's identification, and the wallet
//! actor's own operations) asks it whether the token's session is still live, so a logout or
//! a replayed refresh token revokes the session's access tokens on every route at once.
//!
//! The database is the source of truth. The gate keeps what it read for at most
//! `identity.state_recheck_ms`, so a revocation made by another process is seen within that
//! time, and one made by this process at once (it is written into the cache as it happens).
//! Missing sessions are cached too, so a forged or stale `sid` costs one read per interval.

use std::collections::HashMap;

use ampflow_storage::{IdentityRepo, SessionRecord};
use ampflow_types::{ChainId, UnixMillis, WalletAddress};
use parking_lot::RwLock;

use crate::identity_error::IdentityError;

/// Sessions the gate remembers. When full, entries older than the recheck interval are
/// dropped; if every entry is fresh the cache is emptied (a miss only costs a read).
const SESSIONS_CACHED_MAX: usize = 65_536;

/// What the gate needs of a session (small and `Copy`: a check allocates nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionState {
    /// `None` when the stored address does not parse (never a live session).
    address: Option<WalletAddress>,
    expires_at_ms: UnixMillis,
    revoked: bool,
    chain_id: Option<ChainId>,
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    /// `None`: no such session.
    session: Option<SessionState>,
    read_at_ms: UnixMillis,
}

pub struct SessionGate {
    sessions: IdentityRepo,
    recheck_ms: i64,
    /// Read-locked on every check, write-locked only to record a read or a revocation.
    entries: RwLock<HashMap<String, Cached>>,
}

impl std::fmt::Debug for SessionGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionGate")
            .field("recheck_ms", &self.recheck_ms)
            .finish_non_exhaustive()
    }
}

impl SessionGate {
    pub fn new(sessions: IdentityRepo, recheck_ms: i64) -> Self {
        Self {
            sessions,
            recheck_ms,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Checks that `session_id` is a live (not revoked, not expired) session of `address`, and
    /// answers the chain it is bound to (see [`SessionRecord::chain_id`]).
    pub async fn check(
        &self,
        session_id: &str,
        address: &WalletAddress,
        now: UnixMillis,
    ) -> Result<Option<ChainId>, IdentityError> {
        let cached = self
            .entries
            .read()
            .get(session_id)
            .filter(|c| now - c.read_at_ms < self.recheck_ms)
            .copied();
        let session = match cached {
            Some(cached) => cached.session,
            None => {
                let read = self.sessions.find_session(session_id).await?;
                let session = read.as_ref().map(state_of);
                self.put(session_id, session, now);
                session
            }
        };
        match session {
            Some(s) if !s.revoked && now < s.expires_at_ms && s.address == Some(*address) => {
                Ok(s.chain_id)
            }
            _ => Err(IdentityError::SessionInvalid),
        }
    }

    /// Records a session this process just wrote (a login or a refresh), so its first
    /// requests need no read.
    pub fn remember(&self, session: &SessionRecord, now: UnixMillis) {
        self.put(&session.id, Some(state_of(session)), now);
    }

    /// Records that this process just revoked `session_id`: its tokens stop working here at
    /// once, and elsewhere within the recheck interval.
    pub fn revoked(&self, session_id: &str, now: UnixMillis) {
        let mut entries = self.entries.write();
        match entries.get_mut(session_id) {
            Some(cached) => {
                if let Some(session) = &mut cached.session {
                    session.revoked = true;
                }
                cached.read_at_ms = now;
            }
            None => {
                // Unknown here: the next check reads the revoked row.
            }
        }
    }

    fn put(&self, session_id: &str, session: Option<SessionState>, now: UnixMillis) {
        let mut entries = self.entries.write();
        if entries.len() >= SESSIONS_CACHED_MAX && !entries.contains_key(session_id) {
            entries.retain(|_, c| now - c.read_at_ms < self.recheck_ms);
            if entries.len() >= SESSIONS_CACHED_MAX {
                entries.clear();
            }
        }
        entries.insert(
            session_id.to_string(),
            Cached {
                session,
                read_at_ms: now,
            },
        );
    }
}

fn state_of(session: &SessionRecord) -> SessionState {
    SessionState {
        address: Some(session.address),
        expires_at_ms: session.expires_at_ms,
        revoked: session.revoked_at_ms.is_some(),
        chain_id: session.chain_id,
    }
}
