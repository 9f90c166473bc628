//! The kinds of contract the platform's registry of trusted contracts holds.

use std::fmt;

/// What a trusted contract is trusted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrustedKind {
    /// A campaign auto-invest may invest in (the InvestService's registered campaigns).
    Campaign,
    /// An issuer whitelisting may approve wallets on (the WalletApprover's registered issuers).
    Issuer,
}

impl TrustedKind {
    pub const ALL: [Self; 2] = [Self::Campaign, Self::Issuer];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Campaign => "campaign",
            Self::Issuer => "issuer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for TrustedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
