//! The agent model: what one kvs-agent holds between ticks. Its behaviour (converging engines to
//! the desired processes, fencing, reporting) lives in `world/agents.rs`; fencing itself is the
//! REAL [`kvs_agent::fencing::Fencing`], called with simulated `now`.
//!
//! Desired processes are accepted the way the supervisor does (`set_desired`): per instance, a
//! spec at an older epoch than the one held is refused and the held one kept; instances missing
//! from an authoritative list are stopped and their data deleted.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use kvs_agent::fencing::Fencing;
use kvs_coordinator::control::HostObservation;
use kvs_proto::model::DesiredProcess;

/// A report on its way to the leader.
#[derive(Debug, Clone)]
pub struct PendingReport {
    pub deliver_at: Duration,
    /// The leader term it was sent in; a new leader never receives the old one's reports.
    pub term: u64,
    pub observation: HostObservation,
}

#[derive(Debug, Clone)]
pub struct Agent {
    /// The process runs (false while hung/dead or while its host is off).
    pub alive: bool,
    /// Its TLS fronts and replication tunnels are up: set after the process's first
    /// convergence (which decides fencing first), cleared when it dies or restarts.
    pub serving: bool,
    /// The accepted desired processes, by instance (also the on-disk cache).
    pub desired: BTreeMap<String, DesiredProcess>,
    pub desired_version: u64,
    /// The desired state came from the coordinator since this agent process started.
    pub authoritative: bool,
    /// Last time the stream to the leader carried anything.
    pub last_contact: Option<Duration>,
    pub fencing: Fencing,
    pub reports: VecDeque<PendingReport>,
}

impl Agent {
    pub fn new() -> Self {
        Self {
            alive: true,
            serving: false,
            desired: BTreeMap::new(),
            desired_version: 0,
            authoritative: false,
            last_contact: None,
            fencing: Fencing::new(),
            reports: VecDeque::new(),
        }
    }

    /// A new agent process on the same host: the cache (desired) stays, memory goes.
    pub fn restart(&mut self) {
        self.alive = true;
        self.serving = false;
        self.authoritative = false;
        self.last_contact = None;
        self.fencing = Fencing::new();
        self.reports.clear();
    }

    /// Accepts a full desired list; returns the instances whose spec was refused as stale.
    pub fn accept(&mut self, list: Vec<DesiredProcess>, version: u64) -> Vec<String> {
        let mut refused = Vec::new();
        let mut next = BTreeMap::new();
        for process in list {
            let held = self.desired.get(&process.instance);
            match held {
                Some(held) if held.epoch > process.epoch => {
                    refused.push(process.instance.clone());
                    next.insert(process.instance.clone(), held.clone());
                }
                _ => {
                    next.insert(process.instance.clone(), process);
                }
            }
        }
        self.desired = next;
        self.desired_version = version;
        self.authoritative = true;
        refused
    }
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}
