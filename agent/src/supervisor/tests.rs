//! Table tests for the supervisor: events in, actions and statuses out, time as plain numbers.

use std::time::Duration;

use kvs_proto::model::{DesiredProcess, ProcessStatus, Role};
use kvs_proto::settings::Settings;

use super::*;

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn process(name: &str) -> DesiredProcess {
    DesiredProcess {
        instance: name.into(),
        epoch: 1,
        role: Role::Primary,
        engine_port: 16380,
        front_port: 6380,
        engine: "valkey-9".into(),
        maxmemory_bytes: 25 << 20,
        maxclients: 20,
        settings: Settings::default(),
        appendonly: true,
        default_password: "d".repeat(32),
        admin_password: "a".repeat(32),
        replication_password: "r".repeat(32),
        upstream: None,
        fence_after_seconds: None,
        pause_writes: false,
        catch_up: false,
    }
}

/// Names of the actions, for compact assertions: "start:g1", "restart:g2", "stop:g1", ...
pub(super) fn names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start {
                generation,
                restart: false,
                ..
            } => Some(format!("start:g{generation}")),
            Action::Start {
                generation,
                restart: true,
                ..
            } => Some(format!("restart:g{generation}")),
            Action::Reconfigure { generation, .. } => Some(format!("reconfigure:g{generation}")),
            Action::Replication {
                generation, change, ..
            } => Some(format!("{change:?}:g{generation}").to_lowercase()),
            Action::Adopt { generation, .. } => Some(format!("adopt:g{generation}")),
            Action::Stop { generation, .. } => Some(format!("stop:g{generation}")),
            Action::Cleanup { instance } => Some(format!("cleanup:{instance}")),
            Action::ReportStatus => None,
        })
        .collect()
}

pub(super) fn status(sup: &Supervisor, name: &str) -> ProcessStatus {
    sup.statuses()
        .into_iter()
        .find(|s| s.instance == name)
        .map(|s| s.status)
        .expect("instance known")
}

/// Starts `p` and brings it to running; returns its generation.
pub(super) fn run_to_ready(sup: &mut Supervisor, now: Duration) -> u64 {
    let actions = sup.poll(now);
    let Some(Action::Start {
        generation,
        process,
        ..
    }) = actions.first().cloned()
    else {
        panic!("expected a start, got {actions:?}")
    };
    sup.on_started(&process.instance, generation, 4242);
    sup.on_ready(&process.instance, generation);
    sup.poll(now);
    generation
}

#[test]
fn start_then_ready_is_running() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![process("redis-a-1")], true, ms(0));
    assert_eq!(status(&sup, "redis-a-1"), ProcessStatus::Starting);
    let actions = sup.poll(ms(0));
    assert_eq!(names(&actions), ["start:g1"]);
    assert!(actions.contains(&Action::ReportStatus));
    assert!(names(&sup.poll(ms(1))).is_empty(), "no duplicate start");
    sup.on_started("redis-a-1", 1, 100);
    assert_eq!(status(&sup, "redis-a-1"), ProcessStatus::Starting);
    sup.on_ready("redis-a-1", 1);
    assert_eq!(status(&sup, "redis-a-1"), ProcessStatus::Running);
    assert_eq!(sup.statuses()[0].pid, Some(100));
}

/// The restart budget: each row is (crash at ms, expected delay before the restart, or None when
/// the instance becomes crash-looping). Policy: 5 restarts per 60 s, backoff 0, 0.5, 1, 2, 4 s.
#[test]
fn restart_budget_and_backoff() {
    let table: [(u64, Option<u64>); 6] = [
        (1_000, Some(0)),
        (2_000, Some(500)),
        (4_000, Some(1_000)),
        (8_000, Some(2_000)),
        (12_000, Some(4_000)),
        (20_000, None),
    ];
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![process("redis-a-1")], true, ms(0));
    let mut generation = run_to_ready(&mut sup, ms(0));
    for (row, (crash_at, delay)) in table.into_iter().enumerate() {
        sup.on_exited(
            "redis-a-1",
            generation,
            "killed by signal 9".into(),
            ms(crash_at),
        );
        let Some(delay) = delay else {
            assert_eq!(
                status(&sup, "redis-a-1"),
                ProcessStatus::CrashLooping,
                "row {row}"
            );
            assert!(
                names(&sup.poll(ms(crash_at + 60_000))).is_empty(),
                "row {row}: waits for the retry interval"
            );
            assert_eq!(sup.next_deadline(), Some(ms(crash_at + 300_000)));
            assert_eq!(
                names(&sup.poll(ms(crash_at + 300_000))).len(),
                1,
                "retried after the interval"
            );
            return;
        };
        assert_eq!(
            status(&sup, "redis-a-1"),
            ProcessStatus::Restarting,
            "row {row}"
        );
        assert_eq!(sup.next_deadline(), Some(ms(crash_at + delay)), "row {row}");
        if delay > 0 {
            assert!(
                names(&sup.poll(ms(crash_at + delay - 1))).is_empty(),
                "row {row}: too early"
            );
        }
        let actions = sup.poll(ms(crash_at + delay));
        let Some(Action::Start {
            generation: g,
            restart: true,
            ..
        }) = actions.first()
        else {
            panic!("row {row}: expected a restart, got {actions:?}")
        };
        generation = *g;
        sup.on_started("redis-a-1", generation, 100 + row as u32);
        sup.on_ready("redis-a-1", generation);
        assert_eq!(
            status(&sup, "redis-a-1"),
            ProcessStatus::Running,
            "row {row}"
        );
    }
    panic!("the table ends in crash_looping");
}

#[test]
fn restarts_outside_the_window_do_not_count() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![process("redis-a-1")], true, ms(0));
    let mut generation = run_to_ready(&mut sup, ms(0));
    // One crash every 61 s never exhausts the budget and always restarts at once.
    for i in 1..20u64 {
        let now = ms(i * 61_000);
        sup.on_exited("redis-a-1", generation, "crash".into(), now);
        assert_eq!(
            sup.next_deadline(),
            Some(now),
            "crash {i} restarts immediately"
        );
        generation = run_to_ready(&mut sup, now);
    }
    assert_eq!(sup.statuses()[0].restarts, 19);
}

#[test]
fn stale_exit_events_are_ignored() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![process("redis-a-1")], true, ms(0));
    let generation = run_to_ready(&mut sup, ms(0));
    sup.on_exited("redis-a-1", generation + 7, "old process".into(), ms(5));
    assert_eq!(status(&sup, "redis-a-1"), ProcessStatus::Running);
}

#[test]
fn destroyed_instance_is_stopped_then_cleaned() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![process("redis-a-1")], true, ms(0));
    let generation = run_to_ready(&mut sup, ms(0));
    sup.set_desired(vec![], true, ms(10));
    assert_eq!(names(&sup.poll(ms(10))), [format!("stop:g{generation}")]);
    assert!(names(&sup.poll(ms(11))).is_empty(), "one stop only");
    sup.on_exited("redis-a-1", generation, "terminated".into(), ms(20));
    assert_eq!(names(&sup.poll(ms(20))), ["cleanup:redis-a-1"]);
    sup.on_cleaned("redis-a-1", Ok(()), ms(30));
    assert!(sup.statuses().is_empty());
    assert!(sup.is_idle());
}

#[test]
fn orphans_on_disk_wait_for_an_authoritative_desired_state() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.found_on_disk(["redis-old-1".to_string(), "redis-a-1".to_string()], ms(0));
    // A cached desired state (not from the coordinator) never deletes anything.
    sup.set_desired(vec![process("redis-a-1")], false, ms(0));
    assert_eq!(names(&sup.poll(ms(0))), ["start:g1"]);
    sup.set_desired(vec![process("redis-a-1")], true, ms(1));
    assert_eq!(names(&sup.poll(ms(1))), ["cleanup:redis-old-1"]);
}

#[test]
fn missing_engine_fails_without_retrying() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![process("redis-a-1")], true, ms(0));
    sup.poll(ms(0));
    sup.on_start_failed(
        "redis-a-1",
        1,
        "engine valkey-9 not installed on this host".into(),
        false,
        ms(0),
    );
    assert_eq!(status(&sup, "redis-a-1"), ProcessStatus::Failed);
    assert_eq!(
        sup.statuses()[0].last_error.as_deref(),
        Some("engine valkey-9 not installed on this host")
    );
    assert!(names(&sup.poll(ms(100_000))).is_empty());
    assert_eq!(sup.next_deadline(), None);
    // A new spec (another engine) is tried again.
    let mut redis = process("redis-a-1");
    redis.engine = "redis-7".into();
    sup.set_desired(vec![redis], true, ms(100_000));
    assert_eq!(names(&sup.poll(ms(100_000))), ["start:g2"]);
}

/// Each row: how the spec changes, and what the supervisor does to the running engine.
#[test]
fn changed_settings_reconfigure_or_restart() {
    type Edit = fn(&mut DesiredProcess);
    let table: [(&str, Edit, &str); 9] = [
        ("timeout", |p| p.settings.timeout_seconds = 0, "reconfigure"),
        (
            "policy",
            |p| p.settings.maxmemory_policy = "allkeys-lru".into(),
            "reconfigure",
        ),
        (
            "keyspace events",
            |p| p.settings.notify_keyspace_events = "KEA".into(),
            "reconfigure",
        ),
        ("maxmemory", |p| p.maxmemory_bytes *= 2, "reconfigure"),
        (
            "password",
            |p| p.default_password = "e".repeat(32),
            "reconfigure",
        ),
        ("engine version", |p| p.engine = "valkey-10".into(), "stop"),
        ("engine port", |p| p.engine_port += 1, "stop"),
        ("front port", |p| p.front_port += 1, "none"),
        ("epoch", |p| p.epoch += 1, "none"),
    ];
    for (what, edit, expected) in table {
        let mut sup = Supervisor::new(RestartPolicy::default());
        sup.set_desired(vec![process("redis-a-1")], true, ms(0));
        let generation = run_to_ready(&mut sup, ms(0));
        let mut changed = process("redis-a-1");
        edit(&mut changed);
        sup.set_desired(vec![changed.clone()], true, ms(10));
        let actions = names(&sup.poll(ms(10)));
        match expected {
            "reconfigure" => {
                assert_eq!(actions, [format!("reconfigure:g{generation}")], "{what}");
                sup.on_reconfigured("redis-a-1", generation, Ok(()));
                assert_eq!(sup.running("redis-a-1"), Some(&changed), "{what}");
                assert!(names(&sup.poll(ms(11))).is_empty(), "{what}: converged");
            }
            "stop" => {
                assert_eq!(actions, [format!("stop:g{generation}")], "{what}");
                sup.on_exited("redis-a-1", generation, "terminated".into(), ms(20));
                let after = sup.poll(ms(20));
                assert!(
                    matches!(&after[0], Action::Start { process, restart: false, .. } if *process == changed),
                    "{what}"
                );
                assert_eq!(
                    sup.statuses()[0].restarts,
                    0,
                    "{what}: planned restarts do not count"
                );
            }
            _ => {
                assert!(actions.is_empty(), "{what}: {actions:?}");
                assert_eq!(sup.running("redis-a-1"), Some(&changed), "{what}");
            }
        }
    }
}

#[test]
fn failed_reconfiguration_restarts() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![process("redis-a-1")], true, ms(0));
    let generation = run_to_ready(&mut sup, ms(0));
    let mut changed = process("redis-a-1");
    changed.settings.timeout_seconds = 10;
    sup.set_desired(vec![changed], true, ms(1));
    assert_eq!(
        names(&sup.poll(ms(1))),
        [format!("reconfigure:g{generation}")]
    );
    sup.on_reconfigured("redis-a-1", generation, Err("connection refused".into()));
    assert_eq!(names(&sup.poll(ms(2))), [format!("stop:g{generation}")]);
}

#[test]
fn stale_epochs_are_rejected() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    let mut newer = process("redis-a-1");
    newer.epoch = 5;
    sup.set_desired(vec![newer.clone()], true, ms(0));
    run_to_ready(&mut sup, ms(0));
    let rejected = sup.set_desired(vec![process("redis-a-1")], true, ms(1));
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].reason.contains("stale epoch 1"), "{rejected:?}");
    assert!(names(&sup.poll(ms(1))).is_empty());
    assert_eq!(sup.running("redis-a-1"), Some(&newer));
}

#[test]
fn shutdown_stops_everything_and_deletes_nothing() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(
        vec![process("redis-a-1"), process("redis-b-2")],
        true,
        ms(0),
    );
    let actions = sup.poll(ms(0));
    for action in &actions {
        if let Action::Start {
            process,
            generation,
            ..
        } = action
        {
            sup.on_started(&process.instance, *generation, 1);
        }
    }
    sup.shutdown();
    assert_eq!(names(&sup.poll(ms(1))), ["stop:g1", "stop:g2"]);
    sup.on_exited("redis-a-1", 1, "terminated".into(), ms(2));
    sup.on_exited("redis-b-2", 2, "terminated".into(), ms(2));
    assert!(names(&sup.poll(ms(3))).is_empty());
    assert!(sup.is_idle());
}

#[test]
fn backoff_doubles_and_caps() {
    let policy = RestartPolicy::default();
    let delays: Vec<u64> = (0..8)
        .map(|n| policy.backoff(n).as_millis() as u64)
        .collect();
    assert_eq!(delays, [0, 500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
    assert_eq!(policy.backoff(10_000), policy.backoff_max);
}
