//! The invariants, one per file, each checked after every step (and some once more at the end
//! of a complete run). Each file's `//!` header states the rule and why it matters.

mod acked_writes;
mod epochs_grow;
mod failover_confirmed;
mod fence_bound;
mod heals;
mod no_failover_for_process_crash;
mod single_writer;

use kvs_coordinator::state::Command;

use crate::world::World;

pub use acked_writes::{AckedWrites, loss_report};
pub use heals::{HEAL_BOUND, Heals};

/// A rule the world must keep.
pub trait Invariant {
    fn name(&self) -> &'static str;
    /// After every step; `Err` describes the violation.
    fn check(&mut self, world: &World) -> Result<(), String>;
    /// Once, at the end of a run that reached its heal bound.
    fn at_end(&mut self, _world: &World) -> Result<(), String> {
        Ok(())
    }
}

/// Every safety invariant, fresh for one run ([`Heals`], the liveness one, is kept by the
/// runner, which also reads how long healing took).
pub fn all() -> Vec<Box<dyn Invariant>> {
    vec![
        Box::new(fence_bound::FenceBound),
        Box::new(single_writer::SingleWriter),
        Box::new(failover_confirmed::FailoverConfirmed::default()),
        Box::new(no_failover_for_process_crash::NoFailoverForProcessCrash::default()),
        Box::new(epochs_grow::EpochsGrow::default()),
        Box::new(AckedWrites),
    ]
}

/// The unplanned failovers begun in the last step: (instance, old primary host, reason).
pub(crate) fn unplanned_failovers(world: &World) -> Vec<(String, String, String)> {
    world
        .facts
        .applied
        .iter()
        .filter_map(|c| match c {
            Command::BeginFailover {
                name,
                planned: false,
                reason,
                ..
            } => {
                let primary = world.state.instances.get(name)?.primary.host_id.clone();
                Some((name.clone(), primary, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

/// A crash-loop failover (rule 1's exception) names it in its reason.
pub(crate) fn is_crash_loop_failover(reason: &str) -> bool {
    reason.contains("crash-looping")
}

/// A failover away from a primary that restarted after its host rebooted (its AOF may be short;
/// the agent keeps it fenced until the coordinator answers).
pub(crate) fn is_reboot_failover(reason: &str) -> bool {
    reason.contains("rebooted")
}
