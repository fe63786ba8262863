//! An agent killed with `kill -9` leaves its engines running; the next agent on the same data
//! dir must adopt them (same process, data and port, no restart) or, when they cannot serve the
//! desired spec, stop them and wait for the port before starting a new engine.
//!
//! The leftover engine is started with `engine::process::start` and then forgotten (neither
//! stopped nor reaped), as a SIGKILLed agent would leave it. By the time the new agent looks at
//! it, the engine has rewritten its process title, so its command line no longer names its
//! config file: the identification must not depend on it (that was the bug).

use std::time::Duration;

use kvs_agent::engine::catalog::CatalogEntry;
use kvs_agent::engine::render::InstancePaths;
use kvs_agent::engine::resp::Value;
use kvs_agent::supervisor::RestartPolicy;
use kvs_proto::model::{DesiredProcess, ProcessStatus};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::fixtures::{
    CoordinatorVoice, Harness, LOCALHOST, WAIT, alive, first_engine, init_tracing, process,
};

/// Starts `spec`'s engine in `dir` as a previous agent would have, lets it serve (and rewrite
/// its process title), stores `key`, and abandons it. Returns its PID.
async fn leave_engine(entry: &CatalogEntry, dir: &std::path::Path, spec: &DesiredProcess) -> u32 {
    let paths = InstancePaths::new(dir, &spec.instance);
    let (engine, exited) = kvs_agent::engine::process::start(
        &entry.path,
        spec,
        &paths,
        kvs_agent::engine::process::Launch {
            bind: LOCALHOST,
            stop_timeout: Duration::from_secs(3),
            exit_with_agent: false,
        },
    )
    .await
    .expect("start");
    let pid = engine.pid;
    // Neither stop nor reap it: as if the agent had been SIGKILLed.
    std::mem::forget(engine);
    std::mem::forget(Box::pin(exited));
    let addr = std::net::SocketAddr::new(LOCALHOST, spec.engine_port);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut admin = loop {
        if let Ok(mut conn) =
            kvs_agent::engine::resp::Connection::connect(addr, Duration::from_secs(1)).await
            && conn.auth("kvs-admin", &spec.admin_password).await.is_ok()
        {
            break conn;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leftover never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    admin
        .command(&["SET", "left", "behind"])
        .await
        .expect("SET");
    assert!(alive(pid));
    pid
}

async fn get(h: &Harness, spec: &DesiredProcess, key: &str) -> Option<String> {
    let mut client = h.client(spec).await;
    match client.command(&["GET", key]).await.expect("GET") {
        Value::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t13_engine_left_by_a_previous_agent_is_adopted() {
    init_tracing();
    let Some(entry) = first_engine().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = process("redis-left-1", &entry.engine.label);
    let leftover = leave_engine(&entry, dir.path(), &spec).await;
    // As if started by an older agent, without the Unix socket: the front must use TCP.
    let sock = InstancePaths::new(dir.path(), &spec.instance).sock;
    std::fs::remove_file(sock.expect("short path")).expect("remove engine.sock");

    let mut h = Harness::start_in(dir, RestartPolicy::default()).await;
    {
        tracing::info!("--- the new agent adopts it: same process, its data, no restart");
        h.apply(vec![spec.clone()]);
        let state = h.wait_status(&spec.instance, ProcessStatus::Running).await;
        let report = state.process(&spec.instance).expect("reported");
        assert_eq!(report.pid, leftover, "adopted, not replaced");
        assert_eq!(report.restarts, 0);
        assert_eq!(get(&h, &spec, "left").await.as_deref(), Some("behind"));
        let pid_file = std::fs::read_to_string(h.instance_dir(&spec.instance).join("engine.pid"))
            .expect("pid file");
        assert_eq!(pid_file.trim(), leftover.to_string());
    }
    {
        tracing::info!("--- a live change reaches the adopted engine");
        let mut changed = spec.clone();
        changed.settings.maxmemory_policy = "allkeys-lru".into();
        h.apply(vec![changed.clone()]);
        let mut admin = h.admin(&spec).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let reply = admin
                .command(&["CONFIG", "GET", "maxmemory-policy"])
                .await
                .expect("CONFIG GET");
            if matches!(&reply, Value::Array(Some(items)) if items.get(1) == Some(&Value::Bulk(Some(b"allkeys-lru".to_vec()))))
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{reply:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let state = h.wait_status(&spec.instance, ProcessStatus::Running).await;
        assert_eq!(
            state.process(&spec.instance).expect("reported").pid,
            leftover
        );
    }
    {
        tracing::info!("--- the agent's shutdown stops the adopted engine too");
        h.runtime.shutdown().await;
        assert!(!alive(leftover), "the adopted engine survived the shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t14_adopted_engine_that_crashes_is_restarted() {
    init_tracing();
    let Some(entry) = first_engine().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = process("redis-left-2", &entry.engine.label);
    let leftover = leave_engine(&entry, dir.path(), &spec).await;
    let mut h = Harness::start_in(dir, RestartPolicy::default()).await;
    h.apply(vec![spec.clone()]);
    h.wait(&spec.instance, |p| {
        p.status == ProcessStatus::Running && p.pid == leftover
    })
    .await;

    tracing::info!("--- kill -9 the adopted engine (not the agent's child): noticed, restarted");
    kill(
        Pid::from_raw(i32::try_from(leftover).expect("pid")),
        Signal::SIGKILL,
    )
    .expect("kill -9");
    let state = h
        .wait(&spec.instance, |p| {
            p.status == ProcessStatus::Running && p.restarts == 1
        })
        .await;
    let report = state.process(&spec.instance).expect("reported");
    assert_ne!(report.pid, leftover);
    assert!(
        report.last_error.contains("adopted"),
        "{}",
        report.last_error
    );

    tracing::info!("--- the new engine has its Unix socket, and the front uses it");
    let _client = h.client(&spec).await;
    let mut admin = h.admin(&spec).await;
    let clients = match admin
        .command(&["CLIENT", "LIST"])
        .await
        .expect("CLIENT LIST")
    {
        Value::Bulk(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        other => panic!("CLIENT LIST: {other:?}"),
    };
    assert!(
        clients
            .lines()
            .any(|l| l.contains("engine.sock") && l.contains("user=default")),
        "the customer is not connected through engine.sock:\n{clients}"
    );
    h.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_leftover_on_another_port_is_stopped_and_replaced() {
    init_tracing();
    let Some(entry) = first_engine().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let old = process("redis-left-3", &entry.engine.label);
    let leftover = leave_engine(&entry, dir.path(), &old).await;
    let mut h = Harness::start_in(dir, RestartPolicy::default()).await;

    tracing::info!("--- the desired spec moved the engine port: the leftover is replaced");
    let mut spec = old.clone();
    spec.engine_port = crate::fixtures::free_port();
    h.apply(vec![spec.clone()]);
    let state = h
        .wait(&spec.instance, |p| {
            p.status == ProcessStatus::Running && p.pid != leftover
        })
        .await;
    assert_eq!(state.process(&spec.instance).expect("reported").restarts, 0);
    assert!(!alive(leftover), "the leftover is still running");
    // Stopped gracefully: its AOF has the key, which the new engine loaded.
    assert_eq!(get(&h, &spec, "left").await.as_deref(), Some("behind"));
    h.runtime.shutdown().await;
}

/// The coordinator may restart a silent agent over SSH right after its host came back from a
/// reboot, before that agent opened its session: the engine it started is then adopted by the next
/// agent, which must still know the primary restarted after a reboot (its boot marker names the
/// old boot until the coordinator answers). Found by `kvs-sim stack` (seed 152, power-loss).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t17_adopted_primary_from_before_a_reboot_stays_fenced_until_answered() {
    init_tracing();
    let Some(entry) = first_engine().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = DesiredProcess {
        fence_after_seconds: Some(60),
        ..process("redis-left-boot", &entry.engine.label)
    };
    let leftover = leave_engine(&entry, dir.path(), &spec).await;
    // It last started under the boot before this one (the previous agent did not move the marker
    // on: the coordinator had not answered the reboot yet).
    let marker = InstancePaths::new(dir.path(), &spec.instance)
        .dir
        .join("boot_id");
    std::fs::write(&marker, "boot-0").expect("marker");

    let mut h = Harness::start_in(dir, RestartPolicy::default()).await;
    let _voice = CoordinatorVoice::speak(&h.runtime);
    h.apply(vec![spec.clone()]);
    let state = h
        .wait(&spec.instance, |p| {
            p.after_reboot && p.fenced && p.status == ProcessStatus::Running
        })
        .await;
    assert_eq!(
        state.process(&spec.instance).expect("reported").pid,
        leftover,
        "adopted, not replaced"
    );
    assert!(
        h.try_client(&spec).await.is_err(),
        "clients are refused while the coordinator has not answered"
    );
    assert_eq!(std::fs::read_to_string(&marker).expect("marker"), "boot-0");

    tracing::info!("--- the coordinator raises the epoch: serving again, this boot recorded");
    let next = DesiredProcess {
        epoch: spec.epoch + 1,
        ..spec.clone()
    };
    h.apply(vec![next.clone()]);
    h.wait(&spec.instance, |p| {
        !p.after_reboot && !p.fenced && p.epoch == next.epoch
    })
    .await;
    h.try_client(&next).await.expect("serves at the new epoch");
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::fs::read_to_string(&marker).expect("marker") != "boot-1" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the marker never moved on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.runtime.shutdown().await;
}
