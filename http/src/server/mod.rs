//! The listener: accepts TCP connections, admits them under the connection caps, and serves
//! each with hyper-util's automatic builder (HTTP/1.1, or HTTP/2 by prior knowledge) on a
//! tokio timer. Connections that hold the server without using it are closed by their
//! watchdog ([`connection`]); connections over a cap are answered 503 and closed ([`caps`]).
//! Stopping refuses new connections at once, lets in-flight requests finish and closes idle
//! connections.

pub mod caps;
pub mod connection;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::HttpConfig;
use caps::Caps;

/// After an accept error that is not the client's (such as running out of file descriptors),
/// the listener waits this long before accepting again, so it does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// The connection settings, from `[http]`.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub keep_alive_idle_timeout: Duration,
    /// `None`: no HTTP/2 PINGs.
    pub http2_keep_alive_interval: Option<Duration>,
    pub http2_keep_alive_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    pub connections_max: usize,
    pub connections_per_ip_max: usize,
    /// Peers exempt from the per-IP cap (`http.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl ConnectionLimits {
    pub fn new(http: &HttpConfig, trusted_proxies: Vec<ipnet::IpNet>) -> Self {
        let ms = Duration::from_millis;
        Self {
            header_read_timeout: ms(http.header_read_timeout_ms),
            keep_alive_idle_timeout: ms(http.keep_alive_idle_timeout_ms),
            http2_keep_alive_interval: (http.http2_keep_alive_interval_ms > 0)
                .then(|| ms(http.http2_keep_alive_interval_ms)),
            http2_keep_alive_timeout: ms(http.http2_keep_alive_timeout_ms),
            http2_max_concurrent_streams: http.http2_max_concurrent_streams,
            connections_max: http.connections_max,
            connections_per_ip_max: http.connections_per_ip_max,
            trusted_proxies,
        }
    }

    /// hyper's settings. hyper's HTTP/1 header timer is turned off: the connection's watchdog
    /// owns that timer (see [`connection`]).
    fn builder(&self) -> Builder<TokioExecutor> {
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().header_read_timeout(None);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.http2_keep_alive_interval)
            .keep_alive_timeout(self.http2_keep_alive_timeout)
            .max_concurrent_streams(self.http2_max_concurrent_streams);
        builder
    }
}

impl Default for ConnectionLimits {
    /// The defaults of `[http]`, with no trusted proxies.
    fn default() -> Self {
        Self::new(&crate::config::Settings::default().http, Vec::new())
    }
}

/// Serves `app` on `listener` until the returned sender fires (or is dropped); then closes the
/// listener, lets in-flight requests finish, closes idle connections, and ends the task.
/// Aborting the task drops every connection.
pub fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, app, limits, stopped));
    (stop, server)
}

/// What every connection task shares.
struct Shared {
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    limits: Arc<ConnectionLimits>,
    caps: Caps,
    closing: watch::Receiver<bool>,
}

async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut stopped: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let (close, closing) = watch::channel(false);
    let shared = Shared {
        app,
        builder: Arc::new(limits.builder()),
        caps: Caps::new(
            limits.connections_max,
            limits.connections_per_ip_max,
            limits.trusted_proxies.clone(),
        ),
        limits: Arc::new(limits),
        closing,
    };
    // Every connection's task (and every refusal being answered) lives here, so aborting this
    // task ends them all.
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(error) = ended
                    && error.is_panic()
                {
                    tracing::error!(%error, "a connection task panicked");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => admit(&shared, &mut tasks, stream, peer),
                Err(error) => accept_failed(error).await,
            },
        }
    }
    drop(listener);
    let _ = close.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Serves the connection if the caps admit it, answers it 503 if not (while few refusals are
/// being answered), and never waits: the accept loop goes straight back to accepting.
fn admit(shared: &Shared, tasks: &mut JoinSet<()>, stream: TcpStream, peer: std::net::SocketAddr) {
    match shared.caps.admit(peer.ip()) {
        Ok(permit) => {
            // Answers are written whole by hyper; Nagle's delay would only hold back the last
            // segment of a large one.
            let _ = stream.set_nodelay(true);
            tasks.spawn(connection::serve(
                stream,
                peer,
                shared.app.clone(),
                shared.builder.clone(),
                shared.limits.clone(),
                shared.closing.clone(),
                permit,
            ));
        }
        Err(refusal) => {
            tracing::debug!(%peer, ?refusal, "connection refused: over a connection cap");
            if let Some(slot) = shared.caps.shed_slot() {
                tasks.spawn(caps::refuse(stream, refusal, slot));
            }
        }
    }
}

/// A client that gave up before its connection was accepted is no server problem; anything
/// else (out of file descriptors) is logged and waited out.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; accepting again in a second");
    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::get;
    use tokio::sync::Notify;

    use super::*;

    /// A request in flight when shutdown starts still gets its answer.
    #[tokio::test]
    async fn shutdown_lets_in_flight_requests_finish() {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (s, r) = (started.clone(), release.clone());
        let app = Router::new().route(
            "/slow",
            get(move || async move {
                s.notify_one();
                r.notified().await;
                "done"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, server) = serve(listener, app, ConnectionLimits::default());

        let request = tokio::spawn(async move {
            reqwest::get(format!("http://{addr}/slow"))
                .await?
                .text()
                .await
        });
        started.notified().await;
        stop.send(()).unwrap();
        // Shutdown has begun: new connections are refused while the slow request is pending.
        let refused = async {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), refused)
            .await
            .unwrap();
        release.notify_one();
        assert_eq!(request.await.unwrap().unwrap(), "done");
        server.await.unwrap().unwrap();
    }

    /// Stopping does not wait for connections with nothing in flight: an idle keep-alive
    /// connection and one halfway through a header are both closed, long before their timers.
    #[tokio::test]
    async fn shutdown_closes_idle_and_half_sent_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let app = Router::new().route("/", get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, server) = serve(listener, app, ConnectionLimits::default());

        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 512];
        let n = idle.read(&mut answer).await.unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
        let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();

        stop.send(()).unwrap();
        let both_closed = async {
            for stream in [&mut idle, &mut half] {
                loop {
                    match stream.read(&mut answer).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), both_closed)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
