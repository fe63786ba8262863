//! What the leader has seen of each host, kept in memory only (heartbeats never enter the Raft
//! log). A new leader starts empty: every host is "unknown" until it reports.

use std::collections::BTreeMap;
use std::time::Duration;

use kvs_proto::model::{Engine, ProcessStatus};

/// The latest report of one engine process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessObservation {
    pub epoch: u64,
    pub status: ProcessStatus,
    /// `master`, `slave` or `unknown`, as INFO reports it.
    pub role: String,
    pub restarts: u32,
    pub used_memory_bytes: u64,
    pub connected_clients: u32,
    pub last_error: String,
}

/// The latest report of one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostObservation {
    /// Monotonic time of the last report.
    pub last_seen: Duration,
    /// Wall-clock Unix ms of the last report (for display).
    pub last_seen_ms: i64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub load_avg_1m: f64,
    pub engines: Vec<Engine>,
    pub processes: BTreeMap<String, ProcessObservation>,
    /// The desired version the agent has applied.
    pub desired_version: u64,
}

/// Host liveness as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostLiveness {
    /// Reported within the silence timeout.
    Up,
    /// Reported once, but not within the silence timeout.
    Silent,
    /// No report since this node became leader.
    Unknown,
}

impl HostLiveness {
    pub fn as_str(self) -> &'static str {
        match self {
            HostLiveness::Up => "up",
            HostLiveness::Silent => "silent",
            HostLiveness::Unknown => "unknown",
        }
    }
}

/// Every host's latest report.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    pub hosts: BTreeMap<String, HostObservation>,
}

impl Observations {
    pub fn liveness(
        &self,
        host_id: &str,
        now: Duration,
        silence_timeout: Duration,
    ) -> HostLiveness {
        match self.hosts.get(host_id) {
            None => HostLiveness::Unknown,
            Some(h) if now.saturating_sub(h.last_seen) <= silence_timeout => HostLiveness::Up,
            Some(_) => HostLiveness::Silent,
        }
    }
}
