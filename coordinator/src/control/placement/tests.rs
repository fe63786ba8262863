//! Placement table tests: capacity, engine availability, liveness and port allocation.

use std::net::IpAddr;

use kvs_proto::model::Engine;
use kvs_proto::settings::Settings;

use super::*;
use crate::state::{Command, Credentials, Host, Instance, InstanceStatus, Placement};

fn host(id: &str, memory: u64, engines: &[&str]) -> Host {
    Host {
        id: id.into(),
        zone: "a".into(),
        address: IpAddr::from([127, 0, 0, 11]),
        hostname: id.into(),
        memory_total_bytes: memory,
        engines: engines
            .iter()
            .map(|l| Engine {
                kind: l.split('-').next().unwrap_or_default().into(),
                version: "x".into(),
                label: (*l).into(),
            })
            .collect(),
        registered_at_ms: 0,
        ssh_host_key: None,
    }
}

fn state(hosts: &[Host]) -> ClusterState {
    let mut s = ClusterState::default();
    for h in hosts {
        s.apply(&Command::RegisterHost(h.clone())).unwrap();
    }
    s
}

fn put(s: &mut ClusterState, name: &str, host_id: &str, front_port: u16, memory: u64) {
    let instance = Instance {
        name: name.into(),
        plan: "mini".into(),
        maxmemory_bytes: memory,
        max_connections: 20,
        persistence: false,
        engine: "valkey-9".into(),
        settings: Settings::default(),
        credentials: Credentials {
            default_password: String::new(),
            admin_password: String::new(),
            replication_password: String::new(),
        },
        epoch: 1,
        primary: Placement {
            host_id: host_id.into(),
            front_port,
            engine_port: front_port + ENGINE_PORT_OFFSET,
        },
        status: InstanceStatus::Creating,
        created_at_ms: 0,
        maintenance_window: String::new(),
        standbys: Vec::new(),
        standby_required: false,
        failover: None,
        last_failover: None,
    };
    s.apply(&Command::CreateInstance {
        instance,
        app: "a".into(),
    })
    .unwrap();
}

fn live(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn picks_the_host_with_most_free_memory() {
    let mut s = state(&[
        host("h1", 1000, &["valkey-9"]),
        host("h2", 800, &["valkey-9"]),
    ]);
    assert_eq!(
        place(&s, &live(&["h1", "h2"]), "valkey-9", 100)
            .unwrap()
            .host_id,
        "h1"
    );
    put(&mut s, "redis-a-1000", "h1", 6380, 500);
    assert_eq!(
        place(&s, &live(&["h1", "h2"]), "valkey-9", 100)
            .unwrap()
            .host_id,
        "h2"
    );
}

#[test]
fn only_live_hosts_with_the_engine() {
    let s = state(&[
        host("h1", 1000, &["valkey-9"]),
        host("h2", 800, &["redis-7"]),
    ]);
    assert_eq!(
        place(&s, &live(&["h2"]), "redis-7", 1).unwrap().host_id,
        "h2"
    );
    let err = place(&s, &live(&["h2"]), "valkey-9", 1).unwrap_err();
    assert_eq!(
        err,
        PlacementError::NoEngine {
            version: "valkey-9".into(),
            available: "redis-7".into()
        }
    );
    assert!(matches!(
        place(&s, &[], "valkey-9", 1),
        Err(PlacementError::NoEngine { .. })
    ));
    assert_eq!(
        place(&ClusterState::default(), &[], "valkey-9", 1),
        Err(PlacementError::NoHosts)
    );
}

#[test]
fn capacity_is_respected() {
    let s = state(&[host("h1", 1000, &["valkey-9"])]);
    assert_eq!(
        place(&s, &live(&["h1"]), "valkey-9", 1001),
        Err(PlacementError::NoCapacity { needed: 1001 })
    );
}

#[test]
fn lowest_free_port_pair() {
    let mut s = state(&[host("h1", 1 << 40, &["valkey-9"])]);
    assert_eq!(
        place(&s, &live(&["h1"]), "valkey-9", 1).unwrap().front_port,
        6380
    );
    put(&mut s, "redis-a-1000", "h1", 6380, 1);
    put(&mut s, "redis-b-1000", "h1", 6382, 1);
    let choice = place(&s, &live(&["h1"]), "valkey-9", 1).unwrap();
    assert_eq!((choice.front_port, choice.engine_port), (6381, 16381));
}

#[test]
fn default_engine_prefers_newest_valkey() {
    assert_eq!(
        default_engine(["redis-7", "valkey-8", "valkey-9"]).as_deref(),
        Some("valkey-9")
    );
    assert_eq!(
        default_engine(["redis-6", "redis-7"]).as_deref(),
        Some("redis-7")
    );
    assert_eq!(default_engine([]), None);
}

#[test]
fn standby_goes_to_another_zone_preferring_an_unused_one() {
    use crate::control::ha_sim::{NAME, cluster};
    let mut s = cluster(); // primary ha (zone a), standby hb (zone b), hc (zone c) free
    let hosts = live(&["ha", "hb", "hc"]);
    let instance = s.instances[NAME].clone();
    let choice = place_standby(&s, &hosts, &instance).unwrap();
    assert_eq!(
        choice.host_id, "hc",
        "the zone without any process of the instance"
    );
    // After a failover to hb, the old primary's zone a is used too: still hc, never zone b.
    let mut swapped = instance.clone();
    std::mem::swap(&mut swapped.primary, &mut swapped.standbys[0]);
    assert_eq!(place_standby(&s, &hosts, &swapped).unwrap().host_id, "hc");
    assert_eq!(
        place_standby(&s, &live(&["ha", "hb"]), &swapped),
        Err(PlacementError::NoOtherZone { zone: "b".into() })
    );
    // Only the primary's zone and a used host left: nothing.
    s.hosts.get_mut("hc").unwrap().zone = "a".into();
    assert_eq!(
        place_standby(&s, &hosts, &instance),
        Err(PlacementError::NoOtherZone { zone: "a".into() })
    );
}
