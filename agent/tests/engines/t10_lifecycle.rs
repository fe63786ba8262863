//! The life of one instance on each installed engine: start behind the TLS front, serve the
//! customer, refuse administrative commands, survive kill -9 with its AOF data, change settings
//! live, and be destroyed without a trace.

use std::os::unix::fs::PermissionsExt;

use kvs_agent::engine::resp::{RespError, Value};
use kvs_agent::supervisor::RestartPolicy;
use kvs_proto::model::ProcessStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::fixtures::{Harness, alive, catalog, first_engine, init_tracing, process};

/// `CONFIG GET name` as the value, via kvs-admin.
async fn config_get(
    admin: &mut kvs_agent::engine::resp::Connection<tokio::net::TcpStream>,
    name: &str,
) -> String {
    match admin
        .command(&["CONFIG", "GET", name])
        .await
        .expect("CONFIG GET")
    {
        Value::Array(Some(items)) => items.get(1).and_then(bulk).unwrap_or_default(),
        other => panic!("CONFIG GET {name}: {other:?}"),
    }
}

fn bulk(value: &Value) -> Option<String> {
    match value {
        Value::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Simple(text) => Some(text.clone()),
        _ => None,
    }
}

async fn lifecycle(engine: &str) {
    init_tracing();
    if catalog().await.resolve(engine).is_none() {
        kvs_test_support::skip(&format!(
            "engine {engine} is not installed (scripts/install-engines)"
        ));
        return;
    }
    let mut h = Harness::start(RestartPolicy::default()).await;
    let name = format!("redis-life-{}", engine.replace('-', ""));
    let spec = process(&name, engine);

    let first_pid = {
        tracing::info!("--- start the instance");
        h.apply(vec![spec.clone()]);
        let state = h.wait_status(&name, ProcessStatus::Running).await;
        let report = state.process(&name).expect("reported");
        assert_eq!(report.info.role, "master");
        assert!(report.info.used_memory_bytes > 0);
        let dir = h.instance_dir(&name);
        for file in ["engine.conf", "users.acl", "engine.log", "engine.pid"] {
            assert!(dir.join(file).exists(), "{file} missing");
        }
        let mode = std::fs::metadata(dir.join("users.acl"))
            .expect("acl")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "users.acl must not be readable by others");
        report.pid
    };

    {
        tracing::info!("--- the customer uses it over TLS");
        let mut client = h.client(&spec).await;
        assert_eq!(
            bulk(
                &client
                    .command(&["SET", "greeting", "hello"])
                    .await
                    .expect("SET")
            )
            .as_deref(),
            Some("OK")
        );
        assert_eq!(
            bulk(&client.command(&["GET", "greeting"]).await.expect("GET")).as_deref(),
            Some("hello")
        );
        assert_eq!(
            bulk(&client.command(&["ACL", "WHOAMI"]).await.expect("WHOAMI")).as_deref(),
            Some("default")
        );
        for denied in [
            &["CONFIG", "GET", "maxmemory"][..],
            &["CONFIG", "SET", "maxmemory", "0"],
            &["SHUTDOWN"],
            &["DEBUG", "SLEEP", "0"],
            &["ACL", "LIST"],
            &["BGSAVE"],
            &["REPLICAOF", "NO", "ONE"],
        ] {
            match client.command(denied).await {
                // DEBUG is also disabled by `enable-debug-command no`, checked before the ACL.
                Err(RespError::Server(message)) => assert!(
                    message.starts_with("NOPERM")
                        || message.starts_with("ERR DEBUG command not allowed"),
                    "{denied:?}: {message}"
                ),
                other => panic!("{denied:?} must be refused, got {other:?}"),
            }
        }
    }

    let second_pid = {
        tracing::info!("--- kill -9 the engine: restarted at once, data intact");
        kill(
            Pid::from_raw(i32::try_from(first_pid).expect("pid")),
            Signal::SIGKILL,
        )
        .expect("kill -9");
        let state = h
            .wait(&name, |p| {
                p.status == ProcessStatus::Running && p.restarts == 1
            })
            .await;
        let report = state.process(&name).expect("reported");
        assert_ne!(report.pid, first_pid);
        assert!(
            report.last_error.contains("signal 9"),
            "{}",
            report.last_error
        );
        let mut client = h.client(&spec).await;
        assert_eq!(
            bulk(&client.command(&["GET", "greeting"]).await.expect("GET")).as_deref(),
            Some("hello")
        );
        report.pid
    };

    {
        tracing::info!("--- settings change live (CONFIG SET), no restart");
        let mut changed = spec.clone();
        changed.settings.maxmemory_policy = "allkeys-lru".into();
        changed.settings.timeout_seconds = 0;
        changed.settings.notify_keyspace_events = "KEA".into();
        h.apply(vec![changed.clone()]);
        let mut admin = h.admin(&spec).await;
        let deadline = tokio::time::Instant::now() + crate::fixtures::WAIT;
        while config_get(&mut admin, "maxmemory-policy").await != "allkeys-lru" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "maxmemory-policy never changed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(config_get(&mut admin, "timeout").await, "0");
        let events = config_get(&mut admin, "notify-keyspace-events").await;
        assert!(!events.is_empty(), "keyspace events enabled: {events:?}");
        let state = h.wait_status(&name, ProcessStatus::Running).await;
        assert_eq!(
            state.process(&name).expect("reported").pid,
            second_pid,
            "no restart for a settings change"
        );
        let conf =
            std::fs::read_to_string(h.instance_dir(&name).join("engine.conf")).expect("conf");
        assert!(
            conf.contains("maxmemory-policy \"allkeys-lru\""),
            "the file follows the live change"
        );
    }

    let spec = {
        tracing::info!("--- passwords rotate live (users.acl + ACL LOAD), no restart");
        let mut rotated = spec.clone();
        rotated.settings.maxmemory_policy = "allkeys-lru".into();
        rotated.settings.timeout_seconds = 0;
        rotated.settings.notify_keyspace_events = "KEA".into();
        rotated.default_password = "rotatedcustomerpassword0123".into();
        rotated.admin_password = "rotatedadminpassword0123".into();
        h.apply(vec![rotated.clone()]);
        let deadline = tokio::time::Instant::now() + crate::fixtures::WAIT;
        loop {
            let addr = std::net::SocketAddr::new(crate::fixtures::LOCALHOST, rotated.engine_port);
            let info = kvs_agent::runtime::query_info(addr, &rotated.admin_password).await;
            if info.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "new admin password never accepted: {info:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut client = h.client(&rotated).await;
        assert_eq!(
            bulk(&client.command(&["GET", "greeting"]).await.expect("GET")).as_deref(),
            Some("hello")
        );
        let state = h.wait_status(&name, ProcessStatus::Running).await;
        assert_eq!(
            state.process(&name).expect("reported").pid,
            second_pid,
            "no restart for a rotation"
        );
        rotated
    };

    {
        tracing::info!("--- destroy: stopped, directory removed, front closed");
        h.apply(vec![]);
        h.runtime
            .wait_for(crate::fixtures::WAIT, |s| s.processes.is_empty())
            .await
            .unwrap_or_else(|last| panic!("not destroyed: {last:#?}"));
        assert!(!alive(second_pid), "engine still running");
        assert!(!h.instance_dir(&name).exists(), "instance dir left behind");
        let front =
            tokio::net::TcpStream::connect((crate::fixtures::LOCALHOST, spec.front_port)).await;
        assert!(front.is_err(), "front still listening");
    }

    h.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_redis_lifecycle() {
    lifecycle("redis-7").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_valkey_lifecycle() {
    lifecycle("valkey-9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_shutdown_stops_engines_and_keeps_data() {
    init_tracing();
    let Some(engine) = first_engine().await.map(|e| e.engine.label) else {
        return;
    };
    let mut h = Harness::start(RestartPolicy::default()).await;
    let spec = process("redis-keep-1", &engine);
    h.apply(vec![spec.clone()]);
    let state = h.wait_status("redis-keep-1", ProcessStatus::Running).await;
    let pid = state.process("redis-keep-1").expect("reported").pid;
    let dir = h.instance_dir("redis-keep-1");
    h.runtime.shutdown().await;
    assert!(!alive(pid), "engine survived the agent's shutdown");
    assert!(
        dir.join("engine.conf").exists(),
        "shutdown must not delete data"
    );
}
