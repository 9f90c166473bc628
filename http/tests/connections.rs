//! Connection limits over real TCP on loopback: the header read and keep-alive idle timers
//! against slow and idle clients, requests answered while many idle connections are held, the
//! per-IP and global caps answering 503 `too_many_connections` (a second loopback address,
//! 127.0.0.2, stands for another client), and HTTP/2 with prior knowledge under the stream
//! limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ampflow_http::config::Settings;
use ampflow_storage::testdb::Backend;
use bytes::Bytes;
use common::{TestApp, assert_error, wait_until};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

on_both_databases!(
    a_connection_that_sends_half_a_header_or_nothing_is_closed_after_the_header_timeout,
    an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_and_not_before,
    requests_are_answered_while_a_thousand_idle_connections_are_held,
    the_per_ip_cap_answers_503_to_one_connection_too_many_while_another_address_is_served,
    the_global_cap_answers_503_to_every_address_until_a_connection_closes,
    http2_with_prior_knowledge_is_served_within_the_stream_limit_and_closed_when_idle,
);

/// A client address other than 127.0.0.1 (all of 127.0.0.0/8 is loopback on Linux).
const OTHER_CLIENT: [u8; 4] = [127, 0, 0, 2];
/// How long a test waits for something that should happen well within a second.
const PATIENCE: Duration = Duration::from_secs(10);

fn timers(header_read_ms: u64, idle_ms: u64) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.http.header_read_timeout_ms = header_read_ms;
        s.http.keep_alive_idle_timeout_ms = idle_ms;
    }
}

/// A TCP connection to the app from `source`.
async fn connect_from(source: impl Into<IpAddr>, app: &TestApp) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.into(), 0)).unwrap();
    socket.connect(app.app().addr).await.unwrap()
}

async fn connect(app: &TestApp) -> TcpStream {
    connect_from([127, 0, 0, 1], app).await
}

/// A reqwest client whose connections come from `source`.
fn client_from(source: impl Into<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.into())
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

/// Sends `GET path` on `stream` and reads one whole answer: its status, head and body.
async fn raw_get(stream: &mut TcpStream, path: &str) -> (u16, String, Value) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let answer = async {
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if received.len() >= end + 4 + length {
                    let body = &received[end + 4..end + 4 + length];
                    return (head, serde_json::from_slice(body).unwrap_or(Value::Null));
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a whole answer: {received:?}");
            received.extend_from_slice(&chunk[..n]);
        }
    };
    let (head, body) = tokio::time::timeout(PATIENCE, answer).await.unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, body)
}

/// Waits for the server to close `stream`; answers what it sent meanwhile. Panics if it stays
/// open for `PATIENCE`.
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let until_closed = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, until_closed)
        .await
        .expect("the server closes the connection");
    received
}

/// Whether `stream` is still open `window` from now (nothing to read, no close).
async fn still_open_after(stream: &mut TcpStream, window: Duration) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(window, stream.read(&mut byte))
        .await
        .is_err()
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn a_connection_that_sends_half_a_header_or_nothing_is_closed_after_the_header_timeout(
    backend: Backend,
) {
    let Some(app) = TestApp::start_with(backend, timers(300, 30_000)).await else {
        return;
    };
    let opened = Instant::now();
    let mut silent = connect(&app).await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .unwrap();
    for stream in [&mut slow, &mut silent] {
        let received = closed_by_server(stream).await;
        assert!(
            received.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&received)
        );
    }
    assert!(opened.elapsed() >= Duration::from_millis(300));
    // A whole header in time is answered as usual.
    let (status, _, _) = raw_get(&mut connect(&app).await, "/health").await;
    assert_eq!(status, 200);
    assert!(
        metrics(&app)
            .await
            .contains("http_connections_closed_total{reason=\"header_timeout\"}")
    );
    app.stop().await;
}

async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_and_not_before(
    backend: Backend,
) {
    let Some(app) = TestApp::start_with(backend, timers(200, 1_500)).await else {
        return;
    };
    let mut stream = connect(&app).await;
    let (status, head, _) = raw_get(&mut stream, "/health").await;
    assert_eq!(status, 200);
    assert!(!head.contains("connection: close"), "{head}");
    // The header timer is over once a request came: waiting past it keeps the connection.
    assert!(still_open_after(&mut stream, Duration::from_millis(500)).await);
    let (status, _, _) = raw_get(&mut stream, "/health").await;
    assert_eq!(status, 200, "the connection is kept alive");
    let answered = Instant::now();
    assert!(closed_by_server(&mut stream).await.is_empty());
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(1_400),
        "closed after {idle:?}"
    );
    assert!(
        metrics(&app)
            .await
            .contains("http_connections_closed_total{reason=\"idle_timeout\"}")
    );
    app.stop().await;
}

async fn requests_are_answered_while_a_thousand_idle_connections_are_held(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |s| {
        s.http.connections_per_ip_max = 2_000;
        s.http.connections_max = 2_000;
        // The held connections send nothing: the header timeout must not close them while a
        // loaded machine is still opening the rest.
        s.http.header_read_timeout_ms = 300_000;
    })
    .await
    else {
        return;
    };
    let mut held = Vec::new();
    for _ in 0..1_000 {
        held.push(connect(&app).await);
    }
    let (status, _) = app.send(app.client.get(app.url("/health"))).await;
    assert_eq!(status, 200);
    let (status, _) = app
        .send(client_from(OTHER_CLIENT).get(app.url("/health")))
        .await;
    assert_eq!(status, 200);
    let counted = wait_until(PATIENCE, || async {
        open_connections(&metrics(&app).await) >= 1_000.0
    })
    .await;
    assert!(
        counted,
        "the open-connections gauge counts the held connections: {}",
        open_connections(&metrics(&app).await)
    );
    drop(held);
    app.stop().await;
}

fn open_connections(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("http_connections_open "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn the_per_ip_cap_answers_503_to_one_connection_too_many_while_another_address_is_served(
    backend: Backend,
) {
    let Some(app) = TestApp::start_with(backend, |s| {
        s.http.connections_per_ip_max = 3;
        s.http.connections_max = 100;
    })
    .await
    else {
        return;
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&app).await);
    }
    // A raw client sees the whole answer, then the close.
    let mut extra = connect(&app).await;
    let (status, head, body) = raw_get(&mut extra, "/health").await;
    assert_error(status, &body, 503, "too_many_connections", None);
    assert!(body["error"]["param"].is_null());
    assert!(head.contains("\r\nretry-after: 5"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    closed_by_server(&mut extra).await;
    // So does an ordinary client, with no reset in the way.
    let (status, body) = app.send(app.client.get(app.url("/health"))).await;
    assert_error(status, &body, 503, "too_many_connections", None);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("your address")
    );

    let other = client_from(OTHER_CLIENT);
    let (status, _) = app.send(other.get(app.url("/health"))).await;
    assert_eq!(status, 200, "another address is served");
    let scraped = other.get(app.url("/metrics")).send().await.unwrap();
    let scraped = scraped.text().await.unwrap();
    assert!(
        scraped.contains("http_connections_shed_total{reason=\"per_ip\"}"),
        "{scraped}"
    );

    held.pop();
    assert!(
        wait_until(PATIENCE, || async {
            let fresh = client_from([127, 0, 0, 1]);
            fresh
                .get(app.url("/health"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "a closed connection gives its place back"
    );
    app.stop().await;
}

async fn the_global_cap_answers_503_to_every_address_until_a_connection_closes(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |s| {
        s.http.connections_per_ip_max = 4;
        s.http.connections_max = 4;
    })
    .await
    else {
        return;
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(&app).await);
    }
    let (status, body) = app
        .send(client_from(OTHER_CLIENT).get(app.url("/health")))
        .await;
    assert_error(status, &body, 503, "too_many_connections", None);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the server")
    );
    held.pop();
    assert!(
        wait_until(PATIENCE, || async {
            let fresh = client_from(OTHER_CLIENT);
            fresh
                .get(app.url("/health"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "a closed connection gives its place back"
    );
    app.stop().await;
}

/// The server's `SETTINGS_MAX_CONCURRENT_STREAMS`, read from its first SETTINGS frame after the
/// client preface.
async fn advertised_max_concurrent_streams(app: &TestApp) -> Option<u32> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const SETTINGS: u8 = 0x4;
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    let mut stream = connect(app).await;
    stream.write_all(PREFACE).await.unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    stream
        .write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut header = [0u8; 9];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut header))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(header[3], SETTINGS, "the server speaks first with SETTINGS");
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.unwrap();
    payload.chunks_exact(6).find_map(|entry| {
        (u16::from_be_bytes([entry[0], entry[1]]) == MAX_CONCURRENT_STREAMS)
            .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
    })
}

async fn http2_with_prior_knowledge_is_served_within_the_stream_limit_and_closed_when_idle(
    backend: Backend,
) {
    let Some(app) = TestApp::start_with(backend, |s| {
        s.http.http2_max_concurrent_streams = 2;
        s.http.keep_alive_idle_timeout_ms = 1_000;
    })
    .await
    else {
        return;
    };
    assert_eq!(advertised_max_concurrent_streams(&app).await, Some(2));

    let io = TokioIo::new(connect(&app).await);
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let get = |mut sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>| {
        let uri = app.url("/health");
        async move {
            let request = hyper::Request::get(uri)
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.version(), hyper::Version::HTTP_2);
            let status = response.status();
            response.into_body().collect().await.unwrap();
            status
        }
    };
    // The first answer comes after the server's SETTINGS, so the client knows the limit.
    assert_eq!(get(sender.clone()).await, 200);
    // More requests at once than streams allowed: the client queues them, all are answered.
    let requests = (0..8).map(|_| get(sender.clone()));
    for status in futures::future::join_all(requests).await {
        assert_eq!(status, 200);
    }
    // Nothing more is asked: the server closes the connection after the idle timeout.
    tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("an idle HTTP/2 connection is closed")
        .unwrap()
        .ok();
    app.stop().await;
}
