//! Failures are reported clearly, never panics: a missing engine, a front port in use, a corrupt
//! AOF that makes the engine crash-loop.

use std::time::Duration;

use kvs_agent::supervisor::RestartPolicy;
use kvs_proto::model::{DesiredProcess, ProcessStatus};

use crate::fixtures::{CoordinatorVoice, Harness, LOCALHOST, first_engine, init_tracing, process};

fn fast_restarts() -> RestartPolicy {
    RestartPolicy {
        budget_max: 3,
        budget_window: Duration::from_secs(60),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        crash_loop_retry_interval: Duration::from_secs(600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_missing_engine_is_failed() {
    init_tracing();
    let mut h = Harness::start(fast_restarts()).await;
    h.apply(vec![process("redis-none-1", "valkey-99")]);
    let state = h.wait_status("redis-none-1", ProcessStatus::Failed).await;
    let report = state.process("redis-none-1").expect("reported");
    assert_eq!(
        report.last_error,
        "engine valkey-99 not installed on this host"
    );
    h.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_front_port_in_use_is_reported() {
    init_tracing();
    let Some(engine) = first_engine().await.map(|e| e.engine.label) else {
        return;
    };
    let mut h = Harness::start(fast_restarts()).await;
    let squatter = std::net::TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let mut spec = process("redis-busy-1", &engine);
    spec.front_port = squatter.local_addr().expect("addr").port();
    h.apply(vec![spec.clone()]);
    let state = h
        .wait("redis-busy-1", |p| {
            p.status == ProcessStatus::Failed && p.pid != 0
        })
        .await;
    let report = state.process("redis-busy-1").expect("reported");
    assert!(
        report.last_error.contains("TLS front cannot listen"),
        "{}",
        report.last_error
    );
    assert!(
        report.last_error.contains(&spec.front_port.to_string()),
        "{}",
        report.last_error
    );
    tracing::info!("--- the port frees up: the front is retried");
    drop(squatter);
    h.wait_status("redis-busy-1", ProcessStatus::Running).await;
    let mut client = h.client(&spec).await;
    client
        .command(&["PING"])
        .await
        .expect("PING through the front");
    h.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_corrupt_aof_crash_loops_with_a_clear_error() {
    init_tracing();
    let Some(engine) = first_engine().await.map(|e| e.engine.label) else {
        return;
    };
    let mut h = Harness::start(fast_restarts()).await;
    let aof = h.instance_dir("redis-bad-1").join("appendonlydir");
    std::fs::create_dir_all(&aof).expect("mkdir");
    std::fs::write(
        aof.join("appendonly.aof.manifest"),
        "file appendonly.aof.1.incr.aof seq 1 type i\n",
    )
    .expect("manifest");
    std::fs::write(
        aof.join("appendonly.aof.1.incr.aof"),
        "garbage\r\nmore garbage\n",
    )
    .expect("aof");
    h.apply(vec![process("redis-bad-1", &engine)]);
    let state = h
        .wait_status("redis-bad-1", ProcessStatus::CrashLooping)
        .await;
    let report = state.process("redis-bad-1").expect("reported");
    assert_eq!(report.restarts, 3);
    assert!(
        report.last_error.contains("appendonly.aof.1.incr.aof"),
        "{}",
        report.last_error
    );
    assert!(
        report.last_error.contains("exited with code 1"),
        "{}",
        report.last_error
    );
    h.runtime.shutdown().await;
}

/// A primary with a standby that starts from disk after its host rebooted stays fenced, refusing
/// clients, and reports it, until the coordinator answers with a new epoch; a plain restart on
/// the same boot is not a reboot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t25_primary_restarted_after_a_reboot_is_fenced_until_a_new_epoch() {
    init_tracing();
    let Some(engine) = first_engine().await.map(|e| e.engine.label) else {
        return;
    };
    let name = "redis-boot-1";
    let spec = DesiredProcess {
        fence_after_seconds: Some(60),
        ..process(name, &engine)
    };
    let mut h = Harness::start(RestartPolicy::default()).await;
    let _voice = CoordinatorVoice::speak(&h.runtime);
    h.apply(vec![spec.clone()]);
    let state = h.wait_status(name, ProcessStatus::Running).await;
    assert!(!state.process(name).expect("reported").after_reboot);
    h.try_client(&spec).await.expect("serves before the reboot");
    h.runtime.shutdown().await;

    tracing::info!("--- same data dir, new boot id: fenced and reported");
    let mut h = Harness::start_after_boot(h.dir, RestartPolicy::default(), "boot-2").await;
    let _voice = CoordinatorVoice::speak(&h.runtime);
    h.apply(vec![spec.clone()]);
    h.wait(name, |p| {
        p.after_reboot && p.fenced && p.status == ProcessStatus::Running
    })
    .await;
    assert!(
        h.try_client(&spec).await.is_err(),
        "clients are refused while the coordinator has not answered"
    );

    tracing::info!("--- the coordinator raises the epoch: serving again");
    let next = DesiredProcess {
        epoch: spec.epoch + 1,
        ..spec.clone()
    };
    h.apply(vec![next.clone()]);
    h.wait(name, |p| {
        !p.after_reboot && !p.fenced && p.epoch == next.epoch
    })
    .await;
    h.try_client(&next).await.expect("serves at the new epoch");
    h.runtime.shutdown().await;
}
