//! Parsing of the parameters several endpoints share — addresses, chain ids, page limits and
//! cursors — each refusing with 400 `invalid_request` naming the parameter.

use ampflow_types::{ChainId, ChainIdError, WalletAddress};
use base64::Engine;

use crate::error::ApiError;

/// An EVM address in any letter case.
pub fn address(param: &str, text: &str) -> Result<WalletAddress, ApiError> {
    WalletAddress::parse(text).map_err(|e| ApiError::invalid_param(param, e.to_string()))
}

/// A `{chainId}` path segment.
pub fn chain_id(text: &str) -> Result<ChainId, ApiError> {
    text.parse()
        .map_err(|e: ChainIdError| ApiError::invalid_param("chainId", e.to_string()))
}

/// `?limit=`: `default` when absent, else 1 to `max`.
pub fn page_limit(limit: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid_param(
            "limit",
            format!("limit must be 1 to {max}"),
        )),
    }
}

/// An opaque cursor: `cur_` + base64url of `position`.
pub fn encode_cursor(position: &str) -> String {
    format!(
        "cur_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(position)
    )
}

/// The position inside a cursor [`encode_cursor`] made, parsed by `parse`; any other text is
/// refused.
pub fn decode_cursor<T>(text: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, ApiError> {
    text.strip_prefix("cur_")
        .and_then(|c| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|position| parse(&position))
        .ok_or_else(|| ApiError::invalid_param("cursor", "the cursor is not one this API gave"))
}

/// The cursor of a list ordered by (time, id), e.g. `<at_ms>:<id>` inside.
pub fn encode_keyset(at_ms: ampflow_types::UnixMillis, id: &str) -> String {
    encode_cursor(&format!("{at_ms}:{id}"))
}

/// The position in a cursor [`encode_keyset`] made, when `id` accepts its id (answering it
/// in the form storage compares); any other text is refused.
pub fn decode_keyset(
    text: &str,
    id: impl FnOnce(&str) -> Option<String>,
) -> Result<ampflow_types::Keyset, ApiError> {
    decode_cursor(text, |position| {
        let (at, rest) = position.split_once(':')?;
        Some(ampflow_types::Keyset {
            at_ms: at.parse().ok()?,
            id: id(rest)?,
        })
    })
}

/// Trims a page read with one row more than `limit`: answers whether there was more.
pub fn split_page<T>(rows: &mut Vec<T>, limit: u64) -> bool {
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    has_more
}
