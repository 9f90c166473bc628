//! Value types shared by every ampflow crate. A value that has one of these types has been
//! parsed and is known good: the rest of the code never re-validates it.

mod address;
mod clock;
mod donation;
mod keyset;
pub mod ledger;
pub mod merkle;
pub mod note;
mod trusted;

pub use address::{AddressError, WalletAddress};
pub use clock::{Clock, ManualClock, SystemClock, UnixMillis};
pub use donation::{CURRENCIES, Currency, CurrencyError, DonationId, DonationIdError};
pub use keyset::Keyset;
pub use trusted::TrustedKind;
