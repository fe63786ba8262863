//! Invariant 6: after the faults heal, within [`HEAL_BOUND`], every premium instance is
//! Available with an in-sync standby, and every config var points at its primary (and the
//! client follows it).
//!
//! Rationale (DESIGN.md §4 rule 4 "then place a new standby … mark HA Status Available when it
//! is in sync"): safety alone is cheap (never do anything); the system must also come back. The
//! bound: the crash-loop retry interval (300 s, the slowest recovery the agent has) plus 60 s
//! for a standby to be placed, synced and reported. Checked on ground truth (the primary engine
//! runs as master at the state's epoch and takes writes; a standby replicates from it and lags
//! by at most `max_lag_bytes`) and on the leader's view (status, HA status, no failover in flight).

use std::time::Duration;

use kvs_coordinator::control::{HaStatus, ha_status};
use kvs_coordinator::state::InstanceStatus;
use kvs_proto::names::PRIMARY_CONFIG_VAR;

use super::Invariant;
use crate::world::World;
use crate::world::clients::parse_url;

/// How long after the last fault heals the cluster must be healthy.
pub const HEAL_BOUND: Duration = Duration::from_secs(360);

#[derive(Default)]
pub struct Heals {
    /// Since when every condition holds (reset when one stops holding).
    pub healthy_since: Option<Duration>,
}

/// The first condition that does not hold, if any.
pub fn unhealthy(world: &World) -> Option<String> {
    if world.leader.node.is_none() {
        return Some("no leader".into());
    }
    let now = world.now;
    for (name, instance) in &world.state.instances {
        if instance.status != InstanceStatus::Available {
            return Some(format!("{name} is {}", instance.status.as_str()));
        }
        if instance.failover.is_some() {
            return Some(format!("{name} has a failover in flight"));
        }
        let ha = ha_status::of(instance, &world.leader.observations, now, &world.config);
        if ha != HaStatus::Available {
            return Some(format!("{name} HA status {}", ha.as_str()));
        }
        let primary = &instance.primary.host_id;
        let engine = world.engines.get(&(primary.clone(), name.clone()));
        let serving = engine.is_some_and(|e| e.accepts_writes(now) && e.epoch == instance.epoch)
            && world.agents.get(primary).is_some_and(|a| a.serving);
        let Some(engine) = engine.filter(|_| serving) else {
            return Some(format!(
                "{name}'s primary on {primary} does not take writes"
            ));
        };
        let max_lag = world.config.max_lag_bytes;
        let synced = world.engines.iter().any(|((h, i), e)| {
            i == name
                && h != primary
                && e.link.established
                && e.upstream() == Some(primary.as_str())
                && engine.offset().saturating_sub(e.offset()) <= max_lag
        });
        if !synced {
            return Some(format!("{name} has no standby replicating from {primary}"));
        }
        let address = world.topology.hosts.get(primary).map(|(_, a)| *a);
        let want = address.map(|a| (a, instance.primary.front_port));
        for (app, var) in world.state.attachments(name) {
            let url = world
                .state
                .config_vars(&app)
                .and_then(|(_, vars)| vars.get(&var).cloned());
            if url.as_deref().and_then(parse_url) != want {
                return Some(format!("{app} {var} does not point at {name}'s primary"));
            }
            let followed = world.clients.iter().any(|c| c.app == app && c.url == url);
            if var == PRIMARY_CONFIG_VAR && !followed {
                return Some(format!("{app}'s client has not followed {var}"));
            }
        }
    }
    None
}

impl Invariant for Heals {
    fn name(&self) -> &'static str {
        "heals"
    }

    fn check(&mut self, world: &World) -> Result<(), String> {
        if world.now < world.plan.healed_at() {
            self.healed_reset();
            return Ok(());
        }
        match unhealthy(world) {
            None => {
                self.healthy_since.get_or_insert(world.now);
            }
            Some(_) => self.healed_reset(),
        }
        Ok(())
    }

    fn at_end(&mut self, world: &World) -> Result<(), String> {
        match unhealthy(world) {
            None => Ok(()),
            Some(why) => Err(format!(
                "{} s after the last fault healed: {why}",
                world.now.saturating_sub(world.plan.healed_at()).as_secs()
            )),
        }
    }
}

impl Heals {
    fn healed_reset(&mut self) {
        self.healthy_since = None;
    }
}
