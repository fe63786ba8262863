//! Ground truth the invariants read: what happened in the last step (commands applied, probe
//! results and agent reports that reached the leader, replication links up, hosts disturbed by a
//! host or network fault) and the ledger of every client write the model acknowledged.

use std::collections::BTreeSet;
use std::time::Duration;

use kvs_coordinator::state::Command;

/// One step's facts.
#[derive(Debug, Clone, Default)]
pub struct StepFacts {
    pub at: Duration,
    /// Commands applied to the replicated state this step, in order.
    pub applied: Vec<Command>,
    /// Hosts a probe reached this step, counting only results that reached the leader.
    pub probes_succeeded: BTreeSet<String>,
    /// Hosts whose agent report the leader recorded this step.
    pub reports_delivered: BTreeSet<String>,
    /// (instance, replica host, upstream host) with the replication link established.
    pub links_established: BTreeSet<(String, String, String)>,
    /// Hosts off, or cut from some coordinator, host or the clients (host/network faults only).
    pub disturbed_hosts: BTreeSet<String>,
    /// (host, instance) whose engine the agent reports crash-looping.
    pub crash_looping: BTreeSet<(String, String)>,
}

/// A write a client got `OK` for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub id: u64,
    pub instance: String,
    /// The host whose primary took it.
    pub host: String,
    pub at: Duration,
    /// The client asked `WAIT 1` and it returned 1: a replica held the write.
    pub waited: bool,
    /// For a primary that fences (it has a standby): how long its host had then been without
    /// a word from a leader holding its quorum (or one just deposed) and from any replica.
    pub silent_for: Option<Duration>,
}

/// Every acknowledged write, and counters.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub acks: Vec<Ack>,
    /// Writes refused (fenced, paused, replica, unreachable).
    pub refused: u64,
    /// Writes that asked WAIT and timed out (acknowledged without the guarantee).
    pub wait_timeouts: u64,
}
