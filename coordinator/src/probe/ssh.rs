//! [`SshProber`]: the real [`Prober`], an SSH client (russh, ring backend) that probes a host the
//! way an operator would with `ssh -i probe_key user@host true`, but with a pinned host key and
//! one deadline over every stage.
//!
//! ```text
//!   deadline = now + probe_timeout
//!   connect ── TcpStream::connect, also bounded by connect_timeout ──────── "connect"
//!   handshake ─ russh kex; HostKeyCheck compares the presented key ─────── "handshake"
//!   auth ────── publickey with the probe key ───────────────────────────── "authentication"
//!   session ─── open a session channel, exec the command ───────────────── "session"
//!   command ─── collect stdout (≤ 64 KiB), stderr (≤ 4 KiB), exit status ─ "command"
//!   disconnect (best effort, still under the deadline)
//! ```
//!
//! A probe opens a fresh connection each time: it must observe what a new connection would,
//! and one TCP+SSH handshake every few seconds per host is cheap.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};

use super::{ProbeOutcome, ProbeTarget, Prober};

/// Default bound on the TCP connect alone.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
/// Default bound on a whole probe (connect to exit status). Well below the default 5 s
/// `probe_interval`, so probes of one host never overlap.
pub const PROBE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Stdout kept from a command; the rest is read and dropped. A probe prints nothing; an agent
/// restart prints a line or two.
const STDOUT_MAX_BYTES: usize = 64 * 1024;
/// Stderr kept for the failure message.
const STDERR_MAX_BYTES: usize = 4 * 1024;
/// The command a probe runs (the host's `command="true"` forces it anyway).
const PROBE_COMMAND: &str = "true";

/// Probes hosts over SSH with the coordinator's probe key.
pub struct SshProber {
    /// The coordinator's ed25519 probe key (see [`super::load_or_create_probe_key`]).
    key: Arc<PrivateKey>,
    /// Bound on the TCP connect alone (also capped by the overall deadline).
    connect_timeout: Duration,
    /// Bound on a whole probe or `run`, every stage included.
    probe_timeout: Duration,
    /// russh client settings shared by every connection.
    config: Arc<client::Config>,
}

impl SshProber {
    /// A prober with the default timeouts.
    pub fn new(key: Arc<PrivateKey>) -> SshProber {
        SshProber::with_timeouts(key, CONNECT_TIMEOUT_DEFAULT, PROBE_TIMEOUT_DEFAULT)
    }

    /// A prober with explicit timeouts (`connect_timeout` is capped by `probe_timeout`).
    pub fn with_timeouts(
        key: Arc<PrivateKey>,
        connect_timeout: Duration,
        probe_timeout: Duration,
    ) -> SshProber {
        let config = client::Config {
            // The session task outlives a dropped handle only until this passes, so a peer that
            // stalls mid-handshake cannot pin a task after the probe gave up on it.
            inactivity_timeout: Some(probe_timeout),
            nodelay: true,
            ..client::Config::default()
        };
        SshProber {
            key,
            connect_timeout,
            probe_timeout,
            config: Arc::new(config),
        }
    }

    /// Connects to `address:port`, completes the key exchange without authenticating, and
    /// returns the host key the server proved it holds, as an OpenSSH public key line
    /// (`ssh-ed25519 AAAA...`), for pinning at registration (trust on first use: compare it with
    /// the host's own `/etc/ssh/ssh_host_ed25519_key.pub` when in doubt).
    pub async fn fetch_host_key(&self, address: IpAddr, port: u16) -> Result<String, ProbeOutcome> {
        let deadline = Instant::now() + self.probe_timeout;
        let (handle, presented) = self
            .handshake(SocketAddr::new(address, port), None, deadline)
            .await?;
        disconnect(handle, deadline).await;
        Ok(openssh_line(&presented))
    }

    /// One connection: connect, verify, authenticate, run `command`; stdout if it exited 0.
    #[tracing::instrument(skip_all, fields(host_id = %target.host_id, address = %target.address))]
    async fn execute(&self, target: &ProbeTarget, command: &str) -> Result<String, ProbeOutcome> {
        let deadline = Instant::now() + self.probe_timeout;
        let pinned = match target.pinned_host_key.as_deref() {
            Some(line) => Some(PublicKey::from_openssh(line.trim()).map_err(|err| {
                ProbeOutcome::HandshakeFailed(format!(
                    "the pinned host key of {} is not an OpenSSH public key line: {err}",
                    target.host_id
                ))
            })?),
            None => None,
        };
        let address = SocketAddr::new(target.address, target.port);
        let (mut handle, _presented) =
            self.handshake(address, pinned, deadline)
                .await
                .map_err(|outcome| match outcome {
                    ProbeOutcome::HostKeyMismatch { presented, .. } => {
                        ProbeOutcome::HostKeyMismatch {
                            expected: target.pinned_host_key.clone().unwrap_or_default(),
                            presented,
                        }
                    }
                    other => other,
                })?;
        let result = self.session(&mut handle, target, command, deadline).await;
        disconnect(handle, deadline).await;
        tracing::debug!(ok = result.is_ok(), "ssh probe done");
        result
    }

    /// TCP connect and SSH key exchange; returns the handle and the host key presented.
    async fn handshake(
        &self,
        address: SocketAddr,
        pinned: Option<PublicKey>,
        deadline: Instant,
    ) -> Result<(Handle<HostKeyCheck>, PublicKey), ProbeOutcome> {
        let connect_deadline = deadline.min(Instant::now() + self.connect_timeout);
        let stream = match timeout_at(connect_deadline, TcpStream::connect(address)).await {
            Err(_elapsed) => return Err(ProbeOutcome::Timeout { stage: "connect" }),
            Ok(Err(err)) => return Err(ProbeOutcome::ConnectFailed(format!("{address}: {err}"))),
            Ok(Ok(stream)) => stream,
        };
        // Best effort: a probe is a handful of small packets, Nagle only adds latency.
        let _ = stream.set_nodelay(true);

        let (presented_sender, mut presented_receiver) = oneshot::channel();
        let check = HostKeyCheck {
            pinned,
            presented: Some(presented_sender),
        };
        let connecting = client::connect_stream(self.config.clone(), stream, check);
        let handle = match timeout_at(deadline, connecting).await {
            Err(_elapsed) => return Err(ProbeOutcome::Timeout { stage: "handshake" }),
            Ok(Err(HandshakeError::HostKeyMismatch { presented })) => {
                // `expected` is filled in by the caller, which has the pinned line as configured.
                return Err(ProbeOutcome::HostKeyMismatch {
                    expected: String::new(),
                    presented,
                });
            }
            Ok(Err(HandshakeError::Ssh(err))) => {
                return Err(ProbeOutcome::HandshakeFailed(format!("{address}: {err}")));
            }
            Ok(Ok(handle)) => handle,
        };
        match presented_receiver.try_recv() {
            Ok(presented) => Ok((handle, presented)),
            Err(_) => Err(ProbeOutcome::HandshakeFailed(format!(
                "{address}: key exchange finished without a host key check"
            ))),
        }
    }

    /// Authenticate, run `command` on a session channel, collect its result.
    async fn session(
        &self,
        handle: &mut Handle<HostKeyCheck>,
        target: &ProbeTarget,
        command: &str,
        deadline: Instant,
    ) -> Result<String, ProbeOutcome> {
        let key = PrivateKeyWithHashAlg::new(self.key.clone(), None);
        let authenticating = handle.authenticate_publickey(target.user.clone(), key);
        match timeout_at(deadline, authenticating).await {
            Err(_elapsed) => {
                return Err(ProbeOutcome::Timeout {
                    stage: "authentication",
                });
            }
            Ok(Err(err)) => return Err(ProbeOutcome::AuthFailed(err.to_string())),
            Ok(Ok(client::AuthResult::Success)) => {}
            Ok(Ok(client::AuthResult::Failure {
                remaining_methods, ..
            })) => {
                let methods: Vec<&str> = remaining_methods.iter().map(<&str>::from).collect();
                return Err(ProbeOutcome::AuthFailed(format!(
                    "{}@{} rejected probe key {} (server still offers: {})",
                    target.user,
                    target.host_id,
                    self.key.public_key().fingerprint(Default::default()),
                    if methods.is_empty() {
                        "nothing".to_owned()
                    } else {
                        methods.join(", ")
                    },
                )));
            }
        }

        let opening = async {
            let channel = handle.channel_open_session().await?;
            channel.exec(true, command).await?;
            Ok::<_, russh::Error>(channel)
        };
        let mut channel = match timeout_at(deadline, opening).await {
            Err(_elapsed) => return Err(ProbeOutcome::Timeout { stage: "session" }),
            Ok(Err(err)) => {
                return Err(ProbeOutcome::CommandFailed {
                    exit_status: None,
                    message: format!("cannot start the command on a session channel: {err}"),
                });
            }
            Ok(Ok(channel)) => channel,
        };
        let output = match timeout_at(deadline, collect(&mut channel)).await {
            Err(_elapsed) => return Err(ProbeOutcome::Timeout { stage: "command" }),
            Ok(output) => output,
        };
        output.into_result()
    }
}

#[tonic::async_trait]
impl Prober for SshProber {
    async fn probe(&self, target: &ProbeTarget) -> ProbeOutcome {
        let start = Instant::now();
        match self.execute(target, PROBE_COMMAND).await {
            Ok(_stdout) => ProbeOutcome::Reachable {
                elapsed: start.elapsed(),
            },
            Err(outcome) => outcome,
        }
    }

    async fn run(&self, target: &ProbeTarget, command: &str) -> Result<String, ProbeOutcome> {
        self.execute(target, command).await
    }
}

/// What a command left behind on its channel.
#[derive(Default)]
struct CommandOutput {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_status: Option<u32>,
    exit_signal: Option<String>,
    refused: bool,
}

impl CommandOutput {
    fn into_result(self) -> Result<String, ProbeOutcome> {
        let stderr = String::from_utf8_lossy(&self.stderr).trim().to_owned();
        let message = if self.refused {
            "the host refused to run the command".to_owned()
        } else if let Some(signal) = self.exit_signal {
            format!("killed by signal {signal}")
        } else if self.exit_status.is_none() {
            "the channel closed without an exit status".to_owned()
        } else {
            String::new()
        };
        if self.exit_status == Some(0) && !self.refused {
            let stdout = String::from_utf8_lossy(&self.stdout);
            // Like a shell's `$(...)`: the trailing newlines are framing, not output.
            return Ok(stdout.trim_end_matches(['\n', '\r']).to_owned());
        }
        let message = match (message.is_empty(), stderr.is_empty()) {
            (_, true) => message,
            (true, false) => stderr,
            (false, false) => format!("{message}; stderr: {stderr}"),
        };
        Err(ProbeOutcome::CommandFailed {
            exit_status: self.exit_status,
            message,
        })
    }
}

/// Reads the channel until the server closes it, keeping bounded stdout and stderr.
async fn collect(channel: &mut russh::Channel<client::Msg>) -> CommandOutput {
    let mut output = CommandOutput::default();
    while let Some(message) = channel.wait().await {
        match message {
            ChannelMsg::Data { data } => {
                append_bounded(&mut output.stdout, &data, STDOUT_MAX_BYTES)
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                append_bounded(&mut output.stderr, &data, STDERR_MAX_BYTES)
            }
            ChannelMsg::ExitStatus { exit_status } => output.exit_status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                output.exit_signal = Some(format!("{signal_name:?}"))
            }
            ChannelMsg::Failure => output.refused = true,
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    output
}

fn append_bounded(buffer: &mut Vec<u8>, data: &[u8], limit: usize) {
    let room = limit.saturating_sub(buffer.len());
    buffer.extend_from_slice(&data[..data.len().min(room)]);
}

/// Best-effort polite goodbye, under the deadline; dropping the handle ends the session anyway.
async fn disconnect(handle: Handle<HostKeyCheck>, deadline: Instant) {
    let goodbye = handle.disconnect(Disconnect::ByApplication, "probe done", "en");
    let _ = timeout_at(deadline, goodbye).await;
}

/// The OpenSSH public key line of `key`, without its comment.
fn openssh_line(key: &PublicKey) -> String {
    PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .unwrap_or_else(|err| format!("<unencodable {} key: {err}>", key.algorithm()))
}

/// Why the SSH key exchange failed, as seen by our handler.
#[derive(Debug)]
enum HandshakeError {
    /// The presented host key is not the pinned one (OpenSSH line of the presented key).
    HostKeyMismatch { presented: String },
    /// Anything russh reports.
    Ssh(russh::Error),
}

impl From<russh::Error> for HandshakeError {
    fn from(err: russh::Error) -> HandshakeError {
        HandshakeError::Ssh(err)
    }
}

/// The russh client handler: checks the host key, and hands the presented key to the caller.
struct HostKeyCheck {
    /// The pinned key; `None` accepts any key (first contact, before pinning).
    pinned: Option<PublicKey>,
    /// Receives the presented key once it is accepted.
    presented: Option<oneshot::Sender<PublicKey>>,
}

impl client::Handler for HostKeyCheck {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, HandshakeError> {
        // For a host certificate, the key the server proved it holds is the certified key.
        let presented = server_key.public_key();
        if let Some(pinned) = &self.pinned
            && pinned.key_data() != presented.key_data()
        {
            return Err(HandshakeError::HostKeyMismatch {
                presented: openssh_line(&presented),
            });
        }
        if let Some(sender) = self.presented.take() {
            let _ = sender.send(presented);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod ssh_test;
#[cfg(test)]
mod sshd_fixture;
