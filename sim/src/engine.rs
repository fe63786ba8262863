//! One engine process (valkey-server) as a small state machine: running or not, role at an
//! epoch, its dataset as the log of write ids it holds (so lost writes are exact, not estimated),
//! the AOF's fsynced prefix, fencing and switchover pauses, and both ends of replication.
//!
//! ```text
//!   Primary ── takes client writes unless fenced or paused ──► log += write
//!   Replica { upstream } ── link established ──► log = upstream.log (append if a prefix, else
//!                                                 full resync: divergent writes are dropped)
//! ```
//!
//! Offsets are `log.len() * WRITE_BYTES`, so the coordinator's offset arithmetic (lag, data-loss
//! estimate) is in the same bytes the invariants count.

use std::collections::BTreeMap;
use std::time::Duration;

use kvs_proto::model::ProcessStatus;

/// Bytes of one client write in the replication stream.
pub const WRITE_BYTES: u64 = 100;
/// `repl-timeout` as the agent renders it (`agent/src/engine/render.rs`: 10 s, with
/// `repl-ping-replica-period 1`): a silent link is noticed after this (both ends).
pub const REPL_TIMEOUT: Duration = Duration::from_secs(10);
/// A crashing engine exhausts the agent's restart budget (5 restarts, backoff 0, 0.5, 1, 2, 4 s)
/// after about this long, and is then reported crash-looping.
pub const CRASH_LOOP_AFTER: Duration = Duration::from_secs(8);
/// The supervisor's `crash_loop_retry_interval`.
pub const CRASH_LOOP_RETRY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineRole {
    Primary,
    /// Replicates from the engine of the same instance on `upstream` (a host id).
    Replica {
        upstream: Option<String>,
    },
}

/// The replica's end of its replication link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaLink {
    pub established: bool,
    /// Last I/O with the upstream (INFO `master_last_io_seconds_ago` derives from it).
    pub last_io: Duration,
    /// INFO `master_link_status:down`.
    pub down: bool,
}

#[derive(Debug, Clone)]
pub struct Engine {
    pub running: bool,
    /// Since when the restart budget is exhausted (crash loop), if it is.
    pub crash_loop_since: Option<Duration>,
    pub role: EngineRole,
    pub epoch: u64,
    /// Write ids, in replication order.
    pub log: Vec<u64>,
    /// Length of the fsynced AOF prefix (`appendfsync everysec`: a tick behind).
    pub synced_len: usize,
    /// Length at the end of the previous tick (becomes `synced_len` next tick).
    pub unsynced_mark: usize,
    /// Fenced by the agent: front refuses customers, `CLIENT PAUSE` (long) on the engine.
    pub fenced: bool,
    /// Switchover pause (`CLIENT PAUSE WRITE`), renewed by the agent while wanted.
    pub pause_until: Duration,
    pub link: ReplicaLink,
    /// Primary's view: replica host → last ack (INFO `connected_slaves` counts the fresh ones).
    pub replicas: BTreeMap<String, Duration>,
    pub restarts: u32,
    /// The supervisor does not restart it before this (crash-loop retry interval).
    pub restart_not_before: Duration,
    /// The host rebooted while this engine was a primary at this epoch: on restart its agent
    /// keeps it fenced (and refuses the standby's resync) until the epoch moves past it.
    pub after_reboot_epoch: Option<u64>,
    /// The front refuses peer tunnels (a primary restarted after a reboot, unanswered).
    pub refusing_peers: bool,
}

impl Engine {
    pub fn new(role: EngineRole, epoch: u64) -> Self {
        Self {
            running: false,
            crash_loop_since: None,
            role,
            epoch,
            log: Vec::new(),
            synced_len: 0,
            unsynced_mark: 0,
            fenced: false,
            pause_until: Duration::ZERO,
            link: ReplicaLink::default(),
            replicas: BTreeMap::new(),
            restarts: 0,
            restart_not_before: Duration::ZERO,
            after_reboot_epoch: None,
            refusing_peers: false,
        }
    }

    pub fn offset(&self) -> u64 {
        u64::try_from(self.log.len()).unwrap_or(u64::MAX) * WRITE_BYTES
    }

    pub fn is_primary(&self) -> bool {
        self.role == EngineRole::Primary
    }

    pub fn upstream(&self) -> Option<&str> {
        match &self.role {
            EngineRole::Replica { upstream } => upstream.as_deref(),
            EngineRole::Primary => None,
        }
    }

    /// The process dies (crash, host off, agent stopping it): in-memory state goes.
    pub fn stop(&mut self) {
        self.running = false;
        self.fenced = false;
        self.pause_until = Duration::ZERO;
        self.link = ReplicaLink::default();
        self.replicas.clear();
    }

    /// Power loss: the writes not yet fsynced are gone.
    pub fn lose_unsynced(&mut self) {
        self.log.truncate(self.synced_len);
        self.unsynced_mark = self.log.len();
    }

    /// Starts from the AOF on disk.
    pub fn start(&mut self, now: Duration) {
        self.running = true;
        self.crash_loop_since = None;
        self.link = ReplicaLink {
            established: false,
            last_io: now,
            down: true,
        };
    }

    /// End-of-tick fsync: what was written before this tick is now on disk.
    pub fn fsync(&mut self) {
        self.synced_len = self.unsynced_mark.min(self.log.len());
        self.unsynced_mark = self.log.len();
    }

    /// When a replica was last heard (its latest ack), for the fence.
    pub fn replica_last_heard(&self) -> Option<Duration> {
        self.replicas.values().max().copied()
    }

    /// INFO `connected_slaves`: replicas whose last ack is within `repl-timeout`.
    pub fn connected_replicas(&self, now: Duration) -> u32 {
        let fresh = self
            .replicas
            .values()
            .filter(|at| now.saturating_sub(**at) <= REPL_TIMEOUT)
            .count();
        u32::try_from(fresh).unwrap_or(u32::MAX)
    }

    /// Would take a client write now (given its host and front are up).
    pub fn accepts_writes(&self, now: Duration) -> bool {
        self.running && self.is_primary() && !self.fenced && now >= self.pause_until
    }

    pub fn status(&self, now: Duration) -> ProcessStatus {
        match (self.running, self.crash_loop_since) {
            (true, _) => ProcessStatus::Running,
            (false, Some(since)) if now >= since => ProcessStatus::CrashLooping,
            (false, _) => ProcessStatus::Restarting,
        }
    }

    /// Replication: copy from `upstream`'s log. True when it was a full resync that dropped
    /// writes this replica had and its upstream does not.
    pub fn sync_from(&mut self, upstream: &[u64]) -> bool {
        if upstream.starts_with(&self.log) {
            self.log.extend_from_slice(&upstream[self.log.len()..]);
            false
        } else {
            let diverged = !self.log.is_empty();
            self.log = upstream.to_vec();
            self.synced_len = self.synced_len.min(self.log.len());
            self.unsynced_mark = self.unsynced_mark.min(self.log.len());
            diverged
        }
    }
}
