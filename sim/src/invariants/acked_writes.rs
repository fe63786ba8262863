//! Invariant 5: no WAIT-acknowledged write is lost, and every loss of other acknowledged writes
//! is reported as an instance event.
//!
//! Rationale (DESIGN.md §4 rule 4): a write `WAIT 1` confirmed sits on a standby, and failover
//! promotes the standby with the highest offset, so it must survive; plain writes may be lost in
//! an unplanned failover, but never silently: the completion event carries the estimated loss.
//!
//! Checked when a failover completes (the new primary must hold every WAIT-acknowledged write of
//! the instance so far) and at the end of a run (the final primary, against the whole ledger).
//! "Reported" means a failover of that instance completed at or after the lost write was
//! acknowledged. Whether the estimate in that event bounds the real loss is NOT required here
//! (the leader only knows the old primary's offset from its last report; a primary cut off from
//! the coordinator keeps taking writes until it is fenced); [`loss_report`] measures it.

use kvs_coordinator::state::Command;

use super::Invariant;
use crate::engine::WRITE_BYTES;
use crate::facts::Ack;
use crate::world::World;

pub struct AckedWrites;

/// The acknowledged writes of `instance` its current primary does not hold.
fn lost<'a>(world: &'a World, instance: &str) -> Vec<&'a Ack> {
    let Some(primary) = world
        .state
        .instances
        .get(instance)
        .map(|i| &i.primary.host_id)
    else {
        return Vec::new();
    };
    let log = world
        .engines
        .get(&(primary.clone(), instance.to_string()))
        .map(|e| e.log.as_slice())
        .unwrap_or_default();
    world
        .ledger
        .acks
        .iter()
        .filter(|a| a.instance == instance && log.binary_search(&a.id).is_err())
        .collect()
}

/// Real loss versus the sum of the estimates reported, per instance: (instance, lost bytes,
/// estimated bytes; `None` when some estimate was "unknown").
pub fn loss_report(world: &World) -> Vec<(String, u64, Option<u64>)> {
    world
        .state
        .instances
        .keys()
        .map(|name| {
            let lost = u64::try_from(lost(world, name).len()).unwrap_or(u64::MAX) * WRITE_BYTES;
            let estimated = world
                .completions
                .iter()
                .filter(|c| c.instance == *name)
                .try_fold(0u64, |sum, c| c.data_loss_bytes.map(|b| sum + b));
            (name.clone(), lost, estimated)
        })
        .collect()
}

fn first_waited_lost(world: &World, instance: &str) -> Option<String> {
    let lost = lost(world, instance);
    let waited = lost.iter().find(|a| a.waited)?;
    Some(format!(
        "{instance}: write {} acknowledged with WAIT 1 by {} at {} s is not on the primary {} \
         ({} writes lost in all)",
        waited.id,
        waited.host,
        waited.at.as_secs(),
        world
            .state
            .instances
            .get(instance)
            .map_or("?", |i| i.primary.host_id.as_str()),
        lost.len()
    ))
}

impl Invariant for AckedWrites {
    fn name(&self) -> &'static str {
        "acked-writes"
    }

    fn check(&mut self, world: &World) -> Result<(), String> {
        for command in &world.facts.applied {
            if let Command::CompleteFailover { name, .. } = command
                && let Some(message) = first_waited_lost(world, name)
            {
                return Err(message);
            }
        }
        Ok(())
    }

    fn at_end(&mut self, world: &World) -> Result<(), String> {
        for instance in world.state.instances.keys() {
            if let Some(message) = first_waited_lost(world, instance) {
                return Err(message);
            }
            let unreported: Vec<&Ack> = lost(world, instance)
                .into_iter()
                .filter(|a| {
                    !world
                        .completions
                        .iter()
                        .any(|c| c.instance == *instance && c.at >= a.at)
                })
                .collect();
            if let Some(first) = unreported.first() {
                return Err(format!(
                    "{instance}: {} acknowledged writes lost with no failover event reporting a \
                     loss (first: write {} on {} at {} s)",
                    unreported.len(),
                    first.id,
                    first.host,
                    first.at.as_secs()
                ));
            }
        }
        Ok(())
    }
}
