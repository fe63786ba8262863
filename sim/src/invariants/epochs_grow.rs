//! Invariant 4: epochs only grow: an instance's epoch in the replicated state, the epoch each
//! agent holds for an instance, the epoch each engine runs at; and no two hosts are ever told
//! "primary" at the same epoch.
//!
//! Rationale (DESIGN.md §3, §4 rule 5): the epoch is the fencing token of every order. If it
//! could go back, a stale order (a deposed leader's, a delayed one) would be indistinguishable
//! from a new one, and a returning old primary could be told to serve its stale data.

use std::collections::BTreeMap;

use kvs_coordinator::control::desired;
use kvs_proto::model::Role;

use super::Invariant;
use crate::world::World;

#[derive(Default)]
pub struct EpochsGrow {
    state: BTreeMap<String, u64>,
    agents: BTreeMap<(String, String), u64>,
    engines: BTreeMap<(String, String), u64>,
    primary_at: BTreeMap<(String, u64), String>,
}

fn grows(
    seen: &mut BTreeMap<(String, String), u64>,
    current: BTreeMap<(String, String), u64>,
    what: &str,
) -> Result<(), String> {
    for (key, epoch) in &current {
        if let Some(before) = seen.get(key)
            && epoch < before
        {
            return Err(format!(
                "{what} {} on {} went from epoch {before} to {epoch}",
                key.1, key.0
            ));
        }
    }
    // Forget entries that disappeared (data deleted): a new placement starts over.
    *seen = current;
    Ok(())
}

impl Invariant for EpochsGrow {
    fn name(&self) -> &'static str {
        "epochs-grow"
    }

    fn check(&mut self, world: &World) -> Result<(), String> {
        for (name, instance) in &world.state.instances {
            let before = self.state.insert(name.clone(), instance.epoch);
            if let Some(before) = before.filter(|b| *b > instance.epoch) {
                return Err(format!(
                    "{name}'s epoch went from {before} to {}",
                    instance.epoch
                ));
            }
        }
        let agents = world
            .agents
            .iter()
            .flat_map(|(host, a)| {
                a.desired
                    .values()
                    .map(move |p| ((host.clone(), p.instance.clone()), p.epoch))
            })
            .collect();
        grows(&mut self.agents, agents, "agent order for")?;
        let engines = world
            .engines
            .iter()
            .map(|(key, e)| (key.clone(), e.epoch))
            .collect();
        grows(&mut self.engines, engines, "engine of")?;
        for host in world.topology.hosts.keys() {
            for process in desired::for_host(&world.state, host, &world.config) {
                if process.role != Role::Primary {
                    continue;
                }
                let key = (process.instance.clone(), process.epoch);
                let first = self.primary_at.entry(key).or_insert_with(|| host.clone());
                if first != host {
                    return Err(format!(
                        "{} told primary at epoch {} on both {first} and {host}",
                        process.instance, process.epoch
                    ));
                }
            }
        }
        Ok(())
    }
}
