//! Replicated records → the wire types the CLI prints.

use kvs_proto::pb;

use crate::control::observation::HostLiveness;
use crate::control::{HaStatus, Observations};
use crate::state::{ClusterState, Instance};
use std::time::Duration;

/// An instance with its HA status as the leader observes it.
pub fn instance_with_ha(state: &ClusterState, i: &Instance, ha: HaStatus) -> pb::Instance {
    let host = state.hosts.get(&i.primary.host_id);
    let engine_version = host
        .and_then(|h| h.engines.iter().find(|e| e.label == i.engine))
        .map(|e| format!("{} {}", e.kind, e.version))
        .unwrap_or_default();
    pb::Instance {
        name: i.name.clone(),
        plan: i.plan.clone(),
        status: i.status.as_str().into(),
        created_at_ms: i.created_at_ms,
        version: i.engine.clone(),
        timeout_seconds: i.settings.timeout_seconds,
        maxmemory_policy: i.settings.maxmemory_policy.clone(),
        notify_keyspace_events: i.settings.notify_keyspace_events.clone(),
        persistence: if i.persistence { "AOF" } else { "None" }.into(),
        ha_status: ha.as_str().into(),
        requires_tls: true,
        maintenance_window: if i.maintenance_window.is_empty() {
            "not set".into()
        } else {
            i.maintenance_window.clone()
        },
        attachments: state
            .attachments(&i.name)
            .into_iter()
            .map(|(app, config_var)| pb::Attachment { app, config_var })
            .collect(),
        url: state.url(i).unwrap_or_default(),
        maxmemory_bytes: i.maxmemory_bytes,
        max_connections: i.max_connections,
        primary_host: i.primary.host_id.clone(),
        primary_zone: host.map(|h| h.zone.clone()).unwrap_or_default(),
        epoch: i.epoch,
        engine_version,
        standby_hosts: i.standbys.iter().map(|p| p.host_id.clone()).collect(),
        standby_zones: i
            .standbys
            .iter()
            .map(|p| {
                state
                    .hosts
                    .get(&p.host_id)
                    .map(|h| h.zone.clone())
                    .unwrap_or_default()
            })
            .collect(),
        failover: i
            .failover
            .as_ref()
            .map(|f| {
                let kind = if f.planned {
                    "planned switchover"
                } else {
                    "failover"
                };
                format!("{kind} to {} (epoch {})", f.target_host_id, f.new_epoch)
            })
            .unwrap_or_default(),
        failover_epoch: i.failover.as_ref().map_or(0, |f| f.new_epoch),
    }
}

pub fn hosts(
    state: &ClusterState,
    observations: &Observations,
    now: Duration,
    silence: Duration,
) -> Vec<pb::Host> {
    state
        .hosts
        .values()
        .map(|h| {
            let seen = observations.hosts.get(&h.id);
            let liveness = observations.liveness(&h.id, now, silence);
            pb::Host {
                id: h.id.clone(),
                zone: h.zone.clone(),
                address: h.address.to_string(),
                hostname: h.hostname.clone(),
                memory_total_bytes: seen
                    .map(|s| s.memory_total_bytes)
                    .unwrap_or(h.memory_total_bytes),
                memory_available_bytes: seen.map(|s| s.memory_available_bytes).unwrap_or(0),
                memory_reserved_bytes: state.memory_reserved(&h.id),
                load_avg_1m: seen.map(|s| s.load_avg_1m).unwrap_or(0.0),
                state: liveness.as_str().into(),
                last_seen_ms: if liveness == HostLiveness::Unknown {
                    0
                } else {
                    seen.map(|s| s.last_seen_ms).unwrap_or(0)
                },
                engines: h
                    .engines
                    .iter()
                    .map(|e| format!("{} ({})", e.label, e.version))
                    .collect(),
                // Primaries and standbys alike: both take memory and ports on the host.
                instances: state.placements_on(&h.id).count() as u32,
            }
        })
        .collect()
}
