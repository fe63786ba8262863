//! What the supervisor asks the shell to do, and how a spec change is classified (live
//! reconfiguration or a new process).

use kvs_proto::model::DesiredProcess;

/// What the shell must do. Each action moves the instance to a phase that waits for its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Render the config and spawn the engine; report `on_started`/`on_start_failed`, then
    /// `on_ready` once it answers INFO, and `on_exited` when it dies. `restart` is true after a crash.
    Start {
        process: DesiredProcess,
        generation: u64,
        restart: bool,
    },
    /// Apply the difference between `from` and `to` to the running engine (CONFIG SET, ACL LOAD)
    /// and re-render its files; report `on_reconfigured`.
    Reconfigure {
        instance: String,
        generation: u64,
        from: Box<DesiredProcess>,
        to: Box<DesiredProcess>,
    },
    /// Stop the engine (SIGTERM, then SIGKILL); its exit comes back as `on_exited`.
    Stop { instance: String, generation: u64 },
    /// Remove the instance directory; report `on_cleaned`.
    Cleanup { instance: String },
    /// Some status changed: publish observed state now rather than at the next report tick.
    ReportStatus,
}

/// How a desired spec differs from the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing the engine sees (epoch, role, front port).
    None,
    /// CONFIG SET / ACL LOAD can apply it without a restart.
    Live,
    /// Needs a new process (engine version or engine port).
    Restart,
}

/// Classifies the change from `running` to `desired`.
pub fn classify_change(running: &DesiredProcess, desired: &DesiredProcess) -> Change {
    if running.engine != desired.engine || running.engine_port != desired.engine_port {
        return Change::Restart;
    }
    let live = running.settings != desired.settings
        || running.maxmemory_bytes != desired.maxmemory_bytes
        || running.maxclients != desired.maxclients
        || running.appendonly != desired.appendonly
        || running.default_password != desired.default_password
        || running.admin_password != desired.admin_password
        || running.replication_password != desired.replication_password;
    if live { Change::Live } else { Change::None }
}
