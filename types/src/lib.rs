//! Value types shared by every ampflow crate. A value that has one of these types has been
//! parsed and is known good: the rest of the code never re-validates it.
//!
//! The pure rules that decide over these values live next to them (`auto_invest`'s submit
//! decision, [`RetryPolicy::after_failure`]): storage's transactions apply them to the state
//! they read and the actors call the same functions, so a rule is written once, below both.

/// For a value written as text (`Display`) and read back with `parse`: it equals its text
/// (text that does not parse equals none), and serde writes and reads it as that text.
macro_rules! text_value {
    ($type:ty) => {
        impl PartialEq<str> for $type {
            fn eq(&self, other: &str) -> bool {
                Self::parse(other).is_ok_and(|other| other == *self)
            }
        }

        impl PartialEq<&str> for $type {
            fn eq(&self, other: &&str) -> bool {
                *self == **other
            }
        }

        impl PartialEq<String> for $type {
            fn eq(&self, other: &String) -> bool {
                *self == **other
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use text_value;

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
