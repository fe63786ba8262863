//! Thin tonic adapters over the replicated state. Each service validates its input with the
//! `kvs_proto::model` conversions, reads `ClusterState` or submits a `Command` through Raft, and
//! maps errors to `tonic::Status` through `kvs_proto::ApiError` (one mapping, in kvs-proto).
//!
//! ```text
//!   Admin  (bearer admin token) ─┐
//!   Config (bearer admin token) ─┼─► Shared { raft, state, observations, ca, secrets, clock }
//!   Agent  (join token / mTLS)  ─┘
//! ```

pub mod admin;
pub mod agent;
pub mod auth;
pub mod cluster;
pub mod config_watch;
pub mod convert;

use std::sync::{Arc, Mutex};

use kvs_proto::ApiError;
use kvs_proto::plan::Plan;

use crate::ca::ClusterCa;
use crate::clock::Clock;
use crate::config::Config;
use crate::control::Observations;
use crate::raft::{ClientWriteError, Raft, StateHandle};
use crate::secrets::Secrets;
use crate::state::{Applied, ClusterState, Command};

/// A leader whose quorum acknowledged it longer ago than this no longer vouches for itself
/// (the smallest election timeout: by then a new leader may have been elected).
pub const QUORUM_ACK_FRESH: std::time::Duration =
    std::time::Duration::from_millis(crate::raft::ELECTION_TIMEOUT_MIN_MS);

/// Everything the services share. One per coordinator node.
pub struct Shared {
    pub config: Config,
    pub raft: Raft,
    pub state: StateHandle,
    /// What the agents report; leader memory only.
    pub observations: Mutex<Observations>,
    pub ca: ClusterCa,
    pub secrets: Secrets,
    pub clock: Clock,
    pub plans: Vec<Plan>,
    pub admin_token: String,
    pub join_token: String,
    /// Serializes membership changes (concurrent joins would otherwise race in openraft).
    pub membership_lock: tokio::sync::Mutex<()>,
    /// High-availability settings (window, fencing, lag limit), from the node config.
    pub ha: crate::control::HaConfig,
    /// SSH probe results from every vantage point; leader memory only.
    pub probes: Mutex<crate::control::ProbeObservations>,
    /// What the HA policy keeps between ticks (restart budget, alerts raised); leader memory.
    pub ha_memory: Mutex<crate::control::HaMemory>,
    /// Probes hosts (short deadline).
    pub prober: Arc<dyn crate::probe::Prober>,
    /// Runs remote commands such as restarting an agent (longer deadline).
    pub restart_prober: Arc<dyn crate::probe::Prober>,
    /// How this node dials out (peer channels, reachability checks).
    pub net: crate::net::Net,
    /// Client TLS of the peer channel (this node's certificate, the cluster CA).
    pub peer_tls: tonic::transport::ClientTlsConfig,
    /// Wakes the leader's loop before its next tick (a report changed a decision input).
    pub tick_now: tokio::sync::Notify,
    /// Cancelled when the node shuts down: long-lived streams (agent sessions, config watches)
    /// end, so the server's graceful shutdown does not wait for them forever.
    pub stopping: tokio_util::sync::CancellationToken,
}

pub type SharedRef = Arc<Shared>;

impl Shared {
    /// Reads the current replicated state.
    pub fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        self.state.read(f)
    }

    /// Commits a command through Raft and returns what `apply` said.
    pub async fn submit(&self, command: Command) -> Result<Applied, ApiError> {
        let kind = command.kind();
        match self.raft.client_write(command).await {
            Ok(response) => response
                .data
                .map_err(|refusal| ApiError::FailedPrecondition(refusal.to_string())),
            Err(err) => Err(raft_error(kind, err)),
        }
    }

    /// Ok when this node leads; otherwise `NotLeader` naming the leader's API endpoint, which
    /// clients follow (the `kvs-leader` header).
    pub async fn ensure_leader(&self) -> Result<(), ApiError> {
        let leader = self.raft.current_leader().await;
        if leader == Some(self.config.node_id) {
            return Ok(());
        }
        let endpoint = leader.and_then(|id| {
            self.read(|s| {
                s.coordinators
                    .get(&id)
                    .map(|n| format!("https://{}", n.api_addr))
            })
        });
        Err(ApiError::NotLeader { leader: endpoint })
    }

    /// This node leads and a quorum of its peers acknowledged it within [`QUORUM_ACK_FRESH`]: a
    /// leader cut off from its peers stops saying so (to agents: no heartbeats) before another
    /// can be elected. openraft refreshes the figure at least every tick (1.5 heartbeats).
    pub fn leads_with_quorum(&self) -> bool {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow();
        metrics.current_leader == Some(self.config.node_id)
            && metrics
                .millis_since_quorum_ack
                .is_some_and(|ms| ms <= QUORUM_ACK_FRESH.as_millis() as u64)
    }

    /// Runs `f` on the observations.
    pub fn observe<T>(&self, f: impl FnOnce(&mut Observations) -> T) -> T {
        let mut guard = self
            .observations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

fn raft_error(kind: &str, err: ClientWriteError) -> ApiError {
    use openraft::error::{ClientWriteError as W, RaftError};
    match err {
        RaftError::APIError(W::ForwardToLeader(forward)) => ApiError::NotLeader {
            leader: forward.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(W::ChangeMembershipError(e)) => {
            ApiError::FailedPrecondition(e.to_string())
        }
        RaftError::Fatal(fatal) => {
            tracing::error!(command = kind, cause = %fatal, "raft is stopped; this node cannot commit");
            ApiError::Unavailable(format!("the coordinator cannot commit ({fatal})"))
        }
    }
}
