//! One instance's record inside the supervisor: its phase, specs and restart history, and the
//! status that follows from them.

use std::collections::VecDeque;
use std::time::Duration;

use kvs_proto::model::{DesiredProcess, ProcessStatus};

use super::AdoptedEngine;

/// Where one instance's process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// No process; start it once `now >= at`.
    Waiting { at: Duration, restart: bool },
    /// `Start` emitted; waiting for the spawn result.
    Launching { generation: u64 },
    /// Process alive; `ready` once it answered INFO.
    Up {
        generation: u64,
        pid: u32,
        ready: bool,
    },
    /// `Stop` emitted; waiting for the exit.
    Stopping { generation: u64 },
    /// Restart budget exhausted; retried at `retry_at`.
    CrashLooping { retry_at: Duration },
    /// Cannot start (engine missing, bad spec); waits for a new desired spec.
    Failed,
    /// Not running and not desired; waiting for cleanup to be allowed.
    Stopped,
    /// `Cleanup` emitted; waiting for `on_cleaned`.
    Cleaning,
}

#[derive(Debug, Clone)]
pub(super) struct Slot {
    /// What the coordinator wants; `None`: destroy the instance.
    pub(super) desired: Option<DesiredProcess>,
    /// The spec the current process runs with (as started or last reconfigured).
    pub(super) running: Option<DesiredProcess>,
    pub(super) phase: Phase,
    /// A `Reconfigure` in flight, with its target.
    pub(super) reconfiguring: Option<DesiredProcess>,
    /// Restarts after crashes since the agent started (reported).
    pub(super) restarts: u32,
    /// Times of restarts within the budget window.
    pub(super) restart_times: VecDeque<Duration>,
    /// Between a crash and the next ready: status `restarting`.
    pub(super) recovering: bool,
    /// A live reconfiguration failed: replace the process instead.
    pub(super) force_restart: bool,
    pub(super) last_error: Option<String>,
    /// Last status published, to emit `ReportStatus` on change.
    pub(super) reported: Option<ProcessStatus>,
    /// The live process was left by a previous agent and its spec is not known yet.
    pub(super) adopted: Option<AdoptedEngine>,
}

impl Slot {
    pub(super) fn new(desired: Option<DesiredProcess>, now: Duration) -> Self {
        let phase = if desired.is_some() {
            Phase::Waiting {
                at: now,
                restart: false,
            }
        } else {
            Phase::Stopped
        };
        Self {
            desired,
            running: None,
            phase,
            reconfiguring: None,
            restarts: 0,
            restart_times: VecDeque::new(),
            recovering: false,
            force_restart: false,
            last_error: None,
            reported: None,
            adopted: None,
        }
    }

    pub(super) fn generation(&self) -> Option<u64> {
        match self.phase {
            Phase::Launching { generation }
            | Phase::Up { generation, .. }
            | Phase::Stopping { generation } => Some(generation),
            _ => None,
        }
    }

    pub(super) fn status(&self) -> ProcessStatus {
        match self.phase {
            Phase::Up { ready: true, .. } => ProcessStatus::Running,
            Phase::Waiting { .. } | Phase::Launching { .. } | Phase::Up { .. }
                if self.recovering =>
            {
                ProcessStatus::Restarting
            }
            Phase::Waiting { .. } | Phase::Launching { .. } | Phase::Up { .. } => {
                ProcessStatus::Starting
            }
            Phase::CrashLooping { .. } => ProcessStatus::CrashLooping,
            Phase::Failed => ProcessStatus::Failed,
            Phase::Stopping { .. } | Phase::Stopped | Phase::Cleaning => ProcessStatus::Stopped,
        }
    }
}
