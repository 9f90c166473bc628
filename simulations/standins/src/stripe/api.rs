//! The HTTP side: Bearer authentication, `Stripe-Version`, routing, form decoding, idempotent
//! replay, and recording each request for the tests. One handler serves every path, because
//! authentication, idempotency and recording apply to all of them alike.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::Shared;
use super::error::ApiError;
use super::event::{API_VERSION, Event};
use super::form::Params;
use super::objects::new_id;
use super::operations::Caller;

/// Stripe's limit on an `Idempotency-Key`.
const IDEMPOTENCY_KEY_CHARS_MAX: usize = 255;
/// Idempotent results kept; the oldest are forgotten past this (Stripe forgets after 24 h).
const IDEMPOTENT_RESULTS_MAX: usize = 100_000;

/// A request as the stand-in received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub request_id: String,
    pub method: String,
    pub path: String,
    /// Whether the API key was accepted.
    pub authorized: bool,
    pub stripe_version: Option<String>,
    pub idempotency_key: Option<String>,
    /// The decoded form body (or query string), in the order sent.
    pub params: Vec<(String, String)>,
    pub status: u16,
    /// Answered from an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// Saved results by (API key, idempotency key).
#[derive(Default)]
pub(crate) struct Idempotency {
    saved: HashMap<(String, String), Saved>,
    order: VecDeque<(String, String)>,
}

struct Saved {
    request: (String, String, Vec<(String, String)>),
    status: StatusCode,
    body: Vec<u8>,
}

/// What one request gets, before it is turned into a response.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    authorized: bool,
    replayed: bool,
    params: Vec<(String, String)>,
    events: Vec<Event>,
}

impl Answer {
    fn error(error: ApiError, authorized: bool) -> Self {
        Self {
            status: error.status,
            body: pretty(&error.body),
            authorized,
            replayed: false,
            params: Vec::new(),
            events: Vec::new(),
        }
    }
}

fn pretty(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = new_id("req");
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let stripe_version = header("stripe-version");
    let idempotency_key = header("idempotency-key").filter(|_| method == Method::POST);
    let answer = answer(&shared, &method, &uri, &headers, &body, &request_id);
    shared.record(RecordedRequest {
        request_id: request_id.clone(),
        method: method.to_string(),
        path: uri.path().to_string(),
        authorized: answer.authorized,
        stripe_version: stripe_version.clone(),
        idempotency_key: idempotency_key.clone(),
        params: answer.params.clone(),
        status: answer.status.as_u16(),
        replayed: answer.replayed,
    });
    shared.emit(answer.events);
    let delay = shared.faults.lock().response_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = answer.status;
    let response_headers = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            response_headers.insert(name, value);
        }
    };
    set("content-type", "application/json");
    set("request-id", &request_id);
    set(
        "stripe-version",
        stripe_version.as_deref().unwrap_or(API_VERSION),
    );
    if let Some(key) = &idempotency_key {
        set("idempotency-key", key);
    }
    if answer.replayed {
        set("idempotent-replayed", "true");
    }
    response
}

fn answer(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Answer {
    let api_key = match shared.authenticate(headers) {
        Ok(api_key) => api_key,
        Err(error) => return Answer::error(error, false),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(version) = header("stripe-version")
        && !valid_version(version)
    {
        let error = ApiError::invalid_request(&format!("Invalid Stripe API version: {version}"));
        return Answer::error(error, true);
    }
    if let Some(status) = shared.take_injected_failure() {
        return Answer::error(ApiError::outage(status), true);
    }
    let params = match read_params(method, uri, header("content-type"), body) {
        Ok(params) => params,
        Err(error) => return Answer::error(error, true),
    };
    let caller = Caller {
        livemode: api_key.starts_with("sk_live_"),
        request_id: Some(request_id.to_string()),
        idempotency_key: None,
    };
    let key = match header("idempotency-key").filter(|_| *method == Method::POST) {
        None => None,
        Some(key) if key.chars().count() > IDEMPOTENCY_KEY_CHARS_MAX => {
            let error = ApiError::invalid_request(&format!(
                "Idempotency-Key must be at most {IDEMPOTENCY_KEY_CHARS_MAX} characters long."
            ));
            return Answer::error(error, true);
        }
        Some(key) => Some((api_key.clone(), key.to_string())),
    };
    let request = (
        method.to_string(),
        uri.path().to_string(),
        params.fingerprint(),
    );
    let mut answer = match key {
        None => execute(shared, method, uri.path(), &caller, &params),
        Some(key) => execute_once(shared, key, request, method, uri.path(), caller, &params),
    };
    answer.params = params.pairs().to_vec();
    answer
}

/// Runs the request unless its idempotency key already has a result: the same parameters
/// replay it, different ones are refused. The lock is held throughout, so a concurrent retry
/// with the same key waits and then replays.
fn execute_once(
    shared: &Shared,
    key: (String, String),
    request: (String, String, Vec<(String, String)>),
    method: &Method,
    path: &str,
    mut caller: Caller,
    params: &Params,
) -> Answer {
    let mut idempotency = shared.idempotency.lock();
    if let Some(saved) = idempotency.saved.get(&key) {
        if saved.request != request {
            let error = ApiError::idempotency(&format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{}' if you meant to execute a different request.",
                key.1
            ));
            return Answer::error(error, true);
        }
        return Answer {
            status: saved.status,
            body: saved.body.clone(),
            authorized: true,
            replayed: true,
            params: Vec::new(),
            events: Vec::new(),
        };
    }
    caller.idempotency_key = Some(key.1.clone());
    let (answer, keep) = run(shared, method, path, &caller, params);
    if keep {
        if idempotency.order.len() == IDEMPOTENT_RESULTS_MAX
            && let Some(oldest) = idempotency.order.pop_front()
        {
            idempotency.saved.remove(&oldest);
        }
        idempotency.order.push_back(key.clone());
        let saved = Saved {
            request,
            status: answer.status,
            body: answer.body.clone(),
        };
        idempotency.saved.insert(key, saved);
    }
    answer
}

fn execute(
    shared: &Shared,
    method: &Method,
    path: &str,
    caller: &Caller,
    params: &Params,
) -> Answer {
    run(shared, method, path, caller, params).0
}

/// Routes and runs the request on the store; answers whether its result is kept for replay.
fn run(
    shared: &Shared,
    method: &Method,
    path: &str,
    caller: &Caller,
    params: &Params,
) -> (Answer, bool) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut events = Vec::new();
    let mut store = shared.store.lock();
    let result = match (method, segments.as_slice()) {
        (&Method::POST, ["v1", "payment_intents"]) => {
            store.create_payment_intent(caller, params, &mut events)
        }
        (&Method::GET, ["v1", "payment_intents", id]) => store
            .payment_intent(caller, id)
            .map(|payment_intent| payment_intent.to_json()),
        (&Method::POST, ["v1", "payment_intents", id, "confirm"]) => {
            store.confirm_payment_intent(caller, id, params, &mut events)
        }
        (&Method::POST, ["v1", "payment_intents", id, "cancel"]) => {
            store.cancel_payment_intent(caller, id, params, &mut events)
        }
        (&Method::POST, ["v1", "refunds"]) => store.create_refund(caller, params, &mut events),
        (&Method::GET, ["v1", kind @ ("charges" | "refunds" | "events"), id]) => {
            store.retrieve(caller, kind, id)
        }
        _ => Err(ApiError::unrecognized_url(method.as_str(), path)),
    };
    drop(store);
    let (status, body, keep) = match result {
        Ok(object) => (StatusCode::OK, pretty(&object), true),
        Err(error) => (error.status, pretty(&error.body), error.saved),
    };
    let answer = Answer {
        status,
        body,
        authorized: true,
        replayed: false,
        params: Vec::new(),
        events,
    };
    (answer, keep)
}

/// The form body of a POST, or the query string of a GET.
fn read_params(
    method: &Method,
    uri: &Uri,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Params, ApiError> {
    if *method != Method::POST {
        return Params::parse(uri.query().unwrap_or_default().as_bytes())
            .map_err(|reason| ApiError::invalid_request(&format!("Invalid query: {reason}")));
    }
    let form =
        content_type.is_none_or(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !body.is_empty() && !form {
        return Err(ApiError::invalid_request(
            "Invalid request (check that your POST content type is application/x-www-form-urlencoded). If you have any questions, we can help at https://support.stripe.com/.",
        ));
    }
    Params::parse(body)
        .map_err(|reason| ApiError::invalid_request(&format!("Invalid request body: {reason}")))
}

/// `YYYY-MM-DD`, optionally followed by `.name` (e.g. `2024-09-30.acacia`).
fn valid_version(version: &str) -> bool {
    let (date, name) = version.split_once('.').unwrap_or((version, "a"));
    let date_ok = date.len() == 10
        && date.bytes().enumerate().all(|(at, byte)| match at {
            4 | 7 => byte == b'-',
            _ => byte.is_ascii_digit(),
        });
    date_ok && !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase())
}

/// How Stripe shows a refused key: the prefix, stars, the last four characters.
pub(crate) fn redact_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let prefix_len = chars
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == '_')
        .nth(1)
        .map_or(0, |(at, _)| at + 1);
    let prefix: String = chars[..prefix_len].iter().collect();
    if chars.len() <= prefix_len + 4 {
        return format!("{prefix}****");
    }
    let last4: String = chars[chars.len() - 4..].iter().collect();
    let stars = "*".repeat(chars.len() - prefix_len - 4);
    format!("{prefix}{stars}{last4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_key_redaction() {
        assert!(valid_version("2024-06-20"));
        assert!(valid_version("2025-03-31.basil"));
        assert!(!valid_version("2024-6-20"));
        assert!(!valid_version("latest"));
        assert_eq!(redact_key("sk_test_abcdefgh1234"), "sk_test_********1234");
        assert_eq!(redact_key("sk_test_12"), "sk_test_****");
    }
}
