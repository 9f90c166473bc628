//! One connection: hyper serves it (HTTP/1.1, or HTTP/2 by prior knowledge) with the app's
//! router, and a watchdog closes it when it holds the server without using it.
//!
//! The watchdog owns both connection timers, because hyper's own do not cover them: hyper's
//! HTTP/1 `header_read_timeout` restarts whenever a keep-alive connection waits for its next
//! request (so it would also be the idle limit), and it does not run while hyper-util's
//! automatic builder is still reading the first bytes to tell HTTP/1 from HTTP/2 (a connection
//! that sends nothing would never time out); HTTP/2 has no idle limit at all. So:
//! - a connection that has not sent a whole request header `header_read_timeout` after it
//!   opened is closed;
//! - a connection with no request in flight for `keep_alive_idle_timeout` since its last
//!   answer was sent is closed (a next request's header must be complete within that time).
//!
//! A request counts as in flight from its complete header until its answer's body is sent (or
//! dropped), so the timers never cut an answer short; a request's own duration is bounded by
//! `http.request_timeout_ms` in the router. Closing starts with hyper's graceful shutdown
//! (HTTP/1: close once idle; HTTP/2: GOAWAY), and a connection that still holds nothing in
//! flight [`CLOSE_GRACE`] later (a half-sent header) is dropped.
//!
//! Series: `http_connections_closed_total{reason}`, reason `header_timeout` or `idle_timeout`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use super::ConnectionLimits;
use super::caps::Permit;

/// After a graceful shutdown starts, how long a connection with nothing in flight may take to
/// close by itself before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Which timer closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    HeaderRead,
    KeepAliveIdle,
}

impl Timer {
    fn label(self) -> &'static str {
        match self {
            Timer::HeaderRead => "header_timeout",
            Timer::KeepAliveIdle => "idle_timeout",
        }
    }
}

/// What the watchdog knows of a connection: requests in flight, and since when none is.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Whether a request header has ever been complete (the header timer applies until then).
    served: AtomicBool,
    /// Milliseconds after `opened` when the last answer was done.
    idle_since_ms: AtomicU64,
}

/// A request in flight; dropped when its answer's body is sent or dropped.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Activity {
    fn new(opened: Instant) -> Self {
        Self {
            opened,
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        // Counted before `served` is set, so the watchdog never sees a served connection with
        // nothing in flight and no answer yet (an idle deadline from the open).
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
        InFlight(self.clone())
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// When the connection is due to close and by which timer; `None` while a request is in
    /// flight.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, Timer)> {
        if !self.is_idle() {
            return None;
        }
        if !self.served.load(Ordering::Acquire) {
            return Some((self.opened + limits.header_read_timeout, Timer::HeaderRead));
        }
        let idle_since =
            self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some((
            idle_since + limits.keep_alive_idle_timeout,
            Timer::KeepAliveIdle,
        ))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let since_opened = Instant::now().saturating_duration_since(self.0.opened);
        let millis = u64::try_from(since_opened.as_millis()).unwrap_or(u64::MAX);
        // Set before the count drops, so a watchdog that sees no request in flight reads the
        // new time; the latest answer wins when HTTP/2 streams end together.
        self.0.idle_since_ms.fetch_max(millis, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one admitted connection until it ends, a timer closes it, or the server stops
/// (`closing` turns true). `_permit` holds its place under the caps until then.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    limits: Arc<ConnectionLimits>,
    mut closing: watch::Receiver<bool>,
    _permit: Permit,
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    let service = hyper_service(app, peer, activity.clone());
    let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    // Set once a graceful shutdown has started: the connection is dropped from then on as soon
    // as nothing is in flight.
    let mut drop_after: Option<Instant> = None;
    loop {
        let wake = next_check(&activity, &limits, drop_after);
        tokio::select! {
            outcome = connection.as_mut() => {
                if let Err(error) = outcome {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = closing.changed(), if drop_after.is_none() => {
                connection.as_mut().graceful_shutdown();
                drop_after = Some(Instant::now() + CLOSE_GRACE);
            }
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if let Some(at) = drop_after {
                    if now >= at && activity.is_idle() {
                        return;
                    }
                } else if let Some((due, timer)) = activity.deadline(&limits)
                    && due <= now
                {
                    metrics::counter!("http_connections_closed_total", "reason" => timer.label())
                        .increment(1);
                    connection.as_mut().graceful_shutdown();
                    drop_after = Some(now + CLOSE_GRACE);
                }
            }
        }
    }
}

/// When the watchdog looks next: at the due timer, but never later than one idle timeout from
/// now. Requests come and go unseen between looks, and a request that ends after now sets an
/// idle deadline at least one idle timeout away, so no deadline is missed (the header timer
/// may be the longer one).
fn next_check(
    activity: &Activity,
    limits: &ConnectionLimits,
    drop_after: Option<Instant>,
) -> Instant {
    let now = Instant::now();
    let latest = now + limits.keep_alive_idle_timeout;
    match drop_after {
        Some(at) if at > now => at,
        Some(_) => now + CLOSE_GRACE,
        None => activity
            .deadline(limits)
            .map_or(latest, |(due, _)| due.min(latest)),
    }
}

/// The router as hyper's service for one connection: each request carries the peer as
/// `ConnectInfo<SocketAddr>` (the handlers and the client-IP rules read it) and is counted in
/// flight until its answer's body is done.
fn hyper_service(
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<TrackedBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<TrackedBody>, Infallible>> + Send + 'static,
> + Send
+ 'static {
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let in_flight = activity.begin();
        request.extensions_mut().insert(ConnectInfo(peer));
        let answer = app.clone().oneshot(request.map(Body::new));
        async move {
            let response = answer.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        }
    })
}

/// An answer's body that holds its request in flight until hyper has sent it or dropped it.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_idle_timeout: Duration::from_secs(75),
            ..ConnectionLimits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_header_timer_runs_from_the_open_and_the_idle_timer_from_the_last_answer() {
        let limits = limits();
        let opened = Instant::now();
        let activity = Arc::new(Activity::new(opened));
        assert_eq!(
            activity.deadline(&limits),
            Some((opened + Duration::from_secs(10), Timer::HeaderRead))
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        let first = activity.begin();
        let second = activity.begin();
        assert_eq!(activity.deadline(&limits), None);
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(first);
        assert_eq!(
            activity.deadline(&limits),
            None,
            "one answer is still going"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(second);
        assert_eq!(
            activity.deadline(&limits),
            Some((opened + Duration::from_secs(105 + 75), Timer::KeepAliveIdle))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_looks_again_within_an_idle_timeout_while_a_request_is_in_flight() {
        let limits = limits();
        let activity = Arc::new(Activity::new(Instant::now()));
        let _request = activity.begin();
        assert_eq!(
            next_check(&activity, &limits, None),
            Instant::now() + limits.keep_alive_idle_timeout
        );
        let drop_at = Instant::now() + CLOSE_GRACE;
        assert_eq!(next_check(&activity, &limits, Some(drop_at)), drop_at);
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_timer_longer_than_the_idle_timer_does_not_delay_the_idle_close() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_idle_timeout: Duration::from_secs(1),
            ..ConnectionLimits::default()
        };
        let opened = Instant::now();
        let activity = Arc::new(Activity::new(opened));
        let check = next_check(&activity, &limits, None);
        assert_eq!(check, opened + Duration::from_secs(1));
        // A request comes and goes before that look; the idle deadline is not missed.
        drop(activity.begin());
        let (due, timer) = activity.deadline(&limits).unwrap();
        assert_eq!(timer, Timer::KeepAliveIdle);
        assert!(check <= due);
    }
}
