//! When a front last heard a replica: the fencing evidence that a standby still follows this
//! primary (DESIGN §4 rule 5). A replica sends `REPLCONF ACK` every second through its tunnel, so
//! the time of the last bytes read from a peer tunnel says, to the millisecond and without
//! polling INFO, how long the standby has been silent.
//!
//! ```text
//!   peer tunnel ──read──► Heard<S> ──stamp──► PeerHeard (AtomicU64: ms since the front started)
//!   runtime ──PeerHeard::last──► Option<Instant> ──► FenceInput::replica_heard
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The last time any peer tunnel of one front delivered bytes.
#[derive(Debug, Clone)]
pub struct PeerHeard {
    base: Instant,
    /// Milliseconds since `base` + 1; 0: never.
    last_ms: Arc<AtomicU64>,
}

impl PeerHeard {
    pub fn new() -> Self {
        PeerHeard {
            base: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records bytes from a peer now.
    pub fn stamp(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_ms.fetch_max(ms + 1, Ordering::Relaxed);
    }

    /// When a peer was last heard (`None`: never).
    pub fn last(&self) -> Option<Instant> {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.base + Duration::from_millis(ms - 1)),
        }
    }
}

impl Default for PeerHeard {
    fn default() -> Self {
        Self::new()
    }
}

/// A stream whose successful reads stamp a [`PeerHeard`]; writes pass through.
pub struct Heard<S> {
    inner: S,
    heard: PeerHeard,
}

impl<S> Heard<S> {
    pub fn new(inner: S, heard: PeerHeard) -> Self {
        Heard { inner, heard }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.heard.stamp();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_stamp_and_writes_do_not() {
        let heard = PeerHeard::new();
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = Heard::new(near, heard.clone());
        assert_eq!(heard.last(), None, "nothing read yet");
        tokio::time::sleep(Duration::from_millis(20)).await;
        stream.write_all(b"PING\r\n").await.unwrap();
        assert_eq!(heard.last(), None, "a write is not evidence of the peer");
        let before_read = Instant::now();
        far.write_all(b"+PONG\r\n").await.unwrap();
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.unwrap();
        let at = heard.last().expect("stamped by the read");
        // Stamps have millisecond resolution, truncated.
        assert!(
            at + Duration::from_millis(1) >= before_read,
            "{at:?} < {before_read:?}"
        );
        assert!(at <= Instant::now());
    }
}
