//! Shared fixtures: a test CA and host certificate, free ports, the engine catalog, desired
//! processes, a TLS client that speaks RESP, and a runtime on a temporary data dir.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kvs_agent::config::EnginesConfig;
use kvs_agent::engine::catalog::{Catalog, CatalogEntry};
use kvs_agent::engine::resp::Connection;
use kvs_agent::runtime::{self, DesiredState, ObservedState, RuntimeHandle, RuntimeOptions};
use kvs_agent::supervisor::RestartPolicy;
use kvs_proto::model::{DesiredProcess, ProcessStatus, Role};
use kvs_proto::settings::Settings;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Generous bound on any state transition in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A CA and a host certificate (SAN localhost and 127.0.0.1) signed by it, as PEM.
#[derive(Clone)]
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn pki() -> TestPki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kvs test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let host_key = KeyPair::generate().expect("host key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "agent:test-host");
    let cert = params.signed_by(&host_key, &issuer).expect("host cert");
    TestPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: host_key.serialize_pem(),
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind((LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The catalog of installed engines, found as the agent finds them with no `[engines]` paths
/// configured: in `PATH` (where scripts/install-engines puts them).
pub async fn catalog() -> Catalog {
    Catalog::discover(&EnginesConfig::default()).await
}

/// The first installed engine's catalog entry, or `None` after [`kvs_test_support::skip`].
pub async fn first_engine() -> Option<CatalogEntry> {
    let catalog = catalog().await;
    let entry = catalog
        .engines()
        .first()
        .and_then(|e| catalog.resolve(&e.label).cloned());
    if entry.is_none() {
        kvs_test_support::skip(
            "no engine (valkey-server or redis-server) in PATH (scripts/install-engines)",
        );
    }
    entry
}

pub fn process(instance: &str, engine: &str) -> DesiredProcess {
    DesiredProcess {
        instance: instance.into(),
        epoch: 1,
        role: Role::Primary,
        engine_port: free_port(),
        front_port: free_port(),
        engine: engine.into(),
        maxmemory_bytes: 25 << 20,
        maxclients: 20,
        settings: Settings::default(),
        appendonly: true,
        default_password: "customerpassword0123456789".into(),
        admin_password: "adminpassword0123456789".into(),
        replication_password: "replicationpassword0123456789".into(),
        upstream: None,
        fence_after_seconds: None,
        pause_writes: false,
        catch_up: false,
    }
}

/// A coordinator leader heard every 250 ms (its heartbeats) until dropped: tests without a
/// coordinator stand in for one with this.
pub struct CoordinatorVoice(tokio::task::JoinHandle<()>);

impl CoordinatorVoice {
    pub fn speak(runtime: &RuntimeHandle) -> CoordinatorVoice {
        let heard = runtime.coordinator_ear();
        CoordinatorVoice(tokio::spawn(async move {
            loop {
                heard();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }))
    }
}

impl Drop for CoordinatorVoice {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub runtime: RuntimeHandle,
    pub pki: TestPki,
    version: u64,
}

impl Harness {
    pub async fn start(restart: RestartPolicy) -> Harness {
        Self::start_in(tempfile::tempdir().expect("tempdir"), restart).await
    }

    /// A runtime on an existing data dir (an agent restarting).
    pub async fn start_in(dir: tempfile::TempDir, restart: RestartPolicy) -> Harness {
        Self::start_with(dir, restart, pki()).await
    }

    /// A runtime on an existing data dir after the host booted again (`boot_id` differs).
    pub async fn start_after_boot(
        dir: tempfile::TempDir,
        restart: RestartPolicy,
        boot_id: &str,
    ) -> Harness {
        Self::start_booted(dir, restart, pki(), Some(boot_id.into())).await
    }

    /// A runtime with the given PKI: hosts of one test cluster share the CA.
    pub async fn start_with(
        dir: tempfile::TempDir,
        restart: RestartPolicy,
        pki: TestPki,
    ) -> Harness {
        Self::start_booted(dir, restart, pki, Some("boot-1".into())).await
    }

    async fn start_booted(
        dir: tempfile::TempDir,
        restart: RestartPolicy,
        pki: TestPki,
        boot_id: Option<String>,
    ) -> Harness {
        let options = RuntimeOptions {
            data_dir: dir.path().to_path_buf(),
            engine_bind: LOCALHOST,
            front_address: LOCALHOST,
            tls: kvs_agent::tls::server_config(&pki.cert_pem, &pki.key_pem, &pki.ca_pem)
                .expect("server config"),
            tunnel_tls: kvs_agent::tls::client_config(&pki.cert_pem, &pki.key_pem, &pki.ca_pem)
                .expect("client config"),
            report_interval: Duration::from_millis(200),
            stop_timeout: Duration::from_secs(3),
            restart,
            boot_id,
            engines_exit_with_agent: false,
        };
        let runtime = runtime::spawn(options, catalog().await);
        Harness {
            dir,
            runtime,
            pki,
            version: 0,
        }
    }

    pub fn apply(&mut self, processes: Vec<DesiredProcess>) {
        self.version += 1;
        self.runtime.apply(DesiredState {
            version: self.version,
            processes,
            authoritative: true,
        });
    }

    /// Waits until `instance` has `status`, or fails showing the last observed state.
    pub async fn wait_status(&self, instance: &str, status: ProcessStatus) -> ObservedState {
        self.wait(instance, |p| p.status == status).await
    }

    pub async fn wait(
        &self,
        instance: &str,
        predicate: impl Fn(&kvs_agent::ProcessReport) -> bool,
    ) -> ObservedState {
        match self
            .runtime
            .wait_for(WAIT, |s| s.process(instance).is_some_and(&predicate))
            .await
        {
            Ok(state) => state,
            Err(last) => panic!("timed out waiting on {instance}; last observed: {last:#?}"),
        }
    }

    pub fn instance_dir(&self, instance: &str) -> std::path::PathBuf {
        self.dir.path().join("instances").join(instance)
    }

    /// A TLS client connection to the instance's front, authenticated as `default`.
    pub async fn client(&self, process: &DesiredProcess) -> Connection<TlsStream<TcpStream>> {
        match self.try_client(process).await {
            Ok(conn) => conn,
            Err(error) => panic!("client connection to {}: {error}", process.instance),
        }
    }

    /// Like `client`, but a refused connection (fenced front, engine down) is an error.
    pub async fn try_client(
        &self,
        process: &DesiredProcess,
    ) -> Result<Connection<TlsStream<TcpStream>>, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in kvs_agent::tls::certificates(&self.pki.ca_pem, "test CA").expect("CA") {
            roots.add(cert).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(kvs_agent::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connect = async {
            let tcp = TcpStream::connect(SocketAddr::new(LOCALHOST, process.front_port))
                .await
                .map_err(|e| format!("connect front: {e}"))?;
            let name = ServerName::try_from("localhost").expect("name");
            let tls = TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let mut conn = Connection::new(tls);
            conn.auth("default", &process.default_password)
                .await
                .map_err(|e| format!("AUTH default: {e}"))?;
            Ok(conn)
        };
        tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// A direct (plaintext, loopback) connection to the engine as kvs-admin.
    pub async fn admin(&self, process: &DesiredProcess) -> Connection<TcpStream> {
        let addr = SocketAddr::new(LOCALHOST, process.engine_port);
        let mut conn = Connection::connect(addr, Duration::from_secs(2))
            .await
            .expect("connect engine");
        conn.auth("kvs-admin", &process.admin_password)
            .await
            .expect("AUTH kvs-admin");
        conn
    }
}

/// True if a process with this PID exists (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}
