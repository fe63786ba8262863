//! The TLS front of one instance: accepts client TLS on `address:front_port` with the host
//! certificate and proxies the plaintext to the engine on `engine_bind:engine_port`.
//!
//! ```text
//!   client ──TLS──► front (rustls, ring) ──TCP (loopback)──► engine
//! ```
//!
//! Limits: the plan's connection limit is enforced here (the engine's `maxclients` keeps a few
//! spare for the agent and replication); a TLS handshake must finish within
//! `HANDSHAKE_TIMEOUT`. Stopping the front (drop or `stop`) closes every proxied connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A client must finish the TLS handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting to the local engine must not take longer than this.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Sent to a client over the limit, in RESP, before closing.
const TOO_MANY_CLIENTS: &[u8] = b"-ERR max number of clients reached\r\n";

/// A running front. Dropping it stops it.
#[derive(Debug)]
pub struct Front {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    limit: Arc<AtomicU32>,
    cancel: CancellationToken,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Front {
    /// Binds `listen` (the error is the caller's to report: e.g. the port is in use) and starts
    /// accepting.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        acceptor: TlsAcceptor,
        max_connections: u32,
    ) -> std::io::Result<Front> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let limit = Arc::new(AtomicU32::new(max_connections));
        let cancel = CancellationToken::new();
        let span = tracing::info_span!(parent: None, "front", %listen, %upstream);
        let accept = accept_loop(listener, upstream, acceptor, limit.clone(), cancel.clone());
        tokio::spawn(accept.instrument(span));
        Ok(Front {
            listen,
            upstream,
            limit,
            cancel,
        })
    }

    /// Changes the connection limit (plan change); existing connections stay.
    pub fn set_max_connections(&self, max_connections: u32) {
        self.limit.store(max_connections, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    acceptor: TlsAcceptor,
    limit: Arc<AtomicU32>,
    cancel: CancellationToken,
) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let over_limit = active.load(Ordering::Relaxed) >= limit.load(Ordering::Relaxed) as usize;
        let guard = ActiveGuard::new(active.clone());
        let acceptor = acceptor.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _guard = guard;
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = serve(stream, upstream, acceptor, over_limit) => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "client connection ended");
                    }
                }
            }
        });
    }
}

/// Counts a live connection while it exists.
struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(active: Arc<AtomicUsize>) -> Self {
        active.fetch_add(1, Ordering::Relaxed);
        Self(active)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(
    stream: TcpStream,
    upstream: SocketAddr,
    acceptor: TlsAcceptor,
    over_limit: bool,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    if over_limit {
        tls.write_all(TOO_MANY_CLIENTS).await?;
        return tls.shutdown().await;
    }
    let mut engine =
        match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
            Ok(Ok(engine)) => engine,
            Ok(Err(error)) => {
                let _ = tls
                    .write_all(b"-ERR instance is not available, try again shortly\r\n")
                    .await;
                return Err(error);
            }
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "engine connect timed out",
                ));
            }
        };
    engine.set_nodelay(true)?;
    copy_bidirectional(&mut tls, &mut engine).await.map(drop)
}
