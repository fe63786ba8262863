//! The coordinator's gRPC services end to end, over real TLS and a real Raft store on disk, with a
//! scripted agent (a gRPC client holding a real host certificate) in place of kvs-agent: auth,
//! registration, the session (observed up, desired down), create → available → destroy, bad
//! input that changes nothing, and a restart that keeps everything.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use kvs_coordinator::config::Config;
use kvs_coordinator::node::{Listeners, run_with_listeners};
use kvs_proto::pb;
use kvs_proto::pb::admin_client::AdminClient;
use kvs_proto::pb::agent_client::AgentClient;
use tokio::sync::{mpsc, oneshot};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Node {
    dir: std::path::PathBuf,
    endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(dir: &std::path::Path) -> Node {
    let config = Config {
        cluster_id: "test".into(),
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        raft_listen: "127.0.0.1:0".parse().unwrap(),
        reconcile_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let listeners = Listeners::bind(&config).await.unwrap();
    let endpoint = format!("https://{}", listeners.api.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_with_listeners(config, listeners, async move {
        let _ = stopped.await;
    }));
    let address = endpoint.trim_start_matches("https://").to_string();
    for _ in 0..100 {
        assert!(!task.is_finished(), "the node stopped: {:?}", task.await);
        if tokio::net::TcpStream::connect(&address).await.is_ok()
            && dir.join("admin-token").exists()
            && dir.join("ca.pem").exists()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Node {
        dir: dir.to_path_buf(),
        endpoint,
        stop: Some(stop),
        task,
    }
}

impl Node {
    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.await.unwrap().unwrap();
    }
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap()
            .trim()
            .to_string()
    }
    async fn channel(&self, identity: Option<Identity>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.file("ca.pem")))
            .domain_name("localhost");
        if let Some(identity) = identity {
            tls = tls.identity(identity);
        }
        let endpoint = Channel::from_shared(self.endpoint.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap();
        let mut last = None;
        for _ in 0..50 {
            match endpoint.connect().await {
                Ok(channel) => return channel,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot connect to {}: {last:?}", self.endpoint)
    }
}

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn observed(host_id: &str, processes: Vec<pb::ProcessObserved>) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Observed(pb::Observed {
            host_id: host_id.into(),
            at_ms: 0,
            host: Some(pb::HostMetrics {
                memory_total_bytes: 8 << 30,
                memory_available_bytes: 4 << 30,
                ..Default::default()
            }),
            processes,
            desired_version: 0,
            engines: vec![valkey()],
        })),
    }
}

fn valkey() -> pb::EngineInfo {
    pb::EngineInfo {
        kind: "valkey".into(),
        version: "9.0.0".into(),
        label: "valkey-9".into(),
    }
}

/// The next desired state on the session; heartbeats in between are skipped.
async fn next_desired(stream: &mut tonic::Streaming<pb::CoordinatorMessage>) -> pb::Desired {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match message.kind {
            Some(pb::coordinator_message::Kind::Desired(d)) => return d,
            Some(pb::coordinator_message::Kind::Heartbeat(_)) => continue,
            None => panic!("empty coordinator message"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_admin_and_agent_services() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info,openraft=warn")
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let token = node.file("admin-token");
    let join = node.file("join-token");
    let mut admin = AdminClient::new(node.channel(None).await);

    // --- auth: missing and wrong tokens
    let err = admin
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = admin
        .list_instances(authed(
            pb::ListInstancesRequest::default(),
            "wrong-token-wrong-token",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // --- create before any host exists: a clear precondition error
    let create = |plan: &str| pb::CreateInstanceRequest {
        plan: plan.into(),
        app: "dev-app".into(),
        ..Default::default()
    };
    let err = admin
        .create_instance(authed(create("mini"), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // --- register: bad join token refused, good one gives a host certificate
    let mut agent = AgentClient::new(node.channel(None).await);
    let register = pb::RegisterRequest {
        zone: "a".into(),
        address: "127.0.0.11".into(),
        hostname: "host-a".into(),
        memory_total_bytes: 8 << 30,
        engines: vec![valkey()],
        ..Default::default()
    };
    let err = agent
        .register(authed(register.clone(), "not-the-join-token"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let bad_address = pb::RegisterRequest {
        address: "nowhere".into(),
        ..register.clone()
    };
    assert_eq!(
        agent
            .register(authed(bad_address, &join))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let registered = agent
        .register(authed(register, &join))
        .await
        .unwrap()
        .into_inner();
    assert!(registered.host_id.starts_with("h-a-"));

    // --- a session without a client certificate is refused
    let (_tx, rx) = mpsc::channel::<pb::AgentMessage>(1);
    let err = agent
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // --- the session with the host certificate: empty desired state first
    let identity = Identity::from_pem(&registered.cert_pem, &registered.key_pem);
    let mut agent = AgentClient::new(node.channel(Some(identity)).await);
    let (up, rx) = mpsc::channel::<pb::AgentMessage>(8);
    up.send(observed(&registered.host_id, vec![]))
        .await
        .unwrap();
    let mut down = agent
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert!(next_desired(&mut down).await.processes.is_empty());

    // --- bad input changes nothing
    let err = admin
        .create_instance(authed(create("nope"), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("valid plans: mini, premium-0"),
        "{}",
        err.message()
    );
    let bad_policy = pb::CreateInstanceRequest {
        maxmemory_policy: "sometimes".into(),
        ..create("mini")
    };
    assert_eq!(
        admin
            .create_instance(authed(bad_policy, &token))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let bad_timeout = pb::CreateInstanceRequest {
        timeout_seconds: Some(u32::MAX),
        ..create("mini")
    };
    assert_eq!(
        admin
            .create_instance(authed(bad_timeout, &token))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let bad_version = pb::CreateInstanceRequest {
        version: "redis-2".into(),
        ..create("mini")
    };
    let err = admin
        .create_instance(authed(bad_version, &token))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("available: valkey-9"),
        "{}",
        err.message()
    );
    let listed = admin
        .list_instances(authed(pb::ListInstancesRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.instances.is_empty());

    // --- create: returns at once as creating, attached as REDIS_URL; the agent is told
    let instance = admin
        .create_instance(authed(create("premium-0"), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(instance.status, "creating");
    assert_eq!(instance.attachments[0].config_var, "REDIS_URL");
    assert_eq!(instance.persistence, "AOF");
    assert!(
        instance.url.starts_with("rediss://default:") && instance.url.ends_with("@127.0.0.11:6380"),
        "{}",
        instance.url
    );
    let desired = next_desired(&mut down).await;
    assert_eq!(desired.processes.len(), 1);
    let process = &desired.processes[0];
    assert_eq!(
        (process.front_port, process.engine_port, process.appendonly),
        (6380, 16380, true)
    );
    assert_eq!(process.maxmemory_bytes, 50 << 20);

    // --- the agent reports the engine running: the instance becomes available
    let running = pb::ProcessObserved {
        instance: instance.name.clone(),
        epoch: 1,
        status: "running".into(),
        role: "master".into(),
        ..Default::default()
    };
    up.send(observed(&registered.host_id, vec![running]))
        .await
        .unwrap();
    let mut status = String::new();
    for _ in 0..100 {
        let get = pb::InstanceRef {
            name: instance.name.clone(),
        };
        status = admin
            .get_instance(authed(get, &token))
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == "available" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "available");

    // --- settings change reaches the agent
    let update = pb::UpdateSettingsRequest {
        name: instance.name.clone(),
        timeout_seconds: Some(0),
        ..Default::default()
    };
    admin.update_settings(authed(update, &token)).await.unwrap();
    assert_eq!(
        next_desired(&mut down).await.processes[0].timeout_seconds,
        0
    );

    let vars = admin
        .get_config_vars(authed(
            pb::AppRef {
                app: "dev-app".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vars.vars.get("REDIS_URL"), Some(&instance.url));
    let err = admin
        .get_config_vars(authed(
            pb::AppRef {
                app: "ghost".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // --- destroy needs the right confirmation
    let wrong = pb::DestroyInstanceRequest {
        name: instance.name.clone(),
        confirm: "other".into(),
    };
    assert_eq!(
        admin
            .destroy_instance(authed(wrong, &token))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    let ghost = pb::DestroyInstanceRequest {
        name: "redis-ghost-1000".into(),
        confirm: "redis-ghost-1000".into(),
    };
    assert_eq!(
        admin
            .destroy_instance(authed(ghost, &token))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // --- restart on the same data dir keeps instances, config vars and tokens
    drop(up);
    drop(down);
    node.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let node = start(dir.path()).await;
    assert_eq!(node.file("admin-token"), token);
    let mut admin = AdminClient::new(node.channel(None).await);
    let after = admin
        .get_config_vars(authed(
            pb::AppRef {
                app: "dev-app".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, vars);
    let get = pb::InstanceRef {
        name: instance.name.clone(),
    };
    let again = admin
        .get_instance(authed(get, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.timeout_seconds, 0);

    let destroy = pb::DestroyInstanceRequest {
        name: instance.name.clone(),
        confirm: instance.name.clone(),
    };
    admin
        .destroy_instance(authed(destroy, &token))
        .await
        .unwrap();
    let listed = admin
        .list_instances(authed(pb::ListInstancesRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.instances.is_empty());
    node.stop().await;
}
