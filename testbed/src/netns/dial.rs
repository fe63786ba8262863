//! How the test process's own clients reach a cluster: [`Dialer::Direct`] (loopback mode: plain
//! sockets) or [`Dialer::Netns`] (netns mode: sockets created inside a namespace the testbed made).
//!
//! ```text
//!   Dialer::Netns(/run/netns/kvstbN-net)
//!     tcp(addr) ─► thread: setns(CLONE_NEWNET) ─► socket + connect (bounded) ─► fd back to tokio
//!     admin_channel(endpoint, ca) ─► tonic Endpoint + TLS over a connector that calls tcp()
//!     redis(url, ca) ─► tcp(host:port) ─► rustls (server name = the URL's host) ─► RESP + AUTH
//! ```
//!
//! A network namespace belongs to a thread, and a socket to the namespace it was created in, for its
//! whole life. So a short-lived real thread enters the namespace, connects, and exits; the connected
//! socket is then an ordinary tokio socket. (A real thread is the point: `setns` changes the calling
//! thread, and a tokio worker must never change namespace.)

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use hyper_util::rt::TokioIo;
use nix::sched::{CloneFlags, setns};
use redis::aio::MultiplexedConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;
use tonic::transport::Channel;

use crate::{admin, engine_client};

/// Bound on one TCP connect from inside a namespace.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the test's client sockets are created.
#[derive(Debug, Clone)]
pub enum Dialer {
    /// The test process's own namespace (loopback mode).
    Direct,
    /// Inside the namespace mounted at this path (`/run/netns/<name>`).
    Netns(Arc<PathBuf>),
}

impl From<&crate::netns::Netns> for Dialer {
    fn from(netns: &crate::netns::Netns) -> Dialer {
        Dialer::Netns(Arc::new(netns.path()))
    }
}

impl Dialer {
    /// A TCP connection to `addr`, bounded by [`CONNECT_TIMEOUT`].
    pub async fn tcp(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        self.tcp_within(addr, CONNECT_TIMEOUT).await
    }

    /// A TCP connection to `addr`, bounded by `timeout`.
    pub async fn tcp_within(&self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let stream = match self {
            Dialer::Direct => tokio::time::timeout(timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??,
            Dialer::Netns(path) => connect_in(path, addr, timeout).await?,
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// A lazily connecting admin channel to `endpoint` (`https://IP:PORT`) trusting only `ca_pem`.
    pub fn admin_channel(&self, endpoint: &str, ca_pem: &[u8]) -> Result<Channel> {
        let endpoint = admin::endpoint(endpoint, ca_pem)?;
        Ok(match self {
            Dialer::Direct => endpoint.connect_lazy(),
            Dialer::Netns(_) => endpoint.connect_with_connector_lazy(Connector(self.clone())),
        })
    }

    /// A customer connection to `url` (`rediss://default:PW@HOST:PORT`), verifying `ca_pem`.
    pub async fn redis(&self, url: &str, ca_pem: &[u8]) -> Result<MultiplexedConnection> {
        match self {
            Dialer::Direct => engine_client::connect(url, ca_pem).await,
            Dialer::Netns(_) => {
                let connect = redis_over_tls(self, url, ca_pem);
                tokio::time::timeout(engine_client::CONNECT_TIMEOUT * 2, connect)
                    .await
                    .map_err(|_| anyhow!("connecting to {} timed out", engine_client::redact(url)))?
                    .with_context(|| format!("connecting to {}", engine_client::redact(url)))
            }
        }
    }
}

/// Creates and connects a socket inside the namespace at `path`, from a short-lived thread.
async fn connect_in(
    path: &Arc<PathBuf>,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = Arc::clone(path);
    // A real thread, on purpose: setns moves the calling thread into the namespace (see the header).
    std::thread::Builder::new()
        .name("kvs-netns-dial".into())
        .spawn(move || {
            let connect = || -> io::Result<std::net::TcpStream> {
                let namespace = File::open(path.as_path())?;
                setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                let stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
                stream.set_nonblocking(true)?;
                Ok(stream)
            };
            let _ = tx.send(connect());
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("the namespace dial thread died"))??;
    TcpStream::from_std(stream)
}

/// TLS (rustls, the cluster CA, the URL's host as server name), then a RESP connection with AUTH.
async fn redis_over_tls(
    dialer: &Dialer,
    url: &str,
    ca_pem: &[u8],
) -> Result<MultiplexedConnection> {
    crate::install_crypto_provider();
    let parts = engine_client::parse_url(url)?;
    let addr = (parts.host.as_str(), parts.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("{} does not resolve", parts.host))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(certificate.context("the CA bundle")?)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(parts.host.clone())?;
    let tcp = dialer.tcp(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .context("TLS handshake")?;
    let info = redis::RedisConnectionInfo {
        username: Some(parts.user),
        password: Some(parts.password),
        ..Default::default()
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(engine_client::CONNECT_TIMEOUT)
        .set_response_timeout(engine_client::RESPONSE_TIMEOUT);
    let (connection, driver) = MultiplexedConnection::new_with_config(&info, tls, config).await?;
    tokio::spawn(driver);
    Ok(connection)
}

/// tonic connector that dials through a [`Dialer`] (tonic adds TLS on top).
#[derive(Clone)]
struct Connector(Dialer);

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

impl tonic::codegen::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.0.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(443);
            let addr = (host, port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other(format!("{uri} does not resolve")))?;
            Ok(TokioIo::new(dialer.tcp(addr).await?))
        })
    }
}
