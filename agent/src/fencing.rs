//! Fencing and paused writes: pure decisions (sans-IO), driven by the runtime with `now`.
//!
//! DESIGN §4 rule 5: a primary that has a standby (`fence_after_seconds = Some(s)`) is fenced
//! once, for `s` seconds without a break, the agent has had no coordinator session AND the
//! engine has had no replica connected (`connected_slaves == 0`). Any moment with either (a blip
//! of the coordinator session, a replica reconnecting) resets the clock, and unfences at once.
//! Instances with `fence_after_seconds = None` are never fenced.
//!
//! One exception to the clock: a primary whose spec comes from the local cache (the agent
//! restarted and the coordinator has not answered since) is fenced while it has no replica: the
//! agent cannot know how long it has already been cut off, and a host returning after a failover
//! must never serve its stale data as primary.
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
}

/// When each exposed primary lost both links.
#[derive(Debug, Clone, Default)]
pub struct Fencing {
    /// instance → (exposed since, fence after).
    exposed: BTreeMap<String, (Duration, Duration)>,
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
        for input in inputs {
            let Some(after) = input.fence_after else {
                continue;
            };
            if coordinator_connected || input.replica_connected {
                continue;
            }
            let since = self
                .exposed
                .get(&input.instance)
                .map_or(now, |(since, _)| *since);
            if input.from_cache || now.saturating_sub(since) >= after {
                fenced.insert(input.instance.clone());
            }
            exposed.insert(input.instance, (since, after));
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
        self.exposed
            .iter()
            .filter(|(name, _)| !self.fenced.contains(*name))
            .map(|(_, (since, after))| *since + *after)
            .min()
    }
}
