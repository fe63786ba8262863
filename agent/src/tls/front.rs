//! The TLS front of one instance: accepts client TLS on `address:front_port` with the host
//! certificate and proxies the plaintext to the engine: through the engine's Unix socket
//! (`engine.sock`) when it has one, else over TCP to `engine_bind:engine_port` (an engine started
//! by an older agent and adopted).
//!
//! ```text
//!   client ──TLS──► front (rustls, ring) ──Unix socket, or TCP on the loopback──► engine
//! ```
//!
//! Cost: the front is CPU-bound in the kernel (two more socket hops per request than the
//! engine's native TLS); the Unix socket makes the engine-side hop about half as expensive as
//! loopback TCP. Bytes are copied as they arrive (`copy_bidirectional`): one read and one write
//! per direction and request, TLS records sent with one `writev`.
//!
//! Two kinds of clients: customers (no client certificate) and peer agents' replication tunnels
//! (a client certificate that chains to the cluster CA, checked by the rustls verifier).
//!
//! Limits: the plan's connection limit is enforced here on customers (the engine's `maxclients`
//! keeps a few spare for the agent and replication); a TLS handshake must finish within
//! `HANDSHAKE_TIMEOUT`. Stopping the front (drop) closes every proxied connection.
//!
//! Fencing (DESIGN §4 rule 5): a fenced front closes every customer connection at once and
//! refuses new ones (after the handshake, with an error line); peer tunnels still pass, so the
//! standby can come back. Bytes read from a peer tunnel are stamped (`heard.rs`): the evidence
//! that a standby still follows this primary. A primary restarted after a host reboot
//! also refuses new peer tunnels until the coordinator acts (`set_peers_refused`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::heard::{Heard, PeerHeard};

/// A client must finish the TLS handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting to the local engine must not take longer than this.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Sent to a client over the limit, in RESP, before closing.
const TOO_MANY_CLIENTS: &[u8] = b"-ERR max number of clients reached\r\n";
/// Sent to a customer connecting to a fenced instance, before closing.
const FENCED: &[u8] =
    b"-ERR instance unavailable: fenced after losing its coordinator and its standby\r\n";

/// A running front. Dropping it stops it.
#[derive(Debug)]
pub struct Front {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    limit: Arc<AtomicU32>,
    fenced: watch::Sender<bool>,
    /// Peer tunnels refused too (a primary restarted after a host reboot: see `set_peers_refused`).
    peers_refused: Arc<std::sync::atomic::AtomicBool>,
    /// When a peer tunnel last delivered bytes (the fencing evidence that a standby follows).
    peer_heard: PeerHeard,
    cancel: CancellationToken,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Front {
    /// Binds `listen` (the error is the caller's to report: e.g. the port is in use) and starts
    /// accepting; the listener and every connection run on `runtime` (`FrontThreads`).
    pub async fn start(
        runtime: &tokio::runtime::Handle,
        listen: SocketAddr,
        upstream: SocketAddr,
        upstream_unix: Option<PathBuf>,
        acceptor: TlsAcceptor,
        max_connections: u32,
    ) -> std::io::Result<Front> {
        // Bound on `runtime`, so its sockets are driven by that runtime's threads.
        let listener = runtime
            .spawn(TcpListener::bind(listen))
            .await
            .map_err(std::io::Error::other)??;
        let listen = listener.local_addr()?;
        let limit = Arc::new(AtomicU32::new(max_connections));
        let cancel = CancellationToken::new();
        let (fenced, _) = watch::channel(false);
        let peers_refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let peer_heard = PeerHeard::new();
        let span = tracing::info_span!(parent: None, "front", %listen, %upstream);
        let shared = Shared {
            upstream,
            upstream_unix: upstream_unix.map(Arc::new),
            acceptor,
            limit: limit.clone(),
            fenced: fenced.clone(),
            peers_refused: peers_refused.clone(),
            peer_heard: peer_heard.clone(),
            active: Arc::new(AtomicUsize::new(0)),
        };
        let accept = accept_loop(listener, shared, cancel.clone());
        runtime.spawn(accept.instrument(span));
        Ok(Front {
            listen,
            upstream,
            limit,
            fenced,
            peers_refused,
            peer_heard,
            cancel,
        })
    }

    /// When a replica last sent bytes through a peer tunnel of this front (`None`: never).
    pub fn peer_heard(&self) -> Option<tokio::time::Instant> {
        self.peer_heard.last()
    }

    /// Refuses new replication tunnels from peer agents (`true`) or lets them pass. Set while a
    /// primary restarted after a host reboot waits for the coordinator: a standby resyncing from
    /// it would discard the writes its short AOF lost and the standby still has.
    pub fn set_peers_refused(&self, refused: bool) {
        self.peers_refused.store(refused, Ordering::Relaxed);
    }

    /// Fences (customers refused and disconnected at once) or unfences the front.
    pub fn set_fenced(&self, fenced: bool) {
        self.fenced.send_if_modified(|current| {
            let changed = *current != fenced;
            *current = fenced;
            changed
        });
    }

    pub fn is_fenced(&self) -> bool {
        *self.fenced.borrow()
    }

    /// Changes the connection limit (plan change); existing connections stay.
    pub fn set_max_connections(&self, max_connections: u32) {
        self.limit.store(max_connections, Ordering::Relaxed);
    }
}

/// What every connection of a front shares.
#[derive(Clone)]
struct Shared {
    upstream: SocketAddr,
    upstream_unix: Option<Arc<PathBuf>>,
    acceptor: TlsAcceptor,
    limit: Arc<AtomicU32>,
    fenced: watch::Sender<bool>,
    peers_refused: Arc<std::sync::atomic::AtomicBool>,
    peer_heard: PeerHeard,
    /// Customer connections open.
    active: Arc<AtomicUsize>,
}

async fn accept_loop(listener: TcpListener, shared: Shared, cancel: CancellationToken) {
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
        let shared = shared.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = serve(stream, shared) => {
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

async fn serve(stream: TcpStream, shared: Shared) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.acceptor.accept(stream))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    // A certificate here was verified against the cluster CA: a peer agent's tunnel.
    let is_peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|certs| !certs.is_empty());
    if is_peer {
        if shared.peers_refused.load(Ordering::Relaxed) {
            tracing::info!("replication tunnel refused: this primary restarted after a reboot");
            return tls.shutdown().await;
        }
        tracing::debug!("replication tunnel from a peer agent");
        let mut tls = Heard::new(tls, shared.peer_heard.clone());
        return match connect_engine(&mut tls, &shared).await? {
            Engine::Unix(engine) => proxy(tls, engine, None).await,
            Engine::Tcp(engine) => proxy(tls, engine, None).await,
        };
    }
    let mut fenced = shared.fenced.subscribe();
    if *fenced.borrow_and_update() {
        tls.write_all(FENCED).await?;
        return tls.shutdown().await;
    }
    let over_limit =
        shared.active.load(Ordering::Relaxed) >= shared.limit.load(Ordering::Relaxed) as usize;
    let _guard = ActiveGuard::new(shared.active.clone());
    if over_limit {
        tls.write_all(TOO_MANY_CLIENTS).await?;
        return tls.shutdown().await;
    }
    match connect_engine(&mut tls, &shared).await? {
        Engine::Unix(engine) => proxy(tls, engine, Some(fenced)).await,
        Engine::Tcp(engine) => proxy(tls, engine, Some(fenced)).await,
    }
}

/// Copies both ways until either side closes; with `fenced`, also until the front is fenced
/// (a customer is dropped at once; peer tunnels pass `None`).
async fn proxy<C, E>(
    mut client: C,
    mut engine: E,
    fenced: Option<watch::Receiver<bool>>,
) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    E: AsyncRead + AsyncWrite + Unpin,
{
    let Some(mut fenced) = fenced else {
        return copy_bidirectional(&mut client, &mut engine).await.map(drop);
    };
    tokio::select! {
        result = copy_bidirectional(&mut client, &mut engine) => result.map(drop),
        // Fenced while connected: drop the customer at once.
        _ = fenced.wait_for(|f| *f) => Ok(()),
    }
}

/// A connection to the engine.
enum Engine {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// The engine's Unix socket if it has one that answers, else its TCP port.
async fn connect_engine<S: AsyncWrite + Unpin>(
    client: &mut S,
    shared: &Shared,
) -> std::io::Result<Engine> {
    if let Some(path) = &shared.upstream_unix {
        match tokio::time::timeout(
            UPSTREAM_CONNECT_TIMEOUT,
            UnixStream::connect(path.as_path()),
        )
        .await
        {
            Ok(Ok(engine)) => return Ok(Engine::Unix(engine)),
            // No socket (an engine started without one): TCP.
            Ok(Err(error)) => {
                tracing::debug!(path = %path.display(), %error, "engine socket unusable; using TCP")
            }
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "engine connect timed out",
                ));
            }
        }
    }
    let upstream = shared.upstream;
    match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(engine)) => {
            engine.set_nodelay(true)?;
            Ok(Engine::Tcp(engine))
        }
        Ok(Err(error)) => {
            let _ = client
                .write_all(b"-ERR instance is not available, try again shortly\r\n")
                .await;
            Err(error)
        }
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "engine connect timed out",
        )),
    }
}
