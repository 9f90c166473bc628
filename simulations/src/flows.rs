//! Steps several benchmarks share: fresh wallet keys from a seed, a login through the real
//! API, and running N jobs over a bounded number of keep-alive connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, ensure};
use hyper::{Method, StatusCode};
use rand::RngCore;
use serde_json::{Value, json};

use crate::client::Connection;

/// A fresh key from the seeded generator.
pub fn wallet(rng: &mut impl RngCore) -> PrivateKeySigner {
    loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        if let Ok(signer) = PrivateKeySigner::from_slice(&bytes) {
            return signer;
        }
    }
}

/// `/authorize` → personal_sign → `/authorize/jwt`; answers the access token.
pub async fn login(
    connection: &mut Connection,
    signer: &PrivateKeySigner,
) -> anyhow::Result<String> {
    let address = format!("{:#x}", signer.address());
    let (status, body) = connection
        .request(
            Method::POST,
            "/authorize",
            Some(json!({"address": address}).to_string()),
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK, "/authorize answered {status}");
    let payload: Value = serde_json::from_slice(&body)?;
    let message = payload["payload"].as_str().context("payload")?;
    let signature = signer.sign_message_sync(message.as_bytes())?;
    let signed = alloy::hex::encode_prefixed(signature.as_bytes());
    let (status, body) = connection
        .request(
            Method::POST,
            "/authorize/jwt",
            Some(json!({"address": address, "signed_payload": signed}).to_string()),
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK, "/authorize/jwt answered {status}");
    let tokens: Value = serde_json::from_slice(&body)?;
    Ok(tokens["access_token"]
        .as_str()
        .context("access_token")?
        .to_string())
}

/// Runs `job(connection, i)` for every `i < n`, at most `concurrency` at once, each worker on
/// one keep-alive connection. The first error fails the whole run. Answers the results in
/// order of `i`.
pub async fn bounded<T, F, Fut>(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    job: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(Connection, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<(Connection, T)>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.clamp(1, n.max(1)))
        .map(|_| {
            let (job, next) = (job.clone(), next.clone());
            tokio::spawn(async move {
                let mut connection = Connection::open(addr).await?;
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let (back, value) = job(connection, i).await?;
                    connection = back;
                    done.push((i, value));
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for worker in workers {
        for (i, value) in worker.await?? {
            results[i] = Some(value);
        }
    }
    results
        .into_iter()
        .map(|r| r.context("a job did not run"))
        .collect()
}
