//! The two chain values that travel with every on-chain request: which chain, and how much of a
//! token. Parsed once (at the HTTP edge or in a storage record mapper) and passed as these
//! types from there on, so no layer re-parses a string or mixes a chain id up with a count.

use std::fmt;
use std::str::FromStr;

use alloy::primitives::U256;
use serde::{Deserialize, Serialize};

/// An EIP-155 chain id. Written as a plain number on the wire and in storage.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChainId(u64);

impl ChainId {
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}

/// Why a string is not a chain id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the chain id must be a number")]
pub struct ChainIdError;

impl FromStr for ChainId {
    type Err = ChainIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self).map_err(|_| ChainIdError)
    }
}

/// Why a string is not a token amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("an amount is a decimal string of base units, e.g. \"500\"")]
    NotDecimal,
    #[error("the amount does not fit in a uint256")]
    TooLarge,
}

/// Most decimal digits a uint256 can have (2^256 − 1 has 78).
const AMOUNT_DIGITS_MAX: usize = 78;

/// An amount of a token (or of wei) in its base units: a uint256, as the chain has it. Written
/// as a decimal string on the wire and in storage, because JSON numbers lose precision far
/// below 2^256.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TokenAmount(U256);

impl TokenAmount {
    pub const ZERO: Self = Self(U256::ZERO);

    pub const fn from_u256(amount: U256) -> Self {
        Self(amount)
    }

    pub const fn as_u256(self) -> U256 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses a decimal string of ASCII digits (no sign, no `0x`, no separators).
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::NotDecimal);
        }
        if text.len() > AMOUNT_DIGITS_MAX {
            return Err(AmountError::TooLarge);
        }
        U256::from_str_radix(text, 10)
            .map(Self)
            .map_err(|_| AmountError::TooLarge)
    }
}

impl From<u128> for TokenAmount {
    fn from(amount: u128) -> Self {
        Self(U256::from(amount))
    }
}

impl FromStr for TokenAmount {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TokenAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for TokenAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenAmount({})", self.0)
    }
}

// An amount equals the decimal text of the same number (`"007"` equals 7), and travels as
// its decimal text: JSON numbers lose precision far below 2^256.
crate::text_value!(TokenAmount);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_decimal_base_units_up_to_a_uint256() {
        assert_eq!(TokenAmount::parse("500").unwrap().to_string(), "500");
        assert_eq!(TokenAmount::parse("007").unwrap().to_string(), "7");
        assert_eq!(TokenAmount::parse("0").unwrap(), TokenAmount::ZERO);
        let max = U256::MAX.to_string();
        assert_eq!(TokenAmount::parse(&max).unwrap().as_u256(), U256::MAX);
        for bad in ["", "-1", "+1", "0x10", "1.5", "1 000", "١٢"] {
            assert_eq!(
                TokenAmount::parse(bad),
                Err(AmountError::NotDecimal),
                "{bad:?}"
            );
        }
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert_eq!(TokenAmount::parse(over), Err(AmountError::TooLarge));
        assert_eq!(
            TokenAmount::parse(&"9".repeat(200)),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn amounts_travel_as_decimal_strings_and_chain_ids_as_numbers() {
        let amount: TokenAmount = serde_json::from_str("\"1000000\"").unwrap();
        assert_eq!(serde_json::to_string(&amount).unwrap(), "\"1000000\"");
        assert!(serde_json::from_str::<TokenAmount>("1000000").is_err());
        let chain: ChainId = serde_json::from_str("31337").unwrap();
        assert_eq!(chain.get(), 31337);
        assert_eq!(serde_json::to_string(&chain).unwrap(), "31337");
        assert_eq!("8453".parse::<ChainId>(), Ok(ChainId::new(8453)));
        assert_eq!("-1".parse::<ChainId>(), Err(ChainIdError));
    }
}
