//! The coordinator's one seam for time: a monotonic `now` (tokio's clock, which tests and the
//! simulation can pause and advance) and wall-clock Unix milliseconds for timestamps that are
//! stored in commands and shown to people. Nothing else in the coordinator reads a clock.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Clock {
    start: tokio::time::Instant,
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
        }
    }

    /// Monotonic time since this clock was made.
    pub fn now(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.start)
    }

    /// Wall-clock time, Unix milliseconds.
    #[allow(clippy::disallowed_methods)] // the one place wall time is read
    pub fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}
