//! The coordinator side: Raft leadership (as a quorum rule, not real Raft), the SSH probes of
//! every vantage point, report delivery, and the leader's tick, which is the REAL policy:
//! `reconcile::decide`, `detector::assess`, `failover::plan`, committed with
//! `ClusterState::apply`, exactly in the order `coordinator/src/leader.rs` uses.

use std::collections::BTreeSet;
use std::time::Duration;

use kvs_coordinator::control::{Evidence, HaAction, detector, failover, reconcile};
use kvs_coordinator::state::Command;
use rand::Rng;

use super::{Leader, World};
use crate::network::Node;

/// A new leader is elected this long after the old one is gone (openraft election timeout).
pub const ELECTION_DELAY: Duration = Duration::from_secs(3);

/// A leader that lost its quorum still heartbeats its agents this long: until its last quorum
/// acknowledgement is `QUORUM_ACK_FRESH` (1 s) old, as openraft's metrics show it (refreshed
/// every tick, 375 ms), plus one heartbeat (0.5 s) in flight.
pub const HEARTBEATS_OUTLIVE_QUORUM: Duration = Duration::from_millis(1_900);

impl World {
    fn coordinator_has_quorum(&self, node: u64) -> bool {
        let me = Node::Coordinator(node);
        let reachable = self
            .topology
            .coordinators
            .keys()
            .filter(|c| self.network.connected(&me, &Node::Coordinator(**c)))
            .count();
        reachable * 2 > self.topology.coordinators.len()
    }

    /// Which hosts a leader's heartbeats reach now (the leader, or one deposed less than
    /// `HEARTBEATS_OUTLIVE_QUORUM` ago).
    pub(super) fn record_leader_words(&mut self) {
        let now = self.now;
        let deposed = self
            .deposed
            .filter(|(_, at)| now.saturating_sub(*at) < HEARTBEATS_OUTLIVE_QUORUM)
            .map(|(node, _)| node);
        let speakers: Vec<u64> = self.leader.node.into_iter().chain(deposed).collect();
        for host in self.topology.hosts.keys() {
            let reached = speakers.iter().any(|node| {
                self.network
                    .connected(&Node::Host(host.clone()), &Node::Coordinator(*node))
            });
            if reached {
                self.leader_heard.insert(host.clone(), now);
            }
        }
    }

    pub(super) fn run_elections(&mut self) {
        let now = self.now;
        // Network of this tick, for the quorum rule (faults were just applied).
        self.network = crate::network::Network::derive(&self.active, now, &self.topology);
        if let Some(node) = self.leader.node
            && !self.coordinator_has_quorum(node)
        {
            self.leader.node = None;
            self.deposed = Some((node, now));
            self.leader.electing_until = now + ELECTION_DELAY;
            self.timeline
                .push(now, "leader", format!("c{node} lost its quorum"));
        }
        if self.leader.node.is_some() || now < self.leader.electing_until {
            return;
        }
        let excluded = self.leader_excluded.take();
        let candidates: Vec<u64> = self
            .topology
            .coordinators
            .keys()
            .copied()
            .filter(|c| Some(*c) != excluded && self.coordinator_has_quorum(*c))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let pick = candidates[self.rng.gen_range(0..candidates.len())];
        let term = self.leader.term + 1;
        // A new leader's memory starts empty; the replicated state persists.
        self.leader = Leader {
            node: Some(pick),
            term,
            ..Leader::default()
        };
        self.timeline.push(
            now,
            "leader",
            format!("c{pick} leads (term {term}): observations start empty"),
        );
    }

    /// Every vantage point probes every host once per `probe_interval`, staggered; results
    /// reach the leader only if the vantage point can talk to it.
    pub(super) fn run_probes(&mut self) {
        let Some(leader) = self.leader.node else {
            return;
        };
        let interval = self.config.probe_interval.as_secs().max(1);
        let now = self.now;
        let hosts: Vec<String> = self.topology.hosts.keys().cloned().collect();
        let vantages: Vec<u64> = self.topology.coordinators.keys().copied().collect();
        for (index, host) in hosts.iter().enumerate() {
            for vantage in &vantages {
                let phase = (u64::try_from(index).unwrap_or(0) + vantage * 2) % interval;
                if now.as_secs() % interval != phase {
                    continue;
                }
                let from = Node::Coordinator(*vantage);
                let delivered =
                    *vantage == leader || self.network.connected(&from, &Node::Coordinator(leader));
                if !delivered {
                    continue;
                }
                let reachable = self.network.connected(&from, &Node::Host(host.clone()));
                self.leader.probes.record(host, *vantage, reachable, now);
                if reachable {
                    self.facts.probes_succeeded.insert(host.clone());
                }
            }
        }
    }

    /// Reports due now reach the leader that was leading when they were sent, if the path holds.
    pub(super) fn deliver_reports(&mut self) {
        let now = self.now;
        let Some(leader) = self.leader.node else {
            for agent in self.agents.values_mut() {
                agent.reports.clear();
            }
            return;
        };
        let term = self.leader.term;
        for (host, agent) in self.agents.iter_mut() {
            let path = self
                .network
                .connected(&Node::Host(host.clone()), &Node::Coordinator(leader));
            while let Some(report) = agent.reports.front() {
                if report.deliver_at > now {
                    break;
                }
                let Some(mut report) = agent.reports.pop_front() else {
                    break;
                };
                if report.term != term || !path {
                    continue;
                }
                report.observation.last_seen = now;
                report.observation.last_seen_ms = i64::try_from(now.as_millis()).unwrap_or(0);
                self.leader.observations.record(host, report.observation);
                self.facts.reports_delivered.insert(host.clone());
            }
        }
    }

    /// The vantage points whose probes count (copied from `coordinator/src/leader.rs`, which is
    /// private there): the leader, and every node with a result within three probe intervals.
    fn vantage_points(&self, leader: u64) -> BTreeSet<u64> {
        let fresh = self.config.probe_interval * 3;
        let now = self.now;
        let mut points: BTreeSet<u64> = self
            .leader
            .probes
            .hosts
            .values()
            .flat_map(|by_vantage| by_vantage.iter())
            .filter(|(_, p)| now.saturating_sub(p.last_result_at) <= fresh)
            .map(|(vantage, _)| *vantage)
            .collect();
        points.insert(leader);
        points
    }

    pub(super) fn run_leader(&mut self) {
        let Some(leader) = self.leader.node else {
            return;
        };
        let (now, now_ms) = (self.now, self.now_ms());
        let vantage_points = self.vantage_points(leader);
        let silence = self.config.agent_silence_timeout;
        let mut commands: Vec<Command> =
            reconcile::decide(&self.state, &self.leader.observations, now, now_ms, silence);
        let evidence = Evidence {
            state: &self.state,
            observations: &self.leader.observations,
            probes: &self.leader.probes,
            vantage_points: &vantage_points,
        };
        let verdicts = detector::assess(&evidence, now, &self.config);
        let actions = failover::plan(
            &self.state,
            &self.leader.observations,
            &verdicts,
            &mut self.leader.memory,
            now,
            now_ms,
            &self.config,
        );
        let mut restarts = Vec::new();
        for action in actions {
            match action {
                HaAction::Commit(command) => commands.push(command),
                HaAction::RestartAgent { host_id } => restarts.push(host_id),
                HaAction::Alert(message) => self.timeline.push(now, "alert", message),
            }
        }
        for command in commands {
            let _applied_or_refused = self.apply(command, "leader");
        }
        for host in restarts {
            let ssh = self
                .network
                .connected(&Node::Coordinator(leader), &Node::Host(host.clone()));
            if ssh && self.network.host_up(&host) {
                let connected = self.agents.get(&host).is_some_and(|a| a.alive)
                    && self
                        .network
                        .connected(&Node::Host(host.clone()), &Node::Coordinator(leader));
                if connected {
                    self.spurious_agent_restarts += 1;
                }
                self.restart_agent(&host, "agent restarted over SSH by the leader");
            }
        }
    }
}
