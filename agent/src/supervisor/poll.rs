//! `Supervisor::poll`: turns the per-instance state into actions (start, stop, reconfigure, change
//! the replication role, clean up).

use std::time::Duration;

use kvs_proto::model::DesiredProcess;

use super::action::with_role_of;
use super::{Action, Change, Phase, Slot, Supervisor, classify_change, role_change};

impl Supervisor {
    /// Decides what to do now. Call after every event and whenever `next_deadline` passes.
    pub fn poll(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        let cleanup_allowed = self.cleanup_allowed;
        for (name, slot) in &mut self.slots {
            if self.shutting_down {
                if let Phase::Launching { generation } | Phase::Up { generation, .. } = slot.phase {
                    slot.phase = Phase::Stopping { generation };
                    actions.push(Action::Stop {
                        instance: name.clone(),
                        generation,
                    });
                }
                continue;
            }
            match slot.desired.clone() {
                None => Self::poll_destroy(name, slot, cleanup_allowed, &mut actions),
                Some(desired) => {
                    let generation = self.next_generation;
                    if Self::poll_desired(name, slot, desired, generation, now, &mut actions) {
                        self.next_generation += 1;
                    }
                }
            }
        }
        let mut changed = false;
        for slot in self.slots.values_mut() {
            let status = slot.status();
            changed |= slot.reported.replace(status) != Some(status);
        }
        if changed || actions.iter().any(|a| matches!(a, Action::Cleanup { .. })) {
            actions.push(Action::ReportStatus);
        }
        actions
    }

    fn poll_destroy(name: &str, slot: &mut Slot, cleanup_allowed: bool, actions: &mut Vec<Action>) {
        if slot.adopted.is_some() && !cleanup_allowed {
            // A previous agent's engine: only an authoritative desired state may stop it.
            return;
        }
        match slot.phase {
            Phase::Launching { generation } | Phase::Up { generation, .. } => {
                slot.phase = Phase::Stopping { generation };
                actions.push(Action::Stop {
                    instance: name.to_string(),
                    generation,
                });
            }
            Phase::Waiting { .. } | Phase::CrashLooping { .. } | Phase::Failed | Phase::Stopped
                if cleanup_allowed =>
            {
                slot.phase = Phase::Cleaning;
                actions.push(Action::Cleanup {
                    instance: name.to_string(),
                });
            }
            Phase::Waiting { .. } | Phase::CrashLooping { .. } => slot.phase = Phase::Stopped,
            _ => {}
        }
    }

    /// Returns true if it used `generation` for a start.
    fn poll_desired(
        name: &str,
        slot: &mut Slot,
        desired: DesiredProcess,
        generation: u64,
        now: Duration,
        actions: &mut Vec<Action>,
    ) -> bool {
        match slot.phase {
            Phase::Waiting { at, restart } if now >= at => {
                Self::start(slot, desired, generation, restart, now, actions);
                return true;
            }
            Phase::CrashLooping { retry_at } if now >= retry_at => {
                Self::start(slot, desired, generation, true, now, actions);
                return true;
            }
            Phase::Launching { generation } | Phase::Up { generation, .. }
                if slot.reconfiguring.is_none() =>
            {
                Self::converge_running(name, slot, desired, generation, actions);
            }
            _ => {}
        }
        false
    }

    /// A live engine (not busy reconfiguring): restart it, change its role, reconfigure it, or
    /// just adopt the new spec.
    fn converge_running(
        name: &str,
        slot: &mut Slot,
        desired: DesiredProcess,
        generation: u64,
        actions: &mut Vec<Action>,
    ) {
        if slot.force_restart {
            slot.phase = Phase::Stopping { generation };
            actions.push(Action::Stop {
                instance: name.to_string(),
                generation,
            });
            return;
        }
        let Some(running) = slot.running.clone() else {
            if let Some(adopted) = slot.adopted.take() {
                Self::adopt(name, slot, adopted, desired, generation, actions);
            }
            return;
        };
        let change = classify_change(&running, &desired);
        if change == Change::Restart {
            slot.phase = Phase::Stopping { generation };
            actions.push(Action::Stop {
                instance: name.to_string(),
                generation,
            });
            return;
        }
        let ready = matches!(slot.phase, Phase::Up { ready: true, .. });
        if let Some(role) = role_change(&running, &desired) {
            // The role first (settings follow on the next poll); a role change waits for ready.
            if ready {
                let to = with_role_of(&running, &desired);
                slot.reconfiguring = Some(to.clone());
                actions.push(Action::Replication {
                    instance: name.to_string(),
                    generation,
                    change: role,
                    from: Box::new(running),
                    to: Box::new(to),
                });
            }
            return;
        }
        match change {
            Change::Live if ready => {
                slot.reconfiguring = Some(desired.clone());
                actions.push(Action::Reconfigure {
                    instance: name.to_string(),
                    generation,
                    from: Box::new(running),
                    to: Box::new(desired),
                });
            }
            Change::Live | Change::Restart => {}
            // Epoch, front port, fencing or paused writes only: nothing for the engine's config.
            Change::None => slot.running = Some(desired),
        }
    }

    fn start(
        slot: &mut Slot,
        process: DesiredProcess,
        generation: u64,
        restart: bool,
        now: Duration,
        actions: &mut Vec<Action>,
    ) {
        if restart {
            slot.restarts += 1;
            slot.restart_times.push_back(now);
        }
        slot.running = Some(process.clone());
        slot.phase = Phase::Launching { generation };
        actions.push(Action::Start {
            process,
            generation,
            restart,
        });
    }
}
