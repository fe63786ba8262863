//! Three coordinator nodes in one process (each with its own Raft store on disk, real TLS and
//! real gRPC): the first bootstraps, the others join on their own; membership changes and their
//! refusals; writes on a follower name the leader.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use kvs_coordinator::config::Config;
use kvs_coordinator::node::{Listeners, run_with_listeners};
use kvs_proto::pb;
use kvs_proto::pb::admin_client::AdminClient;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

struct Node {
    endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(id: u64, dir: &Path, join: Option<&str>) -> Node {
    let config = Config {
        node_id: id,
        cluster_id: "three".into(),
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        raft_listen: "127.0.0.1:0".parse().unwrap(),
        join: join.map(str::to_string),
        reconcile_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let listeners = Listeners::bind(&config).await.unwrap();
    let endpoint = format!("https://{}", listeners.api.local_addr().unwrap());
    let address = listeners.api.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_with_listeners(config, listeners, async move {
        let _ = stopped.await;
    }));
    // Ready when the API answers (a joining node serves its API only once it is a member).
    for _ in 0..600 {
        assert!(!task.is_finished(), "node {id} stopped: {:?}", task.await);
        if tokio::net::TcpStream::connect(address).await.is_ok() && dir.join("ca.pem").exists() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Node {
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
}

async fn admin(endpoint: &str, ca: &str) -> AdminClient<Channel> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    let channel = Channel::from_shared(endpoint.to_string())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    AdminClient::new(channel)
}

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn status(client: &mut AdminClient<Channel>, token: &str) -> pb::ClusterStatusResponse {
    client
        .cluster_status(authed(pb::ClusterStatusRequest {}, token))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_three_nodes_join_and_change_membership() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info,openraft=warn")
        .try_init();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

    tracing::info!("--- node 1 bootstraps a new cluster");
    let node1 = start(1, dirs[0].path(), None).await;
    let token = std::fs::read_to_string(dirs[0].path().join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let ca = std::fs::read_to_string(dirs[0].path().join("ca.pem")).unwrap();
    let mut leader = admin(&node1.endpoint, &ca).await;
    assert_eq!(status(&mut leader, &token).await.nodes.len(), 1);

    tracing::info!("--- removing the last voter is refused");
    let err = leader
        .remove_node(authed(pb::RemoveNodeRequest { node_id: 1 }, &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    tracing::info!("--- an unreachable node cannot be added, and nothing changes");
    let unreachable = pb::AddNodeRequest {
        node_id: 9,
        raft_addr: "127.0.0.1:1".into(),
        api_addr: "127.0.0.1:2".into(),
    };
    let err = leader
        .add_node(authed(unreachable, &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("cannot reach node 9"),
        "{}",
        err.message()
    );
    assert_eq!(status(&mut leader, &token).await.nodes.len(), 1);

    tracing::info!("--- nodes 2 and 3 join with the admin token and CA bundle");
    for dir in &dirs[1..] {
        std::fs::write(dir.path().join("admin-token"), &token).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
    }
    let node2 = start(2, dirs[1].path(), Some(&node1.endpoint)).await;
    let node3 = start(3, dirs[2].path(), Some(&node1.endpoint)).await;
    let mut three = status(&mut leader, &token).await;
    for _ in 0..300 {
        if three
            .nodes
            .iter()
            .filter(|n| n.role == "voter" && !n.api_addr.is_empty())
            .count()
            == 3
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        three = status(&mut leader, &token).await;
    }
    assert_eq!(
        three.nodes.iter().filter(|n| n.role == "voter").count(),
        3,
        "{three:?}"
    );
    assert!(
        three.nodes.iter().all(|n| !n.api_addr.is_empty()),
        "every node's API address is known: {three:?}"
    );

    tracing::info!("--- a duplicate node id is refused");
    let duplicate = pb::AddNodeRequest {
        node_id: 2,
        raft_addr: "127.0.0.1:3".into(),
        api_addr: "127.0.0.1:4".into(),
    };
    assert_eq!(
        leader
            .add_node(authed(duplicate, &token))
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );

    tracing::info!("--- a follower has the replicated state and names the leader for writes");
    let mut follower = admin(&node2.endpoint, &ca).await;
    let seen = status(&mut follower, &token).await;
    assert_eq!(seen.leader_id, 1);
    assert_eq!(seen.answered_by, 2);
    let err = follower
        .create_instance(authed(
            pb::CreateInstanceRequest {
                plan: "mini".into(),
                app: "a".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        err.metadata().get("kvs-leader").unwrap().to_str().unwrap(),
        node1.endpoint
    );
    let ca_from_follower = follower
        .get_ca_bundle(authed(pb::GetCaBundleRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ca_from_follower.pem, ca);
    assert_eq!(
        std::fs::read_to_string(dirs[1].path().join("join-token")).unwrap(),
        std::fs::read_to_string(dirs[0].path().join("join-token")).unwrap(),
        "the join token is replicated"
    );

    tracing::info!("--- node 3 is removed; two voters remain");
    let after = leader
        .remove_node(authed(pb::RemoveNodeRequest { node_id: 3 }, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after.nodes.iter().map(|n| n.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    node3.stop().await;
    node2.stop().await;
    node1.stop().await;
}
