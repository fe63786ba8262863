//! Desired processes per host across the failover steps (the table in the module doc).

use kvs_proto::model::Role;

use super::*;
use crate::control::ha_sim::{NAME, cluster, cluster_without_standby};
use crate::state::Command;

/// (role, epoch, upstream host, fence_after_seconds, pause_writes).
type Order = (Role, u64, Option<String>, Option<u32>, bool);

/// The order for the instance on `host`.
fn order(state: &ClusterState, host: &str) -> Option<Order> {
    let config = HaConfig::default();
    let mut processes = for_host(state, host, &config);
    assert!(processes.len() <= 1, "{processes:?}");
    let p = processes.pop()?;
    Some((
        p.role,
        p.epoch,
        p.upstream.map(|u| u.host.to_string()),
        p.fence_after_seconds,
        p.pause_writes,
    ))
}

fn begin(planned: bool) -> Command {
    Command::BeginFailover {
        name: NAME.into(),
        expected_epoch: 1,
        new_primary_host: "hb".into(),
        planned,
        allow_data_loss: false,
        primary_offset: Some(10),
        target_offset: Some(10),
        reason: "test".into(),
        at_ms: 5,
    }
}

#[test]
fn fencing_only_with_a_standby() {
    let alone = cluster_without_standby();
    assert_eq!(
        order(&alone, "ha"),
        Some((Role::Primary, 1, None, None, false))
    );
    let state = cluster();
    assert_eq!(
        order(&state, "ha"),
        Some((Role::Primary, 1, None, Some(2), false))
    );
    let standby = for_host(&state, "hb", &HaConfig::default()).pop().unwrap();
    let upstream = standby.upstream.unwrap();
    assert_eq!(
        (standby.role, standby.epoch, standby.fence_after_seconds),
        (Role::Standby, 1, None)
    );
    assert_eq!(
        (
            upstream.host.to_string().as_str(),
            upstream.port,
            upstream.tunnel_port
        ),
        ("127.0.0.11", 6380, 26380)
    );
    assert_eq!(order(&state, "hc"), None);
}

#[test]
fn planned_switchover_pauses_then_promotes_then_rotates() {
    let mut state = cluster();
    state.apply(&begin(true)).unwrap();
    assert_eq!(
        order(&state, "ha"),
        Some((Role::Primary, 1, None, Some(2), true))
    );
    assert_eq!(
        order(&state, "hb"),
        Some((Role::Standby, 1, Some("127.0.0.11".into()), None, false))
    );
    let catch_up = |state: &ClusterState, host: &str| {
        for_host(state, host, &HaConfig::default())
            .iter()
            .any(|p| p.catch_up)
    };
    assert!(catch_up(&state, "hb"), "the target reports its offset fast");
    assert!(!catch_up(&state, "ha") && !catch_up(&state, "hc"));
    let promote = Command::OrderPromotion {
        name: NAME.into(),
        epoch: 2,
        primary_offset: Some(10),
        target_offset: Some(10),
        at_ms: 6,
    };
    state.apply(&promote).unwrap();
    assert_eq!(
        order(&state, "hb"),
        Some((Role::Primary, 2, None, Some(2), false))
    );
    assert_eq!(
        order(&state, "ha"),
        Some((Role::Standby, 2, Some("127.0.0.12".into()), None, false))
    );
    let complete = Command::CompleteFailover {
        name: NAME.into(),
        epoch: 2,
        data_loss_bytes: Some(0),
        at_ms: 7,
    };
    state.apply(&complete).unwrap();
    assert_eq!(
        order(&state, "hb"),
        Some((Role::Primary, 2, None, Some(2), false))
    );
    assert_eq!(
        order(&state, "ha"),
        Some((Role::Standby, 2, Some("127.0.0.12".into()), None, false))
    );
}

#[test]
fn unplanned_promotion_is_ordered_at_once_and_abort_burns_the_epoch() {
    let mut state = cluster();
    state.apply(&begin(false)).unwrap();
    assert_eq!(
        order(&state, "hb"),
        Some((Role::Primary, 2, None, Some(2), false))
    );
    assert_eq!(
        order(&state, "ha"),
        Some((Role::Standby, 2, Some("127.0.0.12".into()), None, false))
    );
    let abort = Command::AbortFailover {
        name: NAME.into(),
        epoch: 2,
        reason: "test".into(),
        at_ms: 8,
    };
    state.apply(&abort).unwrap();
    assert_eq!(
        order(&state, "ha"),
        Some((Role::Primary, 3, None, Some(2), false)),
        "never primary at an old epoch"
    );
    assert_eq!(
        order(&state, "hb"),
        Some((Role::Standby, 3, Some("127.0.0.11".into()), None, false))
    );
}
