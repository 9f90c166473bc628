//! Stripe's error body, `{"error": {type, code, message, param, decline_code, doc_url, …}}`, and
//! whether an error is kept for idempotent replay.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

/// An error answer. `saved` says whether Stripe keeps it under the request's idempotency key:
/// it does once the endpoint started executing (a decline, an object in the wrong state), and
/// not when the parameters were refused before that.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) saved: bool,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Self {
        let mut error = Map::new();
        if let Some(code) = code {
            error.insert("code".into(), json!(code));
            let doc_url = format!(
                "https://stripe.com/docs/error-codes/{}",
                code.replace('_', "-")
            );
            error.insert("doc_url".into(), json!(doc_url));
        }
        error.insert("message".into(), json!(message));
        error.insert("type".into(), json!(kind));
        Self {
            status,
            body: json!({ "error": error }),
            saved: false,
        }
    }

    fn with(mut self, field: &str, value: Value) -> Self {
        if let Some(error) = self.body["error"].as_object_mut() {
            error.insert(field.into(), value);
        }
        self
    }

    fn saved(mut self) -> Self {
        self.saved = true;
        self
    }

    /// A refused parameter: 400 with `param`.
    pub(crate) fn param(param: &str, code: &str, message: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some(code),
            message,
        )
        .with("param", json!(param))
    }

    pub(crate) fn missing_param(param: &str) -> Self {
        Self::param(
            param,
            "parameter_missing",
            &format!("Missing required param: {param}."),
        )
    }

    pub(crate) fn unknown_param(param: &str) -> Self {
        Self::param(
            param,
            "parameter_unknown",
            &format!("Received unknown parameter: {param}"),
        )
    }

    /// A 400 without a code, as Stripe answers for malformed requests.
    pub(crate) fn invalid_request(message: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        )
    }

    pub(crate) fn unauthorized(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            message,
        )
    }

    /// 404 `resource_missing` for an id that does not exist in the caller's mode.
    pub(crate) fn no_such(object_name: &str, param: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such {object_name}: '{id}'"),
        )
        .with("param", json!(param))
    }

    /// 400 `resource_missing` for a parameter naming an object that does not exist.
    pub(crate) fn no_such_param(object_name: &str, param: &str, id: &str) -> Self {
        let mut error = Self::no_such(object_name, param, id);
        error.status = StatusCode::BAD_REQUEST;
        error
    }

    pub(crate) fn unrecognized_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            &format!(
                "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
            ),
        )
    }

    /// An object in the wrong state for the call, e.g. confirming a succeeded PaymentIntent.
    pub(crate) fn unexpected_state(
        code: &str,
        message: &str,
        object: Option<(&str, Value)>,
    ) -> Self {
        let error = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some(code),
            message,
        );
        match object {
            Some((field, value)) => error.with(field, value),
            None => error,
        }
        .saved()
    }

    pub(crate) fn idempotency(message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "idempotency_error", None, message)
    }

    /// 402 `card_error`. `details` adds `decline_code`, `charge`, `payment_intent`, … .
    pub(crate) fn card(code: &str, message: &str, details: Vec<(&str, Value)>) -> Self {
        let mut error = Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            Some(code),
            message,
        );
        for (field, value) in details {
            error = error.with(field, value);
        }
        error.saved()
    }

    /// An injected outage: `api_error` with the given status (500, 502, 503 …).
    pub(crate) fn outage(status: StatusCode) -> Self {
        Self::new(
            status,
            "api_error",
            None,
            "An unknown error occurred (injected by the Stripe stand-in).",
        )
    }

    pub(crate) fn rate_limited(message: &str) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            Some("rate_limit"),
            message,
        )
    }
}
