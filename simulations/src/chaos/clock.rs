//! The run's clocks. Every node, every operator command and the Stripe stand-in run on the
//! machine's clock moved forward by one base offset, chosen so that midnight UTC falls about
//! 40 % into the workload: the day before it ends during the run, and the nodes' checkpoint
//! job (and `ampflow ledger checkpoint`) build that day's checkpoint over entries the run
//! made. A clock-step fault moves one node's clock further, either way, for a while.
//!
//! A node reads its offset from a file of its own (`AMPFLOW_TEST_CLOCK_FILE`, honoured only
//! by an `ampflow` built with the `failpoints` feature); files are replaced by a rename, so
//! a node never reads half of one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Context;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

pub struct Clocks {
    dir: PathBuf,
    nodes: usize,
    base_ms: AtomicI64,
    /// The run's midnight UTC, in the run's time (0 until aimed).
    midnight_ms: AtomicI64,
}

impl Clocks {
    /// Every clock file, at offset 0.
    pub fn new(dir: &Path, nodes: usize) -> anyhow::Result<Self> {
        let clocks = Self {
            dir: dir.to_path_buf(),
            nodes,
            base_ms: AtomicI64::new(0),
            midnight_ms: AtomicI64::new(0),
        };
        clocks.write_all(0)?;
        Ok(clocks)
    }

    pub fn node_file(&self, node: usize) -> PathBuf {
        self.dir.join(format!("clock-node-{node}"))
    }

    /// The operator commands' clock (always the base).
    pub fn operator_file(&self) -> PathBuf {
        self.dir.join("clock-operator")
    }

    /// Moves every clock (the nodes', the commands', the Stripe stand-in's) to `base_ms`
    /// ahead of the machine's.
    pub fn set_base(&self, base_ms: i64) -> anyhow::Result<()> {
        self.base_ms.store(base_ms, Ordering::Relaxed);
        ampflow_standins::stripe::set_clock_offset_secs(base_ms.div_euclid(1000));
        self.write_all(base_ms)
    }

    /// Sets the base so that the run's clock reaches midnight UTC `lead` from now; answers
    /// that midnight (Unix milliseconds).
    pub fn aim_midnight(&self, lead: std::time::Duration) -> anyhow::Result<i64> {
        let now = chrono::Utc::now().timestamp_millis();
        let lead_ms = lead.as_millis() as i64;
        let base = base_for_midnight(now, lead_ms);
        self.set_base(base)?;
        let midnight = now + lead_ms + base;
        self.midnight_ms.store(midnight, Ordering::Relaxed);
        Ok(midnight)
    }

    pub fn midnight_ms(&self) -> i64 {
        self.midnight_ms.load(Ordering::Relaxed)
    }

    pub fn base_ms(&self) -> i64 {
        self.base_ms.load(Ordering::Relaxed)
    }

    /// Node `node`'s clock `step_ms` away from the others' (0 puts it back).
    pub fn step(&self, node: usize, step_ms: i64) -> anyhow::Result<()> {
        write(&self.node_file(node), self.base_ms() + step_ms)
    }

    /// The run's time (the base, without any node's step).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::TimeDelta::milliseconds(self.base_ms())
    }

    fn write_all(&self, offset_ms: i64) -> anyhow::Result<()> {
        for node in 0..self.nodes {
            write(&self.node_file(node), offset_ms)?;
        }
        write(&self.operator_file(), offset_ms)
    }
}

fn write(path: &Path, offset_ms: i64) -> anyhow::Result<()> {
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, format!("{offset_ms}\n"))
        .with_context(|| format!("write {}", fresh.display()))?;
    std::fs::rename(&fresh, path).with_context(|| format!("replace {}", path.display()))
}

/// The offset that puts midnight UTC `lead_ms` after `now_ms` (at or after; never negative).
pub fn base_for_midnight(now_ms: i64, lead_ms: i64) -> i64 {
    let at = now_ms + lead_ms;
    let midnight = (at.div_euclid(DAY_MS) + 1) * DAY_MS;
    midnight - at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midnight_lands_lead_after_now() {
        let now = 1_796_000_000_123;
        for lead in [0, 30_000, 600_000, DAY_MS - 1] {
            let base = base_for_midnight(now, lead);
            assert!((1..=DAY_MS).contains(&base), "{base}");
            assert_eq!((now + lead + base).rem_euclid(DAY_MS), 0);
        }
    }

    #[test]
    fn a_step_moves_one_node_from_the_base() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let clocks = Clocks::new(dir.path(), 2)?;
        clocks.set_base(5_000)?;
        clocks.step(1, -2_500)?;
        let read = |p: PathBuf| std::fs::read_to_string(p).map(|t| t.trim().to_string());
        assert_eq!(read(clocks.node_file(0))?, "5000");
        assert_eq!(read(clocks.node_file(1))?, "2500");
        assert_eq!(read(clocks.operator_file())?, "5000");
        ampflow_standins::stripe::set_clock_offset_secs(0);
        Ok(())
    }
}
