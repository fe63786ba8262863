//! The agent's one wall-clock read: Unix milliseconds for `Observed.at_ms` (informational; the
//! coordinator uses its own clock). Everything else uses tokio's clock or takes `now` as input.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
// The Clock seam: the only place wall time enters the agent (clippy bans it elsewhere).
#[allow(clippy::disallowed_methods)]
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
