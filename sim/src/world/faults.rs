//! Activating and healing the plan's faults, and the plan's instantaneous actions.

use std::collections::BTreeSet;

use kvs_coordinator::control::failover;

use super::World;
use crate::engine::{CRASH_LOOP_AFTER, CRASH_LOOP_RETRY};
use crate::faults::{Action, ActiveFault, FaultKind, Resolved, Target, ZoneTarget};

impl World {
    pub(super) fn run_faults(&mut self) {
        let now = self.now;
        let (healed, still): (Vec<ActiveFault>, Vec<ActiveFault>) =
            std::mem::take(&mut self.active)
                .into_iter()
                .partition(|f| f.until <= now);
        self.active = still;
        for fault in healed {
            self.heal(&fault.resolved);
        }
        while let Some(fault) = self.plan.faults.get(self.next_fault).cloned() {
            if fault.start > now {
                break;
            }
            self.next_fault += 1;
            if let Some(resolved) = self.resolve(&fault.kind) {
                self.timeline.push(now, "fault", resolved.describe());
                self.begin(&resolved);
                self.active.push(ActiveFault {
                    resolved,
                    until: fault.end(),
                });
            }
        }
        while let Some((at, action)) = self.plan.actions.get(self.next_action).cloned() {
            if at > now {
                break;
            }
            self.next_action += 1;
            self.run_action(&action);
        }
    }

    fn target_host(&self, target: &Target) -> Option<String> {
        let names = self.instance_names();
        let instance = |n: usize| {
            names
                .get(n % names.len().max(1))
                .and_then(|name| self.state.instances.get(name))
        };
        match target {
            Target::Host(id) => Some(id.clone()),
            Target::PrimaryOf(n) => instance(*n).map(|i| i.primary.host_id.clone()),
            Target::StandbyOf(n) => {
                instance(*n).map(|i| i.standbys.first().unwrap_or(&i.primary).host_id.clone())
            }
        }
    }

    fn resolve(&self, kind: &FaultKind) -> Option<Resolved> {
        let names = self.instance_names();
        Some(match kind {
            FaultKind::HostCrash {
                target,
                lose_unsynced,
            } => Resolved::HostCrash {
                host: self.target_host(target)?,
                lose_unsynced: *lose_unsynced,
            },
            FaultKind::EngineCrash {
                target,
                instance,
                crash_loop,
            } => Resolved::EngineCrash {
                host: self.target_host(target)?,
                instance: names.get(instance % names.len().max(1))?.clone(),
                crash_loop: *crash_loop,
            },
            FaultKind::AgentHang { target } => Resolved::AgentHang {
                host: self.target_host(target)?,
            },
            FaultKind::Partition { target, cut, flap } => {
                let host = self.target_host(target)?;
                let peers: BTreeSet<String> = if cut.all_hosts {
                    self.topology
                        .hosts
                        .keys()
                        .filter(|h| **h != host)
                        .cloned()
                        .collect()
                } else if let Some(n) = cut.standbys_of {
                    let name = names.get(n % names.len().max(1))?;
                    let instance = self.state.instances.get(name)?;
                    std::iter::once(&instance.primary)
                        .chain(&instance.standbys)
                        .map(|p| p.host_id.clone())
                        .filter(|h| *h != host)
                        .collect()
                } else {
                    BTreeSet::new()
                };
                Resolved::Partition {
                    host,
                    coordinators: cut.coordinators,
                    peers,
                    clients: cut.clients,
                    one_way: cut.one_way,
                    flap: *flap,
                    started: self.now,
                }
            }
            FaultKind::ZoneCut { zone } => {
                let zone = match zone {
                    ZoneTarget::Named(zone) => zone.clone(),
                    ZoneTarget::OfPrimary(n) => {
                        let host = self.target_host(&Target::PrimaryOf(*n))?;
                        self.topology.hosts.get(&host)?.0.clone()
                    }
                };
                Resolved::ZoneCut { zone }
            }
        })
    }

    fn begin(&mut self, fault: &Resolved) {
        let now = self.now;
        match fault {
            Resolved::HostCrash {
                host,
                lose_unsynced,
            } => {
                if let Some(agent) = self.agents.get_mut(host) {
                    agent.alive = false;
                    agent.serving = false;
                }
                for ((h, _), engine) in self.engines.iter_mut() {
                    if h == host {
                        // The VM boots again: its agent sees a new boot id (the real agent's
                        // reboot.rs) for the primaries it restarts.
                        if engine.is_primary() {
                            engine.after_reboot_epoch = Some(engine.epoch);
                        }
                        engine.stop();
                        if *lose_unsynced {
                            engine.lose_unsynced();
                        }
                    }
                }
            }
            Resolved::EngineCrash {
                host,
                instance,
                crash_loop,
            } => {
                if let Some(engine) = self.engines.get_mut(&(host.clone(), instance.clone())) {
                    engine.stop();
                    engine.restarts += 1;
                    if *crash_loop {
                        engine.crash_loop_since = Some(now + CRASH_LOOP_AFTER);
                        engine.restart_not_before = now + CRASH_LOOP_AFTER + CRASH_LOOP_RETRY;
                    }
                }
            }
            Resolved::AgentHang { host } => {
                if let Some(agent) = self.agents.get_mut(host) {
                    agent.alive = false;
                    agent.serving = false;
                }
            }
            Resolved::Partition { .. } | Resolved::ZoneCut { .. } => {}
        }
    }

    fn heal(&mut self, fault: &Resolved) {
        self.timeline
            .push(self.now, "fault", format!("healed: {}", fault.describe()));
        match fault {
            Resolved::HostCrash { host, .. } | Resolved::AgentHang { host } => {
                if self.agent_may_run(host) {
                    self.restart_agent(host, "agent started");
                }
            }
            Resolved::EngineCrash { .. }
            | Resolved::Partition { .. }
            | Resolved::ZoneCut { .. } => {}
        }
    }

    /// No active fault keeps the host off or its agent hung.
    pub(super) fn agent_may_run(&self, host: &str) -> bool {
        !self.active.iter().any(|f| match &f.resolved {
            Resolved::HostCrash { host: h, .. } | Resolved::AgentHang { host: h } => h == host,
            _ => false,
        })
    }

    /// The engine of `instance` on `host` is kept down by an active crash fault.
    pub(super) fn engine_crashing(&self, host: &str, instance: &str) -> bool {
        self.active.iter().any(|f| {
            matches!(&f.resolved, Resolved::EngineCrash { host: h, instance: i, .. }
                if h == host && i == instance)
        })
    }

    /// A new agent process on `host` (systemd at boot, or the leader over SSH).
    pub(super) fn restart_agent(&mut self, host: &str, why: &str) {
        let now = self.now;
        self.active
            .retain(|f| !matches!(&f.resolved, Resolved::AgentHang { host: h } if h == host));
        if let Some(agent) = self.agents.get_mut(host) {
            agent.restart();
            self.timeline.push(now, host, why.to_string());
        }
    }

    fn run_action(&mut self, action: &Action) {
        let now = self.now;
        match action {
            Action::LeaderChange => {
                if let Some(old) = self.leader.node.take() {
                    self.leader.electing_until = now + super::leader::ELECTION_DELAY;
                    self.leader_excluded = Some(old);
                    self.timeline
                        .push(now, "leader", format!("c{old} steps down (leader change)"));
                }
            }
            Action::Switchover {
                instance,
                allow_data_loss,
            } => {
                let names = self.instance_names();
                let Some(name) = names.get(instance % names.len().max(1)) else {
                    return;
                };
                if self.leader.node.is_none() {
                    return;
                }
                match failover::plan_switchover(&self.state, name, *allow_data_loss, self.now_ms())
                {
                    Ok(command) => {
                        let _applied = self.apply(command, "operator");
                    }
                    Err(why) => {
                        self.timeline
                            .push(now, "operator", format!("switchover refused: {why}"))
                    }
                }
            }
        }
    }
}
