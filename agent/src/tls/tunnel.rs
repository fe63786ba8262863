//! The replication tunnel of one standby: a loopback listener the standby engine replicates from
//! (`replicaof <engine_bind> <tunnel_port>`), piping every connection over TLS to the primary
//! host's client TLS front.
//!
//! ```text
//!   standby engine ──TCP (loopback)──► tunnel ──TLS (host cert, cluster CA)──► primary's front ──► primary engine
//! ```
//!
//! The tunnel presents the host certificate, so the primary's front knows it is a peer (and lets
//! it through even while fenced); the peer front is verified against the cluster CA under its IP
//! address (host certificates carry the host address as a SAN). Dropping the tunnel closes its
//! listener and every piped connection, so a re-pointed standby never keeps talking to the old
//! primary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Connecting to the peer front (TCP and TLS handshake) must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running tunnel. Dropping it stops it.
#[derive(Debug)]
pub struct Tunnel {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    cancel: CancellationToken,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Tunnel {
    /// Binds `listen` (loopback) and pipes every accepted connection to `upstream` over TLS.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        connector: TlsConnector,
    ) -> std::io::Result<Tunnel> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let span = tracing::info_span!(parent: None, "tunnel", %listen, %upstream);
        let accept = accept_loop(listener, upstream, connector, cancel.clone());
        tokio::spawn(accept.instrument(span));
        Ok(Tunnel {
            listen,
            upstream,
            cancel,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    connector: TlsConnector,
    cancel: CancellationToken,
) {
    // The engine retries every second while the primary is unreachable: log the first failure
    // and the recovery, not every attempt.
    let failing = Arc::new(AtomicBool::new(false));
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (connector, cancel, failing) = (connector.clone(), cancel.clone(), failing.clone());
        tokio::spawn(
            async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    result = pipe(stream, upstream, connector, &failing) => {
                        if let Err(error) = result {
                            tracing::debug!(%error, "tunnel connection ended");
                        }
                    }
                }
            }
            .in_current_span(),
        );
    }
}

async fn pipe(
    mut local: TcpStream,
    upstream: SocketAddr,
    connector: TlsConnector,
    failing: &AtomicBool,
) -> std::io::Result<()> {
    local.set_nodelay(true)?;
    let connect = async {
        let tcp = TcpStream::connect(upstream).await?;
        tcp.set_nodelay(true)?;
        connector
            .connect(ServerName::IpAddress(upstream.ip().into()), tcp)
            .await
    };
    let remote = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(remote)) => remote,
        Ok(Err(error)) => {
            if !failing.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, "cannot reach the primary's front");
            }
            return Err(error);
        }
        Err(_) => {
            if !failing.swap(true, Ordering::Relaxed) {
                tracing::warn!("connecting to the primary's front timed out");
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "tunnel connect timed out",
            ));
        }
    };
    if failing.swap(false, Ordering::Relaxed) {
        tracing::info!("primary's front reachable again");
    } else {
        tracing::debug!("tunnel connection open");
    }
    let mut remote = remote;
    copy_bidirectional(&mut local, &mut remote).await.map(drop)
}
