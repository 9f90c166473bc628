//! What happened, when: every fault as it was applied and lifted, each phase of the run and
//! anything surprising, with the time since the campaign started. Printed as it happens and
//! written to the timeline file at the end.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines kept; a longer run keeps its first lines and counts the rest.
const LINES_MAX: usize = 100_000;

pub struct Timeline {
    start: Instant,
    lines: Mutex<Vec<String>>,
    echo: bool,
}

impl Timeline {
    pub fn new(echo: bool) -> Self {
        Self {
            start: Instant::now(),
            lines: Mutex::new(Vec::new()),
            echo,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// One line: `[  12.345 s] kind  text`.
    pub fn record(&self, kind: &str, text: impl std::fmt::Display) {
        let line = format!(
            "[{:>9.3} s] {kind:<9} {text}",
            self.start.elapsed().as_secs_f64()
        );
        if self.echo {
            println!("{line}");
        }
        if let Ok(mut lines) = self.lines.lock()
            && lines.len() < LINES_MAX
        {
            lines.push(line);
        }
    }

    /// Writes every line (and a header) to `path`, creating its folder.
    pub fn write(&self, path: &Path, header: &str) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let lines = self.lines.lock().map(|l| l.join("\n")).unwrap_or_default();
        std::fs::write(path, format!("{header}\n{lines}\n"))?;
        Ok(())
    }
}
