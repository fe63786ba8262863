//! The agent end to end against a fake coordinator (a tiny tonic Agent service in this test):
//! Register over server-auth TLS with the join token, Session over mTLS, a Desired down, Observed
//! up showing the engine running, host identity stored in data_dir. Two coordinators are
//! configured, the first one dead: registration and session move on to the second. The SSH host
//! key file's line is sent at registration.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use kvs_proto::pb::{self, agent_server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

const JOIN_TOKEN: &str = "join-token-for-tests";

struct Pki {
    ca_pem: String,
    coordinator: (String, String),
    host: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kvs test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |cn: &str| {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        (
            params.signed_by(&key, &issuer).expect("cert").pem(),
            key.serialize_pem(),
        )
    };
    Pki {
        coordinator: leaf("coordinator:1"),
        host: leaf("agent:h-1"),
        ca_pem: ca.pem(),
    }
}

struct FakeCoordinator {
    host: (String, String),
    ca_pem: String,
    desired: pb::Desired,
    observed: mpsc::Sender<pb::Observed>,
    registered: mpsc::Sender<pb::RegisterRequest>,
}

type DownStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl agent_server::Agent for FakeCoordinator {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if bearer != Some(&format!("Bearer {JOIN_TOKEN}")) {
            return Err(Status::unauthenticated("bad join token"));
        }
        let req = request.into_inner();
        let _ = self.registered.try_send(req.clone());
        assert_eq!(req.zone, "a");
        assert!(req.memory_total_bytes > 0);
        assert!(req.engines.iter().any(|e| e.label.starts_with("redis-")));
        Ok(Response::new(pb::RegisterResponse {
            host_id: "h-1".into(),
            cert_pem: self.host.0.clone(),
            key_pem: self.host.1.clone(),
            ca_pem: self.ca_pem.clone(),
        }))
    }

    type SessionStream = DownStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<DownStream>, Status> {
        if request.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::unauthenticated(
                "Session needs the host certificate",
            ));
        }
        let mut up = request.into_inner();
        let observed = self.observed.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = up.next().await {
                if let Some(pb::agent_message::Kind::Observed(o)) = message.kind {
                    let _ = observed.send(o).await;
                }
            }
        });
        let message = pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Desired(self.desired.clone())),
        };
        let down = tokio_stream::iter(vec![Ok(message)]).chain(tokio_stream::pending());
        Ok(Response::new(Box::pin(down)))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_register_session_desired_observed() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    // The agent under test finds its engines in PATH (no `[engines]` paths configured).
    let engines = kvs_agent::engine::catalog::Catalog::discover(&Default::default()).await;
    if engines.resolve("redis-7").is_none() {
        kvs_test_support::skip("redis-server 7 is not in PATH (scripts/install-engines)");
        return;
    }
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("ca");

    let (observed_tx, mut observed_rx) = mpsc::channel(64);
    let (registered_tx, mut registered_rx) = mpsc::channel(4);
    let ssh_key = dir.path().join("ssh_host_ed25519_key.pub");
    std::fs::write(
        &ssh_key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITest root@test\n",
    )
    .expect("ssh key");
    let process = pb::DesiredProcess {
        instance: "redis-session-1".into(),
        epoch: 1,
        role: "primary".into(),
        engine_port: free_port().into(),
        front_port: free_port().into(),
        engine: "redis-7".into(),
        maxmemory_bytes: 25 << 20,
        maxclients: 20,
        maxmemory_policy: "noeviction".into(),
        timeout_seconds: 300,
        notify_keyspace_events: String::new(),
        appendonly: false,
        default_password: "customerpassword0123456789".into(),
        admin_password: "adminpassword0123456789".into(),
        replication_password: "replicationpassword0123456789".into(),
        ..Default::default()
    };
    let fake = FakeCoordinator {
        host: pki.host.clone(),
        ca_pem: pki.ca_pem.clone(),
        desired: pb::Desired {
            version: 7,
            processes: vec![process],
        },
        observed: observed_tx,
        registered: registered_tx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pki.coordinator.0, &pki.coordinator.1))
        .client_ca_root(Certificate::from_pem(&pki.ca_pem))
        .client_auth_optional(true);
    let server = Server::builder()
        .tls_config(tls)
        .expect("tls")
        .add_service(agent_server::AgentServer::new(fake))
        .serve_with_incoming(TcpListenerStream::new(listener));
    let server = tokio::spawn(server);

    let config = kvs_agent::Config {
        coordinators: vec![
            format!("https://127.0.0.1:{}", free_port()),
            format!("https://{addr}"),
        ],
        ssh_host_key_file: ssh_key,
        ca_file,
        join_token: Some(JOIN_TOKEN.into()),
        zone: "a".into(),
        hostname: "test-host".into(),
        data_dir: dir.path().join("agent"),
        report_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(kvs_agent::run(config, async move {
        let _ = stop_rx.await;
    }));

    let running = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(observed) = observed_rx.recv().await {
            let up = observed
                .processes
                .iter()
                .any(|p| p.instance == "redis-session-1" && p.status == "running");
            if up && observed.desired_version == 7 {
                return Some(observed);
            }
        }
        None
    })
    .await
    .expect("the agent never reported the engine running")
    .expect("stream ended");
    let registration = registered_rx.recv().await.expect("registered");
    assert_eq!(
        registration.ssh_host_key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITest root@test"
    );
    assert_eq!(running.host_id, "h-1");
    assert!(running.at_ms > 0);
    assert!(running.host.is_some_and(|h| h.memory_total_bytes > 0));
    let process = &running.processes[0];
    assert_eq!(process.role, "master");
    assert!(process.pid > 0);
    assert_eq!(process.master_link_status, "");
    assert_eq!(process.connected_replicas, 0);
    assert!(!process.fenced);

    let data = dir.path().join("agent");
    assert!(
        std::fs::read_to_string(data.join("host.json"))
            .expect("host.json")
            .contains("h-1")
    );
    for file in ["tls/cert.pem", "tls/key.pem", "tls/ca.pem", "desired.json"] {
        assert!(data.join(file).exists(), "{file} missing");
    }

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("agent did not stop")
        .expect("join")
        .expect("agent run");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.pid)).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "engine still running after the agent stopped: {stat}"
    );
    server.abort();
}
