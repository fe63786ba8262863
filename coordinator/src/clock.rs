//! The coordinator's one seam for time: a monotonic `now` (tokio's clock, which tests and the
//! simulation can pause and advance) and wall-clock Unix milliseconds for timestamps that are
//! stored in commands and shown to people. Nothing else in the coordinator reads a clock.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Clock {
    start: tokio::time::Instant,
    /// Simulated wall clock: Unix milliseconds at `start` (`None`: the OS's wall clock).
    wall_at_start_ms: Option<i64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            wall_at_start_ms: None,
        }
    }

    /// A clock whose wall time is `wall_at_start_ms` now and advances with tokio's clock (the
    /// simulation: turmoil simulates tokio's clock, not the OS's).
    pub fn simulated(wall_at_start_ms: i64) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            wall_at_start_ms: Some(wall_at_start_ms),
        }
    }

    /// Monotonic time since this clock was made.
    pub fn now(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.start)
    }

    /// Wall-clock time, Unix milliseconds.
    #[allow(clippy::disallowed_methods)] // the one place wall time is read
    pub fn now_ms(&self) -> i64 {
        if let Some(base) = self.wall_at_start_ms {
            return base.saturating_add(i64::try_from(self.now().as_millis()).unwrap_or(i64::MAX));
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}
