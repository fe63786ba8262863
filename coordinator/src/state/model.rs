//! The replicated records: hosts, instances, apps (config vars) and the per-instance event log.
//! Plain data; every change goes through [`super::Command`] and [`super::ClusterState::apply`].

use std::net::IpAddr;

use kvs_proto::model::Engine;
use kvs_proto::settings::Settings;
use serde::{Deserialize, Serialize};

/// Facts fixed when the cluster was bootstrapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub cluster_id: String,
    /// The cluster CA certificate (PEM). Every node and agent trusts it.
    pub ca_cert_pem: String,
    /// The CA private key (PEM). Replicated so any leader can issue certificates.
    pub ca_key_pem: String,
    pub created_at_ms: i64,
    /// The admin API token, the same on every node.
    #[serde(default)]
    pub admin_token: String,
    /// The agents' join token, the same on every node.
    #[serde(default)]
    pub join_token: String,
}

/// A registered host (one agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub id: String,
    pub zone: String,
    pub address: IpAddr,
    pub hostname: String,
    pub memory_total_bytes: u64,
    pub engines: Vec<Engine>,
    pub registered_at_ms: i64,
    /// OpenSSH public host key line pinned at registration; the probes refuse any other key.
    /// `None`: the host cannot be probed over SSH (so it can never be confirmed down).
    #[serde(default)]
    pub ssh_host_key: Option<String>,
}

/// Lifecycle of an instance as the control plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Placed, waiting for the agent to report the engine running.
    Creating,
    /// The primary process runs and answers.
    Available,
    /// The primary process is not running (crash-looping, host silent, …).
    Unavailable,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Creating => "creating",
            InstanceStatus::Available => "available",
            InstanceStatus::Unavailable => "unavailable",
        }
    }
}

/// A standby's replication tunnel listens on its front port plus this (loopback only).
///
/// Front ports are 6380..=16379 and engine ports front + 10000 (16380..=26379), so tunnel ports
/// are 26380..=36379: disjoint from both ranges, below 65535, and unique per host because front
/// ports are. Every placement reserves its tunnel port, so a primary that later becomes a standby
/// (after a failover) finds it free.
pub const TUNNEL_PORT_OFFSET: u16 = 20_000;

/// Where one process of an instance runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub host_id: String,
    /// Client TLS port on the host's address (part of the URL).
    pub front_port: u16,
    /// Engine port on the host's loopback.
    pub engine_port: u16,
}

impl Placement {
    /// Loopback port of the replication tunnel while this process is a standby.
    pub fn tunnel_port(&self) -> u16 {
        self.front_port.saturating_add(TUNNEL_PORT_OFFSET)
    }

    /// Every port this placement reserves on its host.
    pub fn ports(&self) -> [u16; 3] {
        [self.front_port, self.engine_port, self.tunnel_port()]
    }
}

/// Passwords of one instance. Secrets: never logged (Debug is redacted).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub default_password: String,
    pub admin_password: String,
    pub replication_password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// One customer instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    pub plan: String,
    pub maxmemory_bytes: u64,
    pub max_connections: u32,
    pub persistence: bool,
    /// Engine catalog label, e.g. `valkey-9`.
    pub engine: String,
    pub settings: Settings,
    pub credentials: Credentials,
    /// Grows on every change of primary; orders carry it so stale ones are refused.
    pub epoch: u64,
    pub primary: Placement,
    pub status: InstanceStatus,
    pub created_at_ms: i64,
    /// Maintenance window, e.g. "Sundays 14:00 to 18:00 UTC".
    pub maintenance_window: String,
    /// Standby processes replicating from the primary, each in another zone. A standby whose host
    /// is down simply isn't running; the HA policy places a replacement (control::standby).
    #[serde(default)]
    pub standbys: Vec<Placement>,
    /// The plan promises a standby (premium plans); set at creation.
    #[serde(default)]
    pub standby_required: bool,
    /// The failover in flight, if any (at most one per instance).
    #[serde(default)]
    pub failover: Option<FailoverIntent>,
    /// The last completed failover, kept so its loss estimate can be corrected when the old
    /// primary returns and reports what it really had (`control::failover::correction`).
    #[serde(default)]
    pub last_failover: Option<CompletedFailover>,
}

/// A failover (or planned switchover) committed but not yet completed.
///
/// ```text
///   BeginFailover ──(planned: primary paused, standby catches up)──► OrderPromotion
///        │ (unplanned: promotion ordered at once)                        │
///        └──────────────────────────────┬───────────────────────────────┘
///                 target reports master at new_epoch ──► CompleteFailover
///                 timeout / target gone                ──► AbortFailover
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverIntent {
    /// Host of the standby being promoted.
    pub target_host_id: String,
    /// The epoch the target is promoted at: the instance's epoch + 1 when the intent began.
    pub new_epoch: u64,
    /// Planned switchover: the primary is paused and the target promoted only once caught up.
    pub planned: bool,
    /// The operator accepted losing writes the target has not received.
    pub allow_data_loss: bool,
    /// The target has been told to become primary at `new_epoch` (and the old primary to follow
    /// it). Unplanned: at once; planned: once the target caught up.
    pub promotion_ordered: bool,
    /// When the promotion was ordered (wall ms), for the promotion timeout.
    pub promotion_ordered_at_ms: Option<i64>,
    /// The state's `desired_version` that carries the pause: once the primary's agent reports it
    /// applied at least this version, its reported offset no longer moves.
    pub pause_desired_version: u64,
    /// The old primary's last known replication offset (for the data-loss estimate); `None`:
    /// never observed by the leader that decided.
    pub primary_offset: Option<u64>,
    /// The target's replication offset when it was chosen (unplanned) or caught up (planned):
    /// the data-loss estimate is `primary_offset − target_offset`.
    pub target_offset: Option<u64>,
    pub started_at_ms: i64,
    pub reason: String,
}

/// What the loss estimate of a completed failover was based on, and what was reported.
///
/// The estimate at completion is `primary_offset − target_offset`, with the old primary's offset
/// as the deciding leader last saw it. The old primary may have taken writes after that report
/// (it is cut off from the coordinators, not from its clients, until it fences itself); when its
/// host returns, its agent reports the offset it had at `old_epoch` before it is demoted or
/// removed, and the policy records a corrected estimate if that one is larger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedFailover {
    /// The epoch the failover completed at (the new primary's).
    pub epoch: u64,
    /// Where the old primary ran, and the epoch it served at.
    pub old_primary_host_id: String,
    pub old_epoch: u64,
    /// The new primary's offset when it was chosen (unplanned) or caught up (planned): its data
    /// is the old primary's up to here. `None`: unknown, no correction is possible.
    pub target_offset: Option<u64>,
    /// The loss reported so far (at completion, then by corrections); `None`: "unknown".
    pub data_loss_bytes: Option<u64>,
}

/// An app and its config vars.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// config var name → instance name (the URL is derived from the instance).
    pub attachments: std::collections::BTreeMap<String, String>,
    /// Grows by one on every change to this app's vars.
    pub version: u64,
}

/// Something that happened to an instance, for `kvs events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: i64,
    pub message: String,
}

/// A coordinator node: where its peers reach its Raft service and where clients and agents reach
/// its API (so followers can name the leader's API endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorNode {
    pub id: u64,
    /// `host:port` of the peer-only Raft service.
    pub raft_addr: String,
    /// `host:port` of the Admin/Agent/Config services.
    pub api_addr: String,
}
