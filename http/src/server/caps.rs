//! The connection caps: how many connections are open in all and per client address, and the
//! answer a connection over a cap gets (503 `too_many_connections`, then the connection is
//! closed) instead of a silent reset.
//!
//! Series: `http_connections_open` (gauge) and `http_connections_shed_total{reason}`, reason
//! `global` or `per_ip`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{ErrorBody, ErrorDetail};
use crate::net::ip_key;

/// Refused connections being answered at once at most; past that a refused connection is
/// closed without an answer, so a flood of refusals cannot hold more than this many sockets.
pub const SHEDDING_MAX: usize = 256;
/// A refused connection is answered and drained for this long at most.
pub const SHED_TIME_MAX: Duration = Duration::from_secs(2);
/// Bytes of a refused connection's request read (and thrown away) at most before closing.
const SHED_DRAIN_BYTES_MAX: usize = 64 * 1024;
/// `Retry-After` of the refusal, seconds.
pub const SHED_RETRY_AFTER_SECS: u64 = 5;
/// The refusal's error code.
pub const SHED_CODE: crate::error::ErrorCode = crate::error::ErrorCode::TooManyConnections;

/// Which cap a connection ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `http.connections_max`.
    Global,
    /// `http.connections_per_ip_max`.
    PerIp,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Global => "global",
            Refusal::PerIp => "per_ip",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Global => "the server has too many open connections; retry later",
            Refusal::PerIp => {
                "too many open connections from your address; close idle ones or retry later"
            }
        }
    }

    /// The whole HTTP/1.1 answer: 503 with the error envelope, `Retry-After` and
    /// `Connection: close`. Built once per kind.
    pub fn answer(self) -> &'static [u8] {
        static GLOBAL: OnceLock<Vec<u8>> = OnceLock::new();
        static PER_IP: OnceLock<Vec<u8>> = OnceLock::new();
        let cell = match self {
            Refusal::Global => &GLOBAL,
            Refusal::PerIp => &PER_IP,
        };
        cell.get_or_init(|| self.build_answer())
    }

    fn build_answer(self) -> Vec<u8> {
        let envelope = ErrorBody {
            error: ErrorDetail {
                code: SHED_CODE.as_str(),
                message: self.message().to_string(),
                param: None,
                retry_after: None,
            },
        };
        // Serialising a struct of strings cannot fail; an empty object would still be JSON.
        let body = serde_json::to_string(&envelope).unwrap_or_else(|_| "{}".into());
        format!(
            "HTTP/1.1 503 Service Unavailable\r\n\
             content-type: application/json\r\n\
             content-length: {}\r\n\
             retry-after: {SHED_RETRY_AFTER_SECS}\r\n\
             connection: close\r\n\
             cache-control: no-store\r\n\
             x-content-type-options: nosniff\r\n\
             \r\n\
             {body}",
            body.len()
        )
        .into_bytes()
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Open connections by [`ip_key`]; an address leaves the map with its last connection, so
    /// the map never holds more than `total` entries.
    per_ip: HashMap<IpAddr, usize>,
    shedding: usize,
}

/// The caps and the counts they are checked against, shared by the accept loop (which admits)
/// and every connection (whose [`Permit`] gives its place back when it closes).
#[derive(Debug, Clone)]
pub struct Caps {
    counts: Arc<Mutex<Counts>>,
    total_max: usize,
    per_ip_max: usize,
    exempt: Arc<[ipnet::IpNet]>,
}

/// An admitted connection's place under the caps, given back on drop.
#[derive(Debug)]
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    key: Option<IpAddr>,
}

/// A place among the refusals being answered, given back on drop.
#[derive(Debug)]
pub struct ShedSlot {
    counts: Arc<Mutex<Counts>>,
}

impl Caps {
    /// `exempt` peers (the trusted proxies, which carry many clients' connections) count
    /// towards the total only.
    pub fn new(total_max: usize, per_ip_max: usize, exempt: Vec<ipnet::IpNet>) -> Self {
        Self {
            counts: Arc::default(),
            total_max,
            per_ip_max,
            exempt: exempt.into(),
        }
    }

    /// A place for a connection from `peer`, or the cap it is over (counted in
    /// `http_connections_shed_total`).
    pub fn admit(&self, peer: IpAddr) -> Result<Permit, Refusal> {
        let peer = peer.to_canonical();
        let key = (!self.exempt.iter().any(|net| net.contains(&peer))).then(|| ip_key(peer));
        let refusal = {
            let mut counts = self.counts.lock();
            let from_key = key.map_or(0, |key| counts.per_ip.get(&key).copied().unwrap_or(0));
            if counts.total >= self.total_max {
                Some(Refusal::Global)
            } else if from_key >= self.per_ip_max {
                Some(Refusal::PerIp)
            } else {
                if let Some(key) = key {
                    *counts.per_ip.entry(key).or_default() += 1;
                }
                counts.total += 1;
                // Moved by one, not set: every server in the process (tests run several) adds
                // its own connections, and each permit takes back exactly the one it added.
                metrics::gauge!("http_connections_open").increment(1.0);
                None
            }
        };
        match refusal {
            Some(refusal) => {
                metrics::counter!("http_connections_shed_total", "reason" => refusal.label())
                    .increment(1);
                Err(refusal)
            }
            None => Ok(Permit {
                counts: self.counts.clone(),
                key,
            }),
        }
    }

    /// A place to answer one more refusal, while fewer than [`SHEDDING_MAX`] are answered.
    pub fn shed_slot(&self) -> Option<ShedSlot> {
        let mut counts = self.counts.lock();
        (counts.shedding < SHEDDING_MAX).then(|| {
            counts.shedding += 1;
            ShedSlot {
                counts: self.counts.clone(),
            }
        })
    }

    /// Open connections in all, and from `peer`'s address.
    #[cfg(test)]
    fn open(&self, peer: IpAddr) -> (usize, usize) {
        let counts = self.counts.lock();
        let key = ip_key(peer.to_canonical());
        (counts.total, counts.per_ip.get(&key).copied().unwrap_or(0))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(key) = self.key
            && let Some(open) = counts.per_ip.get_mut(&key)
        {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.per_ip.remove(&key);
            }
        }
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

impl Drop for ShedSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        counts.shedding = counts.shedding.saturating_sub(1);
    }
}

/// Answers a refused connection and closes it, within [`SHED_TIME_MAX`]. The request's header
/// is read first (an HTTP client treats an answer that comes before its request as a broken
/// connection); after the answer the write side is shut and the rest read and thrown away
/// until the client closes, since closing a socket with unread bytes would reset it and the
/// client could lose the answer.
pub async fn refuse(mut stream: TcpStream, refusal: Refusal, _slot: ShedSlot) {
    let answer_and_drain = async {
        let mut buffer = [0u8; 4096];
        let mut read = 0;
        let mut tail = [0u8; 3];
        loop {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                return Ok(());
            }
            read += n;
            if ends_header(&mut tail, &buffer[..n]) || read >= SHED_DRAIN_BYTES_MAX {
                break;
            }
        }
        stream.write_all(refusal.answer()).await?;
        stream.shutdown().await?;
        while read < SHED_DRAIN_BYTES_MAX {
            match stream.read(&mut buffer).await? {
                0 => break,
                n => read += n,
            }
        }
        std::io::Result::Ok(())
    };
    // A client that neither sends, reads nor closes only costs the bounded wait.
    let _ = tokio::time::timeout(SHED_TIME_MAX, answer_and_drain).await;
}

/// Whether `chunk`, read after the bytes whose last three are `tail`, completes a header
/// (`\r\n\r\n`); updates `tail`.
fn ends_header(tail: &mut [u8; 3], chunk: &[u8]) -> bool {
    let mut joined = Vec::with_capacity(3 + chunk.len());
    joined.extend_from_slice(tail);
    joined.extend_from_slice(chunk);
    let found = joined.windows(4).any(|w| w == b"\r\n\r\n");
    let keep = joined.len() - 3;
    tail.copy_from_slice(&joined[keep..]);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_per_ip_cap_counts_an_ipv6_64_as_one_address_and_gives_places_back_on_close() {
        let caps = Caps::new(10, 2, Vec::new());
        let first = caps.admit(ip("2001:db8:1:2::1")).unwrap();
        let _second = caps.admit(ip("2001:db8:1:2::ffff")).unwrap();
        assert_eq!(
            caps.admit(ip("2001:db8:1:2:aaaa::9")).unwrap_err(),
            Refusal::PerIp
        );
        let _other = caps.admit(ip("2001:db8:1:3::1")).unwrap();
        assert_eq!(caps.open(ip("2001:db8:1:2::7")), (3, 2));
        drop(first);
        assert_eq!(caps.open(ip("2001:db8:1:2::7")), (2, 1));
        let _again = caps.admit(ip("2001:db8:1:2::1")).unwrap();
    }

    #[test]
    fn the_global_cap_refuses_every_address_once_full() {
        let caps = Caps::new(2, 2, Vec::new());
        let _a = caps.admit(ip("192.0.2.1")).unwrap();
        let b = caps.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(caps.admit(ip("192.0.2.3")).unwrap_err(), Refusal::Global);
        drop(b);
        let _c = caps.admit(ip("192.0.2.3")).unwrap();
        assert_eq!(caps.open(ip("192.0.2.2")), (2, 0));
    }

    #[test]
    fn trusted_proxies_are_exempt_from_the_per_ip_cap_but_not_from_the_total() {
        let caps = Caps::new(3, 1, vec!["10.0.0.0/8".parse().unwrap()]);
        let _a = caps.admit(ip("10.1.2.3")).unwrap();
        let _b = caps.admit(ip("::ffff:10.1.2.3")).unwrap();
        let _c = caps.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(caps.admit(ip("10.1.2.3")).unwrap_err(), Refusal::Global);
        assert_eq!(caps.open(ip("10.1.2.3")), (3, 0));
    }

    #[test]
    fn refusals_answered_at_once_are_bounded() {
        let caps = Caps::new(1, 1, Vec::new());
        let slots: Vec<_> = (0..SHEDDING_MAX)
            .map(|_| caps.shed_slot().unwrap())
            .collect();
        assert!(caps.shed_slot().is_none());
        drop(slots);
        assert!(caps.shed_slot().is_some());
    }

    #[test]
    fn the_end_of_a_header_is_found_across_reads() {
        let mut tail = [0u8; 3];
        assert!(!ends_header(&mut tail, b"GET / HTTP/1.1\r\nHost: x\r"));
        assert!(!ends_header(&mut tail, b"\n"));
        assert!(ends_header(&mut tail, b"\r\n"));
        let mut tail = [0u8; 3];
        assert!(ends_header(&mut tail, b"GET / HTTP/1.1\r\n\r\nbody"));
        let mut tail = [0u8; 3];
        assert!(!ends_header(&mut tail, b"\r\n"));
    }

    #[test]
    fn the_refusal_is_a_complete_503_with_the_error_envelope() {
        for refusal in [Refusal::Global, Refusal::PerIp] {
            let text = std::str::from_utf8(refusal.answer()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
            assert!(head.contains("\r\nconnection: close"));
            assert!(head.contains(&format!("\r\nretry-after: {SHED_RETRY_AFTER_SECS}")));
            assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["error"]["code"], SHED_CODE.as_str());
            assert_eq!(json["error"]["message"], refusal.message());
            assert!(json["error"]["param"].is_null());
        }
    }
}
