//! The edge rule for text and bodies: one check every request passes before any extractor or
//! handler (applied by the rate-limit layer, after counting), plus the JSON checks every JSON
//! extractor makes.
//!
//! - **Text.** The path and the query string, percent-decoded, may not hold control characters
//!   (U+0000–U+001F, U+007F): 400 `invalid_request` before anything reaches storage (PostgreSQL
//!   cannot store NUL, and an id with a control character is never valid). In JSON bodies,
//!   strings may hold tab, newline and carriage return (free text), no other control
//!   character ([`check_json_text`]).
//! - **Bodies.** A JSON body must be an object (serde would otherwise build a struct from an
//!   array), sent as `Content-Type: application/json` (415 otherwise, an empty body included).
//! - **Cookie writes.** An unsafe request (not GET, HEAD or OPTIONS) that a browser could have
//!   sent on the dashboard user's behalf (it carries the session cookie and no `Authorization`
//!   header) must come from the server's own pages or an origin in `http.allowed_origins`:
//!   `Sec-Fetch-Site: same-origin`, or an `Origin` that is one of those (403
//!   `authorization_error` otherwise); and a body it sends must be JSON (415), which a
//!   cross-site form cannot send without a CORS preflight.

use axum::body::HttpBody;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The rule for one request, applied by the rate-limit layer after it counted the request
/// (`rate_limit::layer`), before any extractor or handler.
pub fn check(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let uri = request.uri();
    if has_control_character(uri.path().as_bytes()) {
        return Err(ApiError::invalid_param(
            "path",
            "the path holds a control character",
        ));
    }
    if let Some(query) = uri.query() {
        check_query(query)?;
    }
    let unsafe_method = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let headers = request.headers();
    if unsafe_method
        && !headers.contains_key(header::AUTHORIZATION)
        && crate::auth::extract::has_session_cookie(state, headers)
    {
        if !from_allowed_origin(headers, uri, &state.settings().http.allowed_origins) {
            return Err(ApiError::authorization(
                "a request made with the session cookie must come from this server's pages or an origin in http.allowed_origins (Origin or Sec-Fetch-Site)",
            ));
        }
        let has_body = request.body().size_hint().exact() != Some(0);
        if has_body && !is_json_content_type(headers) {
            return Err(not_json());
        }
    }
    Ok(())
}

/// 415 for a body that is not declared as JSON.
pub fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::InvalidRequest,
        "the request body must be a JSON object sent with Content-Type: application/json",
    )
}

/// Whether `Content-Type` is `application/json` or a `+json` type, parameters aside.
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false)
}

/// `Sec-Fetch-Site: same-origin`, or an `Origin` that is this server (the request's own
/// authority, either scheme: behind a TLS-terminating proxy the scheme is not known here) or
/// one of `allowed`.
fn from_allowed_origin(headers: &HeaderMap, uri: &axum::http::Uri, allowed: &[String]) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"same-origin")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let authority = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
    let origin_authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((origin_authority, authority), (Some(o), Some(a)) if o.eq_ignore_ascii_case(a))
}

/// 400 naming the first query parameter whose name or value holds a control character.
fn check_query(query: &str) -> Result<(), ApiError> {
    for pair in query.split('&') {
        if has_control_character(pair.as_bytes()) {
            let name = pair.split('=').next().unwrap_or(pair);
            let param = if has_control_character(name.as_bytes()) {
                "query".to_string()
            } else {
                name.to_string()
            };
            return Err(ApiError::invalid_param(
                &param,
                "the query string holds a control character",
            ));
        }
    }
    Ok(())
}

fn is_control(c: u32) -> bool {
    c < 0x20 || c == 0x7f
}

/// Whether percent-decoding `text` gives a control character (raw ones cannot reach here:
/// the HTTP parser refuses them in a request line).
fn has_control_character(text: &[u8]) -> bool {
    text.iter().enumerate().any(|(i, &b)| {
        is_control(b.into())
            || (b == b'%'
                && text
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .is_some_and(|decoded| is_control(decoded.into())))
    })
}

/// Whether a character is refused in a JSON string: a control character other than tab,
/// newline and carriage return.
fn is_refused_in_json(c: u32) -> bool {
    is_control(c) && !matches!(c, 0x09 | 0x0a | 0x0d)
}

/// The JSON rules for a body that parsed: an object, and no refused control character in any
/// string (keys included). The error names the field when it can.
pub fn check_json_text(bytes: &[u8]) -> Result<(), ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::invalid_request(
            "the request body must be a JSON object",
        ));
    }
    if !strings_hold_refused_character(bytes) {
        return Ok(());
    }
    // Rare: parse again to name the field.
    let param = serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|value| refused_path(&value, ""));
    let message =
        "a string holds a control character (only tab, newline and carriage return are allowed)";
    Err(match param {
        Some(param) if !param.is_empty() => ApiError::invalid_param(&param, message),
        _ => ApiError::invalid_request(message),
    })
}

/// Scans the strings of valid JSON for an escaped refused character (`\b`, `\f`, `\u0000`…)
/// or a raw DEL (serde accepts raw U+007F; raw U+0000–U+001F are already syntax errors).
fn strings_hold_refused_character(bytes: &[u8]) -> bool {
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !in_string {
            in_string = b == b'"';
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = false;
                i += 1;
            }
            0x7f => return true,
            b'\\' => match bytes.get(i + 1) {
                Some(b'b' | b'f') => return true,
                Some(b'u') => {
                    let code = bytes
                        .get(i + 2..i + 6)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u32::from_str_radix(hex, 16).ok());
                    if code.is_some_and(is_refused_in_json) {
                        return true;
                    }
                    i += 6;
                }
                _ => i += 2,
            },
            _ => i += 1,
        }
    }
    false
}

/// The path (`a.b.0.c`) of the first string, or key, holding a refused character.
fn refused_path(value: &Value, path: &str) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    let refused = |text: &str| text.chars().any(|c| is_refused_in_json(c.into()));
    match value {
        Value::String(text) => refused(text).then(|| path.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| refused_path(item, &join(&i.to_string()))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if refused(key) {
                Some(path.to_string())
            } else {
                refused_path(item, &join(key))
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoded_control_characters_are_found_in_paths_and_queries() {
        assert!(has_control_character(b"/public/organisations/org_%00"));
        assert!(has_control_character(b"/x%1f"));
        assert!(has_control_character(b"/x%7F"));
        assert!(!has_control_character(b"/public/organisations/org_%20a"));
        assert!(!has_control_character(b"/100%"));
        assert!(!has_control_character(b"/%zz"));
        let error = check_query("limit=5&cursor=a%00b").unwrap_err();
        assert_eq!(error.param.as_deref(), Some("cursor"));
        assert!(check_query("limit=5&cursor=abc").is_ok());
    }

    #[test]
    fn json_bodies_must_be_objects_without_control_characters() {
        assert!(check_json_text(br#"{"a": "x\ny\tz\r"}"#).is_ok());
        assert!(check_json_text(br#" {"a": "\\u0000 is text"}"#).is_ok());
        assert!(check_json_text(br#"["org_1", null, 1000]"#).is_err());
        assert!(check_json_text(br#""text""#).is_err());
        let nul = check_json_text(br#"{"email": "a\u0000@example.org"}"#).unwrap_err();
        assert_eq!(nul.param.as_deref(), Some("email"));
        let nested = check_json_text(br#"{"profile": {"website": "x\u001fy"}}"#).unwrap_err();
        assert_eq!(nested.param.as_deref(), Some("profile.website"));
        let bell = check_json_text(br#"{"a": ["ok", "\b"]}"#).unwrap_err();
        assert_eq!(bell.param.as_deref(), Some("a.1"));
        assert!(check_json_text("{\"a\": \"\u{7f}\"}".as_bytes()).is_err());
        assert!(check_json_text(br#"{"\u0001": 1}"#).is_err());
    }

    #[test]
    fn cookie_writes_need_this_origin_or_an_allowed_one() {
        let uri: axum::http::Uri = "/admin/api-keys".parse().unwrap();
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        let allowed = vec!["https://dashboard.example.org".to_string()];
        let ok = |pairs: &[(&'static str, &'static str)]| {
            from_allowed_origin(&headers(pairs), &uri, &allowed)
        };
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]));
        assert!(ok(&[
            ("host", "api.example.org"),
            ("origin", "https://api.example.org")
        ]));
        assert!(ok(&[
            ("host", "api.example.org"),
            ("origin", "https://dashboard.example.org")
        ]));
        assert!(!ok(&[
            ("host", "api.example.org"),
            ("origin", "https://evil.example.org")
        ]));
        assert!(!ok(&[("host", "api.example.org"), ("origin", "null")]));
        assert!(!ok(&[("host", "api.example.org")]));
    }
}
