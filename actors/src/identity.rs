//! The identity façade the HTTP layer calls: it parses nothing (values arrive typed), routes
//! each request to the right wallet actor and returns typed results.

use std::sync::Arc;

use ampflow_chain::{Chains, SignatureBytes, WalletSignature};
use ampflow_storage::UserRecord;
use ampflow_types::{ChainId, WalletAddress};
use secrecy::{ExposeSecret, SecretString};

use crate::identity_error::IdentityError;
use crate::registry::Registry;
use crate::tokens::{self, PublicJwk};
use crate::wallet::{TokenPair, WalletActor, WalletDeps, WalletMsg, random_nonce};

const BY_MESSAGE_PREFIX: &str =
    "Please sign this message to verify your wallet ownership, unique ID: ";
const BY_MESSAGE_NONCE: &str = ", nonce: ";

/// Who is calling, as proven by a valid access token of a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub address: WalletAddress,
    pub session_id: String,
    /// The chain a contract wallet's login was checked on (EIP-1271): the session acts for
    /// the address on that chain only. `None` for an EOA login, valid on every chain.
    pub chain_id: Option<ChainId>,
}

impl Principal {
    /// The caller's address for an action on `chain_id`: refused when the session was proven
    /// by a contract wallet on another chain (the same address on another chain may be
    /// controlled by someone else, or by nobody).
    pub fn on_chain(&self, chain_id: ChainId) -> Result<WalletAddress, IdentityError> {
        match self.chain_id {
            Some(session_chain_id) if session_chain_id != chain_id => {
                Err(IdentityError::WrongChain {
                    session_chain_id,
                    chain_id,
                })
            }
            _ => Ok(self.address),
        }
    }
}

#[derive(Clone)]
pub struct Identity {
    wallets: Arc<Registry<WalletActor>>,
    deps: Arc<WalletDeps>,
    chains: Chains,
}

impl Identity {
    pub(crate) fn new(
        wallets: Arc<Registry<WalletActor>>,
        deps: Arc<WalletDeps>,
        chains: Chains,
    ) -> Self {
        Self {
            wallets,
            deps,
            chains,
        }
    }

    pub fn test_mode(&self) -> bool {
        self.deps.settings.test_mode
    }

    pub fn jwk(&self) -> &PublicJwk {
        self.deps.tokens.jwk()
    }

    /// A login message for `address`, signed back to `login`.
    pub async fn authorize(&self, address: WalletAddress) -> Result<String, IdentityError> {
        self.wallets
            .call(&address, WalletMsg::IssueChallenge)
            .await?
    }

    /// A login message not yet bound to an address, signed back to `login_by_message`.
    pub async fn authorize_by_message(&self) -> Result<String, IdentityError> {
        let now = self.deps.clock.now_ms();
        let id = uuid::Uuid::new_v4().to_string();
        let message = format!(
            "{BY_MESSAGE_PREFIX}{id}{BY_MESSAGE_NONCE}{}",
            random_nonce()
        );
        let challenge = ampflow_storage::ChallengeRecord {
            id,
            address: None,
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
        Ok(message)
    }

    /// Logs in with a signature of a pending `/authorize` message: the address's own (EOA,
    /// EIP-191), or, when `chain_id` names a configured chain, a contract wallet's (EIP-1271).
    pub async fn login(
        &self,
        address: WalletAddress,
        signature: SignatureBytes,
        chain_id: Option<ChainId>,
    ) -> Result<TokenPair, IdentityError> {
        let chain_id = chain_id.filter(|id| id.get() != 0);
        if signature.is_high_s() {
            return Err(IdentityError::SignatureMalleable);
        }
        if let Some(eoa) = signature.as_wallet_signature() {
            let outcome = self
                .wallets
                .call(&address, |reply| WalletMsg::Login {
                    signature: eoa,
                    reply,
                })
                .await?;
            match outcome {
                Err(IdentityError::SignatureMismatch) if chain_id.is_some() => {}
                outcome => return outcome,
            }
        }
        let Some(chain_id) = chain_id else {
            return Err(IdentityError::SignatureMismatch);
        };
        self.login_contract_wallet(address, &signature, chain_id)
            .await
    }

    /// EIP-1271: asks the wallet contract whether it signed one of the pending messages. The
    /// RPC calls happen here, not in the wallet actor, so its mailbox never waits on a node.
    async fn login_contract_wallet(
        &self,
        address: WalletAddress,
        signature: &SignatureBytes,
        chain_id: ChainId,
    ) -> Result<TokenPair, IdentityError> {
        let chain = self
            .chains
            .get(chain_id)
            .ok_or(IdentityError::UnsupportedChain { chain_id })?;
        let pending = self
            .wallets
            .call(&address, WalletMsg::PendingChallenges)
            .await??;
        if pending.is_empty() {
            return Err(IdentityError::NoPendingChallenge);
        }
        let messages: Vec<&str> = pending
            .iter()
            .map(|(_, message)| message.as_str())
            .collect();
        let signed = chain
            .eip1271_signed_message(address.as_alloy(), &messages, &signature.0)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "EIP-1271 check failed");
                IdentityError::ChainUnavailable { chain_id }
            })?;
        if let Some(index) = signed {
            let challenge_id = pending[index].0.clone();
            return self
                .wallets
                .call(&address, |reply| WalletMsg::LoginVerified {
                    challenge_id: challenge_id.clone(),
                    chain_id,
                    reply,
                })
                .await?;
        }
        Err(IdentityError::SignatureMismatch)
    }

    pub async fn login_by_message(
        &self,
        address: WalletAddress,
        message: &str,
        signature: WalletSignature,
    ) -> Result<TokenPair, IdentityError> {
        let challenge_id = parse_by_message(message).ok_or(IdentityError::MessageMalformed)?;
        self.wallets
            .call(&address, |reply| WalletMsg::LoginByMessage {
                challenge_id: challenge_id.clone(),
                message: message.to_string(),
                signature,
                reply,
            })
            .await?
    }

    /// Rotates a refresh token: the presented one is spent and a new pair is answered.
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenPair, IdentityError> {
        let hash = tokens::hash_refresh_token(refresh_token.expose_secret());
        let Some((token_state, session)) = self
            .deps
            .storage
            .identity()
            .find_refresh_token(&hash)
            .await?
        else {
            return Err(IdentityError::RefreshTokenInvalid);
        };
        let address = session.address;
        self.wallets
            .call(&address, |reply| WalletMsg::Refresh {
                presented_hash: hash.clone(),
                token_state,
                session: session.clone(),
                reply,
            })
            .await?
    }

    /// The one check of a wallet access token: its signature, algorithm and expiry, and that
    /// its session is still live (not logged out, not revoked by a replayed refresh token, not
    /// expired), through the [`SessionGate`](crate::SessionGate) every wallet request uses.
    pub async fn authenticate(&self, access_token: &str) -> Result<Principal, IdentityError> {
        let now = self.deps.clock.now_ms();
        let claims = self
            .deps
            .tokens
            .verify_access(access_token, now)
            .map_err(|_| IdentityError::SessionInvalid)?;
        let address =
            WalletAddress::parse(&claims.address).map_err(|_| IdentityError::SessionInvalid)?;
        let chain_id = self.deps.sessions.check(&claims.sid, &address, now).await?;
        Ok(Principal {
            address,
            session_id: claims.sid,
            chain_id,
        })
    }

    pub async fn user(&self, principal: &Principal) -> Result<UserRecord, IdentityError> {
        let session_id = principal.session_id.clone();
        self.wallets
            .call(&principal.address, |reply| WalletMsg::GetUser {
                session_id: session_id.clone(),
                reply,
            })
            .await?
    }

    pub async fn update_email(
        &self,
        principal: &Principal,
        email: String,
    ) -> Result<UserRecord, IdentityError> {
        self.wallets
            .call(&principal.address, |reply| WalletMsg::UpdateEmail {
                session_id: principal.session_id.clone(),
                email: email.clone(),
                reply,
            })
            .await?
    }

    pub async fn logout(&self, principal: &Principal) -> Result<(), IdentityError> {
        self.wallets
            .call(&principal.address, |reply| WalletMsg::Logout {
                session_id: principal.session_id.clone(),
                reply,
            })
            .await?
    }

    /// Test mode only: marks the caller's own wallet as KYC-verified.
    pub async fn test_kyc(
        &self,
        principal: &Principal,
        address: WalletAddress,
        first_name: String,
        last_name: String,
    ) -> Result<UserRecord, IdentityError> {
        if !self.deps.settings.test_mode {
            return Err(IdentityError::TestModeOff);
        }
        if address != principal.address {
            return Err(IdentityError::Forbidden(
                "a wallet may only verify itself".into(),
            ));
        }
        self.wallets
            .call(&principal.address, |reply| WalletMsg::TestKyc {
                session_id: principal.session_id.clone(),
                first_name: first_name.clone(),
                last_name: last_name.clone(),
                reply,
            })
            .await?
    }
}

/// The challenge id inside a by-message login message, if the text has the issued form.
fn parse_by_message(message: &str) -> Option<String> {
    let rest = message.strip_prefix(BY_MESSAGE_PREFIX)?;
    let (id, nonce) = rest.split_once(BY_MESSAGE_NONCE)?;
    let id = uuid::Uuid::parse_str(id).ok()?;
    if nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(id.hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_by_message;

    #[test]
    fn by_message_text_is_parsed_strictly() {
        let good = "Please sign this message to verify your wallet ownership, unique ID: 8b9ec2dd-626f-4444-9ae7-b4142e6e99e5, nonce: 721558130";
        assert_eq!(
            parse_by_message(good).as_deref(),
            Some("8b9ec2dd-626f-4444-9ae7-b4142e6e99e5")
        );
        assert!(parse_by_message(&good.replace("nonce: 7", "nonce: x")).is_none());
        assert!(parse_by_message(&good.replace("unique ID: 8b9e", "unique ID: zz9e")).is_none());
        assert!(parse_by_message(&format!("{good} ")).is_none());
        assert!(parse_by_message("hello").is_none());
    }
}
