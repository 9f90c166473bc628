//! Signed partner requests (seed 003) and the partner family's error body.
//!
//! `Authorization: IGF <access key id>:<signature>`, where the signature is
//! Base64(HMAC-SHA1(secret, StringToSign)) and StringToSign is
//! `VERB\n<hex MD5 of the body, empty without one>\n<Content-Type>\n<Date>\n<resource>`: the
//! request's method, the lowercase hex MD5 of the exact body bytes (the seed's example), the
//! `Content-Type` header as sent (empty when absent), the `Date` header as sent (it is the
//! signed timestamp), and the request's path with its query. The seed's own StringToSign
//! examples write the resource as `/igive-api/v1/…` while its endpoints are
//! `/igive-api/v1_0/…`, so a signature over either spelling of the same path is accepted.
//!
//! Checked in this order: the header's shape, the key (401), the `Date` (present, RFC 1123 or
//! RFC 2822, within `partner.date_skew_secs` of our clock: 401), the signature (constant time:
//! 401); then, for a caller who proved the secret, revocation and the key's IP allowlist (403).
//! Secrets and signatures are never logged.

use std::net::IpAddr;

use ampflow_actors::partners::PartnerKeyRecord;
use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde::Serialize;
use sha1::Sha1;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode, ErrorDetail};
use crate::state::AppState;

/// Longest `Authorization` value looked at.
const AUTHORIZATION_LENGTH_MAX: usize = 256;
/// The seed's StringToSign examples name this prefix for the `/igive-api/v1_0/` endpoints.
const RESOURCE_PREFIX: &str = "/igive-api/v1_0/";
const RESOURCE_PREFIX_SIGNED_ALIAS: &str = "/igive-api/v1/";

/// An error of the partner family: the seed's `{"errors": [...]}`, with the platform's
/// `error` object beside it so the code stays machine-readable.
#[derive(Debug)]
pub struct PartnerError(pub ApiError);

/// The partner family's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerErrorBody {
    /// Human-readable messages (the seed's shape).
    pub errors: Vec<String>,
    pub error: ErrorDetail,
}

impl From<ApiError> for PartnerError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl IntoResponse for PartnerError {
    fn into_response(self) -> Response {
        let error = self.0;
        let body = PartnerErrorBody {
            errors: vec![error.message.clone()],
            error: ErrorDetail {
                code: error.code.as_str(),
                message: error.message,
                param: error.param,
                retry_after: None,
            },
        };
        (error.status, Json(body)).into_response()
    }
}

/// A request signed with a partner's key, with the body the signature covers.
pub struct PartnerAuth {
    pub key: PartnerKeyRecord,
    pub body: Bytes,
}

/// What the signature is computed over, read from the request.
struct SignedParts {
    method: String,
    resource: String,
    content_type: String,
    date: Option<String>,
    authorization: Option<String>,
    client_ip: IpAddr,
}

impl FromRequest<AppState> for PartnerAuth {
    type Rejection = PartnerError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let parts = signed_parts(state, &req)?;
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::RequestTooLarge,
                    "the request body is too large",
                )
            } else {
                ApiError::invalid_request("the request body could not be read")
            }
        })?;
        let key = authenticate(state, &parts, &body).await?;
        Ok(Self { key, body })
    }
}

fn signed_parts(state: &AppState, req: &Request) -> Result<SignedParts, ApiError> {
    let header_text = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    };
    let peer = crate::extract::peer(req.extensions());
    Ok(SignedParts {
        method: req.method().as_str().to_string(),
        resource: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.uri().path().to_string()),
        content_type: header_text(header::CONTENT_TYPE).unwrap_or_default(),
        date: header_text(header::DATE),
        authorization: header_text(header::AUTHORIZATION),
        client_ip: crate::extract::client_ip(state, peer, req.headers()),
    })
}

fn unauthenticated() -> ApiError {
    ApiError::authentication(
        "the request signature is not valid (Authorization: IGF <access key id>:<signature>)",
    )
}

async fn authenticate(
    state: &AppState,
    parts: &SignedParts,
    body: &[u8],
) -> Result<PartnerKeyRecord, ApiError> {
    let (key_id, signature) = parse_authorization(parts.authorization.as_deref())?;
    let key = state
        .actors()
        .partners()
        .key(key_id)
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(unauthenticated)?;
    let date = parts.date.as_deref().ok_or_else(|| {
        ApiError::authentication("the Date header is missing; it must be the signed timestamp")
    })?;
    check_date(state, date)?;
    let signed = signature_matches(&key.secret, signature, parts, date, body);
    if !signed {
        tracing::info!(key = %key.id, "partner request with a bad signature");
        return Err(unauthenticated());
    }
    if key.revoked_at_ms.is_some() {
        return Err(ApiError::authorization("this access key has been revoked"));
    }
    if !ip_allowed(&key.allowed_ips, parts.client_ip) {
        tracing::info!(key = %key.id, ip = %parts.client_ip, "partner request from an address not on the key's list");
        return Err(ApiError::authorization(
            "requests with this key are not accepted from this address",
        ));
    }
    Ok(key)
}

/// `IGF <access key id>:<signature>` → (key id, signature bytes).
fn parse_authorization(value: Option<&str>) -> Result<(&str, Vec<u8>), ApiError> {
    let value = value
        .filter(|v| v.len() <= AUTHORIZATION_LENGTH_MAX)
        .ok_or_else(unauthenticated)?;
    let credentials = value.strip_prefix("IGF ").ok_or_else(unauthenticated)?;
    let (key_id, signature) = credentials
        .trim()
        .split_once(':')
        .ok_or_else(unauthenticated)?;
    if key_id.is_empty() || !key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(unauthenticated());
    }
    let signature = STANDARD
        .decode(signature.trim())
        .map_err(|_| unauthenticated())?;
    Ok((key_id, signature))
}

fn check_date(state: &AppState, date: &str) -> Result<(), ApiError> {
    let signed_at = chrono::DateTime::parse_from_rfc2822(date).map_err(|_| {
        ApiError::authentication(
            "the Date header must be an HTTP date, e.g. Thu, 15 Sep 2012 00:51:48 GMT",
        )
    })?;
    let skew_ms = (state.settings().partner.date_skew_secs as i64).saturating_mul(1000);
    let now_ms = state.actors().clock().now_ms();
    if (now_ms - signed_at.timestamp_millis()).abs() > skew_ms {
        return Err(ApiError::authentication(
            "the Date header is too far from the server's clock",
        ));
    }
    Ok(())
}

/// The seed's StringToSign for `resource`.
pub fn string_to_sign(
    method: &str,
    body: &[u8],
    content_type: &str,
    date: &str,
    resource: &str,
) -> String {
    let body_md5 = if body.is_empty() {
        String::new()
    } else {
        hex::encode(Md5::digest(body))
    };
    format!("{method}\n{body_md5}\n{content_type}\n{date}\n{resource}")
}

fn signature_matches(
    secret: &str,
    signature: Vec<u8>,
    parts: &SignedParts,
    date: &str,
    body: &[u8],
) -> bool {
    let mut resources = vec![parts.resource.clone()];
    if let Some(rest) = parts.resource.strip_prefix(RESOURCE_PREFIX) {
        resources.push(format!("{RESOURCE_PREFIX_SIGNED_ALIAS}{rest}"));
    }
    resources.iter().any(|resource| {
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        let text = string_to_sign(&parts.method, body, &parts.content_type, date, resource);
        mac.update(text.as_bytes());
        mac.verify_slice(&signature).is_ok()
    })
}

/// Whether `ip` is on the list (an empty list allows any address).
pub fn ip_allowed(allowed: &[String], ip: IpAddr) -> bool {
    allowed.is_empty()
        || allowed.iter().any(|cidr| {
            cidr.parse::<ipnet::IpNet>()
                .is_ok_and(|net| net.contains(&ip.to_canonical()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_follows_the_seed() {
        assert_eq!(
            string_to_sign(
                "GET",
                b"",
                "",
                "Thu, 15 Sep 2012 00:51:48 GMT",
                "/igive-api/v1/donation/5def4c5f-e318-471f-9ef7-05cc965233cd"
            ),
            "GET\n\n\nThu, 15 Sep 2012 00:51:48 GMT\n/igive-api/v1/donation/5def4c5f-e318-471f-9ef7-05cc965233cd"
        );
        let post = string_to_sign("POST", b"{}", "application/json", "D", "/r");
        assert_eq!(
            post,
            "POST\n99914b932bd37a50b983c5e7c90ae93b\napplication/json\nD\n/r"
        );
    }

    #[test]
    fn allowlists_match_cidrs() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(ip_allowed(&[], loopback));
        assert!(ip_allowed(&["127.0.0.0/8".into()], loopback));
        assert!(ip_allowed(
            &["10.0.0.0/8".into(), "127.0.0.1/32".into()],
            loopback
        ));
        assert!(!ip_allowed(&["10.0.0.0/8".into()], loopback));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(ip_allowed(&["127.0.0.1/32".into()], mapped));
    }

    #[test]
    fn authorization_headers_are_parsed_strictly() {
        let (key, sig) = parse_authorization(Some("IGF AKIA123:AAEC")).unwrap();
        assert_eq!((key, sig), ("AKIA123", vec![0, 1, 2]));
        for bad in [
            "",
            "Bearer x",
            "IGF nocolon",
            "IGF :AAEC",
            "IGF k:***",
            "igf k:AAEC",
        ] {
            assert!(parse_authorization(Some(bad)).is_err(), "{bad}");
        }
        assert!(parse_authorization(None).is_err());
    }
}
