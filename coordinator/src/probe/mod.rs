//! Host probes: can this coordinator node reach a host over SSH right now?
//!
//! Every coordinator node is a vantage point (DESIGN.md §4). Each `probe_interval` it probes every
//! registered host over SSH and reports the [`ProbeOutcome`] as evidence to the failure detector;
//! only when *every* vantage point's probes fail for the whole confirmation window (and the agent
//! stream and the standby's link agree) may the leader fail over.
//!
//! ```text
//!   TCP connect ──> SSH handshake ──> host key == pinned? ──> publickey auth ──> exec ──> exit 0
//!   (ConnectFailed)  (HandshakeFailed)  (HostKeyMismatch)      (AuthFailed)   (CommandFailed)
//!   └───────────────────────── all under one deadline (Timeout { stage }) ────────────────────┘
//! ```
//!
//! On the host, the probe key is restricted in `authorized_keys` to `restrict,command="true"`
//! (deploy's business): the probe proves the host is up, sshd answers, and a process can be
//! forked. [`Prober::run`] reuses the same path to restart a silent agent; the host side then
//! dispatches on `SSH_ORIGINAL_COMMAND`.
//!
//! The failure detector depends on the [`Prober`] trait, not on SSH, so the simulation can plug in
//! a fake. [`SshProber`] is the real implementation; [`load_or_create_probe_key`] gives the
//! coordinator its probe key on first start.

mod key;
mod ssh;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

pub use key::{ProbeKeyError, load_or_create_probe_key};
pub use ssh::SshProber;

/// Where and how to probe one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The host's id in the cluster state, for logs and evidence.
    pub host_id: String,
    /// The address the host registered with.
    pub address: IpAddr,
    /// The host's sshd port (usually 22).
    pub port: u16,
    /// The user the probe key is authorized for on the host.
    pub user: String,
    /// The host's SSH public key, pinned at registration, as an OpenSSH public key line
    /// (`ssh-ed25519 AAAA... [comment]`). `None` before the first pin: any key is accepted then,
    /// and [`SshProber::fetch_host_key`] returns the one presented so the caller can pin it.
    pub pinned_host_key: Option<String>,
}

/// The result of one probe, as evidence for the failure detector.
///
/// Only [`ProbeOutcome::Reachable`] counts as "the host is up". A [`ProbeOutcome::HostKeyMismatch`]
/// is never trusted: whoever answered is not the host we registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The whole probe succeeded: connected, verified, authenticated, command exited 0.
    Reachable {
        /// Time from the start of the TCP connect to the command's exit.
        elapsed: Duration,
    },
    /// The TCP connection could not be established (refused, no route, ...).
    ConnectFailed(String),
    /// The deadline passed during `stage` (`connect`, `handshake`, `authentication`, `session`
    /// or `command`).
    Timeout {
        /// The stage that was running when the deadline passed.
        stage: &'static str,
    },
    /// The SSH protocol failed before authentication (bad banner, no common algorithm, the peer
    /// hung up, ...), or the pinned host key could not be read.
    HandshakeFailed(String),
    /// The host presented a key other than the pinned one.
    HostKeyMismatch {
        /// The pinned key, as configured.
        expected: String,
        /// The key the peer presented, as an OpenSSH public key line.
        presented: String,
    },
    /// The host did not accept the probe key (or authentication broke off).
    AuthFailed(String),
    /// Authenticated, but the command could not be run or did not exit 0.
    CommandFailed {
        /// The command's exit status; `None` if it was killed by a signal or never reported one.
        exit_status: Option<u32>,
        /// What went wrong, with the command's stderr (bounded) when it wrote any.
        message: String,
    },
}

impl ProbeOutcome {
    /// Whether this outcome counts as "the host is reachable".
    pub fn is_reachable(&self) -> bool {
        matches!(self, ProbeOutcome::Reachable { .. })
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Reachable { elapsed } => {
                write!(f, "reachable over SSH in {} ms", elapsed.as_millis())
            }
            ProbeOutcome::ConnectFailed(cause) => write!(f, "TCP connect failed: {cause}"),
            ProbeOutcome::Timeout { stage } => {
                write!(f, "no answer in time: the probe timed out during {stage}")
            }
            ProbeOutcome::HandshakeFailed(cause) => write!(f, "SSH handshake failed: {cause}"),
            ProbeOutcome::HostKeyMismatch {
                expected,
                presented,
            } => write!(
                f,
                "host key mismatch: pinned `{expected}` but the host presented `{presented}`; \
                 not trusted (reinstalled host or impersonation: check before re-pinning)"
            ),
            ProbeOutcome::AuthFailed(cause) => write!(
                f,
                "SSH authentication with the probe key failed: {cause} \
                 (is the coordinator's probe key in the host's authorized_keys?)"
            ),
            ProbeOutcome::CommandFailed {
                exit_status: Some(status),
                message,
            } => write!(f, "probe command exited with status {status}: {message}"),
            ProbeOutcome::CommandFailed {
                exit_status: None,
                message,
            } => write!(f, "probe command failed without an exit status: {message}"),
        }
    }
}

impl std::error::Error for ProbeOutcome {}

/// Something that can probe hosts and run a command on them.
///
/// Implementations bound every call by their own deadline: a call never hangs.
#[tonic::async_trait]
pub trait Prober: Send + Sync {
    /// Probe `target` once: connect, verify the host key, authenticate, run `true`.
    async fn probe(&self, target: &ProbeTarget) -> ProbeOutcome;

    /// Run `command` on `target` over the same path (for restarting a silent agent). Returns the
    /// command's stdout (bounded, trailing newlines removed) if it exited 0, or the failed outcome.
    /// A key restricted with `command="..."` on the host runs the forced command instead.
    async fn run(&self, target: &ProbeTarget, command: &str) -> Result<String, ProbeOutcome>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reachable_is_reachable() {
        let reachable = ProbeOutcome::Reachable {
            elapsed: Duration::from_millis(12),
        };
        assert!(reachable.is_reachable());
        assert_eq!(reachable.to_string(), "reachable over SSH in 12 ms");
        let timeout = ProbeOutcome::Timeout { stage: "handshake" };
        assert!(!timeout.is_reachable());
        assert!(timeout.to_string().contains("during handshake"));
        let failed = ProbeOutcome::CommandFailed {
            exit_status: Some(1),
            message: "boom".to_owned(),
        };
        assert!(!failed.is_reachable());
        assert_eq!(
            failed.to_string(),
            "probe command exited with status 1: boom"
        );
    }
}
