//! Who a request is counted as: the verified user, else the verified API key, else the client
//! IP. Only a credential that verifies counts: an unverified header value would let a client
//! pick a fresh identity per request and escape its IP's limit.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};

use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    /// A verified user: today the wallet of a valid access token (lowercase address).
    User(String),
    /// A verified organisation API key, by key id.
    ApiKey(String),
    Ip(IpAddr),
}

impl Identifier {
    /// The `identifier_type` metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Identifier::User(_) => "user",
            Identifier::ApiKey(_) => "api_key",
            Identifier::Ip(_) => "ip",
        }
    }

    /// The identifier part of a Redis key, e.g. `user:0xabc…` or `ip:192.0.2.1`.
    pub fn key_part(&self) -> String {
        match self {
            Identifier::User(id) => format!("user:{id}"),
            Identifier::ApiKey(id) => format!("key:{id}"),
            Identifier::Ip(ip) => format!("ip:{ip}"),
        }
    }
}

/// Resolves the caller. Sessions and API keys plug in here, in this order, each returning only
/// after its credential verified:
/// 1. a dashboard session cookie that verifies → `User(user id)`;
/// 2. a wallet access token that verifies → `User(wallet)` (done);
/// 3. `Authorization: Bearer sk_…` that verifies against the key store → `ApiKey(key id)`.
pub fn identify(state: &AppState, headers: &HeaderMap, ip: IpAddr) -> Identifier {
    if headers.contains_key(header::AUTHORIZATION)
        && let Ok(principal) = crate::extract::authenticate_headers(state, headers)
    {
        return Identifier::User(principal.address.to_string().to_ascii_lowercase());
    }
    Identifier::Ip(ip)
}
