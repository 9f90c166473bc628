//! The process's own memory, from `/proc/self/status` (Linux).

/// Resident set size now and at its peak, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

/// `VmRSS` and `VmHWM` of this process; zeros where `/proc` is not available.
pub fn memory() -> Memory {
    read_memory("/proc/self/status").unwrap_or_default()
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them ("" elsewhere): other
/// work on the machine shows in wall times.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `VmRSS` and `VmHWM` of another process (a node the campaign runs); `None` once it is gone.
pub fn memory_of(pid: u32) -> Option<Memory> {
    read_memory(&format!("/proc/{pid}/status"))
}

/// `VmRSS` and `VmHWM` from a `/proc/<pid>/status` file; `None` when it cannot be read.
fn read_memory(path: &str) -> Option<Memory> {
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Some(Memory {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
    })
}
