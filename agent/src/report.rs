//! The agent's channel to the coordinator: Register once, then a Session stream for good.
//!
//! ```text
//!   Register (server-auth TLS, `authorization: Bearer <join token>`) ──► host id + cert/key/CA
//!        stored in data_dir (identity.rs)
//!   Session (mTLS with the host cert) ◄─► Desired (down, full, versioned) / Observed (up, every
//!        report_interval and on change)
//!   finding the leader: the Session is opened with every configured coordinator at once; the
//!        leader accepts, the others refuse with UNAVAILABLE carrying `kvs-leader` (followed if it
//!        names a node not in the list); the first accepted stream wins, the rest are dropped.
//!        Again at once when a session ends; with backoff when nobody accepted
//! ```
//!
//! The runtime is told each time the leader is heard (`RuntimeHandle::coordinator_heard`): the
//! leader sends its desired state and, every 500 ms while a quorum answers it, a heartbeat.
//! Fencing (DESIGN §4 rule 5) counts the time since the last word. A session silent for
//! [`SILENT_SESSION`] is dropped and the leader searched again over fresh connections (a stale
//! TCP connection retransmits slowly after a partition heals); while a primary here is fenced, the
//! search is relaunched every [`FENCED_RELAUNCH`], so the fence lifts within a second of a heal.
//!
//! Every `Desired` is validated process by process (`DesiredProcess::try_from`); an invalid one is
//! logged and replaced by its last valid spec (or skipped if there is none) so a bad message can
//! never make the agent delete an instance. The last applied state is cached in `desired.json`
//! (0600: it holds passwords) so engines come back after an agent restart without the coordinator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
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

/// Connecting to a coordinator must finish within this (TCP and TLS; a cut-off node never answers,
/// and the other nodes are asked at the same time).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A session with no message (desired state or heartbeat) for this long is dropped. Below the
/// smallest `fence_after` (2 s): a fence is lifted by a new session's first message only.
pub const SILENT_SESSION: Duration = Duration::from_millis(1_500);
/// While a primary here is fenced, a new round of session attempts starts this often (the
/// earlier ones keep trying), so a heal is noticed within this plus a round trip.
const FENCED_RELAUNCH: Duration = Duration::from_millis(250);
/// Attempts in flight at once in one search (relaunched rounds included); at the cap the oldest
/// is dropped for the new one (its SYN retransmits are seconds apart, a fresh SYN goes now).
const ATTEMPTS_IN_FLIGHT_MAX: usize = 24;
/// A search that keeps relaunching (fenced) reports its failures and starts over after this.
const FENCED_SEARCH_MAX: Duration = Duration::from_secs(10);
/// Failures kept for the log line of one search.
const SEARCH_ERRORS_MAX: usize = 8;
/// The Session call must be answered (accepted, or refused with the leader's address) within this.
const SESSION_OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// A session shorter than this does not reset the backoff (a node that accepts, then steps down).
const SHORT_SESSION: Duration = Duration::from_secs(5);
/// Deadline of the Register RPC.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keepalive: a dead coordinator is noticed within interval + timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff bounds.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(200);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Endpoints outside the configured list that redirects may add to one search.
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
    #[error(
        "no message from the coordinator for {0:?} (no heartbeat: it lost its quorum, or the network is cut)"
    )]
    Silent(Duration),
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

/// Opens a gRPC channel to an endpoint (its TLS and timeouts already set): TCP in production
/// ([`tcp_dial`]), turmoil's simulated TCP in the simulation (sim/).
pub type Dial = std::sync::Arc<
    dyn Fn(Endpoint) -> BoxFuture<'static, Result<Channel, tonic::transport::Error>> + Send + Sync,
>;

/// Dials over the host's TCP stack.
pub fn tcp_dial() -> Dial {
    std::sync::Arc::new(|endpoint: Endpoint| Box::pin(async move { endpoint.connect().await }))
}

async fn connect(
    endpoint: &str,
    tls: ClientTlsConfig,
    dial: &Dial,
) -> Result<Channel, ReportError> {
    let connect_error = |error: tonic::transport::Error| ReportError::Connect {
        endpoint: endpoint.to_string(),
        error: error_chain(&error),
    };
    let endpoint = Endpoint::from_shared(endpoint.to_string())
        .map_err(connect_error)?
        .tls_config(tls)
        .map_err(connect_error)?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    dial(endpoint).await.map_err(connect_error)
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
            writes_paused: p.writes_paused,
            after_reboot: p.after_reboot,
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

/// Keeps a session open until `cancel`: every configured coordinator is asked at once, the one that
/// accepts (the leader) keeps the session; when it ends, the search starts again at once. A round in
/// which nobody accepts, or a session that ends within [`SHORT_SESSION`], backs off.
pub async fn session_loop(
    config: &Config,
    identity: &Identity,
    catalog: &Catalog,
    runtime: &RuntimeHandle,
    cancel: &CancellationToken,
    dial: &Dial,
) {
    if config.coordinators.is_empty() {
        tracing::error!("no coordinator configured");
        return;
    }
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&identity.ca_pem))
        .identity(tonic::transport::Identity::from_pem(
            &identity.cert_pem,
            &identity.key_pem,
        ));
    let mut system = sysinfo::System::new();
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut last_valid = BTreeMap::new();
    while !cancel.is_cancelled() {
        let first = observed_message(
            &identity.host_id,
            &runtime.observed().borrow(),
            catalog,
            &mut system,
        );
        let fenced = || {
            runtime
                .observed()
                .borrow()
                .processes
                .iter()
                .any(|p| p.fenced)
        };
        let search = open_any(&config.coordinators, &tls, first, dial, &fenced);
        let found = tokio::select! {
            _ = cancel.cancelled() => return,
            found = search => found,
        };
        let healthy = match found {
            Ok(open) => {
                let endpoint = open.endpoint.clone();
                tracing::info!(%endpoint, host_id = %identity.host_id, "coordinator session open");
                let opened_at = tokio::time::Instant::now();
                let mut session = Session {
                    config,
                    identity,
                    catalog,
                    runtime,
                    last_valid: &mut last_valid,
                    system: &mut system,
                };
                let result = session.run(open, cancel).await;
                match result {
                    Ok(()) => return,
                    Err(error) => tracing::warn!(
                        %endpoint, %error,
                        "coordinator session ended; looking for the leader"
                    ),
                }
                opened_at.elapsed() >= SHORT_SESSION
            }
            Err(errors) => {
                tracing::warn!(errors = %errors.join("; "), "no coordinator accepted the session");
                false
            }
        };
        if healthy {
            backoff = RECONNECT_BACKOFF_MIN;
            continue;
        }
        if fenced() {
            backoff = RECONNECT_BACKOFF_MIN; // a fenced primary waits for the coordinator
        }
        tracing::info!(retry_in = ?backoff, "waiting before looking for the leader again");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// A session stream a coordinator accepted.
struct OpenSession {
    endpoint: String,
    /// Kept with the stream: the connection lives as long as its client.
    _client: AgentClient<Channel>,
    up: mpsc::Sender<pb::AgentMessage>,
    down: tonic::Streaming<pb::CoordinatorMessage>,
}

/// Opens a session with every endpoint at once and keeps the first one accepted; a node that
/// names another leader (not yet tried) is asked too. While `fenced()` holds, another round of
/// attempts starts every [`FENCED_RELAUNCH`] (the earlier ones keep waiting for their SYN
/// retransmits; past [`ATTEMPTS_IN_FLIGHT_MAX`] the oldest are dropped). The other attempts are dropped (a node that accepted late sees its stream
/// close). Err: why attempts failed (the last few).
async fn open_any(
    endpoints: &[String],
    tls: &ClientTlsConfig,
    first: pb::AgentMessage,
    dial: &Dial,
    fenced: &(dyn Fn() -> bool + Sync),
) -> Result<OpenSession, Vec<String>> {
    let mut attempts = tokio::task::JoinSet::new();
    let mut oldest_first = std::collections::VecDeque::new();
    let mut redirects = BTreeSet::new();
    let spawn = |attempts: &mut tokio::task::JoinSet<_>,
                 oldest_first: &mut std::collections::VecDeque<tokio::task::AbortHandle>,
                 endpoint: String| {
        oldest_first.retain(|a: &tokio::task::AbortHandle| !a.is_finished());
        if oldest_first.len() >= ATTEMPTS_IN_FLIGHT_MAX
            && let Some(oldest) = oldest_first.pop_front()
        {
            oldest.abort();
        }
        let (tls, first, dial) = (tls.clone(), first.clone(), dial.clone());
        oldest_first.push_back(attempts.spawn(async move {
            let opened = open_session(&endpoint, tls, first, &dial).await;
            (endpoint, opened)
        }));
    };
    let round =
        |attempts: &mut tokio::task::JoinSet<_>,
         oldest_first: &mut std::collections::VecDeque<tokio::task::AbortHandle>| {
            for endpoint in endpoints.iter().collect::<BTreeSet<_>>() {
                spawn(attempts, oldest_first, endpoint.clone());
            }
        };
    round(&mut attempts, &mut oldest_first);
    let mut relaunch = tokio::time::interval(FENCED_RELAUNCH);
    relaunch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    relaunch.reset();
    let give_up = tokio::time::sleep(FENCED_SEARCH_MAX);
    tokio::pin!(give_up);
    let mut errors = std::collections::VecDeque::new();
    loop {
        tokio::select! {
            Some(joined) = attempts.join_next(), if !attempts.is_empty() => match joined {
                Ok((_, Ok(open))) => return Ok(open),
                Ok((endpoint, Err(error))) => {
                    let redirect = error.leader();
                    if errors.len() == SEARCH_ERRORS_MAX {
                        errors.pop_front();
                    }
                    errors.push_back(format!("{endpoint}: {error}"));
                    if let Some(leader) = redirect
                        && !endpoints.contains(&leader)
                        && redirects.len() < MAX_REDIRECTS
                        && redirects.insert(leader.clone())
                    {
                        tracing::info!(%leader, by = %endpoint, "following the coordinator leader");
                        spawn(&mut attempts, &mut oldest_first, leader);
                    }
                }
                Err(error) if error.is_cancelled() => {} // dropped for a fresher attempt
                Err(error) => errors.push_back(format!("session attempt: {error}")),
            },
            _ = relaunch.tick() => {
                if fenced() {
                    round(&mut attempts, &mut oldest_first);
                }
            }
            _ = &mut give_up => return Err(errors.into()),
        }
        if attempts.is_empty() && !fenced() {
            return Err(errors.into());
        }
    }
}

/// Connects to `endpoint` and opens the Session stream, `first` as its first report.
async fn open_session(
    endpoint: &str,
    tls: ClientTlsConfig,
    first: pb::AgentMessage,
    dial: &Dial,
) -> Result<OpenSession, ReportError> {
    let channel = connect(endpoint, tls, dial).await?;
    let mut client =
        AgentClient::new(channel).max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES);
    let (up, up_rx) = mpsc::channel(UP_QUEUE_CAPACITY);
    let _ = up.try_send(first);
    let call = client.session(ReceiverStream::new(up_rx));
    let down = tokio::time::timeout(SESSION_OPEN_TIMEOUT, call)
        .await
        .map_err(|_| ReportError::Connect {
            endpoint: endpoint.to_string(),
            error: format!("no answer to the session within {SESSION_OPEN_TIMEOUT:?}"),
        })??
        .into_inner();
    Ok(OpenSession {
        endpoint: endpoint.to_string(),
        _client: client,
        up,
        down,
    })
}

struct Session<'a> {
    config: &'a Config,
    identity: &'a Identity,
    catalog: &'a Catalog,
    runtime: &'a RuntimeHandle,
    last_valid: &'a mut BTreeMap<String, DesiredProcess>,
    system: &'a mut sysinfo::System,
}

impl Session<'_> {
    /// Applies what comes down and reports every `report_interval` and on change, until the
    /// stream breaks (Err) or `cancel` (Ok).
    async fn run(
        &mut self,
        open: OpenSession,
        cancel: &CancellationToken,
    ) -> Result<(), ReportError> {
        let OpenSession { up, mut down, .. } = open;
        let mut observed = self.runtime.observed();
        observed.mark_unchanged();
        let mut tick = tokio::time::interval(self.config.report_interval);
        let silent = tokio::time::sleep(SILENT_SESSION);
        tokio::pin!(silent);
        loop {
            let send = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                message = down.message() => {
                    match message? {
                        Some(pb::CoordinatorMessage { kind: Some(pb::coordinator_message::Kind::Desired(desired)) }) => {
                            self.apply(desired).await;
                        }
                        Some(pb::CoordinatorMessage { kind: Some(pb::coordinator_message::Kind::Heartbeat(_)) }) => {}
                        Some(_) => tracing::debug!("ignoring an empty coordinator message"),
                        None => return Err(ReportError::Closed),
                    }
                    // Applied first, heard second (the runtime lifts a fence on this).
                    self.runtime.coordinator_heard();
                    silent.as_mut().reset(tokio::time::Instant::now() + SILENT_SESSION);
                    false
                }
                _ = &mut silent => return Err(ReportError::Silent(SILENT_SESSION)),
                _ = tick.tick() => true,
                changed = observed.changed() => changed.is_ok(),
            };
            if send {
                let message = observed_message(
                    &self.identity.host_id,
                    &observed.borrow_and_update(),
                    self.catalog,
                    self.system,
                );
                if up.try_send(message).is_err() {
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
