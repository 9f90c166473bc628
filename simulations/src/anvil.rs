//! A real anvil node from the npm package `@foundry-rs/anvil` (installed by
//! `scripts/install-evm-tools anvil`), on a free loopback port, killed when dropped, so a
//! benchmark that fails half-way leaves no node behind. It mirrors the tests' harness
//! (`http/tests/common/anvil.rs`), with errors instead of panics.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::providers::{Provider, ProviderBuilder};
use anyhow::{Context, bail};

/// anvil's first development account (10,000 ETH on every start).
pub const DEV_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub const CHAIN_ID: ampflow_types::ChainId = ampflow_types::ChainId::new(31337);

pub struct Anvil {
    child: Child,
    pub url: String,
    pub port: u16,
}

pub fn anvil_binary() -> anyhow::Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = root.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if !binary.exists() {
        bail!(
            "anvil is not installed at {}: run scripts/install-evm-tools anvil",
            binary.display()
        );
    }
    Ok(binary)
}

impl Anvil {
    /// Starts anvil on a free loopback port (a few tries, in case the port is taken between
    /// picking it and anvil binding it).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// As [`start`](Self::start), with more command-line arguments (e.g. `--block-time`).
    pub async fn start_with(extra_args: &[&str]) -> anyhow::Result<Self> {
        let binary = anvil_binary()?;
        for _ in 0..5 {
            let port = free_port()?;
            if let Some(anvil) = Self::start_on(&binary, port, extra_args).await? {
                return Ok(anvil);
            }
        }
        bail!("anvil did not start")
    }

    /// Starts anvil on `port`; `None` if it did not answer in time (e.g. the port was taken).
    async fn start_on(
        binary: &PathBuf,
        port: u16,
        extra_args: &[&str],
    ) -> anyhow::Result<Option<Self>> {
        let child = Command::new(binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn anvil")?;
        let url = format!("http://127.0.0.1:{port}");
        // From here on the guard owns the process: any early return kills it.
        let mut anvil = Self { child, url, port };
        let provider = ProviderBuilder::new().connect_http(anvil.url.parse()?);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = anvil.child.try_wait() {
                return Ok(None);
            }
            if provider.get_chain_id().await.is_ok() {
                return Ok(Some(anvil));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anvil.stop();
        Ok(None)
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
