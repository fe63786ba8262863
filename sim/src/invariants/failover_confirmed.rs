//! Invariant 2: no automatic failover unless, for the whole confirmation window before it, the
//! primary's host was unreachable from every vantage point, its agent silent, and every standby's
//! replication link to it down.
//!
//! Rationale (DESIGN.md §4 rule 3): a failover of a primary that is still alive creates two
//! primaries or loses writes; the three independent kinds of evidence and the window are what
//! separate "host dead" from "network blip". Judged on ground truth, not on what the leader
//! believed: a probe counts if it reached the host and its result reached the leader (vantage
//! points cut off from the leader do not count, by design: `leader.rs` leaves them out so a zone
//! outage can still fail over); the agent counts as heard if one of its reports reached the
//! leader; a link counts as up if the replica was replicating. The window is the nominal one,
//! so `--break window-zero` is judged by the real rule. A replication link only becomes evidence
//! through the standby's report, so links younger than the report delay are not held against
//! the leader (they could not have reached it yet). Planned switchovers, crash-loop failovers
//! (invariant 3 covers them) and failovers away from a primary restarted after a host reboot
//! (fenced by its agent until then; the host must really have rebooted) follow their own rules.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use super::{Invariant, is_crash_loop_failover, is_reboot_failover, unplanned_failovers};
use crate::world::World;

/// The evidence of one tick.
struct Seen {
    at: Duration,
    reached: BTreeSet<String>,
    reported: BTreeSet<String>,
    /// (instance, upstream host) pairs with a replica replicating.
    links: BTreeSet<(String, String)>,
}

#[derive(Default)]
pub struct FailoverConfirmed {
    history: VecDeque<Seen>,
}

impl Invariant for FailoverConfirmed {
    fn name(&self) -> &'static str {
        "failover-needs-confirmation"
    }

    fn check(&mut self, world: &World) -> Result<(), String> {
        let window = world.nominal.confirmation_window;
        let now = world.now;
        let facts = &world.facts;
        self.history.push_back(Seen {
            at: now,
            reached: facts.probes_succeeded.clone(),
            reported: facts.reports_delivered.clone(),
            links: facts
                .links_established
                .iter()
                .map(|(instance, _, upstream)| (instance.clone(), upstream.clone()))
                .collect(),
        });
        while self
            .history
            .front()
            .is_some_and(|s| s.at + window <= now && s.at < now)
        {
            self.history.pop_front();
        }
        for (instance, primary, reason) in unplanned_failovers(world) {
            if is_crash_loop_failover(&reason) {
                continue;
            }
            if is_reboot_failover(&reason) {
                // The old primary is fenced by its agent, so there is no second writer; it must
                // really have restarted after a reboot.
                let rebooted = world
                    .engines
                    .get(&(primary.clone(), instance.clone()))
                    .is_some_and(|e| e.after_reboot_epoch.is_some());
                if !rebooted {
                    return Err(format!(
                        "reboot failover of {instance} away from {primary}, whose host did not \
                         reboot"
                    ));
                }
                continue;
            }
            for seen in &self.history {
                let ago = now.saturating_sub(seen.at).as_secs();
                let why = if seen.reached.contains(&primary) {
                    "a vantage point reached it"
                } else if seen.reported.contains(&primary) {
                    "its agent's report reached the leader"
                } else if seen.at + world.report_delay <= now
                    && seen.links.contains(&(instance.clone(), primary.clone()))
                {
                    "a standby was replicating from it"
                } else {
                    continue;
                };
                return Err(format!(
                    "failover of {instance} away from {primary}, but {ago} s earlier (inside the \
                     {} s window) {why}",
                    window.as_secs()
                ));
            }
        }
        Ok(())
    }
}
