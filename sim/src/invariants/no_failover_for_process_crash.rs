//! Invariant 3: no failover when only an engine or an agent crashed.
//!
//! Rationale (DESIGN.md §4 rules 1 and 2): an engine crash is fixed by the agent restarting it in
//! place from its AOF, a dead agent by restarting it over SSH; failing over instead loses the
//! writes in flight and churns URLs for nothing. So an unplanned failover needs a host or
//! network fault on the primary's host (off, or cut from some coordinator, host or the clients)
//! at some point inside the window before it; the exceptions: a crash-loop failover needs the
//! engine to really be crash-looping (the agent's restart budget exhausted) when it begins, and a
//! reboot failover (which may wait for a standby that was down too) needs the engine to really
//! have restarted after a host reboot.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use super::{Invariant, is_crash_loop_failover, is_reboot_failover, unplanned_failovers};
use crate::world::World;

#[derive(Default)]
pub struct NoFailoverForProcessCrash {
    /// (tick, hosts disturbed by a host or network fault).
    history: VecDeque<(Duration, BTreeSet<String>)>,
}

impl Invariant for NoFailoverForProcessCrash {
    fn name(&self) -> &'static str {
        "no-failover-for-process-crash"
    }

    fn check(&mut self, world: &World) -> Result<(), String> {
        let window = world.nominal.confirmation_window;
        let now = world.now;
        self.history
            .push_back((now, world.facts.disturbed_hosts.clone()));
        while self
            .history
            .front()
            .is_some_and(|(at, _)| *at + window <= now && *at < now)
        {
            self.history.pop_front();
        }
        for (instance, primary, reason) in unplanned_failovers(world) {
            if is_crash_loop_failover(&reason) {
                let looping = world
                    .facts
                    .crash_looping
                    .contains(&(primary.clone(), instance.clone()));
                if !looping {
                    return Err(format!(
                        "crash-loop failover of {instance} but its engine on {primary} is not \
                         crash-looping"
                    ));
                }
                continue;
            }
            // A rebooted primary may wait for its standby longer than a window (the standby was
            // down too): its host fault (the reboot) can lie before the window. Its engine must
            // really have restarted after the reboot (invariant 2 checks it too).
            if is_reboot_failover(&reason)
                && world
                    .engines
                    .get(&(primary.clone(), instance.clone()))
                    .is_some_and(|e| e.after_reboot_epoch.is_some())
            {
                continue;
            }
            let disturbed = self
                .history
                .iter()
                .any(|(_, hosts)| hosts.contains(&primary));
            if !disturbed {
                return Err(format!(
                    "failover of {instance} away from {primary}, which was up and fully connected \
                     for the whole {} s window (only a process fault)",
                    window.as_secs()
                ));
            }
        }
        Ok(())
    }
}
