//! Donation value types: the donation id and the currency of an amount.

use std::fmt;

/// `don_` followed by 32 lowercase hexadecimal characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DonationId(String);

/// Why a string is not a donation id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a donation id is don_ followed by 32 hexadecimal characters")]
pub struct DonationIdError;

const DONATION_ID_HEX_LENGTH: usize = 32;

impl DonationId {
    /// Parses an id in any letter case; it is kept lowercase.
    pub fn parse(text: &str) -> Result<Self, DonationIdError> {
        let hex = text.strip_prefix("don_").ok_or(DonationIdError)?;
        if hex.len() != DONATION_ID_HEX_LENGTH || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DonationIdError);
        }
        Ok(Self(format!("don_{}", hex.to_ascii_lowercase())))
    }

    /// A new id from 16 random bytes (the caller supplies them, so randomness is injected).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(format!("don_{}", hex::encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DonationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DonationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DonationId({})", self.0)
    }
}

/// The ISO 4217 codes donations are taken in: the currencies Stripe settles card payments in
/// that use two decimal places (so `amount` is always in cents or the like). Zero- and
/// three-decimal currencies (JPY, KWD, …) are left out until amounts are scaled per currency.
pub const CURRENCIES: [&str; 30] = [
    "AUD", "BGN", "BRL", "CAD", "CHF", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "ILS", "INR",
    "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "RON", "SEK", "SGD", "THB", "TRY", "USD", "ZAR",
    "AED", "CNY", "KES", "NGN",
];

/// An ISO 4217 currency code from [`CURRENCIES`], upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(&'static str);

/// Why a string is not a supported currency.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("currency must be an ISO 4217 code the platform takes, e.g. EUR")]
pub struct CurrencyError;

impl Currency {
    /// Accepts any letter case (Stripe itself answers lowercase).
    pub fn parse(text: &str) -> Result<Self, CurrencyError> {
        CURRENCIES
            .iter()
            .find(|code| code.eq_ignore_ascii_case(text))
            .map(|code| Self(code))
            .ok_or(CurrencyError)
    }

    /// Upper case, e.g. `EUR`.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn donation_ids_parse_strictly() {
        let id = DonationId::from_bytes([0xab; 16]);
        assert_eq!(id.as_str(), format!("don_{}", "ab".repeat(16)));
        assert_eq!(DonationId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(
            DonationId::parse(&id.as_str().to_uppercase().replace("DON_", "don_")),
            Ok(id)
        );
        for bad in [
            "",
            "don_",
            "don_xyz",
            "org_0123456789abcdef0123456789abcdef",
        ] {
            assert!(DonationId::parse(bad).is_err(), "{bad}");
        }
        assert!(DonationId::parse(&format!("don_{}", "0".repeat(33))).is_err());
    }

    #[test]
    fn currencies_come_from_the_list_in_any_case() {
        assert_eq!(Currency::parse("eur").unwrap().as_str(), "EUR");
        assert_eq!(Currency::parse("USD").unwrap().to_string(), "USD");
        for bad in ["", "EU", "EURO", "XXX", "JPY", "€"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }
}
