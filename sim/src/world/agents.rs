//! The agents: each live agent talks to the leader if it can (the desired state comes down,
//! level-triggered), converges its engines to its desired processes (start, restart in place,
//! promote, demote, re-point, stop and delete), decides fencing with the REAL
//! `kvs_agent::fencing::Fencing`, applies switchover pauses, and queues its report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kvs_agent::fencing::FenceInput;
use kvs_coordinator::control::{HostObservation, ProcessObservation, desired};
use kvs_proto::model::{DesiredProcess, Role};

use super::World;
use crate::agent::PendingReport;
use crate::breaks::Break;
use crate::engine::{CRASH_LOOP_RETRY, Engine, EngineRole};
use crate::network::Node;

/// A switchover pause lasts this long unless renewed (`kvs_agent::fencing::pause`).
const SWITCHOVER_PAUSE: Duration = Duration::from_secs(10);

impl World {
    pub(super) fn run_agents(&mut self) {
        let hosts: Vec<String> = self.agents.keys().cloned().collect();
        for host in hosts {
            let alive = self.agents.get(&host).is_some_and(|a| a.alive);
            if !alive || !self.network.host_up(&host) {
                continue;
            }
            self.agent_session(&host);
            self.converge(&host);
            self.fence(&host);
            if let Some(agent) = self.agents.get_mut(&host) {
                agent.serving = true;
            }
        }
    }

    /// The stream to the leader: contact, and the desired state if it is up now. A deposed
    /// leader's heartbeats still reach the agent for a moment (contact, no new desired state).
    fn agent_session(&mut self, host: &str) {
        let now = self.now;
        if let Some((node, at)) = self.deposed
            && now.saturating_sub(at) < super::leader::HEARTBEATS_OUTLIVE_QUORUM
            && self
                .network
                .connected(&Node::Host(host.to_string()), &Node::Coordinator(node))
            && let Some(agent) = self.agents.get_mut(host)
        {
            agent.last_contact = Some(now);
        }
        let Some(leader) = self.leader.node else {
            return;
        };
        let path = self
            .network
            .connected(&Node::Host(host.to_string()), &Node::Coordinator(leader));
        if !path {
            return;
        }
        let list = desired::for_host(&self.state, host, &self.config);
        let version = self.state.desired_version;
        let Some(agent) = self.agents.get_mut(host) else {
            return;
        };
        agent.last_contact = Some(now);
        let refused = agent.accept(list, version);
        for instance in refused {
            self.timeline.push(
                now,
                host,
                format!("refused a stale-epoch order for {instance}"),
            );
        }
    }

    fn upstream_host(&self, process: &DesiredProcess) -> Option<String> {
        let upstream = process.upstream.as_ref()?;
        self.topology
            .host_by_address(upstream.host)
            .map(str::to_string)
    }

    /// Engines converge to the agent's desired processes.
    fn converge(&mut self, host: &str) {
        let now = self.now;
        let Some(agent) = self.agents.get(host) else {
            return;
        };
        let desired: BTreeMap<String, DesiredProcess> = agent.desired.clone();
        let authoritative = agent.authoritative;
        if authoritative {
            let stale: Vec<(String, String)> = self
                .engines
                .keys()
                .filter(|(h, i)| h == host && !desired.contains_key(i))
                .cloned()
                .collect();
            for key in stale {
                self.engines.remove(&key);
                self.timeline.push(
                    now,
                    host,
                    format!("engine of {} stopped, data deleted", key.1),
                );
            }
        }
        for (instance, process) in &desired {
            let upstream = self.upstream_host(process);
            let crashing = self.engine_crashing(host, instance);
            let key = (host.to_string(), instance.clone());
            let engine = self.engines.entry(key).or_insert_with(|| {
                let role = match process.role {
                    Role::Primary => EngineRole::Primary,
                    Role::Standby => EngineRole::Replica { upstream: None },
                };
                Engine::new(role, process.epoch)
            });
            let mut lines = Vec::new();
            if !engine.running {
                if crashing {
                    if engine.crash_loop_since.is_some() && now >= engine.restart_not_before {
                        engine.restart_not_before = now + CRASH_LOOP_RETRY;
                        engine.restarts += 1;
                    }
                } else if now >= engine.restart_not_before {
                    engine.start(now);
                    lines.push(format!(
                        "engine of {instance} started ({} writes on disk)",
                        engine.log.len()
                    ));
                }
            }
            let role = match process.role {
                Role::Primary => EngineRole::Primary,
                Role::Standby => EngineRole::Replica {
                    upstream: upstream.clone(),
                },
            };
            if engine.role != role {
                let text = match (&engine.role, &role) {
                    (EngineRole::Replica { .. }, EngineRole::Primary) => {
                        format!("{instance} promoted to primary at epoch {}", process.epoch)
                    }
                    (EngineRole::Primary, _) => format!(
                        "{instance} demoted to replica of {} at epoch {}",
                        upstream.as_deref().unwrap_or("?"),
                        process.epoch
                    ),
                    _ => format!(
                        "{instance} replicates from {} at epoch {}",
                        upstream.as_deref().unwrap_or("?"),
                        process.epoch
                    ),
                };
                lines.push(text);
                engine.role = role;
                engine.replicas.clear();
                engine.link = Default::default();
                engine.link.last_io = now;
                engine.link.down = true;
            }
            engine.epoch = process.epoch;
            engine.pause_until = if process.role == Role::Primary && process.pause_writes {
                now + SWITCHOVER_PAUSE
            } else {
                Duration::ZERO
            };
            for line in lines {
                self.timeline.push(now, host, line);
            }
        }
    }

    /// The real fencing decision, with this agent's evidence.
    fn fence(&mut self, host: &str) {
        let now = self.now;
        let fencing_on = !self.breaks.has(Break::NoFencing);
        let Some(agent) = self.agents.get(host) else {
            return;
        };
        let inputs: Vec<FenceInput> = agent
            .desired
            .values()
            .filter(|p| p.role == Role::Primary)
            .map(|p| FenceInput {
                instance: p.instance.clone(),
                fence_after: p
                    .fence_after_seconds
                    .filter(|_| fencing_on)
                    .map(|s| Duration::from_secs(s.into())),
                replica_heard: self
                    .engines
                    .get(&(host.to_string(), p.instance.clone()))
                    .and_then(|e| e.replica_last_heard()),
                from_cache: !agent.authoritative,
                after_reboot: self
                    .engines
                    .get(&(host.to_string(), p.instance.clone()))
                    .is_some_and(|e| e.after_reboot_epoch.is_some_and(|r| p.epoch <= r)),
            })
            .collect();
        let refusing: BTreeSet<String> = inputs
            .iter()
            .filter(|i| i.after_reboot && i.fence_after.is_some())
            .map(|i| i.instance.clone())
            .collect();
        let heard = agent.last_contact;
        let Some(agent) = self.agents.get_mut(host) else {
            return;
        };
        let fenced = agent.fencing.update(now, heard, inputs).clone();
        for ((h, instance), engine) in self.engines.iter_mut() {
            if h != host || !engine.running {
                continue;
            }
            let now_fenced = fenced.contains(instance);
            if now_fenced != engine.fenced {
                let what = if now_fenced { "FENCED" } else { "unfenced" };
                self.timeline.push(now, host, format!("{instance} {what}"));
            }
            engine.fenced = now_fenced;
            engine.refusing_peers = refusing.contains(instance);
        }
    }

    /// Every live agent with a stream reports its processes (delivered after `report_delay`).
    pub(super) fn send_reports(&mut self) {
        let now = self.now;
        let (Some(leader), term) = (self.leader.node, self.leader.term) else {
            return;
        };
        let hosts: Vec<String> = self.agents.keys().cloned().collect();
        for host in hosts {
            let Some(agent) = self.agents.get(&host) else {
                continue;
            };
            let path = self
                .network
                .connected(&Node::Host(host.clone()), &Node::Coordinator(leader));
            if !agent.alive || !path {
                continue;
            }
            let processes = agent
                .desired
                .keys()
                .map(|instance| (instance.clone(), self.observe(&host, instance)))
                .collect();
            let observation = HostObservation {
                last_seen: now,
                last_seen_ms: 0,
                memory_total_bytes: 1 << 30,
                memory_available_bytes: 1 << 29,
                load_avg_1m: 0.0,
                engines: Vec::new(),
                processes,
                desired_version: agent.desired_version,
            };
            let report = PendingReport {
                deliver_at: now + self.report_delay,
                term,
                observation,
            };
            if let Some(agent) = self.agents.get_mut(&host) {
                agent.reports.push_back(report);
            }
        }
    }

    /// What the agent reports of one engine (INFO as the real agent parses it).
    fn observe(&self, host: &str, instance: &str) -> ProcessObservation {
        let now = self.now;
        let epoch = self
            .agents
            .get(host)
            .and_then(|a| a.desired.get(instance))
            .map_or(0, |p| p.epoch);
        let Some(engine) = self.engines.get(&(host.to_string(), instance.to_string())) else {
            return ProcessObservation::new(
                epoch,
                kvs_proto::model::ProcessStatus::Starting,
                "unknown",
            );
        };
        let status = engine.status(now);
        let mut report = ProcessObservation::new(epoch, status, "unknown");
        report.restarts = engine.restarts;
        report.replication_offset = engine.offset();
        if engine.running {
            report.fenced = engine.fenced;
            if engine.is_primary() {
                // The simulated pause takes effect with the desired state, so the offset is final.
                report.writes_paused = now < engine.pause_until;
                report.after_reboot = engine.after_reboot_epoch.is_some_and(|r| epoch <= r);
                report.role = "master".into();
                report.connected_replicas = engine.connected_replicas(now);
            } else {
                report.role = "slave".into();
                report.master_link_status = if engine.link.down { "down" } else { "up" }.into();
                let silent = now.saturating_sub(engine.link.last_io).as_secs();
                report.master_last_io_seconds = i64::try_from(silent).unwrap_or(i64::MAX);
            }
        }
        report
    }
}
