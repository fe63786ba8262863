//! Fencing and paused writes: pure decisions (sans-IO), driven by the runtime with `now`.
//!
//! DESIGN §4 rule 5 and §9 (fencing budget): a primary that has a standby
//! (`fence_after_seconds = Some(s)`) is fenced when the agent has heard neither the coordinator
//! leader nor any replica for `s` seconds. Both are timestamps of the agent's own clock: the last
//! message of the coordinator session (the leader sends a heartbeat every 500 ms while a quorum
//! of its peers answers it), and the last bytes a replica's tunnel sent (a replica sends
//! `REPLCONF ACK` every second). So an isolated primary stops taking writes `s` seconds after the
//! last word from either side (2 s by default), not after timeouts have noticed the loss.
//!
//! Once fenced, a primary stays fenced until the coordinator is heard again after the fence: a
//! replica that reconnects does not lift it, because the coordinators may be promoting that very
//! standby with evidence a few seconds old, and the old primary cannot know (found by the
//! simulation: with the fence lifted by a reconnecting replica, the old primary took writes next
//! to the newly promoted one). The session drops a silent coordinator before any fence can fall
//! (`report::SILENT_SESSION` < the smallest `fence_after`), so what lifts a fence is always the
//! first message of a new session: the desired state as of now, applied before it counts as
//! heard. Instances with `fence_after_seconds = None` are never fenced. Why these timings: decision
//! 0007.
//!
//! One exception to the clock: a primary whose spec comes from the local cache (the agent
//! restarted and the coordinator has not answered since) is fenced at once when no replica was
//! heard within `s`: the agent cannot know how long it has already been cut off, and a host
//! returning after a failover must never serve its stale data as primary.
//!
//! Another: a primary whose engine started from disk after its host rebooted (`after_reboot`) is
//! fenced whatever the coordinator: with `appendfsync everysec` its AOF may miss the last second
//! of writes that its standby acknowledged (WAIT), and a standby resyncing from it would discard
//! them. The coordinator answers with a failover to the standby, or, with no standby in sync, a
//! higher epoch for the same primary (found by kvs-sim: bug C).
//!
//! ```text
//!   now, coordinator last heard, [FenceInput] ──Fencing::update──► fenced set
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
    /// When a replica was last heard (bytes from its replication tunnel), on the agent's clock;
    /// `None`: not since the agent started.
    pub replica_heard: Option<Duration>,
    /// The spec comes from the local cache, not (yet) from the coordinator.
    pub from_cache: bool,
    /// The engine started from disk after its host rebooted, at the epoch it still has: its AOF
    /// may miss the last second of writes its standby acknowledged. Fenced (clients and the
    /// standby's resync refused) until the coordinator fails over or raises the epoch.
    pub after_reboot: bool,
}

/// Which primaries are fenced (since when) and when the exposed ones are due.
#[derive(Debug, Clone, Default)]
pub struct Fencing {
    /// instance → when it is due to be fenced, for the primaries not fenced yet.
    deadlines: BTreeMap<String, Duration>,
    /// instance → when it was fenced.
    fenced_at: BTreeMap<String, Duration>,
    fenced: BTreeSet<String>,
}

/// `heard` is `after` ago or more; never heard counts from the agent's start (`now` is the time
/// since then), so an agent that just started with its desired state does not fence before the
/// first heartbeat is counted. (A spec from the local cache is the exception: `from_cache`.)
fn silent(now: Duration, heard: Option<Duration>, after: Duration) -> bool {
    now.saturating_sub(heard.unwrap_or_default()) >= after
}

impl Fencing {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides with the evidence at `now` (`coordinator_heard`: the last message of the
    /// coordinator session, `None` if none this run) and returns the fenced instances.
    /// Instances not in `inputs` are forgotten (not fenced).
    pub fn update(
        &mut self,
        now: Duration,
        coordinator_heard: Option<Duration>,
        inputs: impl IntoIterator<Item = FenceInput>,
    ) -> &BTreeSet<String> {
        let mut deadlines = BTreeMap::new();
        let mut fenced_at = BTreeMap::new();
        for input in inputs {
            let Some(after) = input.fence_after else {
                continue;
            };
            if input.after_reboot {
                fenced_at.insert(input.instance, now);
                continue;
            }
            if let Some(&at) = self.fenced_at.get(&input.instance)
                && coordinator_heard.is_none_or(|heard| heard <= at)
            {
                fenced_at.insert(input.instance, at); // only the coordinator lifts a fence
                continue;
            }
            let coordinator_silent = silent(now, coordinator_heard, after);
            let replica_silent = silent(now, input.replica_heard, after);
            if coordinator_silent && replica_silent {
                fenced_at.insert(input.instance, now);
            } else if input.from_cache
                && input
                    .replica_heard
                    .is_none_or(|at| now.saturating_sub(at) >= after)
            {
                // A cached spec: no replica heard (ever, or for `after`) fences at once.
                fenced_at.insert(input.instance, now);
            } else {
                let last_word = coordinator_heard
                    .max(input.replica_heard)
                    .unwrap_or_default();
                deadlines.insert(input.instance, last_word + after);
            }
        }
        self.fenced = fenced_at.keys().cloned().collect();
        self.fenced_at = fenced_at;
        self.deadlines = deadlines;
        &self.fenced
    }

    /// The fenced instances as of the last `update`.
    pub fn fenced(&self) -> &BTreeSet<String> {
        &self.fenced
    }

    /// When the next exposed primary is due to be fenced (if nothing is heard meanwhile), for
    /// the shell's timer.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.deadlines.values().min().copied()
    }
}
