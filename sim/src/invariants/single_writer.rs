//! Invariant 1: at most one primary accepts client writes per instance at any instant.
//!
//! Rationale (DESIGN.md §4 rule 5): two primaries taking writes is split brain: whatever the
//! losing side acknowledged is silently discarded when it rejoins. An engine accepts a write
//! when its host is up, its agent's TLS front runs, it runs as master, it is not fenced and not
//! paused; replicas refuse writes (`replica-read-only`). Counted whether or not a client can
//! reach it right now: reachability changes faster than anyone can promise.

use std::collections::BTreeMap;

use super::Invariant;
use crate::world::World;

pub struct SingleWriter;

impl Invariant for SingleWriter {
    fn name(&self) -> &'static str {
        "single-writer"
    }

    fn check(&mut self, world: &World) -> Result<(), String> {
        let mut writers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((host, instance), engine) in &world.engines {
            let front = world.agents.get(host).is_some_and(|a| a.serving);
            if world.network.host_up(host) && front && engine.accepts_writes(world.now) {
                writers
                    .entry(instance)
                    .or_default()
                    .push(format!("{host}@epoch{}", engine.epoch));
            }
        }
        match writers.into_iter().find(|(_, hosts)| hosts.len() > 1) {
            Some((instance, hosts)) => Err(format!(
                "{instance} has {} primaries accepting writes: {}",
                hosts.len(),
                hosts.join(", ")
            )),
            None => Ok(()),
        }
    }
}
