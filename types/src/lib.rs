//! Value types shared by every ampflow crate. A value that has one of these types has been
//! parsed and is known good: the rest of the code never re-validates it.
//!
//! The pure rules that decide over these values live next to them (`auto_invest`'s submit
//! decision, [`RetryPolicy::after_failure`]): storage's transactions apply them to the state
//! they read and the actors call the same functions, so a rule is written once, below both.

mod address;
pub mod auto_invest;
mod chain;
mod clock;
mod donation;
mod keyset;
pub mod ledger;
pub mod merkle;
pub mod net;
pub mod note;
mod retry;
mod trusted;

pub use address::{AddressError, WalletAddress};
pub use chain::{AmountError, ChainId, ChainIdError, TokenAmount};
pub use clock::{Clock, ManualClock, SystemClock, UnixMillis};
pub use donation::{CURRENCIES, Currency, CurrencyError, DonationId, DonationIdError};
pub use keyset::Keyset;
pub use retry::{AfterFailure, RetryPolicy};

/// A new id with a prefix, e.g. `org_…`: the prefix, `_` and 32 hex digits of a random UUID.
pub fn prefixed_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}
pub use trusted::TrustedKind;
