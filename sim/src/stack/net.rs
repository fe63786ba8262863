//! turmoil's simulated TCP under the production gRPC code: a stream type tonic's server accepts,
//! the incoming-connection stream of a listener, and the client connectors handed to the
//! coordinator (`kvs_coordinator::net::Net`) and the agent (`kvs_agent::report::Dial`).
//!
//! turmoil TCP never retransmits and a partition drops segments silently, so every call the
//! production code makes already carries a deadline (DESIGN §7-8); nothing here adds one.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

/// A simulated TCP connection, as tonic's server wants it.
pub struct SimStream(pub turmoil::net::TcpStream);

/// tonic finds a client's TLS certificates (`Request::peer_certs`) only next to a
/// `TcpConnectInfo`, so the simulated stream reports one too.
impl Connected for SimStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.0.local_addr().ok(),
            remote_addr: self.0.peer_addr().ok(),
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The connections a simulated listener accepts, one after another.
pub fn incoming(
    listener: turmoil::net::TcpListener,
) -> impl Stream<Item = std::io::Result<SimStream>> + Send + 'static {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| SimStream(stream));
        Some((accepted, listener))
    })
}

/// Binds a simulated listener on this host's port.
pub async fn listen(port: u16) -> std::io::Result<turmoil::net::TcpListener> {
    turmoil::net::TcpListener::bind((IpAddr::from([0, 0, 0, 0]), port)).await
}

/// Connects to the host and port of a URI over simulated TCP (for tonic's channel).
async fn dial_uri(uri: Uri) -> std::io::Result<TokioIo<turmoil::net::TcpStream>> {
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(443);
    let address: IpAddr = host
        .parse()
        .map_err(|_| std::io::Error::other(format!("not an address: {host}")))?;
    let stream = turmoil::net::TcpStream::connect(SocketAddr::new(address, port)).await?;
    Ok(TokioIo::new(stream))
}

/// A connection in the making, as tonic's connector returns it.
type Dialing =
    Pin<Box<dyn Future<Output = std::io::Result<TokioIo<turmoil::net::TcpStream>>> + Send>>;

fn connector() -> tower::util::ServiceFn<fn(Uri) -> Dialing> {
    fn call(uri: Uri) -> Dialing {
        Box::pin(dial_uri(uri))
    }
    tower::service_fn(call as fn(Uri) -> Dialing)
}

/// The coordinator's lazy channel constructor over simulated TCP.
pub fn coordinator_connect() -> kvs_coordinator::raft::Connect {
    Arc::new(|endpoint: &Endpoint| -> Channel { endpoint.connect_with_connector_lazy(connector()) })
}

/// The coordinator's reachability check over simulated TCP.
pub fn coordinator_reach() -> kvs_coordinator::net::Reach {
    Arc::new(|address| {
        Box::pin(async move { turmoil::net::TcpStream::connect(address).await.map(drop) })
    })
}

/// The agent's dialer over simulated TCP.
pub fn agent_dial() -> kvs_agent::report::Dial {
    Arc::new(|endpoint: Endpoint| {
        Box::pin(async move { endpoint.connect_with_connector(connector()).await })
    })
}
