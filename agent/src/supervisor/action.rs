//! What the supervisor asks the shell to do, and how a spec change is classified (live
//! reconfiguration, a replication role change, or a new process).

use kvs_proto::model::{DesiredProcess, Role};

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
    /// Change the engine's replication role or upstream live (no restart, data kept), re-render
    /// its files for `to`, and report `on_reconfigured`. `from` is the running spec (its admin
    /// password is the one the engine has); `to` differs from it only in role, upstream, epoch and
    /// the other fields the engine does not see.
    Replication {
        instance: String,
        generation: u64,
        change: RoleChange,
        from: Box<DesiredProcess>,
        to: Box<DesiredProcess>,
    },
    /// Take over an engine a previous agent left running (`Supervisor::on_adopted`): re-render
    /// its files for `process` and apply the spec live (every setting, the users, the
    /// replication role), as a `Reconfigure` whose starting point is unknown; report
    /// `on_reconfigured` (an error replaces the engine).
    Adopt {
        instance: String,
        generation: u64,
        process: Box<DesiredProcess>,
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
    /// Nothing the engine's config sees (epoch, front port, fencing, paused writes, catch-up; role and
    /// upstream are `role_change`'s).
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

/// A replication change of a running engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Standby → primary (a failover or switchover, at a higher epoch): `REPLICAOF NO ONE`; the
    /// data is kept and the tunnel goes away.
    Promote,
    /// Primary → standby (a returning old primary, or the old primary after a switchover):
    /// `REPLICAOF` the local tunnel to the new primary; the full resync discards stale data.
    Demote,
    /// A standby whose primary moved: `REPLICAOF` the (re-created) tunnel again.
    Repoint,
}

/// The replication change that takes a running engine from `running` to `desired`, if any.
pub fn role_change(running: &DesiredProcess, desired: &DesiredProcess) -> Option<RoleChange> {
    match (running.role, desired.role) {
        (Role::Standby, Role::Primary) => Some(RoleChange::Promote),
        (Role::Primary, Role::Standby) => Some(RoleChange::Demote),
        (Role::Standby, Role::Standby) if running.upstream != desired.upstream => {
            Some(RoleChange::Repoint)
        }
        _ => None,
    }
}

/// `running` with the replication-related fields of `desired`: the spec a role change reaches
/// (other differences, e.g. settings, follow as a separate live reconfiguration).
pub(super) fn with_role_of(running: &DesiredProcess, desired: &DesiredProcess) -> DesiredProcess {
    DesiredProcess {
        epoch: desired.epoch,
        role: desired.role,
        upstream: desired.upstream.clone(),
        front_port: desired.front_port,
        fence_after_seconds: desired.fence_after_seconds,
        pause_writes: desired.pause_writes,
        catch_up: desired.catch_up,
        ..running.clone()
    }
}
