//! Commands: every decision that must survive a crash. Each is an entry in the Raft log and carries
//! its own timestamp, so `apply` never reads a clock.

use kvs_proto::model::SettingsChange;
use serde::{Deserialize, Serialize};

use super::model::{ClusterInfo, CoordinatorNode, Host, Instance, InstanceStatus};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}
