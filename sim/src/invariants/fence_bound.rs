//! Invariant 6: a primary cut off from the leader and its standby acknowledges no write once it
//! has been silent for longer than the fence bound (`fence_after` + one step).
//!
//! Rationale (DESIGN.md §4 rule 5, issue 11, decision 0007): a client on the primary's side of a
//! partition keeps writing to it, and every write it acknowledges after the cut is discarded if
//! the standby is promoted (the Sentinel failure). The fence bounds that loss to the writer's
//! rate × the bound; WAIT-acknowledged writes are never lost (`acked-writes`). "Silent" is
//! measured on the world's ground truth, not the agent's: the last step in which a leader holding
//! its quorum (or one deposed less than 1.9 s ago, whose heartbeats still flow) reached the host,
//! or a replica acknowledged the primary's stream. Primaries without a standby never fence.

use super::Invariant;
use crate::world::{TICK, World};

pub struct FenceBound;

impl Invariant for FenceBound {
    fn name(&self) -> &'static str {
        "fence-bound"
    }

    fn check(&mut self, world: &World) -> Result<(), String> {
        let fence_after =
            std::time::Duration::from_secs(world.nominal.fence_after_seconds().into());
        let bound = fence_after + TICK;
        let late = world
            .ledger
            .acks
            .iter()
            .rev()
            .take_while(|a| a.at == world.now)
            .find(|a| a.silent_for.is_some_and(|s| s > bound));
        match late {
            Some(ack) => Err(format!(
                "{}: write {} acknowledged by {} at {} s after {} s without a word from the \
                 leader or a replica (fence bound {} s)",
                ack.instance,
                ack.id,
                ack.host,
                ack.at.as_secs(),
                ack.silent_for.unwrap_or_default().as_secs(),
                bound.as_secs()
            )),
            None => Ok(()),
        }
    }
}
