//! The application clients: one per app, writing to the URL of its attachment's config var
//! (following rotations after a watch delay, as `kvs run` does), some writes with `WAIT 1`.

use std::net::IpAddr;
use std::time::Duration;

use kvs_proto::names::PRIMARY_CONFIG_VAR;
use rand::Rng;

use super::World;
use crate::facts::Ack;
use crate::network::Node;

/// Writes each client attempts per tick.
pub const WRITES_PER_TICK: usize = 2;

#[derive(Debug, Clone)]
pub struct Client {
    pub app: String,
    /// The URL it writes to (`None` before the first config).
    pub url: Option<String>,
    /// The app's config version it has seen.
    pub version: u64,
    /// A change seen but not yet followed: (apply at, url, version).
    pending: Option<(Duration, Option<String>, u64)>,
}

impl Client {
    pub fn new(app: &str) -> Self {
        Self {
            app: app.to_string(),
            url: None,
            version: 0,
            pending: None,
        }
    }
}

/// `rediss://user:password@ADDRESS:PORT` → (address, port).
pub fn parse_url(url: &str) -> Option<(IpAddr, u16)> {
    let (_, at) = url.rsplit_once('@')?;
    let (address, port) = at.rsplit_once(':')?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    Some((address.parse().ok()?, port.parse().ok()?))
}

impl World {
    pub(super) fn run_client_watch(&mut self) {
        let now = self.now;
        let watch_delay = self.watch_delay;
        for index in 0..self.clients.len() {
            let app = self.clients[index].app.clone();
            let Some((version, vars)) = self.state.config_vars(&app) else {
                continue;
            };
            let url = vars.get(PRIMARY_CONFIG_VAR).cloned();
            let client = &mut self.clients[index];
            let newer = client.pending.as_ref().map_or(client.version, |p| p.2) < version;
            if newer {
                client.pending = Some((now + watch_delay, url, version));
            }
            if let Some((at, url, version)) = client.pending.clone()
                && at <= now
            {
                client.pending = None;
                client.version = version;
                if client.url != url {
                    let target = url.as_deref().and_then(parse_url);
                    client.url = url;
                    let text = match target {
                        Some((address, port)) => {
                            format!("{app} follows REDIS_URL → {address}:{port}")
                        }
                        None => format!("{app} has no REDIS_URL"),
                    };
                    self.timeline.push(now, "client", text);
                }
            }
        }
    }

    /// The (host, instance) a URL reaches: the host with that address, the instance whose front
    /// listens on that port there.
    fn url_target(&self, url: &str) -> Option<(String, String)> {
        let (address, port) = parse_url(url)?;
        let host = self.topology.host_by_address(address)?;
        let agent = self.agents.get(host)?;
        let instance = agent.desired.values().find(|p| p.front_port == port)?;
        Some((host.to_string(), instance.instance.clone()))
    }

    pub(super) fn run_client_writes(&mut self) {
        let now = self.now;
        for index in 0..self.clients.len() {
            let target = self.clients[index]
                .url
                .as_deref()
                .and_then(|u| self.url_target(u));
            for _ in 0..WRITES_PER_TICK {
                let wait = self.rng.gen_range(0..1000) < self.wait_per_mille;
                let id = self.next_write_id;
                self.next_write_id += 1;
                let Some((host, instance)) = target.clone() else {
                    self.ledger.refused += 1;
                    continue;
                };
                let reachable = self
                    .network
                    .connected(&Node::Client, &Node::Host(host.clone()))
                    && self.agents.get(&host).is_some_and(|a| a.serving);
                let engine = self.engines.get_mut(&(host.clone(), instance.clone()));
                match engine {
                    Some(engine) if reachable && engine.accepts_writes(now) => {
                        let last_word = engine
                            .replica_last_heard()
                            .max(self.leader_heard.get(&host).copied());
                        let fences = self.agents.get(&host).is_some_and(|a| {
                            a.desired
                                .get(&instance)
                                .is_some_and(|p| p.fence_after_seconds.is_some())
                        });
                        let silent_for =
                            fences.then(|| now.saturating_sub(last_word.unwrap_or_default()));
                        engine.log.push(id);
                        self.ledger.acks.push(Ack {
                            id,
                            instance,
                            host,
                            at: now,
                            waited: wait,
                            silent_for,
                        });
                        if wait {
                            self.wait_pending.push(self.ledger.acks.len() - 1);
                        }
                    }
                    _ => self.ledger.refused += 1,
                }
            }
        }
    }

    /// `WAIT 1` returns 1 only if a replica of the writing primary holds the write after this
    /// tick's replication; otherwise the client saw a timeout and the write carries no promise.
    pub(super) fn settle_waits(&mut self) {
        for index in std::mem::take(&mut self.wait_pending) {
            let Some(ack) = self.ledger.acks.get(index) else {
                continue;
            };
            let held = self.engines.iter().any(|((h, i), e)| {
                *h != ack.host
                    && *i == ack.instance
                    && e.running
                    && e.upstream() == Some(ack.host.as_str())
                    && e.log.binary_search(&ack.id).is_ok()
            });
            if !held {
                self.ledger.wait_timeouts += 1;
                if let Some(ack) = self.ledger.acks.get_mut(index) {
                    ack.waited = false;
                }
            }
        }
    }
}
