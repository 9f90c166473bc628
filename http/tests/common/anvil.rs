//! A real anvil node from the npm package `@foundry-rs/anvil` (installed by
//! `scripts/install-evm-tools`), on a free loopback port, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::providers::{Provider, ProviderBuilder};

/// anvil's first development account (funded with 10,000 ETH on every start).
pub const DEV_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub const CHAIN_ID: ampflow_types::ChainId = ampflow_types::ChainId::new(31337);

pub struct Anvil {
    child: Child,
    pub url: String,
    pub port: u16,
}

pub fn anvil_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = root.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        binary.exists(),
        "anvil is not installed at {}: run scripts/install-evm-tools",
        binary.display()
    );
    binary
}

impl Anvil {
    pub async fn start() -> Self {
        for _ in 0..5 {
            let port = free_port();
            if let Some(anvil) = Self::start_on(port).await {
                return anvil;
            }
        }
        panic!("anvil did not start");
    }

    /// Starts anvil on `port`; `None` if it did not answer in time (e.g. the port was taken).
    pub async fn start_on(port: u16) -> Option<Self> {
        let child = Command::new(anvil_binary())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn anvil");
        let url = format!("http://127.0.0.1:{port}");
        let mut anvil = Self { child, url, port };
        let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = anvil.child.try_wait() {
                return None;
            }
            if provider.get_chain_id().await.is_ok() {
                return Some(anvil);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anvil.stop();
        None
    }

    /// Freezes the node (SIGSTOP): connections hang, as with a node that stopped answering.
    pub fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Thaws a paused node (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}
