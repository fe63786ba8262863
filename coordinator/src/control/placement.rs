//! Where a new instance goes: the live host with the most free plan memory that offers the
//! requested engine, and the lowest free port triple (front, engine, tunnel) on it. Standbys go
//! the same way, restricted to other zones than their primary's ([`place_standby`]).

use std::collections::BTreeSet;

/// A standby's replication tunnel port is its front port plus this (defined with the state, which
/// reserves it for every placement).
pub use crate::state::TUNNEL_PORT_OFFSET;
use crate::state::{ClusterState, Instance};

/// First client TLS port handed out on a host.
pub const FRONT_PORT_MIN: u16 = 6380;
/// Ports above this are not handed out (leaves room for `+ ENGINE_PORT_OFFSET`).
pub const FRONT_PORT_MAX: u16 = 16_379;
/// The engine's loopback port is the front port plus this.
pub const ENGINE_PORT_OFFSET: u16 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no host is registered yet; start an agent (kvs-agent) first")]
    NoHosts,
    #[error("no live host offers engine version {version}; available: {available}")]
    NoEngine { version: String, available: String },
    #[error("no live host has {needed} bytes of memory free for this plan")]
    NoCapacity { needed: u64 },
    #[error("host {0} has no free port left")]
    NoPort(String),
    #[error("no live host outside zone {zone} can take a standby")]
    NoOtherZone { zone: String },
}

/// The chosen host and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub host_id: String,
    pub front_port: u16,
    pub engine_port: u16,
}

/// The engine label to use when the request names none: the newest valkey any live host offers,
/// else the newest redis.
pub fn default_engine<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let labels: BTreeSet<&str> = offered.into_iter().collect();
    let newest = |kind: &str| {
        labels
            .iter()
            .filter_map(|l| {
                Some((
                    l.strip_prefix(kind)?
                        .strip_prefix('-')?
                        .parse::<u32>()
                        .ok()?,
                    *l,
                ))
            })
            .max()
            .map(|(_, l)| l.to_string())
    };
    newest("valkey").or_else(|| newest("redis"))
}

/// Places an instance needing `memory_bytes` of engine `engine` on one of `live_hosts`.
pub fn place(
    state: &ClusterState,
    live_hosts: &[String],
    engine: &str,
    memory_bytes: u64,
) -> Result<Choice, PlacementError> {
    if state.hosts.is_empty() {
        return Err(PlacementError::NoHosts);
    }
    let with_engine: Vec<&String> = live_hosts
        .iter()
        .filter(|id| {
            state
                .hosts
                .get(*id)
                .is_some_and(|h| h.engines.iter().any(|e| e.label == engine))
        })
        .collect();
    if with_engine.is_empty() {
        let available: BTreeSet<&str> = live_hosts
            .iter()
            .filter_map(|id| state.hosts.get(id))
            .flat_map(|h| h.engines.iter().map(|e| e.label.as_str()))
            .collect();
        let available = if available.is_empty() {
            "none (no live host)".to_string()
        } else {
            available.into_iter().collect::<Vec<_>>().join(", ")
        };
        return Err(PlacementError::NoEngine {
            version: engine.to_string(),
            available,
        });
    }
    let free = |id: &str| {
        let total = state
            .hosts
            .get(id)
            .map(|h| h.memory_total_bytes)
            .unwrap_or(0);
        total.saturating_sub(state.memory_reserved(id))
    };
    let host_id = with_engine
        .iter()
        .filter(|id| free(id) >= memory_bytes)
        .max_by(|a, b| free(a).cmp(&free(b)).then_with(|| b.cmp(a)))
        .ok_or(PlacementError::NoCapacity {
            needed: memory_bytes,
        })?
        .to_string();
    let used: BTreeSet<u16> = state.ports_in_use(&host_id).into_iter().collect();
    let front_port = (FRONT_PORT_MIN..=FRONT_PORT_MAX)
        .find(|p| {
            [*p, p + ENGINE_PORT_OFFSET, p + TUNNEL_PORT_OFFSET]
                .iter()
                .all(|port| !used.contains(port))
        })
        .ok_or_else(|| PlacementError::NoPort(host_id.clone()))?;
    Ok(Choice {
        host_id,
        front_port,
        engine_port: front_port + ENGINE_PORT_OFFSET,
    })
}

/// Places a standby of `instance` on one of `live_hosts`: never in the primary's zone nor on a
/// host that already runs a process of the instance; preferably in a zone where the instance has
/// no process at all (after a failover that is the third zone, not the old primary's).
pub fn place_standby(
    state: &ClusterState,
    live_hosts: &[String],
    instance: &Instance,
) -> Result<Choice, PlacementError> {
    let zone_of = |id: &str| state.hosts.get(id).map(|h| h.zone.as_str());
    let primary_zone = zone_of(&instance.primary.host_id).unwrap_or_default();
    let placements = || std::iter::once(&instance.primary).chain(&instance.standbys);
    let used_hosts: BTreeSet<&str> = placements().map(|p| p.host_id.as_str()).collect();
    let used_zones: BTreeSet<&str> = placements().filter_map(|p| zone_of(&p.host_id)).collect();
    let allowed: Vec<String> = live_hosts
        .iter()
        .filter(|id| !used_hosts.contains(id.as_str()))
        .filter(|id| zone_of(id).is_some_and(|z| z != primary_zone))
        .cloned()
        .collect();
    if allowed.is_empty() {
        return Err(PlacementError::NoOtherZone {
            zone: primary_zone.to_string(),
        });
    }
    let fresh_zone: Vec<String> = allowed
        .iter()
        .filter(|id| zone_of(id).is_some_and(|z| !used_zones.contains(z)))
        .cloned()
        .collect();
    let memory = instance.maxmemory_bytes;
    place(state, &fresh_zone, &instance.engine, memory)
        .or_else(|_| place(state, &allowed, &instance.engine, memory))
}

#[cfg(test)]
mod tests;
