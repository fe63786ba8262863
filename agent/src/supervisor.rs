//! The supervisor: the pure decision core of the agent (sans-IO).
//!
//! ```text
//!   desired processes ──set_desired──┐
//!   process events (started, ready,  ├──► Supervisor ──poll(now)──► [Action] ──► runtime (the shell)
//!   exited, reconfigured, cleaned) ──┘        ▲                                      │
//!                                             └───────── events, with `now` ─────────┘
//! ```
//!
//! It holds, per instance, the desired spec, the spec the engine runs with, the process phase and
//! the restart history, and decides what to do: start, restart after a backoff, reconfigure live,
//! stop, clean up. It never reads a clock, spawns or touches the network or disk: `now` (time since
//! the runtime started) comes in with every call, so tests drive it with plain numbers and the
//! simulation can run it under simulated time.
//!
//! Replication roles are level-triggered too: a running standby whose desired role is primary is
//! promoted, a running primary whose desired role is standby is demoted, a standby whose upstream
//! moved is re-pointed (all live, no restart: `Action::Replication`). Stale epochs are refused.
//!
//! Engines left running by a previous agent (killed, crashed) are adopted, not restarted: the
//! shell reports them with `on_adopted` before any desired state; once the instance's desired
//! spec is known the engine is re-configured live to it (`Action::Adopt`), or replaced if it runs
//! another engine version or port. Until an authoritative desired state arrives it is kept.
//!
//! Restart budget (DESIGN §4 rule 1): a crashed engine restarts at once, then after
//! `backoff_min`, 2×, 4× … up to `backoff_max`; more than `budget_max` restarts within
//! `budget_window` makes it crash-looping, which is retried every `crash_loop_retry_interval`.

use std::collections::BTreeMap;
use std::time::Duration;

use kvs_proto::model::{DesiredProcess, ProcessStatus};

mod action;
mod adopt;
#[cfg(test)]
mod adopt_tests;
mod policy;
mod poll;
mod query;
#[cfg(test)]
mod role_tests;
mod slot;
#[cfg(test)]
mod tests;

pub use action::{Action, Change, RoleChange, classify_change, role_change};
pub use adopt::AdoptedEngine;
pub use policy::RestartPolicy;
use slot::{Phase, Slot};

/// One instance's status as the supervisor sees it (the runtime adds INFO metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisedStatus {
    pub instance: String,
    pub epoch: u64,
    pub status: ProcessStatus,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_error: Option<String>,
    /// Engine port of the desired (or last running) spec, for INFO polling.
    pub engine_port: Option<u16>,
}

/// A desired process refused by `set_desired`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub instance: String,
    pub reason: String,
}

/// The supervisor state for every instance on this host.
#[derive(Debug, Clone)]
pub struct Supervisor {
    policy: RestartPolicy,
    slots: BTreeMap<String, Slot>,
    /// Set once an authoritative desired state arrived: only then are unknown dirs removed.
    cleanup_allowed: bool,
    /// The agent is shutting down: stop every engine, start nothing, delete nothing.
    shutting_down: bool,
    next_generation: u64,
}

impl Supervisor {
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            slots: BTreeMap::new(),
            cleanup_allowed: false,
            shutting_down: false,
            next_generation: 1,
        }
    }

    /// Instances found on disk at startup: cleaned up if the first authoritative desired state
    /// does not name them.
    pub fn found_on_disk(&mut self, instances: impl IntoIterator<Item = String>, now: Duration) {
        for name in instances {
            self.slots
                .entry(name)
                .or_insert_with(|| Slot::new(None, now));
        }
    }

    /// The full desired set for this host. `authoritative`: it came from the coordinator (not a
    /// local cache), so instances it omits may be deleted. Stale epochs are rejected.
    pub fn set_desired(
        &mut self,
        processes: Vec<DesiredProcess>,
        authoritative: bool,
        now: Duration,
    ) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        let mut named = std::collections::BTreeSet::new();
        for process in processes {
            named.insert(process.instance.clone());
            let Some(slot) = self.slots.get_mut(&process.instance) else {
                self.slots
                    .insert(process.instance.clone(), Slot::new(Some(process), now));
                continue;
            };
            let known_epoch = slot
                .desired
                .iter()
                .chain(slot.running.iter())
                .map(|p| p.epoch)
                .max();
            if let Some(epoch) = known_epoch.filter(|e| *e > process.epoch) {
                rejected.push(Rejected {
                    instance: process.instance.clone(),
                    reason: format!("stale epoch {} (already at {epoch})", process.epoch),
                });
                continue;
            }
            let changed = slot.desired.as_ref() != Some(&process);
            if changed
                && matches!(
                    slot.phase,
                    Phase::Failed | Phase::CrashLooping { .. } | Phase::Stopped
                )
            {
                slot.phase = Phase::Waiting {
                    at: now,
                    restart: false,
                };
                slot.restart_times.clear();
            }
            slot.desired = Some(process);
        }
        for (name, slot) in &mut self.slots {
            if !named.contains(name) {
                slot.desired = None;
            }
        }
        self.cleanup_allowed |= authoritative;
        rejected
    }

    /// The engine of `generation` was spawned with `pid`.
    pub fn on_started(&mut self, instance: &str, generation: u64, pid: u32) {
        if let Some(slot) = self.slot_at(instance, generation)
            && matches!(slot.phase, Phase::Launching { .. })
        {
            slot.phase = Phase::Up {
                generation,
                pid,
                ready: false,
            };
        }
    }

    /// The engine could not be spawned. `retryable`: count it like a crash; otherwise (engine
    /// not installed) the instance is failed until its desired spec changes.
    pub fn on_start_failed(
        &mut self,
        instance: &str,
        generation: u64,
        error: String,
        retryable: bool,
        now: Duration,
    ) {
        if !retryable {
            if let Some(slot) = self.slot_at(instance, generation) {
                slot.last_error = Some(error);
                slot.phase = Phase::Failed;
                slot.running = None;
            }
            return;
        }
        self.on_exited(instance, generation, error, now);
    }

    /// The engine answered INFO and is not loading: it serves clients.
    pub fn on_ready(&mut self, instance: &str, generation: u64) {
        if let Some(slot) = self.slot_at(instance, generation)
            && let Phase::Up { ready, .. } = &mut slot.phase
        {
            *ready = true;
            slot.recovering = false;
        }
    }

    /// The engine of `generation` exited (crash, kill -9, or after our `Stop`).
    pub fn on_exited(&mut self, instance: &str, generation: u64, reason: String, now: Duration) {
        let policy = self.policy;
        let Some(slot) = self.slot_at(instance, generation) else {
            return;
        };
        slot.reconfiguring = None;
        slot.force_restart = false;
        slot.adopted = None;
        if matches!(slot.phase, Phase::Stopping { .. }) {
            slot.running = None;
            slot.phase = match slot.desired {
                Some(_) => Phase::Waiting {
                    at: now,
                    restart: false,
                },
                None => Phase::Stopped,
            };
            return;
        }
        slot.last_error = Some(reason);
        slot.running = None;
        if slot.desired.is_none() {
            slot.phase = Phase::Stopped;
            return;
        }
        while slot
            .restart_times
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= policy.budget_window)
        {
            slot.restart_times.pop_front();
        }
        slot.recovering = true;
        let recent = slot.restart_times.len();
        slot.phase = if recent >= policy.budget_max as usize {
            Phase::CrashLooping {
                retry_at: now + policy.crash_loop_retry_interval,
            }
        } else {
            Phase::Waiting {
                at: now + policy.backoff(recent),
                restart: true,
            }
        };
    }

    /// A `Reconfigure` finished. On error the engine is restarted with the new spec.
    pub fn on_reconfigured(&mut self, instance: &str, generation: u64, result: Result<(), String>) {
        let Some(slot) = self.slot_at(instance, generation) else {
            return;
        };
        let Some(target) = slot.reconfiguring.take() else {
            return;
        };
        match result {
            Ok(()) => slot.running = Some(target),
            Err(error) => {
                slot.last_error = Some(format!("live reconfiguration failed, restarting: {error}"));
                slot.force_restart = true;
            }
        }
    }

    /// The instance directory was removed (or removing it failed with `error`).
    pub fn on_cleaned(&mut self, instance: &str, result: Result<(), String>, now: Duration) {
        let Some(slot) = self.slots.get_mut(instance) else {
            return;
        };
        if slot.phase != Phase::Cleaning {
            return;
        }
        match (result, slot.desired.is_some()) {
            (_, true) => {
                slot.phase = Phase::Waiting {
                    at: now,
                    restart: false,
                }
            }
            (Ok(()), false) => {
                self.slots.remove(instance);
            }
            (Err(error), false) => {
                slot.last_error = Some(error);
                slot.phase = Phase::Failed;
            }
        }
    }

    /// The agent is stopping: from now on `poll` only stops engines (data dirs stay).
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
    }
}
