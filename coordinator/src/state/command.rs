//! Commands: every decision that must survive a crash. Each is an entry in the Raft log and carries
//! its own timestamp, so `apply` never reads a clock.

use kvs_proto::model::SettingsChange;
use serde::{Deserialize, Serialize};

use super::model::{ClusterInfo, CoordinatorNode, Host, Instance, InstanceStatus, Placement};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "commands are few and short-lived; CreateInstance carries a whole Instance"
)]
pub enum Command {
    /// First entry of a new cluster: its id and CA.
    InitCluster(ClusterInfo),
    /// A host registered (or re-registered with the same id: its facts are updated).
    RegisterHost(Host),
    /// A new instance, placed, attached to `app`.
    CreateInstance { instance: Instance, app: String },
    SetInstanceStatus {
        name: String,
        status: InstanceStatus,
        at_ms: i64,
        reason: String,
    },
    UpdateSettings {
        name: String,
        change: SettingsChange,
        at_ms: i64,
    },
    /// Removes the instance and every attachment to it.
    DestroyInstance { name: String, at_ms: i64 },
    /// Attaches `instance` to `app` as REDIS_URL; the instance that held REDIS_URL keeps a color
    /// (reference: `redis:promote`).
    PromoteAttachment {
        app: String,
        instance: String,
        at_ms: i64,
    },
    /// Records (or updates) a coordinator node's addresses. Raft membership itself is changed
    /// through openraft; this is the directory the API uses to name the leader.
    SetCoordinator(CoordinatorNode),
    /// Forgets a coordinator node after it left the Raft membership.
    RemoveCoordinator { id: u64 },
    /// Adds a standby of `name` at `placement` (its tunnel port derives from the front port).
    PlaceStandby {
        name: String,
        placement: Placement,
        at_ms: i64,
    },
    /// Starts a failover to the standby on `new_primary_host`, at epoch `expected_epoch + 1`.
    BeginFailover {
        name: String,
        expected_epoch: u64,
        new_primary_host: String,
        planned: bool,
        allow_data_loss: bool,
        /// The old primary's last known replication offset, if any.
        primary_offset: Option<u64>,
        /// The target standby's replication offset when chosen, if known.
        target_offset: Option<u64>,
        reason: String,
        at_ms: i64,
    },
    /// Planned switchover: the target caught up with the paused primary; promote it now.
    OrderPromotion {
        name: String,
        /// The failover's new epoch.
        epoch: u64,
        /// The paused primary's offset the target caught up with.
        primary_offset: Option<u64>,
        /// The target's offset now.
        target_offset: Option<u64>,
        at_ms: i64,
    },
    /// The target runs as master at `epoch`: it becomes the primary and every URL rotates.
    CompleteFailover {
        name: String,
        epoch: u64,
        /// Estimated writes lost (old primary offset − target offset at promotion); `None`:
        /// unknown.
        data_loss_bytes: Option<u64>,
        at_ms: i64,
    },
    /// The old primary of the failover completed at `epoch` reported a larger offset at its old
    /// epoch than the estimate used: `data_loss_bytes` replaces the reported loss.
    CorrectDataLoss {
        name: String,
        epoch: u64,
        data_loss_bytes: u64,
        at_ms: i64,
    },
    /// Gives up the failover in flight; the old primary stays primary.
    AbortFailover {
        name: String,
        epoch: u64,
        reason: String,
        at_ms: i64,
    },
    RemoveStandby {
        name: String,
        host_id: String,
        at_ms: i64,
    },
    /// The primary restarted after its host rebooted and no standby can take over: it serves its
    /// own data again, at a new epoch (which lifts the agent's reboot fence).
    ResumeAfterReboot {
        name: String,
        expected_epoch: u64,
        reason: String,
        at_ms: i64,
    },
    /// Records a decision that changed nothing (a refused failover, an unplaceable standby).
    RecordEvent {
        name: String,
        message: String,
        at_ms: i64,
    },
}

impl Command {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::InitCluster(_) => "init_cluster",
            Command::RegisterHost(_) => "register_host",
            Command::CreateInstance { .. } => "create_instance",
            Command::SetInstanceStatus { .. } => "set_instance_status",
            Command::UpdateSettings { .. } => "update_settings",
            Command::DestroyInstance { .. } => "destroy_instance",
            Command::PromoteAttachment { .. } => "promote_attachment",
            Command::SetCoordinator(_) => "set_coordinator",
            Command::RemoveCoordinator { .. } => "remove_coordinator",
            Command::PlaceStandby { .. } => "place_standby",
            Command::BeginFailover { .. } => "begin_failover",
            Command::OrderPromotion { .. } => "order_promotion",
            Command::CompleteFailover { .. } => "complete_failover",
            Command::CorrectDataLoss { .. } => "correct_data_loss",
            Command::AbortFailover { .. } => "abort_failover",
            Command::RemoveStandby { .. } => "remove_standby",
            Command::ResumeAfterReboot { .. } => "resume_after_reboot",
            Command::RecordEvent { .. } => "record_event",
        }
    }
}

/// What applying a command produced. Refusals are values, not panics: a command that a newer
/// state makes invalid (a race between two admin requests) is refused and changes nothing.
pub type CommandOutcome = Result<Applied, Refusal>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Done,
    /// The config var the new instance was attached under.
    Attached {
        config_var: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("cluster already initialized")]
    AlreadyInitialized,
    #[error("instance {0} already exists")]
    InstanceExists(String),
    #[error("no instance named {0}")]
    NoSuchInstance(String),
    #[error("no host {0}")]
    NoSuchHost(String),
    #[error("port {port} on host {host} is taken")]
    PortTaken { host: String, port: u16 },
    #[error("app {0} has no free config var name left")]
    NoConfigVarLeft(String),
    #[error("instance {instance} is at epoch {actual}, not {expected}")]
    StaleEpoch {
        instance: String,
        expected: u64,
        actual: u64,
    },
    #[error("instance {0} already has a failover in flight")]
    FailoverInProgress(String),
    #[error("instance {0} has no failover in flight")]
    NoFailover(String),
    #[error("instance {instance}'s failover is not at the right step: {reason}")]
    FailoverStep { instance: String, reason: String },
    #[error("instance {instance} has no standby on host {host}")]
    NoSuchStandby { instance: String, host: String },
    #[error("host {host} already runs a process of instance {instance}")]
    HostAlreadyServes { instance: String, host: String },
}
