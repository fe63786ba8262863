//! High availability with two runtimes in one test: "host A" and "host B", each with its own data
//! dir and front port, sharing the test CA, engines on 127.0.0.1. A standby replicates through
//! its tunnel and the primary's TLS front; promotion keeps the data; the old primary is demoted
//! to a standby of the new one; a primary that loses both its coordinator and its standby is
//! fenced, and unfenced when the coordinator returns (not merely the standby). Planned switchover pauses writes.

use std::time::Duration;

use kvs_agent::engine::resp::{Connection, RespError, Value};
use kvs_agent::supervisor::RestartPolicy;
use kvs_proto::model::{DesiredProcess, ProcessStatus, Role, Upstream};
use tokio::time::Instant;

use crate::fixtures::{
    CoordinatorVoice, Harness, LOCALHOST, WAIT, catalog, free_port, init_tracing, pki, process,
};

fn bulk(value: &Value) -> Option<String> {
    match value {
        Value::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Simple(text) => Some(text.clone()),
        _ => None,
    }
}

fn standby_of(spec: &DesiredProcess, upstream: &DesiredProcess, epoch: u64) -> DesiredProcess {
    DesiredProcess {
        epoch,
        role: Role::Standby,
        upstream: Some(Upstream {
            host: LOCALHOST,
            port: upstream.front_port,
            tunnel_port: free_port(),
        }),
        fence_after_seconds: None,
        pause_writes: false,
        catch_up: false,
        ..spec.clone()
    }
}

async fn get<S>(conn: &mut Connection<S>, key: &str) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    conn.command(&["GET", key])
        .await
        .ok()
        .as_ref()
        .and_then(bulk)
}

/// Reads `key` through the instance's front until it equals `value` (bounded by `WAIT`).
async fn wait_value(h: &Harness, spec: &DesiredProcess, key: &str, value: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(mut conn) = h.try_client(spec).await
            && get(&mut conn, key).await.as_deref() == Some(value)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never became {value:?} on {}",
            spec.front_port
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_readonly(h: &Harness, spec: &DesiredProcess) {
    let mut conn = h.client(spec).await;
    match conn.command(&["SET", "refused", "1"]).await {
        Err(RespError::Server(message)) => assert!(message.starts_with("READONLY"), "{message}"),
        other => panic!("a standby must refuse writes, got {other:?}"),
    }
}

/// True once a write straight to the engine (as kvs-admin, bypassing the front) blocks: the engine
/// is under CLIENT PAUSE WRITE. Bounded by `WAIT`; the blocked writes run after the unpause.
async fn writes_block(h: &Harness, spec: &DesiredProcess) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let mut admin = h.admin(spec).await;
        let write = admin.command(&["SET", "paused-probe", "1"]);
        if tokio::time::timeout(Duration::from_millis(300), write)
            .await
            .is_err()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// True if a customer can connect and PING through the front.
async fn serves(h: &Harness, spec: &DesiredProcess) -> bool {
    match h.try_client(spec).await {
        Ok(mut conn) => conn.command(&["PING"]).await.is_ok(),
        Err(_) => false,
    }
}

/// Polls `serves` until it equals `expected`; returns how long that took.
async fn wait_serving(h: &Harness, spec: &DesiredProcess, expected: bool) -> Duration {
    let start = Instant::now();
    while serves(h, spec).await != expected {
        assert!(
            start.elapsed() < WAIT,
            "front of {} never became serving={expected}",
            spec.front_port
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

async fn replication(engine: &str) {
    init_tracing();
    if catalog().await.resolve(engine).is_none() {
        kvs_test_support::skip(&format!(
            "engine {engine} is not installed (scripts/install-engines)"
        ));
        return;
    }
    let pki = pki();
    let restart = RestartPolicy::default();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let mut a = Harness::start_with(dir_a, restart, pki.clone()).await;
    let mut b =
        Harness::start_with(tempfile::tempdir().expect("tempdir"), restart, pki.clone()).await;
    let name = format!("redis-ha-{}", engine.replace('-', ""));
    let a1 = process(&name, engine);
    let b1 = standby_of(&process(&name, engine), &a1, 1);

    {
        tracing::info!("--- A primary, B standby: writes on A appear on B");
        a.apply(vec![a1.clone()]);
        b.apply(vec![b1.clone()]);
        a.wait_status(&name, ProcessStatus::Running).await;
        let mut client = a.client(&a1).await;
        let reply = client
            .command(&["SET", "k1", "v1"])
            .await
            .expect("SET on A");
        assert_eq!(bulk(&reply).as_deref(), Some("OK"));
        wait_value(&b, &b1, "k1", "v1").await;
        assert_readonly(&b, &b1).await;
        let state = b
            .wait(&name, |p| {
                p.info.role == "slave" && p.info.master_link_status == "up"
            })
            .await;
        let report = state.process(&name).expect("B reported");
        assert!(report.info.master_last_io_seconds >= 0, "{report:?}");
        // The backlog (and the offset) starts when the first replica attaches.
        let primary = a
            .wait(&name, |p| {
                p.info.connected_replicas == 1 && p.info.replication_offset > 0
            })
            .await;
        let primary_report = primary.process(&name).expect("A reported");
        assert_eq!(primary_report.info.role, "master");
        assert_eq!(primary_report.info.master_link_status, "");
        // Offsets are in the primary's space: the standby catches up to the same number.
        let offset = primary_report.info.replication_offset;
        b.wait(&name, |p| p.info.replication_offset >= offset).await;
    }

    let (b2, b_pid) = {
        tracing::info!("--- promote B (epoch 2): data kept, writes accepted, same process");
        let pid = b
            .wait_status(&name, ProcessStatus::Running)
            .await
            .process(&name)
            .expect("B")
            .pid;
        let b2 = DesiredProcess {
            epoch: 2,
            role: Role::Primary,
            upstream: None,
            ..b1.clone()
        };
        b.apply(vec![b2.clone()]);
        let state = b
            .wait(&name, |p| p.info.role == "master" && p.epoch == 2)
            .await;
        assert_eq!(state.process(&name).expect("B").pid, pid, "no restart");
        let mut client = b.client(&b2).await;
        assert_eq!(get(&mut client, "k1").await.as_deref(), Some("v1"));
        let reply = client
            .command(&["SET", "k2", "v2"])
            .await
            .expect("SET on B");
        assert_eq!(bulk(&reply).as_deref(), Some("OK"));
        let conf =
            std::fs::read_to_string(b.instance_dir(&name).join("engine.conf")).expect("conf");
        assert!(
            !conf.contains("replicaof"),
            "the file follows the promotion"
        );
        tracing::info!("--- planned switchover: pause_writes pauses B's writes, false lifts it");
        b.apply(vec![DesiredProcess {
            pause_writes: true,
            ..b2.clone()
        }]);
        let paused = b.wait(&name, |p| p.writes_paused).await;
        let paused_offset = paused.process(&name).expect("B").info.replication_offset;
        assert!(writes_block(&b, &b2).await, "pause_writes pauses writes");
        let info = kvs_agent::runtime::query_info(
            ([127, 0, 0, 1], b2.engine_port).into(),
            &b2.admin_password,
        )
        .await
        .expect("INFO of B");
        assert_eq!(
            info.replication_offset, paused_offset,
            "the offset reported with writes_paused is final while paused"
        );
        b.apply(vec![b2.clone()]);
        b.wait(&name, |p| !p.writes_paused).await;
        let write = client.command(&["SET", "k2", "v2"]);
        let reply = tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .expect("writes are unpaused")
            .expect("SET on B");
        assert_eq!(bulk(&reply).as_deref(), Some("OK"));
        (b2, pid)
    };

    let a2 = {
        tracing::info!("--- demote A to a standby of B: new writes replicate, writes refused");
        let a2 = standby_of(&a1, &b2, 2);
        a.apply(vec![a2.clone()]);
        wait_value(&a, &a2, "k2", "v2").await;
        assert_readonly(&a, &a2).await;
        a.wait(&name, |p| {
            p.info.role == "slave" && p.info.master_link_status == "up"
        })
        .await;
        b.wait(&name, |p| p.info.connected_replicas == 1).await;
        a2
    };

    let b3 = {
        tracing::info!("--- B fences after 2 s without coordinator and standby, not before");
        let b3 = DesiredProcess {
            fence_after_seconds: Some(2),
            ..b2.clone()
        };
        let voice = CoordinatorVoice::speak(&b.runtime);
        b.apply(vec![b3.clone()]);
        let Harness {
            dir: dir_a,
            runtime,
            ..
        } = a;
        runtime.shutdown().await;
        b.wait(&name, |p| p.info.connected_replicas == 0).await;
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert!(serves(&b, &b3).await, "the coordinator is up: no fencing");
        let mut existing = b.client(&b3).await;
        drop(voice);
        let took = wait_serving(&b, &b3, false).await;
        assert!(took < Duration::from_secs(4), "fenced after {took:?}");
        b.wait(&name, |p| p.fenced).await;
        assert!(
            existing.command(&["PING"]).await.is_err(),
            "existing connections are dropped"
        );
        assert!(
            writes_block(&b, &b3).await,
            "the fenced engine pauses writes"
        );
        tracing::info!("--- A returns as B's standby: B stays fenced (A might be being promoted)");
        a = Harness::start_with(dir_a, restart, pki.clone()).await;
        a.apply(vec![a2.clone()]);
        b.wait(&name, |p| p.info.connected_replicas == 1).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(
            !serves(&b, &b3).await,
            "a reconnecting standby does not lift the fence"
        );
        tracing::info!("--- the coordinator is back: B unfenced, writes flow again");
        let _voice = CoordinatorVoice::speak(&b.runtime);
        let took = wait_serving(&b, &b3, true).await;
        tracing::info!(?took, "unfenced");
        b.wait(&name, |p| !p.fenced && p.info.connected_replicas == 1)
            .await;
        let mut client = b.client(&b3).await;
        let write = client.command(&["SET", "k3", "v3"]);
        let reply = tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .expect("writes are unpaused")
            .expect("SET on B");
        assert_eq!(bulk(&reply).as_deref(), Some("OK"));
        wait_value(&a, &a2, "k3", "v3").await;
        b3
    };

    let state = b.wait_status(&name, ProcessStatus::Running).await;
    assert_eq!(
        state.process(&name).expect("B").pid,
        b_pid,
        "B never restarted"
    );
    assert!(b3.fence_after_seconds.is_some());
    a.runtime.shutdown().await;
    b.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_redis_replication_failover_fencing() {
    replication("redis-7").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_valkey_replication_failover_fencing() {
    replication("valkey-9").await;
}
