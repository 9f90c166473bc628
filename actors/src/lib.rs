//! The actors of ampflow: the supervision tree, the entity registry and every actor. What
//! happens, in what order, and who may do it is decided here; storage and chains are reached
//! through the `storage` and `chain` crates, and nothing here knows about HTTP.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod auto_invest;
pub mod batcher;
pub mod checkpoints;
pub mod database;
pub mod donation;
pub mod faucet;
mod identity;
mod identity_error;
mod kyc;
mod lease;
pub mod ledger;
mod node;
pub mod organisations;
pub mod partners;
pub mod registry;
mod sessions;
pub mod stripe;
mod system;
pub mod tokens;
pub mod trusted;
pub mod tx_sender;
pub mod veriff;
pub mod wallet;
pub mod whitelist;

pub use accounts::{AccountSettings, Accounts};
pub use ampflow_storage::StorageError;
pub use api_keys::{ApiKeyError, ApiKeySettings, ApiKeys};
pub use audit::{Audit, AuditError};
pub use identity::{Identity, Principal};
pub use identity_error::IdentityError;
pub use kyc::Kyc;
pub use organisations::{OrganisationError, Organisations};
pub use registry::{EntityFailures, RegistryError, RuntimeSettings};
pub use sessions::SessionGate;
pub use system::{ActorSystem, StartError, SystemConfig};
pub use veriff::{VeriffClient, VeriffSettings, WebhookHeaders};
pub use wallet::{
    IdentitySettings, KycEvent, KycSessionView, KycWebhookOutcome, ShownDecision, TokenPair,
    WalletActor,
};
