//! The agent's channel to the coordinator: Register once, then a Session stream for good.
//!
//! ```text
//!   Register (server-auth TLS, `authorization: Bearer <join token>`) ──► host id + cert/key/CA
//!        stored in data_dir (identity.rs)
//!   Session (mTLS with the host cert) ◄─► Desired (down, full, versioned) / Observed (up, every
//!        report_interval and on change)
//!   on error: an UNAVAILABLE carrying `kvs-leader` redirects to the leader at once; otherwise the
//!        next configured coordinator, with backoff once the whole list failed
//! ```
//!
//! The runtime is told whether the session is up (`RuntimeHandle::set_coordinator_connected`):
//! fencing (DESIGN §4 rule 5) counts how long it has been down.
//!
//! Every `Desired` is validated process by process (`DesiredProcess::try_from`); an invalid one is
//! logged and replaced by its last valid spec (or skipped if there is none) so a bad message can
//! never make the agent delete an instance. The last applied state is cached in `desired.json`
//! (0600: it holds passwords) so engines come back after an agent restart without the coordinator.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kvs_proto::metadata::LEADER_ENDPOINT;
use kvs_proto::model::DesiredProcess;
use kvs_proto::pb::{self, agent_client::AgentClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::config::Config;
use crate::engine::catalog::Catalog;
use crate::identity::{self, Identity};
use crate::runtime::{ObservedState, RuntimeHandle};

mod desired;
mod register;

pub use desired::load_cached_desired;
use desired::{CachedDesired, cache_path, validate_desired};
pub use register::register;

/// Connecting to a coordinator must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of the Register RPC.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keepalive: a dead coordinator is noticed within interval + timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff bounds.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(200);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Leader redirects followed in a row before falling back to the configured list with backoff.
const MAX_REDIRECTS: usize = 3;
/// Observed messages queued for the stream; when full, a report is dropped (the next is fresher).
const UP_QUEUE_CAPACITY: usize = 16;
/// Largest message accepted from the coordinator.
const MAX_DECODING_MESSAGE_BYTES: usize = 16 << 20;

/// Why talking to the coordinator failed (always retried by the caller).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot connect to {endpoint}: {error}")]
    Connect { endpoint: String, error: String },
    #[error("coordinator answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("the coordinator closed the session")]
    Closed,
    #[error("invalid registration response: {0}")]
    BadResponse(String),
}

impl ReportError {
    /// The leader endpoint a non-leader pointed us to.
    fn leader(&self) -> Option<String> {
        let ReportError::Status(status) = self else {
            return None;
        };
        let leader = status
            .metadata()
            .get(LEADER_ENDPOINT)?
            .to_str()
            .ok()?
            .trim();
        if leader.is_empty() {
            return None;
        }
        Some(if leader.contains("://") {
            leader.to_string()
        } else {
            format!("https://{leader}")
        })
    }
}

/// An error and its causes on one line ("transport error: tcp connect error: Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let part = inner.to_string();
        // Layers often repeat their inner message; keep each once.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = inner.source();
    }
    text
}

async fn connect(endpoint: &str, tls: ClientTlsConfig) -> Result<Channel, ReportError> {
    let connect_error = |error: tonic::transport::Error| ReportError::Connect {
        endpoint: endpoint.to_string(),
        error: error_chain(&error),
    };
    Endpoint::from_shared(endpoint.to_string())
        .map_err(connect_error)?
        .tls_config(tls)
        .map_err(connect_error)?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(connect_error)
}

fn host_metrics(system: &mut sysinfo::System) -> pb::HostMetrics {
    system.refresh_memory();
    let load = sysinfo::System::load_average();
    pb::HostMetrics {
        memory_total_bytes: system.total_memory(),
        memory_available_bytes: system.available_memory(),
        load_avg_1m: load.one,
        load_avg_5m: load.five,
        load_avg_15m: load.fifteen,
    }
}

fn observed_message(
    host_id: &str,
    state: &ObservedState,
    catalog: &Catalog,
    system: &mut sysinfo::System,
) -> pb::AgentMessage {
    let processes = state
        .processes
        .iter()
        .map(|p| pb::ProcessObserved {
            instance: p.instance.clone(),
            epoch: p.epoch,
            status: p.status.as_str().into(),
            role: if p.info.role.is_empty() {
                "unknown".into()
            } else {
                p.info.role.clone()
            },
            pid: p.pid,
            restarts: p.restarts,
            used_memory_bytes: p.info.used_memory_bytes,
            connected_clients: p.info.connected_clients,
            ops_per_sec: p.info.ops_per_sec,
            replication_offset: p.info.replication_offset,
            master_link_status: p.info.master_link_status.clone(),
            master_last_io_seconds: p.info.master_last_io_seconds,
            connected_replicas: p.info.connected_replicas,
            fenced: p.fenced,
            last_error: p.last_error.clone(),
            keyspace_hits: p.info.keyspace_hits,
            keyspace_misses: p.info.keyspace_misses,
            evicted_keys: p.info.evicted_keys,
        })
        .collect();
    let observed = pb::Observed {
        host_id: host_id.to_string(),
        at_ms: crate::clock::unix_ms(),
        host: Some(host_metrics(system)),
        processes,
        desired_version: state.desired_version,
        engines: catalog.engines().into_iter().map(Into::into).collect(),
    };
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Observed(observed)),
    }
}

/// Keeps a session open until `cancel`, reconnecting with backoff: the configured coordinators in
/// turn, and the leader any of them points to.
pub async fn session_loop(
    config: &Config,
    identity: &Identity,
    catalog: &Catalog,
    runtime: &RuntimeHandle,
    cancel: &CancellationToken,
) {
    let coordinators = &config.coordinators;
    let Some(first) = coordinators.first() else {
        tracing::error!("no coordinator configured");
        return;
    };
    // Index of the configured coordinator to try next; failures since the last good session.
    let (mut next, mut failures, mut redirects) = (1 % coordinators.len(), 0usize, 0usize);
    let mut endpoint = first.clone();
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut last_valid = BTreeMap::new();
    while !cancel.is_cancelled() {
        let mut session = Session {
            config,
            identity,
            catalog,
            runtime,
            last_valid: &mut last_valid,
            connected: false,
        };
        let result = session.run(&endpoint, cancel).await;
        runtime.set_coordinator_connected(false);
        if session.connected {
            backoff = RECONNECT_BACKOFF_MIN;
            failures = 0;
            redirects = 0;
        }
        match result {
            Ok(()) => return,
            Err(error) => {
                // Nodes pointing at each other (an election in progress) must not spin.
                let leader = error.leader().filter(|l| *l != endpoint);
                if let Some(leader) = leader.filter(|_| redirects < MAX_REDIRECTS) {
                    tracing::info!(%leader, "following the coordinator leader");
                    redirects += 1;
                    endpoint = leader;
                    continue;
                }
                redirects = 0;
                tracing::warn!(%endpoint, %error, "coordinator session failed");
                endpoint = coordinators[next].clone();
                next = (next + 1) % coordinators.len();
                failures += 1;
                // Each coordinator once without waiting, then back off.
                if failures < coordinators.len() {
                    continue;
                }
            }
        }
        tracing::info!(retry_in = ?backoff, next = %endpoint, "waiting before reconnecting");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

struct Session<'a> {
    config: &'a Config,
    identity: &'a Identity,
    catalog: &'a Catalog,
    runtime: &'a RuntimeHandle,
    last_valid: &'a mut BTreeMap<String, DesiredProcess>,
    /// The stream was established (resets the backoff).
    connected: bool,
}

impl Session<'_> {
    async fn run(&mut self, endpoint: &str, cancel: &CancellationToken) -> Result<(), ReportError> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.identity.ca_pem))
            .identity(tonic::transport::Identity::from_pem(
                &self.identity.cert_pem,
                &self.identity.key_pem,
            ));
        let channel = connect(endpoint, tls).await?;
        let mut client =
            AgentClient::new(channel).max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES);
        let (up_tx, up_rx) = mpsc::channel(UP_QUEUE_CAPACITY);
        let mut system = sysinfo::System::new();
        let mut observed = self.runtime.observed();
        let first = observed_message(
            &self.identity.host_id,
            &observed.borrow_and_update(),
            self.catalog,
            &mut system,
        );
        let _ = up_tx.try_send(first);
        let mut down = client
            .session(ReceiverStream::new(up_rx))
            .await?
            .into_inner();
        self.connected = true;
        self.runtime.set_coordinator_connected(true);
        tracing::info!(%endpoint, host_id = %self.identity.host_id, "coordinator session open");
        let mut tick = tokio::time::interval(self.config.report_interval);
        loop {
            let send = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                message = down.message() => {
                    match message? {
                        Some(pb::CoordinatorMessage { kind: Some(pb::coordinator_message::Kind::Desired(desired)) }) => {
                            self.apply(desired).await;
                        }
                        Some(_) => tracing::debug!("ignoring an empty coordinator message"),
                        None => return Err(ReportError::Closed),
                    }
                    false
                }
                _ = tick.tick() => true,
                changed = observed.changed() => changed.is_ok(),
            };
            if send {
                let message = observed_message(
                    &self.identity.host_id,
                    &observed.borrow_and_update(),
                    self.catalog,
                    &mut system,
                );
                if up_tx.try_send(message).is_err() {
                    tracing::debug!("report queue full; dropping one report");
                }
            }
        }
    }

    async fn apply(&mut self, desired: pb::Desired) {
        let state = validate_desired(desired, self.last_valid);
        let cached = CachedDesired {
            version: state.version,
            processes: state.processes.clone(),
        };
        match serde_json::to_vec(&cached) {
            Ok(bytes) => {
                if let Err(error) =
                    identity::write_private(&cache_path(&self.config.data_dir), &bytes).await
                {
                    tracing::warn!(%error, "cannot cache the desired state");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot serialize the desired state"),
        }
        self.runtime.apply(state);
    }
}
