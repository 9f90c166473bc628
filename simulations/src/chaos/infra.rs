//! The processes a campaign runs: its own Redis, the `ampflow serve` nodes, and the `ampflow`
//! operator commands. Every child's pid is registered while it lives, so the Ctrl-C handler can
//! kill what the guards' `Drop` would have (a handler exits without unwinding); the guards kill
//! their process on drop, also when a panic unwinds.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::procfs;

/// Children alive now, for the Ctrl-C handler.
static CHILDREN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

pub fn register(pid: u32) {
    if let Ok(mut children) = CHILDREN.lock() {
        children.insert(pid);
    }
}

pub fn unregister(pid: u32) {
    if let Ok(mut children) = CHILDREN.lock() {
        children.remove(&pid);
    }
}

/// For the Ctrl-C handler: SIGCONT (so a paused node is not left stopped if the SIGKILL
/// fails) and SIGKILL every registered child.
pub fn kill_all_children() {
    let pids: Vec<u32> = CHILDREN
        .lock()
        .map(|c| c.iter().copied().collect())
        .unwrap_or_default();
    for pid in pids {
        let _ = signal(pid, "CONT");
        let _ = signal(pid, "KILL");
    }
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The campaign's own redis-server on a free loopback port (never the shared one on 6379),
/// without persistence: a restart starts empty, as a Redis that lost its memory would.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        let mut redis = Self {
            port: free_port()?,
            child: None,
        };
        redis.restart().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it (again) on its port; answers once it takes connections.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn redis-server (is Redis installed?)")?;
        register(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("redis-server did not listen on port {}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            unregister(child.id());
        }
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Error lines a node logged, by message, across its restarts.
pub type ErrorCounts = Arc<Mutex<BTreeMap<String, usize>>>;

/// One `ampflow serve` process, started again after every kill with the same environment;
/// its output is appended to a log file.
pub struct Node {
    pub index: usize,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    child: Option<Child>,
    pub addr: Option<SocketAddr>,
    pub paused: bool,
    pub starts: u32,
    pub peak_rss_kib: u64,
    pub errors: ErrorCounts,
}

impl Node {
    pub fn new(index: usize, binary: &Path, env: Vec<(String, String)>, log_dir: &Path) -> Self {
        Self {
            index,
            binary: binary.to_path_buf(),
            env,
            log_path: log_dir.join(format!("node-{index}.log")),
            child: None,
            addr: None,
            paused: false,
            starts: 0,
            peak_rss_kib: 0,
            errors: Arc::default(),
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process, with `FAILPOINTS` when given; answers once it logged its address.
    pub async fn start(&mut self, failpoints: Option<&str>) -> anyhow::Result<SocketAddr> {
        self.kill();
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AMPFLOW_LISTEN", "127.0.0.1:0")
            .env("AMPFLOW_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(failpoints) = failpoints {
            command.env("FAILPOINTS", failpoints);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        register(child.id());
        self.starts += 1;
        let log = Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .context("open the node's log")?,
        ));
        let (found, listening) = std::sync::mpsc::channel::<SocketAddr>();
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().context("stdout")?),
            Box::new(child.stderr.take().context("stderr")?),
        ];
        for stream in streams {
            let (log, found, errors) = (log.clone(), found.clone(), self.errors.clone());
            std::thread::spawn(move || read_log(stream, &log, &found, &errors));
        }
        let pid = child.id();
        self.child = Some(child);
        self.paused = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(addr) = listening.try_recv() {
                self.addr = Some(addr);
                return Ok(addr);
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                unregister(pid);
                self.child = None;
                bail!(
                    "node {} exited while starting ({status}); see {}",
                    self.index,
                    self.log_path.display()
                );
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("node {} did not start within 60 s", self.index);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL, at whatever it was doing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            unregister(child.id());
        }
        self.addr = None;
        self.paused = false;
    }

    /// SIGSTOP: the process keeps its connections and leases but does nothing.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        let pid = self.pid().context("the node is down")?;
        signal(pid, "STOP")?;
        self.paused = true;
        Ok(())
    }

    pub fn resume(&mut self) -> anyhow::Result<()> {
        let pid = self.pid().context("the node is down")?;
        signal(pid, "CONT")?;
        self.paused = false;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.pid() {
            if self.paused {
                let _ = signal(pid, "CONT");
            }
            let _ = signal(pid, "TERM");
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Some(child) = self.child.as_mut()
                    && let Ok(Some(_)) = child.try_wait()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.kill();
    }

    /// Samples the resident memory; answers it in KiB (0 when down).
    pub fn sample_memory(&mut self) -> u64 {
        let Some(memory) = self.pid().and_then(procfs::memory_of) else {
            return 0;
        };
        self.peak_rss_kib = self.peak_rss_kib.max(memory.rss_kib).max(memory.peak_kib);
        memory.rss_kib
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_log(
    stream: Box<dyn std::io::Read + Send>,
    log: &Mutex<std::fs::File>,
    found: &std::sync::mpsc::Sender<SocketAddr>,
    errors: &ErrorCounts,
) {
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        if let Ok(mut file) = log.lock() {
            let _ = writeln!(file, "{line}");
        }
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            // A panic's message is not JSON.
            if line.contains("panicked at")
                && let Ok(mut errors) = errors.lock()
            {
                *errors.entry(format!("panic: {line}")).or_default() += 1;
            }
            continue;
        };
        if value["message"] == "listening"
            && let Some(addr) = value["addr"].as_str().and_then(|a| a.parse().ok())
        {
            let _ = found.send(addr);
        }
        if value["level"] == "ERROR"
            && let Ok(mut errors) = errors.lock()
        {
            let message = value["message"].as_str().unwrap_or("?").to_string();
            *errors.entry(message).or_default() += 1;
        }
    }
}

/// Runs an `ampflow` operator command with `env` (and no other variables); answers its
/// stdout, or an error with its output.
pub fn ampflow(
    binary: &Path,
    env: &[(String, String)],
    args: &[&str],
    stdin_text: Option<&str>,
) -> anyhow::Result<String> {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if stdin_text.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("spawn {}", binary.display()))?;
    let pid = child.id();
    register(pid);
    if let (Some(text), Some(mut stdin)) = (stdin_text, child.stdin.take()) {
        let _ = writeln!(stdin, "{text}");
    }
    let output = child.wait_with_output();
    unregister(pid);
    let output = output.context("wait for ampflow")?;
    if !output.status.success() {
        bail!(
            "ampflow {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}
