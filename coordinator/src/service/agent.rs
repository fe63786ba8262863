//! The Agent gRPC service: host registration (join token → host certificate) and the long-lived
//! session (mutual TLS): observations up, desired state down.
//!
//! ```text
//!   agent ──Register(join token)──► issue host cert (CA) ──► commit RegisterHost
//!   agent ══Session(mTLS, CN agent:<id>)══► Observed ──► Observations (leader memory)
//!         ◄═══════════════════════════════ Desired (on connect and whenever it changes), Heartbeat
//!                                          every 500 ms while a quorum answers this leader
//! ```

use std::collections::BTreeSet;
use std::pin::Pin;

use futures::Stream;
use kvs_proto::model::{DesiredProcess, Engine, ProcessStatus, Registration};
use kvs_proto::pb::agent_server::Agent;
use kvs_proto::{ApiError, pb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::SharedRef;
use super::auth::check_bearer;
use crate::ca::{PeerRole, peer_role};
use crate::control::{HostObservation, ProcessObservation, desired};
use crate::state::{Command, Host};

/// Desired-state messages queued per session before the sender waits.
const SESSION_QUEUE_LENGTH: usize = 4;
/// How often an open agent session checks that this node still leads and, if a quorum answered
/// it lately, sends a heartbeat (the agent drops a session silent for 1.5 s; its primaries fence
/// when neither the leader nor a replica was heard for `fence_after`).
const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// Processes one observation may report; more is a malformed report.
const PROCESSES_PER_REPORT_MAX: usize = 10_000;

pub struct AgentService {
    pub shared: SharedRef,
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        check_bearer(request.metadata(), &self.shared.join_token, "join token")?;
        let registration = Registration::try_from(request.into_inner())?;
        self.shared.ensure_leader().await?;
        let host_id = match &registration.host_id {
            Some(id) if self.shared.read(|s| s.hosts.contains_key(id)) => id.clone(),
            _ => self.shared.secrets.host_id(&registration.zone),
        };
        let cert = self
            .shared
            .ca
            .issue_host(&host_id, &registration.hostname, registration.address)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let host = Host {
            id: host_id.clone(),
            zone: registration.zone.clone(),
            address: registration.address,
            hostname: registration.hostname.clone(),
            memory_total_bytes: registration.memory_total_bytes,
            engines: registration.engines,
            registered_at_ms: self.shared.clock.now_ms(),
            ssh_host_key: registration.ssh_host_key.clone(),
        };
        self.shared.submit(Command::RegisterHost(host)).await?;
        tracing::info!(host = %host_id, zone = %registration.zone, address = %registration.address, "host registered");
        Ok(Response::new(pb::RegisterResponse {
            host_id,
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            ca_pem: self.shared.ca.ca_pem().to_string(),
        }))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let host_id = agent_identity(&request)?;
        // Observations live in the leader's memory: agents report to the leader only.
        self.shared.ensure_leader().await?;
        if !self.shared.read(|s| s.hosts.contains_key(&host_id)) {
            return Err(ApiError::PermissionDenied(format!(
                "host {host_id} is not registered; register again"
            ))
            .into());
        }
        let (tx, rx) = mpsc::channel(SESSION_QUEUE_LENGTH);
        let shared = self.shared.clone();
        let inbound = request.into_inner();
        tokio::spawn(async move {
            let span = tracing::info_span!(parent: None, "agent_session", host = %host_id);
            let _entered = span.enter();
            drop(_entered);
            run_session(shared, host_id, inbound, tx).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn agent_identity<T>(request: &Request<T>) -> Result<String, ApiError> {
    let certs = request.peer_certs().ok_or_else(|| {
        ApiError::Unauthenticated(
            "the agent session needs the host certificate (mutual TLS)".into(),
        )
    })?;
    let leaf = certs
        .first()
        .ok_or_else(|| ApiError::Unauthenticated("no client certificate presented".into()))?;
    match peer_role(leaf.as_ref()) {
        Ok(PeerRole::Agent { host_id }) => Ok(host_id),
        Ok(other) => Err(ApiError::PermissionDenied(format!(
            "{other:?} may not open an agent session"
        ))),
        Err(e) => Err(ApiError::Unauthenticated(e.to_string())),
    }
}

async fn run_session(
    shared: SharedRef,
    host_id: String,
    mut inbound: Streaming<pb::AgentMessage>,
    tx: mpsc::Sender<Result<pb::CoordinatorMessage, Status>>,
) {
    tracing::info!(host = %host_id, "agent session opened");
    let mut changes = shared.state.subscribe();
    let mut last_sent: Option<Vec<DesiredProcess>> = None;
    let mut last_version = 0;
    let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Nothing is said while the quorum is unconfirmed: an agent must not take a deposed
        // leader's word as the coordinators' (its fence would never fall).
        let confirmed = shared.leads_with_quorum();
        let desired = shared.read(|s| {
            (
                s.desired_version,
                desired::for_host(s, &host_id, &shared.ha),
            )
        });
        if confirmed && last_sent.as_ref() != Some(&desired.1) {
            let message = pb::CoordinatorMessage {
                kind: Some(pb::coordinator_message::Kind::Desired(pb::Desired {
                    version: desired.0,
                    processes: desired.1.iter().cloned().map(Into::into).collect(),
                })),
            };
            if tx.send(Ok(message)).await.is_err() {
                break;
            }
            last_sent = Some(desired.1);
            last_version = desired.0;
        }
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(pb::AgentMessage { kind: Some(pb::agent_message::Kind::Observed(observed)) })) => {
                    if let Err(e) = record(&shared, &host_id, observed) {
                        tracing::warn!(host = %host_id, cause = %e, "malformed report ignored");
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(status) => {
                    tracing::info!(host = %host_id, cause = %status.message(), "agent stream broke");
                    break;
                }
            },
            changed = changes.changed() => if changed.is_err() { break },
            _ = tx.closed() => break,
            _ = shared.stopping.cancelled() => break,
            _ = heartbeat.tick() => {
                // A node that lost leadership (or led only briefly after a restart) must not keep
                // agents: their reports would feed no decision. Ending the stream with the
                // leader's address sends the agent there.
                if let Err(not_leader) = shared.ensure_leader().await {
                    let _ = tx.send(Err(not_leader.into())).await;
                    break;
                }
                if shared.leads_with_quorum() && last_sent.is_some() {
                    let beat = pb::CoordinatorMessage {
                        kind: Some(pb::coordinator_message::Kind::Heartbeat(pb::Heartbeat {
                            desired_version: last_version,
                        })),
                    };
                    if tx.send(Ok(beat)).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    tracing::info!(host = %host_id, "agent session closed");
}

fn record(shared: &SharedRef, host_id: &str, observed: pb::Observed) -> Result<(), ApiError> {
    if observed.host_id != host_id {
        return Err(ApiError::PermissionDenied(format!(
            "report names host {:?}",
            observed.host_id
        )));
    }
    if observed.processes.len() > PROCESSES_PER_REPORT_MAX {
        return Err(ApiError::ResourceExhausted(
            "too many processes in one report".into(),
        ));
    }
    let mut processes = std::collections::BTreeMap::new();
    for p in observed.processes {
        let status = ProcessStatus::parse(&p.status)?;
        processes.insert(
            p.instance,
            ProcessObservation {
                epoch: p.epoch,
                status,
                role: p.role,
                restarts: p.restarts,
                used_memory_bytes: p.used_memory_bytes,
                connected_clients: p.connected_clients,
                last_error: p.last_error,
                replication_offset: p.replication_offset,
                master_link_status: p.master_link_status,
                master_last_io_seconds: p.master_last_io_seconds,
                connected_replicas: p.connected_replicas,
                fenced: p.fenced,
                writes_paused: p.writes_paused,
                after_reboot: p.after_reboot,
                link_down_since: None,
                primary_heard_at: None,
                master_offset_last: None,
            },
        );
    }
    let host = observed.host.unwrap_or_default();
    let engines = observed
        .engines
        .into_iter()
        .filter_map(|e| Engine::try_from(e).ok())
        .collect();
    let observation = HostObservation {
        last_seen: shared.clock.now(),
        last_seen_ms: shared.clock.now_ms(),
        memory_total_bytes: host.memory_total_bytes,
        memory_available_bytes: host.memory_available_bytes,
        load_avg_1m: host.load_avg_1m,
        engines,
        processes,
        desired_version: observed.desired_version,
    };
    // The standbys a planned switchover waits for: their offset is a decision input too.
    let catching_up: BTreeSet<String> = shared.read(|s| {
        observation
            .processes
            .keys()
            .filter(|name| {
                s.instances
                    .get(*name)
                    .and_then(|i| i.failover.as_ref())
                    .is_some_and(|f| {
                        f.planned && !f.promotion_ordered && f.target_host_id == host_id
                    })
            })
            .cloned()
            .collect()
    });
    let changed = shared.observe(|o| {
        let before = o
            .hosts
            .get(host_id)
            .map(|h| decision_inputs(h, &catching_up));
        let after = decision_inputs(&observation, &catching_up);
        o.record(host_id, observation);
        before.as_ref() != Some(&after)
    });
    if changed {
        // A role, status or applied desired version moved: let the leader decide now rather than
        // at its next tick (this is what keeps a switchover's write pause short).
        tracing::debug!(host = %host_id, "a decision input changed: early leader tick");
        shared.tick_now.notify_one();
    }
    Ok(())
}

/// One process's decision inputs: name, epoch, status, role, link status, fenced, writes paused,
/// and the offset of a standby a switchover waits for (0 for the others).
type ProcessInputs = (String, u64, ProcessStatus, String, String, bool, bool, u64);

/// The parts of a report that can change a decision (not the metrics, not the offsets of
/// standbys nobody waits for).
fn decision_inputs(
    observation: &HostObservation,
    catching_up: &BTreeSet<String>,
) -> (u64, Vec<ProcessInputs>) {
    let processes = observation
        .processes
        .iter()
        .map(|(name, p)| {
            let waited_for = catching_up.contains(name);
            (
                name.clone(),
                p.epoch,
                p.status,
                p.role.clone(),
                p.master_link_status.clone(),
                p.fenced || p.after_reboot,
                p.writes_paused,
                if waited_for { p.replication_offset } else { 0 },
            )
        })
        .collect();
    (observation.desired_version, processes)
}
