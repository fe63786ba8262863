//! Read-only views of the supervisor for the shell: statuses, deadlines, running specs.

use std::time::Duration;

use kvs_proto::model::DesiredProcess;

use super::{Phase, Slot, SupervisedStatus, Supervisor};

impl Supervisor {
    /// The earliest time a pending restart or retry is due, for the shell's timer.
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.shutting_down {
            return None;
        }
        self.slots
            .values()
            .filter(|s| s.desired.is_some())
            .filter_map(|s| match s.phase {
                Phase::Waiting { at, .. } => Some(at),
                Phase::CrashLooping { retry_at } => Some(retry_at),
                _ => None,
            })
            .min()
    }

    /// Status of every known instance, in name order.
    pub fn statuses(&self) -> Vec<SupervisedStatus> {
        self.slots
            .iter()
            .map(|(name, slot)| {
                let spec = slot.running.as_ref().or(slot.desired.as_ref());
                SupervisedStatus {
                    instance: name.clone(),
                    epoch: slot
                        .desired
                        .as_ref()
                        .or(slot.running.as_ref())
                        .map_or(0, |p| p.epoch),
                    status: slot.status(),
                    pid: match slot.phase {
                        Phase::Up { pid, .. } => Some(pid),
                        _ => None,
                    },
                    restarts: slot.restarts,
                    last_error: slot.last_error.clone(),
                    engine_port: spec.map(|p| p.engine_port),
                }
            })
            .collect()
    }

    /// Every desired process (instances to keep), in name order.
    pub fn desired_processes(&self) -> impl Iterator<Item = &DesiredProcess> {
        self.slots.values().filter_map(|s| s.desired.as_ref())
    }

    /// The spec the engine of `instance` currently runs with.
    pub fn running(&self, instance: &str) -> Option<&DesiredProcess> {
        self.slots.get(instance).and_then(|s| s.running.as_ref())
    }

    /// The generation of the live process of `instance`, if any.
    pub fn generation(&self, instance: &str) -> Option<u64> {
        self.slots.get(instance).and_then(Slot::generation)
    }

    /// True if nothing runs or is being stopped (used to finish a graceful shutdown).
    pub fn is_idle(&self) -> bool {
        self.slots.values().all(|s| s.generation().is_none())
    }

    pub(super) fn slot_at(&mut self, instance: &str, generation: u64) -> Option<&mut Slot> {
        self.slots
            .get_mut(instance)
            .filter(|s| s.generation() == Some(generation))
    }
}
