//! Table tests for replication role changes: promotion, demotion, re-pointing, their order with
//! settings changes, and stale epochs.

use kvs_proto::model::{DesiredProcess, ProcessStatus, Role};

use super::tests::{ms, names, process, run_to_ready, status};
use super::*;

fn standby(name: &str, epoch: u64, upstream_port: u16) -> DesiredProcess {
    DesiredProcess {
        epoch,
        role: Role::Standby,
        upstream: Some(kvs_proto::model::Upstream {
            host: "127.0.0.12".parse().expect("ip"),
            port: upstream_port,
            tunnel_port: 26380,
        }),
        ..process(name)
    }
}

fn primary(name: &str, epoch: u64) -> DesiredProcess {
    DesiredProcess {
        epoch,
        fence_after_seconds: Some(60),
        ..process(name)
    }
}

/// Each row: the running spec, the new desired spec, the action, and the role afterwards. Role
/// changes are live (no restart, data kept) and level-triggered from the desired spec.
#[test]
fn role_changes_are_live() {
    type Row = (
        &'static str,
        DesiredProcess,
        DesiredProcess,
        Option<&'static str>,
    );
    let table: Vec<Row> = vec![
        (
            "failover promotion",
            standby("redis-a-1", 1, 6380),
            primary("redis-a-1", 2),
            Some("promote"),
        ),
        (
            "returning old primary",
            primary("redis-a-1", 1),
            standby("redis-a-1", 2, 6381),
            Some("demote"),
        ),
        (
            "primary moved",
            standby("redis-a-1", 2, 6380),
            standby("redis-a-1", 3, 6390),
            Some("repoint"),
        ),
        (
            "standby, new epoch only",
            standby("redis-a-1", 2, 6380),
            standby("redis-a-1", 3, 6380),
            None,
        ),
        (
            "fencing and paused writes are not the engine's config",
            primary("redis-a-1", 2),
            DesiredProcess {
                pause_writes: true,
                fence_after_seconds: Some(5),
                ..primary("redis-a-1", 2)
            },
            None,
        ),
    ];
    for (what, from, to, expected) in table {
        let mut sup = Supervisor::new(RestartPolicy::default());
        sup.set_desired(vec![from.clone()], true, ms(0));
        let generation = run_to_ready(&mut sup, ms(0));
        assert!(
            sup.set_desired(vec![to.clone()], true, ms(10)).is_empty(),
            "{what}"
        );
        let actions = sup.poll(ms(10));
        let Some(expected) = expected else {
            assert!(names(&actions).is_empty(), "{what}: {actions:?}");
            assert_eq!(sup.running("redis-a-1"), Some(&to), "{what}");
            continue;
        };
        assert_eq!(
            names(&actions),
            [format!("{expected}:g{generation}")],
            "{what}"
        );
        let Some(Action::Replication { from: f, to: t, .. }) = actions.first() else {
            panic!("{what}: {actions:?}")
        };
        assert_eq!(**f, from, "{what}: from is the running spec");
        assert_eq!(
            (t.role, &t.upstream, t.epoch),
            (to.role, &to.upstream, to.epoch),
            "{what}"
        );
        assert!(names(&sup.poll(ms(11))).is_empty(), "{what}: one at a time");
        sup.on_reconfigured("redis-a-1", generation, Ok(()));
        assert!(names(&sup.poll(ms(12))).is_empty(), "{what}: converged");
        assert_eq!(sup.running("redis-a-1"), Some(&to), "{what}");
        assert_eq!(status(&sup, "redis-a-1"), ProcessStatus::Running, "{what}");
        assert_eq!(sup.statuses()[0].pid, Some(4242), "{what}: same process");
    }
}

#[test]
fn role_change_first_then_settings() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![standby("redis-a-1", 1, 6380)], true, ms(0));
    let generation = run_to_ready(&mut sup, ms(0));
    let mut promoted = primary("redis-a-1", 2);
    promoted.settings.timeout_seconds = 7;
    sup.set_desired(vec![promoted.clone()], true, ms(1));
    assert_eq!(names(&sup.poll(ms(1))), [format!("promote:g{generation}")]);
    sup.on_reconfigured("redis-a-1", generation, Ok(()));
    assert_eq!(
        names(&sup.poll(ms(2))),
        [format!("reconfigure:g{generation}")]
    );
    sup.on_reconfigured("redis-a-1", generation, Ok(()));
    assert_eq!(sup.running("redis-a-1"), Some(&promoted));
}

#[test]
fn role_change_waits_for_ready_and_a_failure_restarts_in_the_new_role() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![standby("redis-a-1", 1, 6380)], true, ms(0));
    let actions = sup.poll(ms(0));
    assert_eq!(names(&actions), ["start:g1"]);
    sup.on_started("redis-a-1", 1, 77);
    sup.set_desired(vec![primary("redis-a-1", 2)], true, ms(1));
    assert!(names(&sup.poll(ms(1))).is_empty(), "not ready yet");
    sup.on_ready("redis-a-1", 1);
    assert_eq!(names(&sup.poll(ms(2))), ["promote:g1"]);
    sup.on_reconfigured("redis-a-1", 1, Err("connection refused".into()));
    assert_eq!(names(&sup.poll(ms(3))), ["stop:g1"]);
    sup.on_exited("redis-a-1", 1, "terminated".into(), ms(4));
    let actions = sup.poll(ms(4));
    assert!(
        matches!(&actions[0], Action::Start { process, .. } if process.role == Role::Primary),
        "{actions:?}"
    );
}

#[test]
fn stale_role_changes_are_refused() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![primary("redis-a-1", 2)], true, ms(0));
    run_to_ready(&mut sup, ms(0));
    // An old message demoting it at epoch 1 (e.g. from a deposed leader).
    let rejected = sup.set_desired(vec![standby("redis-a-1", 1, 6380)], true, ms(1));
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(names(&sup.poll(ms(1))).is_empty());
    assert_eq!(
        sup.running("redis-a-1").map(|p| p.role),
        Some(Role::Primary)
    );
}
