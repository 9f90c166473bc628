//! What every response gets: an `X-Request-Id` (the client's when it sent a sane one), the
//! security headers the seed's responses show, a request timeout that answers with the error
//! envelope, and one access-log line.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::{ApiError, ErrorCode};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client request id that is echoed; longer ones are replaced.
const REQUEST_ID_LENGTH_MAX: usize = 128;

/// The request id, for handlers that put it in a body.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: Duration,
}

const SECURITY_HEADERS: [(HeaderName, &str); 6] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_XSS_PROTECTION, "1; mode=block"),
    (
        header::CACHE_CONTROL,
        "no-cache, no-store, max-age=0, must-revalidate",
    ),
    (header::PRAGMA, "no-cache"),
    (header::EXPIRES, "0"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

pub async fn envelope(State(limits): State<Limits>, mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| is_sane_request_id(v))
        .cloned()
        .unwrap_or_else(new_request_id);
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = ?request_id, %method, %path);
    let started = Instant::now();

    let mut response = match tokio::time::timeout(
        limits.request_timeout,
        next.run(request).instrument(span.clone()),
    )
    .await
    {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RequestTimeout,
            "the request took too long and was abandoned; retry it",
        )
        .into_response(),
    };

    let headers = response.headers_mut();
    headers.insert(X_REQUEST_ID.clone(), request_id);
    for (name, value) in &SECURITY_HEADERS {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
    let status = response.status();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), elapsed_ms, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), elapsed_ms, "request");
        }
    });
    response
}

fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= REQUEST_ID_LENGTH_MAX
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let id = format!("req_{}", uuid::Uuid::new_v4().simple());
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("req_unknown"))
}

/// How much of an oversized body is still read (and thrown away) so the client gets its 413.
const OVERSIZED_DRAIN_MAX: usize = 1024 * 1024;

/// The longest request body any endpoint takes (`http.body_limit_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Reads the whole request body (up to the limit) before any layer or handler runs, so one
/// that answers early (a bad token, a rate limit, a 503) never leaves unread bytes on the
/// connection: closing a socket with unread data resets it, and the client may lose the
/// answer while it is still sending. An oversized body is read on and thrown away (up to
/// 1 MiB more) and answered 413 `request_too_large`; a longer one gets its 413 with the
/// connection closed.
pub async fn buffer_body(
    State(BodyLimit(limit)): State<BodyLimit>,
    request: Request,
    next: Next,
) -> Response {
    use futures::StreamExt;

    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut buffered = bytes::BytesMut::new();
    let mut oversized = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return ApiError::invalid_request("the request body could not be read").into_response();
        };
        if oversized > 0 || buffered.len() + chunk.len() > limit {
            oversized += chunk.len();
            buffered.clear();
            if oversized > OVERSIZED_DRAIN_MAX {
                break;
            }
            continue;
        }
        buffered.extend_from_slice(&chunk);
    }
    if oversized > 0 {
        let mut response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestTooLarge,
            "the request body is too large",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let body = axum::body::Body::from(buffered.freeze());
    next.run(Request::from_parts(parts, body)).await
}

/// The answer to a handler panic: the envelope, never a dropped connection.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::InternalError,
        "an internal error occurred; it has been logged",
    )
    .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this endpoint does not accept that method",
    )
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        let limits = Limits {
            request_timeout: Duration::from_secs(5),
        };
        Router::new()
            .route(
                "/slow",
                get(|| async { tokio::time::sleep(Duration::from_secs(60)).await }),
            )
            .route("/boom", get(boom))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                panic_response,
            ))
            .layer(axum::middleware::from_fn_with_state(limits, envelope))
    }

    async fn boom() -> &'static str {
        panic!("handler bug")
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_times_out_with_the_envelope() {
        let response = app()
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("x-request-id"));
        assert_eq!(
            body_json(response).await["error"]["code"],
            "request_timeout"
        );
    }

    fn echo(limit: usize) -> Router {
        Router::new()
            .route(
                "/echo",
                axum::routing::post(|body: bytes::Bytes| async move { body }),
            )
            .route(
                "/early",
                axum::routing::post(|| async { StatusCode::UNAUTHORIZED }),
            )
            .layer(axum::middleware::from_fn_with_state(
                BodyLimit(limit),
                buffer_body,
            ))
    }

    #[tokio::test]
    async fn bodies_are_read_whole_before_the_handler_and_oversized_ones_answer_413() {
        let body = "x".repeat(1000);
        let response = echo(1000)
            .oneshot(
                Request::post("/echo")
                    .body(Body::from(body.clone()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let echoed = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(echoed, body.as_bytes());
        // A handler that answers without reading still had the body read.
        let response = echo(1000)
            .oneshot(Request::post("/early").body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let response = echo(999)
            .oneshot(
                Request::post("/echo")
                    .body(Body::from("x".repeat(1000)))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()["connection"], "close");
        assert_eq!(
            body_json(response).await["error"]["code"],
            "request_too_large"
        );
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_the_envelope() {
        let response = app()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        assert_eq!(body_json(response).await["error"]["code"], "internal_error");
    }
}
