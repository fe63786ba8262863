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

/// Where one process of an instance runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub host_id: String,
    /// Client TLS port on the host's address (part of the URL).
    pub front_port: u16,
    /// Engine port on the host's loopback.
    pub engine_port: u16,
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
