//! The restart policy: how often and how fast a crashed engine is restarted (DESIGN §4 rule 1).
//! Pure arithmetic on durations; the supervisor applies it.

use std::time::Duration;

/// How crashed engines are restarted. Limits with their defaults and rationale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `budget_window` (default 5: a real crash loop is obvious by then).
    pub budget_max: u32,
    /// Sliding window of the budget (default 60 s).
    pub budget_window: Duration,
    /// Delay of the second restart in a window (the first is immediate); doubles (default 0.5 s).
    pub backoff_min: Duration,
    /// Cap on the doubling (default 8 s).
    pub backoff_max: Duration,
    /// When crash-looping, try again after this long (default 5 min).
    pub crash_loop_retry_interval: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            budget_max: 5,
            budget_window: Duration::from_secs(60),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            crash_loop_retry_interval: Duration::from_secs(300),
        }
    }
}

impl RestartPolicy {
    /// Delay before the restart that follows `recent` restarts in the window: 0, min, 2·min, …
    pub fn backoff(&self, recent: usize) -> Duration {
        if recent == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32
            .checked_shl(u32::try_from(recent - 1).unwrap_or(u32::MAX))
            .unwrap_or(u32::MAX);
        self.backoff_min
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}
