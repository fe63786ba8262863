//! Table tests for adopting an engine a previous agent left running.

use kvs_proto::model::ProcessStatus;

use super::tests::{ms, names, process, status};
use super::*;

const NAME: &str = "redis-a-1";

fn leftover(engine_port: u16) -> AdoptedEngine {
    AdoptedEngine {
        pid: 777,
        engine: "valkey-9".into(),
        engine_port: Some(engine_port),
    }
}

/// A supervisor that found the leftover at startup (before any desired state); returns the
/// generation the leftover runs as.
fn adopted(engine_port: u16) -> (Supervisor, u64) {
    let mut sup = Supervisor::new(RestartPolicy::default());
    let generation = sup
        .on_adopted(NAME, leftover(engine_port), ms(0))
        .expect("adopted");
    sup.found_on_disk([NAME.to_string()], ms(0));
    (sup, generation)
}

#[test]
fn same_engine_and_port_is_adopted_without_a_restart() {
    let (mut sup, g) = adopted(16380);
    assert!(names(&sup.poll(ms(0))).is_empty(), "nothing before a spec");
    assert_eq!(status(&sup, NAME), ProcessStatus::Starting);
    assert_eq!(sup.statuses()[0].pid, Some(777));

    // The cached desired state (not authoritative) is enough to adopt.
    sup.set_desired(vec![process(NAME)], false, ms(10));
    assert_eq!(names(&sup.poll(ms(10))), [format!("adopt:g{g}")]);
    assert!(names(&sup.poll(ms(11))).is_empty(), "one adoption");
    sup.on_reconfigured(NAME, g, Ok(()));
    assert_eq!(sup.running(NAME), Some(&process(NAME)));
    sup.on_ready(NAME, g);
    assert_eq!(status(&sup, NAME), ProcessStatus::Running);
    let report = &sup.statuses()[0];
    assert_eq!((report.pid, report.restarts), (Some(777), 0));

    // From here on it is an ordinary engine: a live change reconfigures it.
    let mut changed = process(NAME);
    changed.maxclients += 1;
    sup.set_desired(vec![changed], true, ms(20));
    assert_eq!(names(&sup.poll(ms(20))), [format!("reconfigure:g{g}")]);
}

#[test]
fn another_port_or_engine_is_replaced() {
    let (mut sup, g) = adopted(16999);
    sup.set_desired(vec![process(NAME)], true, ms(0));
    assert_eq!(names(&sup.poll(ms(0))), [format!("stop:g{g}")]);
    assert!(
        sup.statuses()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("16999")),
        "{:?}",
        sup.statuses()[0].last_error
    );
    sup.on_exited(NAME, g, "stopped (SIGTERM)".into(), ms(100));
    let actions = sup.poll(ms(100));
    assert_eq!(names(&actions), [format!("start:g{}", g + 1)]);

    let mut sup = Supervisor::new(RestartPolicy::default());
    let mut other = leftover(16380);
    other.engine = "redis-7".into();
    let g = sup.on_adopted(NAME, other, ms(0)).expect("adopted");
    sup.set_desired(vec![process(NAME)], true, ms(0));
    assert_eq!(names(&sup.poll(ms(0))), [format!("stop:g{g}")]);
}

#[test]
fn a_failed_adoption_replaces_the_engine() {
    let (mut sup, g) = adopted(16380);
    sup.set_desired(vec![process(NAME)], true, ms(0));
    assert_eq!(names(&sup.poll(ms(0))), [format!("adopt:g{g}")]);
    sup.on_reconfigured(NAME, g, Err("AUTH failed".into()));
    assert_eq!(names(&sup.poll(ms(1))), [format!("stop:g{g}")]);
    sup.on_exited(NAME, g, "stopped (SIGTERM)".into(), ms(50));
    assert_eq!(names(&sup.poll(ms(50))), [format!("start:g{}", g + 1)]);
}

#[test]
fn kept_until_an_authoritative_state_omits_it() {
    let (mut sup, g) = adopted(16380);
    sup.set_desired(vec![], false, ms(0));
    assert!(names(&sup.poll(ms(0))).is_empty(), "a cache cannot stop it");
    assert_eq!(sup.generation(NAME), Some(g));
    sup.set_desired(vec![], true, ms(10));
    assert_eq!(names(&sup.poll(ms(10))), [format!("stop:g{g}")]);
    sup.on_exited(NAME, g, "stopped (SIGTERM)".into(), ms(20));
    assert_eq!(names(&sup.poll(ms(20))), [format!("cleanup:{NAME}")]);
}

#[test]
fn an_adopted_engine_that_dies_is_started_again() {
    let (mut sup, g) = adopted(16380);
    // Dies before any spec is known: nothing to restart it with yet.
    sup.on_exited(NAME, g, "engine exited".into(), ms(5));
    assert!(names(&sup.poll(ms(5))).is_empty());
    sup.set_desired(vec![process(NAME)], true, ms(10));
    assert_eq!(names(&sup.poll(ms(10))), [format!("start:g{}", g + 1)]);

    // Dies once adopted: an ordinary crash and restart.
    let (mut sup, g) = adopted(16380);
    sup.set_desired(vec![process(NAME)], true, ms(0));
    sup.poll(ms(0));
    sup.on_reconfigured(NAME, g, Ok(()));
    sup.on_ready(NAME, g);
    sup.on_exited(NAME, g, "engine exited".into(), ms(1_000));
    assert_eq!(status(&sup, NAME), ProcessStatus::Restarting);
    assert_eq!(names(&sup.poll(ms(1_000))), [format!("restart:g{}", g + 1)]);
}

#[test]
fn shutdown_stops_an_adopted_engine() {
    let (mut sup, g) = adopted(16380);
    sup.shutdown();
    assert_eq!(names(&sup.poll(ms(0))), [format!("stop:g{g}")]);
    sup.on_exited(NAME, g, "stopped (SIGTERM)".into(), ms(10));
    assert!(sup.is_idle());
    assert!(names(&sup.poll(ms(10))).is_empty(), "nothing deleted");
}

#[test]
fn only_an_instance_without_a_process_adopts() {
    let mut sup = Supervisor::new(RestartPolicy::default());
    sup.set_desired(vec![process(NAME)], true, ms(0));
    sup.poll(ms(0));
    assert_eq!(sup.on_adopted(NAME, leftover(16380), ms(1)), None);
}
