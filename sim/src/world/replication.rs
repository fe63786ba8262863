//! Replication links between engines. A replica's link is established when both hosts are up
//! and can talk, both agents run (the standby's tunnel, the primary's front) and the upstream
//! engine runs; then it copies its upstream's log (appending when it holds a prefix, else a full
//! resync that drops what it had). A broken link is noticed at once when the other side closed
//! it (a process died on a reachable host), else only after `repl-timeout` (silent partition).

use std::collections::BTreeSet;

use super::World;
use crate::engine::{EngineRole, REPL_TIMEOUT};

enum Sync {
    Append(Vec<u64>),
    Full(Vec<u64>),
}

impl World {
    fn link_works(&self, replica: &str, upstream: &str, instance: &str) -> bool {
        let agent_up = |h: &str| self.agents.get(h).is_some_and(|a| a.serving);
        self.network.hosts_connected(replica, upstream)
            && agent_up(replica)
            && agent_up(upstream)
            && self
                .engines
                .get(&(upstream.to_string(), instance.to_string()))
                .is_some_and(|e| e.running && !e.refusing_peers)
    }

    pub(super) fn run_replication(&mut self) {
        let now = self.now;
        let keys: Vec<(String, String)> = self.engines.keys().cloned().collect();
        for key in &keys {
            let (host, instance) = key;
            let Some(engine) = self.engines.get(key) else {
                continue;
            };
            if !engine.running || engine.is_primary() {
                continue;
            }
            let upstream = engine.upstream().map(str::to_string);
            let was = engine.link.established;
            let works = upstream
                .as_deref()
                .is_some_and(|u| u != host && self.link_works(host, u, instance));
            let Some(up) = upstream.filter(|_| works) else {
                let clean = engine
                    .upstream()
                    .is_some_and(|u| self.network.hosts_connected(host, u));
                let upstream_key = engine.upstream().map(|u| (u.to_string(), instance.clone()));
                if let Some(engine) = self.engines.get_mut(key) {
                    engine.link.established = false;
                    engine.link.down =
                        clean || now.saturating_sub(engine.link.last_io) > REPL_TIMEOUT;
                }
                if clean && let Some(upstream) = upstream_key.and_then(|k| self.engines.get_mut(&k))
                {
                    upstream.replicas.remove(host);
                }
                if was {
                    self.timeline
                        .push(now, host, format!("{instance} replication link down"));
                }
                continue;
            };
            let upstream_key = (up.clone(), instance.clone());
            let Some(source) = self.engines.get(&upstream_key) else {
                continue;
            };
            let sync = if source.log.starts_with(&engine.log) {
                Sync::Append(source.log[engine.log.len()..].to_vec())
            } else {
                Sync::Full(source.log.clone())
            };
            let Some(engine) = self.engines.get_mut(key) else {
                continue;
            };
            let dropped = match sync {
                Sync::Append(suffix) => {
                    engine.log.extend(suffix);
                    0
                }
                Sync::Full(log) => {
                    let kept: BTreeSet<u64> = log.iter().copied().collect();
                    let dropped = engine.log.iter().filter(|id| !kept.contains(id)).count();
                    engine.sync_from(&log);
                    dropped
                }
            };
            engine.link.established = true;
            engine.link.down = false;
            engine.link.last_io = now;
            if let Some(source) = self.engines.get_mut(&upstream_key) {
                source.replicas.insert(host.clone(), now);
            }
            self.facts
                .links_established
                .insert((instance.clone(), host.clone(), up.clone()));
            if !was {
                self.timeline
                    .push(now, host, format!("{instance} replicating from {up}"));
            }
            if dropped > 0 {
                self.timeline.push(
                    now,
                    host,
                    format!("{instance} full resync from {up} dropped {dropped} writes"),
                );
            }
        }
        self.drop_closed_replicas();
    }

    /// A primary forgets replicas that closed their link cleanly: re-pointed, promoted, or whose
    /// process died on a host that is still up.
    fn drop_closed_replicas(&mut self) {
        let mut closed = Vec::new();
        for ((host, instance), engine) in &self.engines {
            for replica in engine.replicas.keys() {
                let key = (replica.clone(), instance.clone());
                let gone = match self.engines.get(&key) {
                    None => self.network.host_up(replica),
                    Some(r) if r.running => match &r.role {
                        EngineRole::Primary => true,
                        EngineRole::Replica { upstream } => upstream.as_deref() != Some(host),
                    },
                    Some(_) => {
                        self.network.host_up(replica) && self.network.hosts_connected(host, replica)
                    }
                };
                let agent_gone = !self.agents.get(replica).is_some_and(|a| a.serving)
                    && self.network.hosts_connected(host, replica);
                if gone || agent_gone {
                    closed.push((host.clone(), instance.clone(), replica.clone()));
                }
            }
        }
        for (host, instance, replica) in closed {
            if let Some(engine) = self.engines.get_mut(&(host, instance)) {
                engine.replicas.remove(&replica);
            }
        }
    }
}
