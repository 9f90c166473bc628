//! `WalletActor`: one per wallet, keyed by the lowercase address. It owns the wallet's login
//! challenges (nonces), its user record, its view of the wallet's sessions and its Veriff
//! sessions (KYC, in [`kyc`]). It may touch storage (its own rows), the token service and
//! Veriff (from a spawned task); nothing else.
//!
//! The database is the source of truth: the actor's copy of the user and of the pending
//! challenges is re-read when older than `state_recheck_ms`, and a session is re-checked at the
//! same pace, so a logout or a login handled by another process is seen within that time.

use std::collections::VecDeque;
use std::sync::Arc;

use ampflow_chain::WalletSignature;
use ampflow_storage::{
    ChallengeRecord, LoginOutcome, LoginWrite, Opened, RefreshTokenState, RequestStatus,
    RotateOutcome, SessionRecord, Storage, WhitelistRequestRecord,
};
pub use ampflow_storage::{UserRecord, VeriffDecision, VeriffDecisionStatus};
use ampflow_types::{ChainId, Clock, UnixMillis, WalletAddress};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use secrecy::SecretString;

use crate::identity_error::IdentityError;
use crate::registry::EntityActor;
use crate::sessions::SessionGate;
use crate::tokens::{self, TokenService};
use crate::veriff::{CreatedSession, VeriffClient};

mod kyc;

pub use kyc::{KycEvent, KycSessionView, KycWebhookOutcome, SESSION_REUSE_MS, ShownDecision};
pub use kyc::{KycRefusal, QueueRefused, kyc_gate, utc_day};

/// Identity lifetimes and limits.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub nonce_ttl_ms: i64,
    pub access_token_ttl_ms: i64,
    pub refresh_token_ttl_ms: i64,
    /// `/authorize` challenges kept per wallet (at least 2: with reuse, at most two are live);
    /// a new one beyond this replaces the oldest, which by then has expired.
    pub pending_challenges_max: usize,
    /// How stale the actor's copy of its rows may get before it re-reads them.
    pub state_recheck_ms: i64,
    pub test_mode: bool,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            nonce_ttl_ms: 10 * 60 * 1000,
            access_token_ttl_ms: 24 * 60 * 60 * 1000,
            refresh_token_ttl_ms: 90 * 24 * 60 * 60 * 1000,
            pending_challenges_max: 4,
            state_recheck_ms: 1000,
            test_mode: false,
        }
    }
}

/// What a wallet actor needs from the outside.
pub struct WalletDeps {
    pub storage: Storage,
    pub tokens: Arc<TokenService>,
    pub clock: Arc<dyn Clock>,
    pub settings: IdentitySettings,
    /// Where every session check goes (see [`SessionGate`]).
    pub sessions: Arc<SessionGate>,
    /// `None` when Veriff is not configured: KYC sessions are then refused.
    pub veriff: Option<Arc<VeriffClient>>,
}

/// Tokens answered by a login or a refresh. Lifetimes are in milliseconds, as in the seed.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub expires_in_ms: i64,
    pub refresh_token: SecretString,
    pub refresh_token_expires_in_ms: i64,
}

type Reply<T> = RpcReplyPort<Result<T, IdentityError>>;

pub enum WalletMsg {
    IssueChallenge(Reply<String>),
    /// Log in with an EOA signature of one of the pending `/authorize` messages.
    Login {
        signature: WalletSignature,
        reply: Reply<TokenPair>,
    },
    /// The pending `/authorize` messages, newest first, as (challenge id, text): a contract
    /// wallet's signature is checked against them on chain, outside this actor's mailbox.
    PendingChallenges(Reply<Vec<(String, String)>>),
    /// Log in with a pending challenge whose signature was verified elsewhere (EIP-1271, on
    /// `chain_id`, which the session is then bound to).
    LoginVerified {
        challenge_id: String,
        chain_id: ChainId,
        reply: Reply<TokenPair>,
    },
    LoginByMessage {
        challenge_id: String,
        message: String,
        signature: WalletSignature,
        reply: Reply<TokenPair>,
    },
    Refresh {
        /// SHA-256 of the presented refresh token, and where it stands in its session.
        presented_hash: String,
        token_state: RefreshTokenState,
        session: SessionRecord,
        reply: Reply<TokenPair>,
    },
    GetUser {
        session_id: String,
        reply: Reply<UserRecord>,
    },
    UpdateEmail {
        session_id: String,
        email: String,
        reply: Reply<UserRecord>,
    },
    TestKyc {
        session_id: String,
        first_name: String,
        last_name: String,
        reply: Reply<UserRecord>,
    },
    Logout {
        session_id: String,
        reply: Reply<()>,
    },
    /// `POST /veriff/session`: reuse the latest Veriff session or create one.
    StartKyc {
        session_id: String,
        reply: Reply<KycSessionView>,
    },
    /// The result of creating a Veriff session, from the task that called Veriff, with the
    /// decision of the session it replaces.
    KycSessionCreated {
        result: Result<CreatedSession, IdentityError>,
        previous: Option<ShownDecision>,
        /// The replaced session's creation time + 1 ms, so the new one sorts after it.
        created_not_before_ms: i64,
    },
    /// A decision webhook for one of this wallet's Veriff sessions (already authenticated).
    ApplyKycDecision {
        verification_id: String,
        decision: ampflow_storage::VeriffDecision,
        reply: Reply<KycWebhookOutcome>,
    },
    /// An event webhook for one of this wallet's Veriff sessions (already authenticated).
    RecordKycEvent {
        verification_id: String,
        event: KycEvent,
        reply: Reply<KycWebhookOutcome>,
    },
    /// The wallet's KYC as whitelisting needs it; `None` when the wallet has no user.
    KycStatus(Reply<Option<ampflow_storage::KycStatus>>),
    /// Queue an approval on `issuer`'s whitelist, if KYC is still valid today; an approval
    /// already open for the (chain, issuer, wallet) is returned instead.
    QueueWhitelist {
        chain_id: ChainId,
        /// Lowercase `0x…`.
        issuer: WalletAddress,
        reply: RpcReplyPort<Result<Opened<WhitelistRequestRecord>, QueueRefused>>,
    },
    Retire,
}

#[derive(Clone)]
pub struct WalletActor {
    deps: Arc<WalletDeps>,
}

impl WalletActor {
    pub fn new(deps: Arc<WalletDeps>) -> Self {
        Self { deps }
    }
}

pub struct WalletState {
    address: WalletAddress,
    user: Option<UserRecord>,
    /// Redeemable `/authorize` challenges, newest first.
    challenges: VecDeque<ChallengeRecord>,
    loaded_at_ms: UnixMillis,
    /// Callers waiting for the Veriff session being created; empty when none is.
    kyc_waiters: Vec<Reply<KycSessionView>>,
}

impl EntityActor for WalletActor {
    const KIND: &'static str = "wallet";
    type Key = WalletAddress;

    fn retire() -> WalletMsg {
        WalletMsg::Retire
    }
}

impl Actor for WalletActor {
    type Msg = WalletMsg;
    type State = WalletState;
    type Arguments = WalletAddress;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        address: WalletAddress,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = WalletState {
            address,
            user: None,
            challenges: VecDeque::new(),
            loaded_at_ms: 0,
            kyc_waiters: Vec::new(),
        };
        Box::pin(self.reload(&mut state)).await?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Boxed: an actor's task is allocated at the size of its largest future, for as long
        // as the actor lives, and most of that time it only waits for its next message.
        Box::pin(self.dispatch(myself, message, state)).await
    }
}

impl WalletActor {
    /// Hands each message to its method. (Long only because it lists every message the
    /// wallet takes: each arm is one call and its reply.)
    async fn dispatch(
        &self,
        myself: ActorRef<WalletMsg>,
        message: WalletMsg,
        state: &mut WalletState,
    ) -> Result<(), ActorProcessingErr> {
        // Expected failures (bad input, storage down) go back to the caller in the reply; only a
        // bug makes the actor fail, and its supervisor restart it.
        match message {
            WalletMsg::IssueChallenge(reply) => {
                let _ = reply.send(self.issue_challenge(state).await);
            }
            WalletMsg::Login { signature, reply } => {
                let _ = reply.send(self.login(state, signature).await);
            }
            WalletMsg::PendingChallenges(reply) => {
                let _ = reply.send(self.pending_challenges(state).await);
            }
            WalletMsg::LoginVerified {
                challenge_id,
                chain_id,
                reply,
            } => {
                let _ = reply.send(self.login_verified(state, challenge_id, chain_id).await);
            }
            WalletMsg::LoginByMessage {
                challenge_id,
                message,
                signature,
                reply,
            } => {
                let result = self
                    .login_by_message(state, &challenge_id, &message, signature)
                    .await;
                let _ = reply.send(result);
            }
            WalletMsg::Refresh {
                presented_hash,
                token_state,
                session,
                reply,
            } => {
                let result = self
                    .refresh(state, &presented_hash, token_state, session)
                    .await;
                let _ = reply.send(result);
            }
            WalletMsg::GetUser { session_id, reply } => {
                let _ = reply.send(self.get_user(state, &session_id).await);
            }
            WalletMsg::UpdateEmail {
                session_id,
                email,
                reply,
            } => {
                let result = self
                    .update_user(state, &session_id, |user| {
                        if user.email.as_deref() != Some(email.as_str()) {
                            user.email = Some(email.clone());
                            // Nothing verifies the address yet, so a new one is unverified.
                            user.email_verified = false;
                        }
                    })
                    .await;
                let _ = reply.send(result);
            }
            WalletMsg::TestKyc {
                session_id,
                first_name,
                last_name,
                reply,
            } => {
                // `Identity::test_kyc` only sends this in test mode.
                let result = self
                    .update_user(state, &session_id, |user| {
                        user.kyc_completed = true;
                        user.kyc_first_name = Some(first_name.clone());
                        user.kyc_last_name = Some(last_name.clone());
                    })
                    .await;
                let _ = reply.send(result);
            }
            WalletMsg::Logout { session_id, reply } => {
                let _ = reply.send(self.logout(state, &session_id).await);
            }
            WalletMsg::StartKyc { session_id, reply } => {
                self.start_kyc(myself, state, &session_id, reply).await;
            }
            WalletMsg::KycSessionCreated {
                result,
                previous,
                created_not_before_ms,
            } => {
                self.kyc_session_created(state, result, previous, created_not_before_ms)
                    .await;
            }
            WalletMsg::ApplyKycDecision {
                verification_id,
                decision,
                reply,
            } => {
                let result = self
                    .apply_kyc_decision(state, &verification_id, decision)
                    .await;
                let _ = reply.send(result);
            }
            WalletMsg::RecordKycEvent {
                verification_id,
                event,
                reply,
            } => {
                let result = self.record_kyc_event(state, &verification_id, event).await;
                let _ = reply.send(result);
            }
            WalletMsg::KycStatus(reply) => {
                let result = self.fresh_kyc_status(state).await;
                let _ = reply.send(result);
            }
            WalletMsg::QueueWhitelist {
                chain_id,
                issuer,
                reply,
            } => {
                let _ = reply.send(self.queue_whitelist(state, chain_id, issuer).await);
            }
            WalletMsg::Retire => myself.stop(Some("idle".into())),
        }
        Ok(())
    }
}

impl WalletActor {
    fn now(&self) -> UnixMillis {
        self.deps.clock.now_ms()
    }

    /// The user's KYC status, read again when the copy would refuse: a decision applied by
    /// another process (its Veriff webhook) must not be refused from a copy read before it.
    async fn fresh_kyc_status(
        &self,
        state: &mut WalletState,
    ) -> Result<Option<ampflow_storage::KycStatus>, IdentityError> {
        self.reload_if_stale(state).await?;
        let status = state.user.as_ref().map(|u| u.kyc_status());
        if kyc_gate(status.as_ref(), utc_day(self.now())).is_ok() {
            return Ok(status);
        }
        self.reload(state).await?;
        Ok(state.user.as_ref().map(|u| u.kyc_status()))
    }

    async fn queue_whitelist(
        &self,
        state: &mut WalletState,
        chain_id: ChainId,
        issuer: WalletAddress,
    ) -> Result<Opened<WhitelistRequestRecord>, QueueRefused> {
        let now = self.now();
        let status = self.fresh_kyc_status(state).await?;
        kyc_gate(status.as_ref(), utc_day(now)).map_err(QueueRefused::Kyc)?;
        let record = WhitelistRequestRecord {
            id: uuid::Uuid::new_v4().to_string(),
            chain_id,
            issuer,
            address: state.address,
            status: RequestStatus::Pending,
            attempts: 0,
            tx_hash: None,
            reason: None,
            created_at_ms: now,
            updated_at_ms: now,
            settled_at_ms: None,
        };
        let opened = self
            .deps
            .storage
            .chain()
            .open_whitelist_request(&record)
            .await?;
        if let Opened::Created(request) = &opened {
            tracing::info!(
                request = %request.id,
                %chain_id,
                issuer = %request.issuer,
                wallet = %state.address,
                "whitelisting queued"
            );
        }
        Ok(opened)
    }

    async fn reload(&self, state: &mut WalletState) -> Result<(), IdentityError> {
        let now = self.now();
        let snapshot = self
            .deps
            .storage
            .identity()
            .load_wallet(&state.address, now)
            .await?;
        state.user = snapshot.user;
        state.challenges = snapshot.challenges.into();
        state.loaded_at_ms = now;
        Ok(())
    }

    async fn reload_if_stale(&self, state: &mut WalletState) -> Result<(), IdentityError> {
        if self.now() - state.loaded_at_ms >= self.deps.settings.state_recheck_ms {
            self.reload(state).await?;
        }
        Ok(())
    }

    /// The login message for this wallet. While the newest pending one has more than half its
    /// lifetime left it is answered again: `/authorize` needs no credential, so anyone may ask
    /// for any address's message, and a fresh message per call would let a third party push
    /// the owner's out of the `pending_challenges_max` kept. With reuse a new message is made
    /// at most once per half lifetime, so at most two are live and none is ever evicted while
    /// it can still be signed; asking again writes nothing.
    async fn issue_challenge(&self, state: &mut WalletState) -> Result<String, IdentityError> {
        self.reload_if_stale(state).await?;
        let now = self.now();
        state.challenges.retain(|c| c.is_redeemable(now));
        let reuse_after_ms = self.deps.settings.nonce_ttl_ms / 2;
        if let Some(newest) = state.challenges.front()
            && newest.expires_at_ms - now > reuse_after_ms
        {
            return Ok(newest.message.clone());
        }
        let address = state.address;
        let message = format!(
            "Welcome!\nPlease sign this message to verify that you are the owner of address: {address}\nNonce: {}",
            random_nonce()
        );
        let challenge = ChallengeRecord {
            id: uuid::Uuid::new_v4().to_string(),
            address: Some(address),
            message: message.clone(),
            created_at_ms: now,
            expires_at_ms: now + self.deps.settings.nonce_ttl_ms,
            used_at_ms: None,
        };
        self.deps
            .storage
            .identity()
            .insert_challenge(&challenge)
            .await?;
        state.challenges.push_front(challenge);
        while state.challenges.len() > self.deps.settings.pending_challenges_max {
            if let Some(oldest) = state.challenges.pop_back() {
                self.deps
                    .storage
                    .identity()
                    .delete_challenge(&oldest.id)
                    .await?;
            }
        }
        Ok(message)
    }

    async fn login(
        &self,
        state: &mut WalletState,
        signature: WalletSignature,
    ) -> Result<TokenPair, IdentityError> {
        self.reload_if_stale(state).await?;
        let mut matched = self.find_signed_challenge(state, &signature);
        if matched.is_none() {
            // The challenge may have been issued by another process since we last looked.
            self.reload(state).await?;
            matched = self.find_signed_challenge(state, &signature);
        }
        let Some(challenge_id) = matched else {
            return Err(if state.challenges.is_empty() {
                IdentityError::NoPendingChallenge
            } else {
                IdentityError::SignatureMismatch
            });
        };
        state.challenges.retain(|c| c.id != challenge_id);
        self.start_session(state, challenge_id, None).await
    }

    async fn pending_challenges(
        &self,
        state: &mut WalletState,
    ) -> Result<Vec<(String, String)>, IdentityError> {
        self.reload(state).await?;
        let now = self.now();
        Ok(state
            .challenges
            .iter()
            .filter(|c| c.is_redeemable(now))
            .map(|c| (c.id.clone(), c.message.clone()))
            .collect())
    }

    async fn login_verified(
        &self,
        state: &mut WalletState,
        challenge_id: String,
        chain_id: ChainId,
    ) -> Result<TokenPair, IdentityError> {
        let now = self.now();
        let pending = state
            .challenges
            .iter()
            .any(|c| c.id == challenge_id && c.is_redeemable(now));
        if !pending {
            return Err(IdentityError::ChallengeUnavailable);
        }
        state.challenges.retain(|c| c.id != challenge_id);
        self.start_session(state, challenge_id, Some(chain_id))
            .await
    }

    fn find_signed_challenge(
        &self,
        state: &WalletState,
        signature: &WalletSignature,
    ) -> Option<String> {
        let now = self.now();
        state
            .challenges
            .iter()
            .filter(|c| c.is_redeemable(now))
            .find(|c| signature.is_personal_sign_by(&c.message, &state.address))
            .map(|c| c.id.clone())
    }

    async fn login_by_message(
        &self,
        state: &mut WalletState,
        challenge_id: &str,
        message: &str,
        signature: WalletSignature,
    ) -> Result<TokenPair, IdentityError> {
        let now = self.now();
        let challenge = self
            .deps
            .storage
            .identity()
            .find_challenge(challenge_id)
            .await?;
        let Some(challenge) = challenge.filter(|c| c.address.is_none() && c.is_redeemable(now))
        else {
            return Err(IdentityError::ChallengeUnavailable);
        };
        if challenge.message != message {
            return Err(IdentityError::ChallengeUnavailable);
        }
        if !signature.is_personal_sign_by(message, &state.address) {
            return Err(IdentityError::SignatureMismatch);
        }
        self.start_session(state, challenge.id, None).await
    }

    /// Consumes the challenge and opens a session (see `Storage::login` for why no nonce can
    /// serve twice), then mints the tokens. `chain_id` binds the session to the chain a
    /// contract wallet's signature was checked on.
    async fn start_session(
        &self,
        state: &mut WalletState,
        challenge_id: String,
        chain_id: Option<ChainId>,
    ) -> Result<TokenPair, IdentityError> {
        let now = self.now();
        let address = state.address;
        let (refresh_token, refresh_token_hash) = tokens::new_refresh_token()?;
        let session = SessionRecord {
            id: uuid::Uuid::new_v4().to_string(),
            address,
            created_at_ms: now,
            expires_at_ms: now + self.deps.settings.refresh_token_ttl_ms,
            revoked_at_ms: None,
            revoked_reason: None,
            refresh_token_hash,
            chain_id,
        };
        let write = LoginWrite {
            challenge_id,
            create_user: state.user.is_none().then(|| UserRecord::new(address, now)),
            session: session.clone(),
        };
        match self.deps.storage.identity().login(&write, now).await? {
            LoginOutcome::LoggedIn(Some(user)) => state.user = Some(user),
            LoginOutcome::LoggedIn(None) => {}
            LoginOutcome::ChallengeUnavailable => return Err(IdentityError::ChallengeUnavailable),
        }
        let access_token = self
            .deps
            .tokens
            .mint_access(&address.to_string(), &session.id, now)?;
        let refresh_remaining_ms = session.expires_at_ms - now;
        self.deps.sessions.remember(&session, now);
        Ok(TokenPair {
            access_token,
            expires_in_ms: self.deps.tokens.access_ttl_ms(),
            refresh_token,
            refresh_token_expires_in_ms: refresh_remaining_ms,
        })
    }

    async fn refresh(
        &self,
        state: &mut WalletState,
        presented_hash: &str,
        token_state: RefreshTokenState,
        mut session: SessionRecord,
    ) -> Result<TokenPair, IdentityError> {
        let now = self.now();
        if session.address != state.address || !session.is_active(now) {
            return Err(IdentityError::RefreshTokenInvalid);
        }
        let (new_token, new_hash) = tokens::new_refresh_token()?;
        let outcome = match token_state {
            RefreshTokenState::Spent => RotateOutcome::AlreadySpent,
            RefreshTokenState::Current => {
                self.deps
                    .storage
                    .identity()
                    .rotate_refresh_token(presented_hash, &new_hash, &session.id, now)
                    .await?
            }
        };
        if outcome == RotateOutcome::AlreadySpent {
            tracing::warn!(address = %state.address, session = %session.id, "refresh token reused; revoking its session");
            self.deps
                .storage
                .identity()
                .revoke_session(&session.id, "refresh_token_reuse", now)
                .await?;
            self.deps.sessions.revoked(&session.id, now);
            return Err(IdentityError::RefreshTokenReused);
        }
        let access_token =
            self.deps
                .tokens
                .mint_access(&session.address.to_string(), &session.id, now)?;
        let remaining_ms = session.expires_at_ms - now;
        session.refresh_token_hash = new_hash;
        self.deps.sessions.remember(&session, now);
        Ok(TokenPair {
            access_token,
            expires_in_ms: self.deps.tokens.access_ttl_ms(),
            refresh_token: new_token,
            refresh_token_expires_in_ms: remaining_ms,
        })
    }

    /// Checks that `session_id` is a live session of this wallet, through the one gate every
    /// wallet request goes through.
    async fn check_session(
        &self,
        state: &mut WalletState,
        session_id: &str,
    ) -> Result<(), IdentityError> {
        self.reload_if_stale(state).await?;
        self.deps
            .sessions
            .check(session_id, &state.address, self.now())
            .await?;
        // A live session means the user exists (it is created by the first login). A copy
        // without one was loaded before that login happened on another process (e.g. this
        // process answered `/authorize` and another one the login): read it again rather than
        // refuse a valid token until the copy goes stale.
        if state.user.is_none() {
            self.reload(state).await?;
        }
        Ok(())
    }

    async fn get_user(
        &self,
        state: &mut WalletState,
        session_id: &str,
    ) -> Result<UserRecord, IdentityError> {
        self.check_session(state, session_id).await?;
        state.user.clone().ok_or(IdentityError::SessionInvalid)
    }

    /// Applies `change` to the user and stores it with a version check, re-reading and
    /// re-applying once if another writer got there first.
    async fn update_user(
        &self,
        state: &mut WalletState,
        session_id: &str,
        change: impl Fn(&mut UserRecord),
    ) -> Result<UserRecord, IdentityError> {
        self.check_session(state, session_id).await?;
        let mut fresh = false;
        for _ in 0..3 {
            let Some(mut user) = state.user.clone() else {
                return Err(IdentityError::SessionInvalid);
            };
            change(&mut user);
            if Some(&user) == state.user.as_ref() {
                if fresh {
                    return Ok(user);
                }
                // "Already so" only on the row itself: another process may have changed it
                // since this copy was read, and answering from the copy would lose this change.
                self.reload(state).await?;
                fresh = true;
                continue;
            }
            user.version += 1;
            user.updated_at_ms = self.now();
            if self.deps.storage.identity().update_user(&user).await? {
                state.user = Some(user.clone());
                return Ok(user);
            }
            self.reload(state).await?;
            fresh = true;
        }
        Err(IdentityError::Conflict)
    }

    async fn logout(&self, state: &mut WalletState, session_id: &str) -> Result<(), IdentityError> {
        self.check_session(state, session_id).await?;
        let now = self.now();
        self.deps
            .storage
            .identity()
            .revoke_session(session_id, "logout", now)
            .await?;
        self.deps.sessions.revoked(session_id, now);
        Ok(())
    }
}

/// An unpredictable nonce for a login message.
pub(crate) fn random_nonce() -> u64 {
    rand::random::<u64>() % 10_000_000_000
}
