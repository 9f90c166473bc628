//! The KYC façade the HTTP layer calls (seed 002 §3): Veriff sessions, Veriff's webhooks, and
//! the KYC status whitelisting checks. Webhooks are authenticated here, over the raw body,
//! before anything is parsed; every change then goes through the wallet's actor, which owns
//! the user record and the wallet's Veriff sessions.

use std::sync::Arc;

use ampflow_storage::{KycStatus, VeriffDecision};
use ampflow_types::WalletAddress;

use crate::identity::Principal;
use crate::identity_error::IdentityError;
use crate::registry::Registry;
use crate::veriff::WebhookHeaders;
use crate::wallet::{
    KycEvent, KycSessionView, KycWebhookOutcome, WalletActor, WalletDeps, WalletMsg,
};

#[derive(Clone)]
pub struct Kyc {
    wallets: Arc<Registry<WalletActor>>,
    deps: Arc<WalletDeps>,
}

impl Kyc {
    pub(crate) fn new(wallets: Arc<Registry<WalletActor>>, deps: Arc<WalletDeps>) -> Self {
        Self { wallets, deps }
    }

    /// False when Veriff is not configured: sessions and webhooks are then refused.
    pub fn veriff_configured(&self) -> bool {
        self.deps.veriff.is_some()
    }

    /// The caller's Veriff session: the latest one when it may be reused, else a new one
    /// created at Veriff and stored before it is answered.
    pub async fn start_session(
        &self,
        principal: &Principal,
    ) -> Result<KycSessionView, IdentityError> {
        if !self.veriff_configured() {
            return Err(IdentityError::VeriffNotConfigured);
        }
        self.wallets
            .call(&principal.address, |reply| WalletMsg::StartKyc {
                session_id: principal.session_id.clone(),
                reply,
            })
            .await?
    }

    /// Checks a webhook's `X-AUTH-CLIENT` and signature(s) over its raw body.
    pub fn authenticate_webhook(
        &self,
        headers: WebhookHeaders<'_>,
        raw_body: &[u8],
    ) -> Result<(), IdentityError> {
        let veriff = self
            .deps
            .veriff
            .as_ref()
            .ok_or(IdentityError::VeriffNotConfigured)?;
        if veriff.webhook_is_authentic(headers, raw_body) {
            Ok(())
        } else {
            Err(IdentityError::WebhookUnauthenticated)
        }
    }

    /// Applies an authenticated decision webhook to the session `verification_id`.
    pub async fn apply_decision(
        &self,
        verification_id: &str,
        decision: VeriffDecision,
    ) -> Result<KycWebhookOutcome, IdentityError> {
        let address = self.session_owner(verification_id).await?;
        self.wallets
            .call(&address, |reply| WalletMsg::ApplyKycDecision {
                verification_id: verification_id.to_string(),
                decision: decision.clone(),
                reply,
            })
            .await?
    }

    /// Records an authenticated event webhook on the session `verification_id`.
    pub async fn record_event(
        &self,
        verification_id: &str,
        event: KycEvent,
    ) -> Result<KycWebhookOutcome, IdentityError> {
        let address = self.session_owner(verification_id).await?;
        self.wallets
            .call(&address, |reply| WalletMsg::RecordKycEvent {
                verification_id: verification_id.to_string(),
                event: event.clone(),
                reply,
            })
            .await?
    }

    /// The wallet's KYC (completed, names, document and its `valid_until`), read through its
    /// actor; `None` for a wallet that never logged in. Whitelisting refuses a wallet unless
    /// `status.is_valid_on(today)`.
    pub async fn status(
        &self,
        address: &WalletAddress,
    ) -> Result<Option<KycStatus>, IdentityError> {
        self.wallets.call(address, WalletMsg::KycStatus).await?
    }

    async fn session_owner(&self, verification_id: &str) -> Result<WalletAddress, IdentityError> {
        let session = self
            .deps
            .storage
            .identity()
            .find_veriff_session(verification_id)
            .await?
            .ok_or(IdentityError::KycSessionUnknown)?;
        Ok(session.address)
    }
}
