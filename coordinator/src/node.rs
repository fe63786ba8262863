//! Wiring of one coordinator node: open the Raft store, bootstrap the cluster, serve the Admin,
//! Agent and Config services over TLS (client certificates optional, required by the agent
//! session), serve the peer Raft service, and run the leader's reconcile loop until shutdown.
//!
//! ```text
//!   run(config, shutdown)
//!     ├─ raft::open(data_dir) ─ initialize_single (first start) ─ ensure_cluster (CA)
//!     ├─ tokens, CA bundle, node certificate
//!     ├─ serve :listen  (Admin+Config: admin token · Agent: join token / mTLS)
//!     ├─ serve :raft_listen (peer Raft)
//!     └─ reconcile loop (leader only): control::reconcile::decide → commit status changes
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use kvs_proto::pb::admin_server::AdminServer;
use kvs_proto::pb::agent_server::AgentServer;
use kvs_proto::pb::config_server::ConfigServer;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::bootstrap;
use crate::ca::ClusterCa;
use crate::config::Config;
use crate::control::Observations;
use crate::net::Net;
use crate::raft;
use crate::service::admin::AdminService;
use crate::service::agent::AgentService;
use crate::service::auth::AdminToken;
use crate::service::config_watch::ConfigService;
use crate::service::{Shared, SharedRef};
use crate::startup;
use tonic::service::interceptor::InterceptedService;

/// Deadline of a remote agent restart over SSH (systemctl restart waits for the old agent).
pub const AGENT_RESTART_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest gRPC message accepted from clients and agents.
pub const MESSAGE_SIZE_MAX: usize = 4 * 1024 * 1024;

/// Runs a coordinator node until `shutdown` resolves, binding `listen` and `raft_listen`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    run_with_listeners(config, listeners, shutdown).await
}

/// The two sockets a node serves on, bound by the caller (tests and the testbed bind port 0).
pub struct Listeners {
    /// Admin, Agent and Config services.
    pub api: tokio::net::TcpListener,
    /// Peer-only Raft service.
    pub raft: tokio::net::TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let api = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (port in use?)", config.listen))?;
        let raft = tokio::net::TcpListener::bind(config.raft_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on raft_listen {} (port in use?)",
                    config.raft_listen
                )
            })?;
        Ok(Self { api, raft })
    }
}

/// Runs a coordinator node on sockets bound by the caller until `shutdown` resolves.
pub async fn run_with_listeners(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let io = NodeIo {
        api_addr: listeners.api.local_addr()?,
        raft_addr: listeners.raft.local_addr()?,
        api: tokio_stream::wrappers::TcpListenerStream::new(listeners.api),
        raft: tokio_stream::wrappers::TcpListenerStream::new(listeners.raft),
    };
    run_with_io(config, io, Net::tcp(), shutdown).await
}

/// A connection the servers accept: TCP in production, turmoil's in the simulation.
pub trait Connection:
    tokio::io::AsyncRead
    + tokio::io::AsyncWrite
    + tonic::transport::server::Connected
    + Unpin
    + Send
    + 'static
{
}

impl<T> Connection for T where
    T: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static
{
}

/// The two incoming connection streams of a node and the addresses they listen on.
pub struct NodeIo<S> {
    /// Admin, Agent and Config services.
    pub api: S,
    /// Peer-only Raft service.
    pub raft: S,
    pub api_addr: std::net::SocketAddr,
    pub raft_addr: std::net::SocketAddr,
}

/// Runs a coordinator node on the given connections and ways out (the simulation's entry point;
/// production goes through [`run_with_listeners`]) until `shutdown` resolves.
pub async fn run_with_io<S, IO>(
    config: Config,
    io: NodeIo<S>,
    net: Net,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    S: futures::Stream<Item = std::io::Result<IO>> + Send + 'static,
    IO: Connection,
{
    let mut config = config.validate()?;
    config.listen = io.api_addr;
    config.raft_listen = io.raft_addr;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let clock = net.clock.clone();
    let secrets = net.secrets();

    let peer_tls: raft::PeerTls = Arc::new(std::sync::RwLock::new(None));
    let network =
        raft::NetworkFactory::with_tls_cell(peer_tls.clone()).with_connect(net.connect.clone());
    let raft_dir = config.data_dir.join("raft");
    let mut raft_config = raft::config(&config.cluster_id);
    raft_config.snapshot_policy =
        openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries);
    raft_config.max_in_snapshot_log_to_keep = config.log_entries_kept;
    let (raft, state) = raft::open_with_config(
        &raft_dir,
        config.node_id,
        &config.cluster_id,
        network,
        raft_config,
    )
    .await
    .with_context(|| format!("cannot open the Raft store in {}", raft_dir.display()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(observer) = net.raft_observer.clone() {
        let mut metrics = raft.metrics();
        tokio::spawn(async move {
            loop {
                let (term, leader) = {
                    let m = metrics.borrow_and_update();
                    (m.current_term, m.current_leader)
                };
                observer(term, leader);
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    let probers = match net.probers.clone() {
        Some(probers) => probers,
        None => ssh_probers(&config)?,
    };

    // Phase 1: this node's identity, and the peer Raft service.
    let identity = startup::establish(&config, &raft, &state, &secrets, &clock, &net).await?;
    let peer_client_tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&identity.ca_pem))
        .identity(Identity::from_pem(
            &identity.cert.cert_pem,
            &identity.cert.key_pem,
        ));
    *peer_tls
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(peer_client_tls.clone());
    // Followers' probe reports reach the services once they exist (phase 2).
    let shared_cell: Arc<std::sync::OnceLock<SharedRef>> = Arc::new(std::sync::OnceLock::new());
    let sink_cell = shared_cell.clone();
    let me = config.node_id;
    let probe_sink: raft::ProbeSink = Arc::new(move |report: kvs_proto::pb::ProbeReport| {
        let Some(shared) = sink_cell.get() else {
            return false;
        };
        let leader = shared.raft.metrics().borrow().current_leader;
        if leader != Some(me) || report.node_id == me {
            return false;
        }
        crate::probing::record(shared, report.node_id, &report.results);
        true
    });
    let raft_serve = serve_raft(
        io.raft,
        &identity.cert,
        &identity.ca_pem,
        raft.clone(),
        probe_sink,
        stop_rx.clone(),
    )?;
    let raft_server = tokio::spawn(async move {
        if let Err(e) = raft_serve.await {
            tracing::error!(cause = %e, "the Raft server stopped");
        }
    });

    // Phase 2: a joining node asks to be added, then waits for the replicated cluster state.
    let info = startup::complete(&config, &identity, &state).await?;
    let ca = ClusterCa::load(&info.ca_cert_pem, &info.ca_key_pem)
        .context("the stored cluster CA is unusable")?;
    bootstrap::write_ca_bundle(&config.ca_bundle_path(), ca.ca_pem())?;
    bootstrap::write_token_if_missing(&config.admin_token_path(), &info.admin_token)?;
    bootstrap::write_token_if_missing(&config.join_token_path(), &info.join_token)?;
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &identity.cert.cert_pem,
            &identity.cert.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(ca.ca_pem()))
        .client_auth_optional(true);

    let shared: SharedRef = Arc::new(Shared {
        config: config.clone(),
        raft: raft.clone(),
        state,
        observations: Mutex::new(Observations::default()),
        ca,
        secrets,
        clock,
        plans: kvs_proto::plan::builtin_plans(),
        admin_token: info.admin_token.clone(),
        join_token: info.join_token.clone(),
        membership_lock: tokio::sync::Mutex::new(()),
        // Checked by `config.validate()` above, before the store was opened or a cluster joined.
        ha: config.ha_config(),
        probes: Mutex::new(Default::default()),
        ha_memory: Mutex::new(Default::default()),
        prober: probers.probe,
        restart_prober: probers.restart,
        net: net.clone(),
        peer_tls: peer_client_tls,
        tick_now: tokio::sync::Notify::new(),
        stopping: tokio_util::sync::CancellationToken::new(),
    });
    let _ = shared_cell.set(shared.clone());
    let reconciler = tokio::spawn(crate::leader::run(shared.clone(), stop_rx.clone()));
    let prober = tokio::spawn(crate::probing::run(shared.clone(), stop_rx.clone()));

    // Phase 3: the API.
    let token = AdminToken(Arc::from(shared.admin_token.as_str()));
    let admin = AdminServer::new(AdminService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MESSAGE_SIZE_MAX);
    let config_service = ConfigServer::new(ConfigService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MESSAGE_SIZE_MAX);
    let agent = AgentServer::new(AgentService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MESSAGE_SIZE_MAX);
    tracing::info!(listen = %config.listen, node = config.node_id, cluster = %config.cluster_id, "coordinator ready");
    let mut stop_server = stop_rx.clone();
    let server = Server::builder()
        .tls_config(tls)?
        .add_service(InterceptedService::new(admin, token.clone()))
        .add_service(InterceptedService::new(config_service, token))
        .add_service(agent)
        .serve_with_incoming_shutdown(io.api, async move {
            let _ = stop_server.wait_for(|stop| *stop).await;
        });
    let server = tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(cause = %e, "the API server stopped");
        }
    });

    shutdown.await;
    tracing::info!("shutting down");
    shared.stopping.cancel();
    let _ = stop_tx.send(true);
    let _ = server.await;
    let _ = raft_server.await;
    let _ = reconciler.await;
    let _ = prober.await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(cause = %e, "raft did not shut down cleanly");
    }
    Ok(())
}

/// Serves the peer-only Raft listener (mutual TLS: peers must present a cluster certificate with
/// the coordinator role): returns the future that serves it until `stop`.
fn serve_raft<S, IO>(
    incoming: S,
    node_cert: &crate::ca::IssuedCert,
    ca_pem: &str,
    raft: raft::Raft,
    probe_sink: raft::ProbeSink,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static>
where
    S: futures::Stream<Item = std::io::Result<IO>> + Send + 'static,
    IO: Connection,
{
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&node_cert.cert_pem, &node_cert.key_pem))
        .client_ca_root(Certificate::from_pem(ca_pem));
    Ok(Server::builder()
        .tls_config(tls)?
        .add_service(InterceptedService::new(
            raft::RaftService::new(raft)
                .with_probe_sink(probe_sink)
                .into_server(),
            CoordinatorsOnly,
        ))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
}

/// The SSH probers, with the node's probe key (created on first start).
fn ssh_probers(config: &Config) -> anyhow::Result<crate::net::Probers> {
    let probe_key = Arc::new(
        crate::probe::load_or_create_probe_key(&config.probe_key_path())
            .with_context(|| format!("probe key {}", config.probe_key_path().display()))?,
    );
    Ok(crate::net::Probers {
        probe: Arc::new(crate::probe::SshProber::with_timeouts(
            probe_key.clone(),
            config.probe_timeout,
            config.probe_timeout,
        )),
        restart: Arc::new(crate::probe::SshProber::with_timeouts(
            probe_key,
            config.probe_timeout,
            AGENT_RESTART_TIMEOUT,
        )),
    })
}

/// Admits only peers whose verified certificate has the coordinator role (agents hold
/// certificates from the same CA and must never reach Raft).
#[derive(Clone)]
struct CoordinatorsOnly;

impl tonic::service::Interceptor for CoordinatorsOnly {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let certs = request.peer_certs().ok_or_else(|| {
            tonic::Status::unauthenticated("the Raft service needs a coordinator certificate")
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| tonic::Status::unauthenticated("no client certificate"))?;
        match crate::ca::peer_role(leaf.as_ref()) {
            Ok(crate::ca::PeerRole::Coordinator { .. }) => Ok(request),
            Ok(other) => Err(tonic::Status::permission_denied(format!(
                "{other:?} may not call the Raft service"
            ))),
            Err(e) => Err(tonic::Status::unauthenticated(e.to_string())),
        }
    }
}

pub(crate) async fn wait_for_leader(raft: &raft::Raft) -> anyhow::Result<()> {
    let mut metrics = raft.metrics();
    let deadline = tokio::time::Duration::from_secs(30);
    tokio::time::timeout(deadline, async {
        loop {
            if metrics.borrow().current_leader.is_some() {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    })
    .await
    .context("no Raft leader was elected within 30 s")
}
