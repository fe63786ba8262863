//! Who can reach whom this tick, derived from the active faults. Reachability is directed (a
//! one-way partition drops packets in one direction only), but every protocol in the system is
//! TCP (agent stream, SSH probe, replication tunnel, client TLS), so a connection needs both
//! directions: [`Network::connected`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::faults::{ActiveFault, Resolved};

/// A network endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    /// The application clients (outside every zone).
    Client,
    Coordinator(u64),
    Host(String),
}

/// Where things are.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// host id → (zone, address).
    pub hosts: BTreeMap<String, (String, IpAddr)>,
    /// coordinator node id → zone (one per zone).
    pub coordinators: BTreeMap<u64, String>,
}

impl Topology {
    pub fn zone_of(&self, node: &Node) -> Option<&str> {
        match node {
            Node::Client => None,
            Node::Coordinator(id) => self.coordinators.get(id).map(String::as_str),
            Node::Host(id) => self.hosts.get(id).map(|(zone, _)| zone.as_str()),
        }
    }

    pub fn host_by_address(&self, address: IpAddr) -> Option<&str> {
        self.hosts
            .iter()
            .find(|(_, (_, a))| *a == address)
            .map(|(id, _)| id.as_str())
    }

    pub fn nodes(&self) -> Vec<Node> {
        let coordinators = self.coordinators.keys().map(|id| Node::Coordinator(*id));
        let hosts = self.hosts.keys().map(|id| Node::Host(id.clone()));
        std::iter::once(Node::Client)
            .chain(coordinators)
            .chain(hosts)
            .collect()
    }
}

/// This tick's reachability.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// Directed pairs whose packets are dropped.
    blocked: BTreeSet<(Node, Node)>,
    /// Hosts that are off.
    pub hosts_down: BTreeSet<String>,
}

impl Network {
    pub fn derive(active: &[ActiveFault], now: Duration, topology: &Topology) -> Self {
        let mut network = Network::default();
        for fault in active {
            if !fault.resolved.cutting_at(now) {
                continue;
            }
            match &fault.resolved {
                Resolved::HostCrash { host, .. } => {
                    network.hosts_down.insert(host.clone());
                }
                Resolved::Partition {
                    host,
                    coordinators,
                    peers,
                    clients,
                    one_way,
                    ..
                } => {
                    let me = Node::Host(host.clone());
                    let mut others: Vec<Node> = peers.iter().cloned().map(Node::Host).collect();
                    if *coordinators {
                        others.extend(topology.coordinators.keys().map(|c| Node::Coordinator(*c)));
                    }
                    if *clients {
                        others.push(Node::Client);
                    }
                    for other in others {
                        network.blocked.insert((me.clone(), other.clone()));
                        if !*one_way {
                            network.blocked.insert((other, me.clone()));
                        }
                    }
                }
                Resolved::ZoneCut { zone } => {
                    let nodes = topology.nodes();
                    let (inside, outside): (Vec<Node>, Vec<Node>) = nodes
                        .into_iter()
                        .partition(|n| topology.zone_of(n) == Some(zone.as_str()));
                    for a in &inside {
                        for b in &outside {
                            network.blocked.insert((a.clone(), b.clone()));
                            network.blocked.insert((b.clone(), a.clone()));
                        }
                    }
                }
                Resolved::EngineCrash { .. } | Resolved::AgentHang { .. } => {}
            }
        }
        network
    }

    pub fn host_up(&self, host: &str) -> bool {
        !self.hosts_down.contains(host)
    }

    fn node_up(&self, node: &Node) -> bool {
        match node {
            Node::Host(id) => self.host_up(id),
            Node::Client | Node::Coordinator(_) => true,
        }
    }

    /// A TCP connection between `a` and `b` works: both ends up, packets pass both ways.
    pub fn connected(&self, a: &Node, b: &Node) -> bool {
        if a == b {
            return self.node_up(a);
        }
        self.node_up(a)
            && self.node_up(b)
            && !self.blocked.contains(&(a.clone(), b.clone()))
            && !self.blocked.contains(&(b.clone(), a.clone()))
    }

    /// Hosts `a` and `b` can talk.
    pub fn hosts_connected(&self, a: &str, b: &str) -> bool {
        self.connected(&Node::Host(a.to_string()), &Node::Host(b.to_string()))
    }

    /// A host has some broken path (to a coordinator, a host or the clients), or is off.
    pub fn host_disturbed(&self, host: &str, topology: &Topology) -> bool {
        let me = Node::Host(host.to_string());
        !self.host_up(host)
            || topology
                .nodes()
                .iter()
                .any(|n| *n != me && !self.connected(&me, n) && self.node_up(n))
    }
}
