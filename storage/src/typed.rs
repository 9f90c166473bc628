//! The record mappers' conversions between the typed core and the columns: chain ids are
//! stored as `BIGINT`, addresses as lowercase `0x…` text and token amounts as decimal text. A
//! stored value that does not read back is corruption, never a default.

use ampflow_types::{ChainId, TokenAmount, WalletAddress};

use crate::{Result, StorageError};

/// The column value of a chain id. (Chain ids in use are far below 2^63.)
pub(crate) fn chain_column(chain: ChainId) -> i64 {
    chain.get() as i64
}

pub(crate) fn read_chain(stored: i64) -> Result<ChainId> {
    u64::try_from(stored)
        .map(ChainId::new)
        .map_err(|_| StorageError::Corrupt(format!("chain id {stored}")))
}

pub(crate) fn read_address(stored: &str) -> Result<WalletAddress> {
    WalletAddress::parse(stored).map_err(|_| StorageError::Corrupt(format!("address {stored:?}")))
}

pub(crate) fn read_amount(stored: &str) -> Result<TokenAmount> {
    TokenAmount::parse(stored).map_err(|_| StorageError::Corrupt(format!("amount {stored:?}")))
}

pub(crate) fn read_optional<T>(
    stored: Option<String>,
    read: impl FnOnce(&str) -> Result<T>,
) -> Result<Option<T>> {
    stored.as_deref().map(read).transpose()
}
