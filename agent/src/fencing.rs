//! Fencing and paused writes: pure decisions (sans-IO), driven by the runtime with `now`.
//!
//! DESIGN §4 rule 5: a primary that has a standby (`fence_after_seconds = Some(s)`) is fenced
//! when the agent has had no coordinator session for `s` seconds without a break AND the engine
//! has no replica connected (`connected_slaves == 0`). The clock is the coordinator's absence
//! only: a replica that stays connected keeps the primary serving, but does not restart the clock.
//! Once fenced, a primary stays fenced until the coordinator session is back; a replica that
//! reconnects does not lift the fence, because the coordinators may be promoting that very
//! standby with evidence a few seconds old, and the old primary cannot know. A coordinator
//! session resets the clock and unfences at once. (Found by the simulation: with the fence lifted
//! by a reconnecting replica, the old primary took writes next to the newly promoted one.)
//! Instances with `fence_after_seconds = None` are never fenced.
//!
//! One exception to the clock: a primary whose spec comes from the local cache (the agent
//! restarted and the coordinator has not answered since) is fenced at once when it has no replica: the
//! agent cannot know how long it has already been cut off, and a host returning after a failover
//! must never serve its stale data as primary.
//!
//! Another: a primary whose engine started from disk after its host rebooted (`after_reboot`) is
//! fenced whatever the coordinator: with `appendfsync everysec` its AOF may miss the last second
//! of writes that its standby acknowledged (WAIT), and a standby resyncing from it would discard
//! them. The coordinator answers with a failover to the standby, or, with no standby in sync, a
//! higher epoch for the same primary (found by kvs-sim: bug C).
//!
//! ```text
//!   now, coordinator_connected, [FenceInput] ──Fencing::update──► fenced set
//!   fenced set + pause_writes + live engines ──WritePauses::poll──► [CLIENT PAUSE / UNPAUSE]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

mod pause;
#[cfg(test)]
mod tests;

pub use pause::{PauseCommand, PauseInput, PauseOrder, PauseReason, WritePauses};

/// One primary's evidence at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceInput {
    pub instance: String,
    /// `fence_after_seconds` of its desired spec; `None`: never fence.
    pub fence_after: Option<Duration>,
    /// INFO `connected_slaves > 0` (last known).
    pub replica_connected: bool,
    /// The spec comes from the local cache, not (yet) from the coordinator.
    pub from_cache: bool,
    /// The engine started from disk after its host rebooted, at the epoch it still has: its AOF
    /// may miss the last second of writes its standby acknowledged. Fenced (clients and the
    /// standby's resync refused) until the coordinator fails over or raises the epoch.
    pub after_reboot: bool,
}

/// Since when the coordinator session is gone, and which primaries are exposed and fenced.
#[derive(Debug, Clone, Default)]
pub struct Fencing {
    /// When the coordinator session was last lost (`None` while connected).
    coordinator_lost_since: Option<Duration>,
    /// instance → fence after, for the primaries without a replica right now.
    exposed: BTreeMap<String, Duration>,
    fenced: BTreeSet<String>,
}

impl Fencing {
    pub fn new() -> Self {
        Self::default()
    }

    /// Updates the clocks with the evidence at `now` and returns the fenced instances. Instances
    /// not in `inputs` are forgotten (not fenced).
    pub fn update(
        &mut self,
        now: Duration,
        coordinator_connected: bool,
        inputs: impl IntoIterator<Item = FenceInput>,
    ) -> &BTreeSet<String> {
        let mut exposed = BTreeMap::new();
        let mut fenced = BTreeSet::new();
        self.coordinator_lost_since = if coordinator_connected {
            None
        } else {
            Some(self.coordinator_lost_since.unwrap_or(now))
        };
        let lost_since = self.coordinator_lost_since;
        for input in inputs {
            if input.after_reboot && input.fence_after.is_some() {
                fenced.insert(input.instance.clone());
                continue;
            }
            let (Some(after), Some(since)) = (input.fence_after, lost_since) else {
                continue;
            };
            if self.fenced.contains(&input.instance) {
                fenced.insert(input.instance.clone()); // only the coordinator lifts a fence
                continue;
            }
            if input.replica_connected {
                continue;
            }
            if input.from_cache || now.saturating_sub(since) >= after {
                fenced.insert(input.instance.clone());
            }
            exposed.insert(input.instance, after);
        }
        self.exposed = exposed;
        self.fenced = fenced;
        &self.fenced
    }

    /// The fenced instances as of the last `update`.
    pub fn fenced(&self) -> &BTreeSet<String> {
        &self.fenced
    }

    /// When the next exposed primary is due to be fenced, for the shell's timer.
    pub fn next_deadline(&self) -> Option<Duration> {
        let since = self.coordinator_lost_since?;
        self.exposed
            .iter()
            .filter(|(name, _)| !self.fenced.contains(*name))
            .map(|(_, after)| since + *after)
            .min()
    }
}
