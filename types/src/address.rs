use std::fmt;
use std::str::FromStr;

use alloy::primitives::Address;

/// Why a string is not a wallet address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("an address is 0x followed by 40 hexadecimal characters")]
    Malformed,
}

/// An EVM account address. It is accepted in any letter case (a mixed-case EIP-55 checksum is
/// not enforced, because clients of the original service send lowercase or mixed case freely)
/// and always rendered lowercase, which is also how it is stored and used as an actor key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WalletAddress(Address);

impl WalletAddress {
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let hex = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .ok_or(AddressError::Malformed)?;
        if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AddressError::Malformed);
        }
        let address = Address::from_str(hex).map_err(|_| AddressError::Malformed)?;
        Ok(Self(address))
    }

    pub fn from_alloy(address: Address) -> Self {
        Self(address)
    }

    pub fn as_alloy(&self) -> Address {
        self.0
    }

    /// The lowercase `0x…` form used in storage, payloads and actor keys.
    pub fn to_lower_hex(&self) -> String {
        format!("{:#x}", self.0)
    }
}

impl fmt::Display for WalletAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for WalletAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalletAddress({:#x})", self.0)
    }
}

impl FromStr for WalletAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

// An address equals its `0x…` text in any letter case, and travels as that text.
crate::text_value!(WalletAddress);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_case_is_accepted_and_rendered_lowercase() {
        let a = WalletAddress::parse("0xEF678007D18427E6022059DBC264F27507CD1FFC").unwrap();
        assert_eq!(a.to_string(), "0xef678007d18427e6022059dbc264f27507cd1ffc");
        let b = WalletAddress::parse("0xef678007d18427e6022059dbc264f27507cd1ffc").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for bad in [
            "",
            "0x",
            "ef678007d18427e6022059dbc264f27507cd1ffc",
            "0xef678007d18427e6022059dbc264f27507cd1ff",
            "0xef678007d18427e6022059dbc264f27507cd1ffcc",
            "0xzf678007d18427e6022059dbc264f27507cd1ffc",
            " 0xef678007d18427e6022059dbc264f27507cd1ffc",
        ] {
            assert_eq!(
                WalletAddress::parse(bad),
                Err(AddressError::Malformed),
                "{bad:?}"
            );
        }
    }
}
