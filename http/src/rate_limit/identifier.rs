//! Who a request is counted as: the verified user, else the verified API key, else the client
//! IP. Only a credential that verifies counts: an unverified header value would let a client
//! pick a fresh identity per request and escape its IP's limit.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};

use crate::auth::api_keys::VerifiedKey;
use crate::auth::extract::{
    RequestContext, VerifiedSession, authenticate_session, has_session_cookie, key_bearer,
};
use crate::extract::VerifiedWallet;
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    /// A verified user: a dashboard user (`usr_…`) or the wallet of a valid access token
    /// (lowercase address).
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

/// A credential the limiter verified, handed to the endpoint's extractor so it is not read
/// again.
pub enum Verified {
    Session(VerifiedSession),
    Key(VerifiedKey),
    Wallet(VerifiedWallet),
}

/// Resolves the caller, in this order, each only once its credential passed the same check
/// the endpoint's extractor makes (and is then handed to it):
/// 1. an organisation API key in `Authorization: Bearer sk_…`, or one of its access tokens,
///    that verifies and is not revoked → `ApiKey(key id)` (the dashboard extractor also lets a
///    key win over a cookie);
/// 2. a dashboard session cookie of a live session → `User(user id)`;
/// 3. a wallet access token of a live session → `User(wallet)`;
/// 4. otherwise `ip` (the client's, IPv6 by /64).
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    context: &RequestContext,
    ip: IpAddr,
) -> (Identifier, Option<Verified>) {
    if let Some(bearer) = key_bearer(headers) {
        return match crate::auth::api_keys::verify_bearer(state, bearer).await {
            Ok(verified) => (
                Identifier::ApiKey(verified.key.id.clone()),
                Some(Verified::Key(verified)),
            ),
            // The endpoint verifies again and answers 401; counted by IP meanwhile.
            Err(_) => (Identifier::Ip(ip), None),
        };
    }
    if has_session_cookie(state, headers) {
        match authenticate_session(state, headers, context).await {
            Ok(caller) => {
                return (
                    Identifier::User(caller.user.id.clone()),
                    Some(Verified::Session(VerifiedSession(caller))),
                );
            }
            // The endpoint checks it again and answers 401; counted by IP meanwhile.
            Err(error) => tracing::debug!(?error, "rate limit: the session does not verify"),
        }
    }
    if headers.contains_key(header::AUTHORIZATION)
        && let Ok(principal) = crate::extract::authenticate_headers(state, headers).await
    {
        return (
            Identifier::User(principal.address.to_string().to_ascii_lowercase()),
            Some(Verified::Wallet(VerifiedWallet(principal))),
        );
    }
    (Identifier::Ip(ip), None)
}
