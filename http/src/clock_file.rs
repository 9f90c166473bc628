//! A clock the fault campaign can step: the system clock moved by an offset in milliseconds
//! read from a file, re-read every 20 ms. Compiled only into builds with the `failpoints`
//! feature (never into one that is shipped); `ampflow` uses it when
//! `AMPFLOW_TEST_CLOCK_FILE` names such a file, and the system clock otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ampflow_types::{Clock, SystemClock, UnixMillis};

/// How often the file is read again.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct FileClock {
    offset_ms: Arc<AtomicI64>,
}

impl FileClock {
    /// Reads `path` now (it must hold an integer) and again every 20 ms on a thread of its own
    /// that ends with the clock. A read that fails or does not parse keeps the last offset
    /// (the campaign replaces the file by a rename, so a reader never sees half of it).
    pub fn watch(path: PathBuf) -> anyhow::Result<Self> {
        let offset_ms = Arc::new(AtomicI64::new(read(&path)?));
        let weak = Arc::downgrade(&offset_ms);
        std::thread::Builder::new()
            .name("clock-file".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(POLL);
                    let Some(offset_ms) = weak.upgrade() else {
                        return;
                    };
                    if let Ok(value) = read(&path) {
                        let before = offset_ms.swap(value, Ordering::Relaxed);
                        if before != value {
                            tracing::warn!(
                                from_ms = before,
                                to_ms = value,
                                "the test clock's offset was stepped"
                            );
                        }
                    }
                }
            })?;
        Ok(Self { offset_ms })
    }
}

fn read(path: &Path) -> anyhow::Result<i64> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("read the test clock file {}: {e}", path.display()))?;
    text.trim().parse().map_err(|e| {
        anyhow::anyhow!(
            "the test clock file {} must hold an offset in milliseconds: {e}",
            path.display()
        )
    })
}

impl Clock for FileClock {
    fn now_ms(&self) -> UnixMillis {
        SystemClock
            .now_ms()
            .saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_follows_the_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("clock");
        std::fs::write(&path, "86400000\n")?;
        let clock = FileClock::watch(path.clone())?;
        let ahead = clock.now_ms() - SystemClock.now_ms();
        assert!((86_399_000..=86_401_000).contains(&ahead), "{ahead}");

        std::fs::write(&path, "-5000")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let behind = clock.now_ms() - SystemClock.now_ms();
            if (-6_000..=-4_000).contains(&behind) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still {behind}");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Garbage keeps the last offset.
        std::fs::write(&path, "soon")?;
        std::thread::sleep(POLL * 3);
        let behind = clock.now_ms() - SystemClock.now_ms();
        assert!((-6_000..=-4_000).contains(&behind), "{behind}");
        Ok(())
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(FileClock::watch(PathBuf::from("/nonexistent/ampflow-clock")).is_err());
    }
}
