//! Extractors: JSON bodies that fail with the error envelope, and wallet authentication.

use ampflow_actors::Principal;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// A JSON body: a JSON object sent as `Content-Type: application/json` (415 otherwise, a
/// missing body included). Malformed JSON, a missing field, a wrong type or a control
/// character in a string answers 400 `invalid_request` with `param` naming the field; an
/// oversized body answers 413. See [`crate::edge`].
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !crate::edge::is_json_content_type(req.headers()) {
            return Err(crate::edge::not_json());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Path parameters. A segment that does not parse (e.g. a chain id that is not a number)
/// answers 400 `invalid_request` with the envelope, like a bad body field.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::invalid_request(rejection.body_text()))
    }
}

/// Query parameters. One that does not parse answers 400 `invalid_request` with the envelope.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::invalid_request(rejection.body_text()))
    }
}

/// The raw body bytes, for webhooks whose signature covers the exact bytes; read errors and
/// oversized bodies answer with the envelope.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(body_error)
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestTooLarge,
            "the request body is too large",
        )
    } else {
        ApiError::invalid_request("the request body could not be read")
    }
}

/// Parses `bytes` as `T`, naming the offending field on failure. The body must be a JSON
/// object without control characters in its strings ([`crate::edge::check_json_text`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_request(
            "the request body is empty; a JSON object is expected",
        ));
    }
    crate::edge::check_json_text(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        json_error(&path, &inner)
    })?;
    deserializer.end().map_err(|_| {
        ApiError::invalid_request("the request body has trailing characters after the JSON value")
    })?;
    Ok(value)
}

fn json_error(path: &str, error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::invalid_request(format!("the request body is not valid JSON: {error}"))
        }
        Category::Data => {
            let text = error.to_string();
            // serde reports a missing field at the enclosing object, naming it in backticks.
            let missing = text
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                .map(|field| {
                    if path == "." {
                        field.to_string()
                    } else {
                        format!("{path}.{field}")
                    }
                });
            let message = text.split(" at line ").next().unwrap_or(&text).to_string();
            match missing {
                Some(param) => ApiError::invalid_param(&param, message),
                None if path == "." => ApiError::invalid_request(message),
                None => ApiError::invalid_param(path, message),
            }
        }
    }
}

/// The caller, proven by `Authorization: Bearer <access token>`.
pub struct WalletAuth(pub Principal);

/// A wallet whose access token the rate limiter verified earlier in this request, handed to
/// the extractor so the token is not verified twice.
#[derive(Debug, Clone)]
pub struct VerifiedWallet(pub Principal);

impl FromRequestParts<AppState> for WalletAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        wallet_of(parts, state).await.map(WalletAuth)
    }
}

/// The wallet behind the request's bearer token: the one the limiter verified, else verified
/// now. Either way through [`Identity::authenticate`](ampflow_actors::Identity::authenticate),
/// which checks the session as well as the token.
pub async fn wallet_of(parts: &mut Parts, state: &AppState) -> Result<Principal, ApiError> {
    match parts.extensions.remove::<VerifiedWallet>() {
        Some(VerifiedWallet(principal)) => Ok(principal),
        None => authenticate_headers(state, &parts.headers).await,
    }
}

/// The principal behind the request's bearer token, whose session is live.
pub async fn authenticate_headers(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let token = bearer_token(headers)?;
    state
        .identity()
        .authenticate(token)
        .await
        .map_err(ApiError::from)
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::authentication("this endpoint needs Authorization: Bearer <access token>")
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::authentication("the Authorization header is not valid text"))?;
    bearer_of(value).ok_or_else(|| {
        ApiError::authentication("the Authorization header must be: Bearer <access token>")
    })
}

/// The bearer token of an `Authorization` header value, if it is `Bearer <token>`.
pub fn bearer_of(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The TCP peer of a request. The server always serves with connect info; a request without
/// it (a router driven in-process) gets the unspecified address, which is never loopback and
/// never a trusted proxy.
pub fn peer(extensions: &axum::http::Extensions) -> std::net::SocketAddr {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|axum::extract::ConnectInfo(addr)| *addr)
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// The client's IP. From a peer in `http.trusted_proxies`, the rightmost `X-Forwarded-For`
/// entry that is not itself a trusted proxy (each proxy appends the address it saw, so entries
/// left of the first untrusted one may be forged); from any other peer, the peer.
/// IPv4-mapped IPv6 addresses are given as IPv4, so one client has one form (rate limits,
/// allowlists). Limits key on [`crate::net::ip_key`] of it.
pub fn client_ip(
    state: &AppState,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
) -> std::net::IpAddr {
    resolve_client_ip(state.trusted_proxies(), peer.ip(), headers)
}

pub fn resolve_client_ip(
    trusted: &[ipnet::IpNet],
    peer: std::net::IpAddr,
    headers: &HeaderMap,
) -> std::net::IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Every X-Forwarded-For header, in order, as one list, read from the right.
    let entries = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
        .map(|entry| {
            entry
                .trim()
                .parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| ip.to_canonical())
        });
    let mut client = peer;
    for entry in entries {
        // A malformed entry ends the walk: what is left of it cannot be believed.
        let Some(entry) = entry else { break };
        client = entry;
        if !is_trusted(&entry) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.1.1.1".parse().unwrap(),
        );
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        // From an untrusted peer the header is ignored.
        assert_eq!(
            resolve_client_ip(&trusted, ip("192.0.2.1"), &headers),
            ip("192.0.2.1")
        );
        // From a trusted proxy: the rightmost untrusted entry, not the forgeable first one.
        assert_eq!(
            resolve_client_ip(&trusted, ip("10.0.0.2"), &headers),
            ip("198.51.100.7")
        );
        // A malformed header is no header.
        headers.insert("x-forwarded-for", "nonsense".parse().unwrap());
        assert_eq!(
            resolve_client_ip(&trusted, ip("10.0.0.2"), &headers),
            ip("10.0.0.2")
        );
        // IPv4-mapped peers are IPv4.
        assert_eq!(
            resolve_client_ip(&[], ip("::ffff:192.0.2.1"), &HeaderMap::new()),
            ip("192.0.2.1")
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        address: String,
        chain_id: Option<u64>,
    }

    #[test]
    fn errors_name_the_field() {
        let missing = parse_json::<Body>(br#"{"chain_id": 1}"#).unwrap_err();
        assert_eq!(missing.param.as_deref(), Some("address"));
        let wrong_type = parse_json::<Body>(br#"{"address": 5}"#).unwrap_err();
        assert_eq!(wrong_type.param.as_deref(), Some("address"));
        let negative = parse_json::<Body>(br#"{"address": "x", "chain_id": -1}"#).unwrap_err();
        assert_eq!(negative.param.as_deref(), Some("chain_id"));
        let malformed = parse_json::<Body>(br#"{"address": "#).unwrap_err();
        assert_eq!(malformed.code.as_str(), "invalid_request");
        assert!(parse_json::<Body>(b"").is_err());
        assert!(parse_json::<Body>(br#"{"address":"x"} []"#).is_err());
        assert!(parse_json::<Body>(br#"[]"#).is_err());
    }
}
