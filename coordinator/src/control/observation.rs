//! What the leader has seen of each host, kept in memory only (heartbeats and probe results never
//! enter the Raft log). A new leader starts empty: every host is "unknown" until it reports, and
//! every "since" clock starts at the first bad report *this* leader saw, so a new leader waits a
//! whole confirmation window before it may confirm anything.
//!
//! ```text
//!   agent Observed ──► Observations::record(host, HostObservation)   (merges "since" fields)
//!   SSH probe result (own or forwarded by a follower)
//!                  ──► ProbeObservations::record(host, vantage node, reachable, now)
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use kvs_proto::model::{Engine, ProcessStatus};

/// A standby that has heard nothing from its primary for longer than this counts its link as down
/// even if the engine still says `up`. The agents configure `repl-ping-replica-period 1`, so a
/// healthy link never goes more than about a second without traffic; five silent seconds mean
/// the primary (or the path to it) is gone.
pub const STANDBY_PRIMARY_SILENCE_MAX_SECONDS: i64 = 5;

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
    /// INFO `master_repl_offset` (primary) or the replica's processed offset (standby).
    pub replication_offset: u64,
    /// Standby only: `up`, `down`, or empty when not a replica.
    pub master_link_status: String,
    /// Standby only: seconds since the last I/O with its primary.
    pub master_last_io_seconds: i64,
    /// Primary only: replicas connected.
    pub connected_replicas: u32,
    /// Primary only: the agent fenced it (client writes refused).
    pub fenced: bool,
    /// Primary only: client writes are paused and `replication_offset` was read after the pause
    /// took effect (a planned switchover may promote once a standby reaches it).
    pub writes_paused: bool,
    /// Primary only: started from disk after its host rebooted; fenced until the coordinator
    /// fails over to a standby or raises the epoch (its AOF may miss acknowledged writes).
    pub after_reboot: bool,
    /// Derived by [`Observations::record`], leave `None` when building a report: since when (the
    /// leader's monotonic time) this standby has continuously reported it cannot hear its primary.
    pub link_down_since: Option<Duration>,
    /// Derived by [`Observations::record`]: when (leader time) this standby last heard its primary,
    /// from its last report with the link up (`at − master_last_io_seconds`). Once the engine
    /// declares the link down it stops counting I/O, so this is what dates a link-down.
    pub primary_heard_at: Option<Duration>,
    /// Derived by [`Observations::record`]: the offset this process last reported while running
    /// as master at `epoch` (kept across reports of a crashed engine, for the data-loss estimate).
    pub master_offset_last: Option<u64>,
}

impl ProcessObservation {
    /// A report of a process with no metrics and no replication facts (tests, placeholders).
    pub fn new(epoch: u64, status: ProcessStatus, role: &str) -> Self {
        Self {
            epoch,
            status,
            role: role.to_string(),
            restarts: 0,
            used_memory_bytes: 0,
            connected_clients: 0,
            last_error: String::new(),
            replication_offset: 0,
            master_link_status: String::new(),
            master_last_io_seconds: 0,
            connected_replicas: 0,
            fenced: false,
            writes_paused: false,
            after_reboot: false,
            link_down_since: None,
            primary_heard_at: None,
            master_offset_last: None,
        }
    }

    /// Running as a replica.
    pub fn is_running_replica(&self) -> bool {
        self.status == ProcessStatus::Running && self.role == "slave"
    }

    /// Running as master.
    pub fn is_running_master(&self) -> bool {
        self.status == ProcessStatus::Running && self.role == "master"
    }

    /// A replica that cannot hear its primary: link down, or no I/O for too long.
    pub fn reports_link_down(&self) -> bool {
        self.is_running_replica()
            && (self.master_link_status == "down"
                || self.master_last_io_seconds > STANDBY_PRIMARY_SILENCE_MAX_SECONDS)
    }

    /// Fills the derived fields from the previous report of the same process, seen at `at`.
    fn carry_from(&mut self, previous: Option<&ProcessObservation>, at: Duration) {
        let silent = Duration::from_secs(u64::try_from(self.master_last_io_seconds).unwrap_or(0));
        self.primary_heard_at = if self.is_running_replica() && self.master_link_status == "up" {
            Some(at.saturating_sub(silent))
        } else {
            previous.and_then(|p| p.primary_heard_at)
        };
        self.link_down_since = if self.reports_link_down() {
            // Since the standby last heard its primary, not since this report arrived (the window
            // counts from the last sign of life, like every other piece of evidence): from the
            // engine's own I/O age while the link is still "up", else from the last report that
            // had the link up.
            let heard = if self.master_link_status == "up" {
                Some(at.saturating_sub(silent))
            } else {
                self.primary_heard_at
            };
            Some(
                previous
                    .and_then(|p| p.link_down_since)
                    .or(heard)
                    .unwrap_or(at),
            )
        } else {
            None
        };
        // A primary restarted after a reboot reports its short AOF's offset: keep the last one
        // from before (what the standby is compared with).
        self.master_offset_last = if self.is_running_master() && !self.after_reboot {
            Some(self.replication_offset)
        } else {
            previous
                .filter(|p| p.epoch == self.epoch)
                .and_then(|p| p.master_offset_last)
        };
    }
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

/// A process's reports as master at one epoch, kept after the process is demoted or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterReport {
    pub epoch: u64,
    pub replication_offset: u64,
}

/// Every host's latest report.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    pub hosts: BTreeMap<String, HostObservation>,
    /// Derived by [`Observations::record`]: (host, instance) → the epoch of that host's last
    /// report of the instance's process running as master, and the largest offset reported as
    /// master at that epoch (a primary restarted after a reboot reports its shorter AOF's).
    /// Kept when a later report shows the process demoted or gone: a failed-over primary whose
    /// host returns reports what it had once, in its session's first message, and its agent
    /// may demote or remove it before the leader's next tick; the loss estimate of that failover
    /// is corrected from this (`failover::correction`). One entry per instance that ran as
    /// master on the host while this node leads.
    pub master_reports: BTreeMap<(String, String), MasterReport>,
}

impl Observations {
    /// Stores a host's new report, deriving each process's "since" fields from the previous one.
    /// Use this rather than inserting, or standby link evidence never accumulates.
    pub fn record(&mut self, host_id: &str, mut report: HostObservation) {
        let previous = self.hosts.get(host_id);
        for (instance, process) in &mut report.processes {
            let before = previous.and_then(|h| h.processes.get(instance));
            process.carry_from(before, report.last_seen);
        }
        for (instance, process) in &report.processes {
            if !process.is_running_master() {
                continue;
            }
            let key = (host_id.to_string(), instance.clone());
            let mut last = MasterReport {
                epoch: process.epoch,
                replication_offset: process.replication_offset,
            };
            // At one epoch, the largest: a primary restarted after a reboot reports its AOF's.
            if let Some(before) = self.master_reports.get(&key)
                && before.epoch == last.epoch
            {
                last.replication_offset = last.replication_offset.max(before.replication_offset);
            }
            self.master_reports.insert(key, last);
        }
        self.hosts.insert(host_id.to_string(), report);
    }

    /// The largest offset `host_id` reported for `instance` running as master at `epoch`, if its
    /// last report as master was at `epoch`.
    pub fn master_offset_at(&self, host_id: &str, instance: &str, epoch: u64) -> Option<u64> {
        let key = (host_id.to_string(), instance.to_string());
        self.master_reports
            .get(&key)
            .filter(|m| m.epoch == epoch)
            .map(|m| m.replication_offset)
    }

    /// The latest report of `instance`'s process on `host_id`.
    pub fn process(&self, host_id: &str, instance: &str) -> Option<&ProcessObservation> {
        self.hosts.get(host_id)?.processes.get(instance)
    }

    /// The host reported within `silence_timeout`.
    pub fn is_fresh(&self, host_id: &str, now: Duration, silence_timeout: Duration) -> bool {
        self.liveness(host_id, now, silence_timeout) == HostLiveness::Up
    }

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

/// One vantage point's (coordinator node's) probes of one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VantageProbes {
    /// Leader monotonic time the latest result was recorded.
    pub last_result_at: Duration,
    /// Leader monotonic time of the latest success, if any since this node became leader.
    pub last_success_at: Option<Duration>,
    /// Since when every result from this vantage point failed; `None` after a success.
    pub failing_since: Option<Duration>,
}

/// SSH probe results per host and vantage point (coordinator node id), stamped with the leader's
/// clock when recorded (the leader's own probes and the ones followers forward alike).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeObservations {
    pub hosts: BTreeMap<String, BTreeMap<u64, VantageProbes>>,
}

impl ProbeObservations {
    /// Records one probe of `host_id` by `vantage`: `reachable` only for a full success (connect,
    /// pinned host key, auth, command exit 0). A host key mismatch is a failure.
    pub fn record(&mut self, host_id: &str, vantage: u64, reachable: bool, at: Duration) {
        let probes = self
            .hosts
            .entry(host_id.to_string())
            .or_default()
            .entry(vantage)
            .or_insert(VantageProbes {
                last_result_at: at,
                last_success_at: None,
                failing_since: None,
            });
        if at < probes.last_result_at {
            return; // a late forward: newer evidence is already recorded
        }
        probes.last_result_at = at;
        if reachable {
            probes.last_success_at = Some(at);
            probes.failing_since = None;
        } else if probes.failing_since.is_none() {
            // Failing since the last sign of life from this vantage point (its last success
            // while this node leads), else since this first failure.
            probes.failing_since = Some(probes.last_success_at.unwrap_or(at));
        }
    }

    /// What `vantage` has seen of `host_id`.
    pub fn of(&self, host_id: &str, vantage: u64) -> Option<&VantageProbes> {
        self.hosts.get(host_id)?.get(&vantage)
    }

    /// The latest success on `host_id` from any vantage point.
    pub fn last_success_at(&self, host_id: &str) -> Option<Duration> {
        self.hosts
            .get(host_id)?
            .values()
            .filter_map(|p| p.last_success_at)
            .max()
    }

    /// Forgets a vantage point (a coordinator node that left the cluster).
    pub fn forget_vantage(&mut self, vantage: u64) {
        for probes in self.hosts.values_mut() {
            probes.remove(&vantage);
        }
    }
}

#[cfg(test)]
mod tests;
