//! The simulated engine runtime of one agent host: the agent's REAL pure cores
//! (`kvs_agent::supervisor::Supervisor`, `kvs_agent::fencing::Fencing`) executed against modelled
//! engines instead of `valkey-server` processes, behind a real `RuntimeHandle`
//! (`RuntimeHandle::external`), so the agent's real session code (`report::session_loop`) drives it.
//!
//! ```text
//!   session_loop ─► RuntimeHandle ─desired─► shell (this file) ─► Supervisor::poll ─► actions on
//!                                                 │                 Engine models (disk.rs)
//!                                                 ├─ Fencing::update (coordinator up? replica?)
//!                                                 └─ ObservedState ─► session_loop ─► coordinator
//!   front per instance (fronts.rs): client writes and replica syncs over simulated TCP
//! ```
//!
//! An engine's dataset is the list of write ids it holds; its offset is `len × WRITE_BYTES`, as in
//! the fast layer, so the coordinator's lag and loss arithmetic counts the same bytes the
//! invariants do.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvs_agent::engine::info::EngineInfo;
use kvs_agent::fencing::{FenceInput, Fencing};
use kvs_agent::runtime::{ObservedState, ProcessReport, RuntimeEnds};
use kvs_agent::supervisor::{Action, RestartPolicy, Supervisor};
use kvs_proto::model::{DesiredProcess, ProcessStatus, Role};

use super::history::History;
use super::lock;

/// Bytes of one write in the replication stream.
pub const WRITE_BYTES: u64 = 100;
/// The shell's step: how often it polls the supervisor, fencing and the engines.
const STEP: Duration = Duration::from_millis(100);
/// A replica whose last ack is older than this is not counted in `connected_slaves`.
pub const REPLICA_FRESH: Duration = Duration::from_secs(10);

/// One modelled engine process.
#[derive(Debug, Clone)]
pub struct Engine {
    pub running: bool,
    /// The supervisor generation it runs under.
    pub generation: u64,
    pub role: Role,
    /// The primary's front (host address, front port) a replica syncs from.
    pub upstream: Option<SocketAddr>,
    pub epoch: u64,
    /// Write ids, in replication order.
    pub log: Vec<u64>,
    /// Fenced by the agent (front refuses clients).
    pub fenced: bool,
    /// Writes paused for a planned switchover.
    pub paused: bool,
    /// Replica side: the link is up (a sync stream is open and not silent).
    pub link_up: bool,
    /// Replica side: when it last heard its primary (simulated time).
    pub last_io: Duration,
    /// Primary side: replica address → (acked length, when).
    pub acks: BTreeMap<SocketAddr, (usize, Duration)>,
    /// Started after a reboot of its host while it was a primary with a standby.
    pub after_reboot: bool,
    /// The catalog label and engine port it was started with (for adoption).
    pub label: String,
    pub engine_port: u16,
}

impl Engine {
    pub fn offset(&self) -> u64 {
        self.log.len() as u64 * WRITE_BYTES
    }

    pub fn accepts_writes(&self) -> bool {
        self.running && self.role == Role::Primary && !self.fenced && !self.paused
    }

    fn fresh_replicas(&self, now: Duration) -> u32 {
        self.acks
            .values()
            .filter(|(_, at)| now.saturating_sub(*at) < REPLICA_FRESH)
            .count() as u32
    }

    /// When a replica was last heard (its latest ack), on the agent's clock: acks are stamped
    /// with simulated time (`sim_now`), the fence decides on the agent's own (`agent_now`).
    fn replica_heard(&self, sim_now: Duration, agent_now: Duration) -> Option<Duration> {
        let latest = self.acks.values().map(|(_, at)| *at).max()?;
        Some(agent_now.saturating_sub(sim_now.saturating_sub(latest)))
    }

    fn info(&self, now: Duration) -> EngineInfo {
        EngineInfo {
            role: match self.role {
                Role::Primary => "master".into(),
                Role::Standby => "slave".into(),
            },
            replication_offset: self.offset(),
            master_link_status: match (self.role, self.link_up) {
                (Role::Primary, _) => String::new(),
                (_, true) => "up".into(),
                (_, false) => "down".into(),
            },
            master_last_io_seconds: if self.link_up {
                i64::try_from(now.saturating_sub(self.last_io).as_secs()).unwrap_or(i64::MAX)
            } else {
                -1
            },
            connected_replicas: self.fresh_replicas(now),
            version: "9.0.0".into(),
            ..EngineInfo::default()
        }
    }
}

/// What survives an agent restart on a running host: the engines (processes) and the disk
/// (each instance's AOF: the synced log, and the boot the engine started under).
#[derive(Debug, Default)]
pub struct HostState {
    pub engines: BTreeMap<String, Engine>,
    /// Engine crashes the fault plan asked for (instance names), taken by the shell.
    pub crash_requests: Vec<String>,
}

pub type SharedHost = Arc<Mutex<HostState>>;

/// The disk of one host, which outlives its boots: per instance, the AOF contents and the boot
/// its engine last started under (the real agent's boot-id marker).
#[derive(Debug, Default, Clone)]
pub struct Disk {
    pub aof: BTreeMap<String, Vec<u64>>,
    pub boot_of: BTreeMap<String, u64>,
}

/// The shell's context: which host, its boot, where it writes facts.
#[derive(Clone)]
pub struct ShellContext {
    pub host: String,
    pub boot: u64,
    pub state: SharedHost,
    pub disk: Arc<Mutex<Disk>>,
    pub history: Arc<Mutex<History>>,
    /// The deliberately broken rule `no-fencing`.
    pub no_fencing: bool,
}

/// The runtime loop behind `RuntimeHandle::external`.
pub async fn run(context: ShellContext, ends: RuntimeEnds) {
    let RuntimeEnds {
        mut desired,
        coordinator,
        observed,
        cancel,
    } = ends;
    let start = tokio::time::Instant::now();
    let mut supervisor = Supervisor::new(RestartPolicy::default());
    let mut fencing = Fencing::new();
    let mut authoritative = false;
    let mut fronts = super::fronts::Fronts::new(context.clone());
    // Engines a previous agent left running are adopted, not restarted.
    {
        let mut state = lock(&context.state);
        for (name, engine) in state.engines.iter_mut() {
            if engine.running {
                let adopted = supervisor.on_adopted(
                    name,
                    kvs_agent::supervisor::AdoptedEngine {
                        pid: 1000 + engine.generation as u32,
                        engine: engine.label.clone(),
                        engine_port: Some(engine.engine_port),
                    },
                    start.elapsed(),
                );
                if let Some(generation) = adopted {
                    engine.generation = generation;
                }
            }
        }
    }
    let mut desired_version = 0;
    let mut interval = tokio::time::interval(STEP);
    // A desired state may have been applied before this loop ran (the cached one).
    let mut fresh = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
            changed = desired.changed() => {
                if changed.is_err() { break; }
                fresh = true;
            }
        }
        let now = start.elapsed();
        if std::mem::take(&mut fresh) {
            let next = desired.borrow_and_update().clone();
            if let Some(next) = next {
                authoritative = next.authoritative;
                desired_version = next.version;
                for rejected in supervisor.set_desired(next.processes, next.authoritative, now) {
                    context.note(&format!(
                        "refused {}: {}",
                        rejected.instance, rejected.reason
                    ));
                }
            }
        }
        take_crashes(&context, &mut supervisor, now);
        // INFO answered: a running engine is ready (the real shell calls this per INFO poll).
        let running: Vec<(String, u64)> = lock(&context.state)
            .engines
            .iter()
            .filter(|(_, e)| e.running)
            .map(|(name, e)| (name.clone(), e.generation))
            .collect();
        for (name, generation) in running {
            supervisor.on_ready(&name, generation);
        }
        let actions = supervisor.poll(now);
        for action in actions {
            execute(&context, &mut supervisor, action, now);
        }
        let heard = coordinator
            .borrow()
            .map(|at| at.saturating_duration_since(start));
        apply_fencing(
            &context,
            &supervisor,
            &mut fencing,
            heard,
            authoritative,
            now,
        );
        fronts.sync(&supervisor);
        let mut report = observe(&context, &supervisor);
        report.desired_version = desired_version;
        observed.send_if_modified(|current| {
            if *current == report {
                return false;
            }
            *current = report;
            true
        });
    }
    fronts.close();
}

impl ShellContext {
    pub fn note(&self, what: &str) {
        let mut history = lock(&self.history);
        history.note(&self.host, what.to_string());
    }
}

fn take_crashes(context: &ShellContext, supervisor: &mut Supervisor, now: Duration) {
    let crashed: Vec<(String, u64)> = {
        let mut state = lock(&context.state);
        let requests = std::mem::take(&mut state.crash_requests);
        requests
            .into_iter()
            .filter_map(|name| {
                let engine = state.engines.get_mut(&name)?;
                if !engine.running {
                    return None;
                }
                engine.running = false;
                engine.link_up = false;
                engine.acks.clear();
                // A process crash loses nothing it acknowledged: the engine wrote it to the AOF
                // before replying, and the kernel's page cache outlives the process (only a host
                // crash loses what `appendfsync everysec` had not synced yet).
                lock(&context.disk)
                    .aof
                    .insert(name.clone(), engine.log.clone());
                Some((name, engine.generation))
            })
            .collect()
    };
    for (name, generation) in crashed {
        context.note(&format!("engine {name} crashed"));
        supervisor.on_exited(&name, generation, "killed by the fault plan".into(), now);
    }
}

fn execute(context: &ShellContext, supervisor: &mut Supervisor, action: Action, now: Duration) {
    match action {
        Action::Start {
            process,
            generation,
            restart,
        } => {
            let after_reboot = start_engine(context, &process, generation);
            supervisor.on_started(&process.instance, generation, 1000 + generation as u32);
            supervisor.on_ready(&process.instance, generation);
            context.note(&format!(
                "engine {} {} as {} at epoch {}{}",
                process.instance,
                if restart { "restarted" } else { "started" },
                role_name(process.role),
                process.epoch,
                if after_reboot {
                    " (after a host reboot: fenced)"
                } else {
                    ""
                }
            ));
        }
        Action::Replication {
            instance,
            generation,
            to,
            ..
        }
        | Action::Reconfigure {
            instance,
            generation,
            to,
            ..
        } => {
            configure(context, &to);
            supervisor.on_reconfigured(&instance, generation, Ok(()));
        }
        Action::Adopt {
            instance,
            generation,
            process,
        } => {
            configure(context, &process);
            if let Some(engine) = lock(&context.state).engines.get_mut(&instance) {
                engine.generation = generation;
            }
            supervisor.on_reconfigured(&instance, generation, Ok(()));
        }
        Action::Stop {
            instance,
            generation,
        } => {
            if let Some(engine) = lock(&context.state).engines.get_mut(&instance) {
                engine.running = false;
                engine.link_up = false;
            }
            supervisor.on_exited(&instance, generation, "stopped".into(), now);
        }
        Action::Cleanup { instance } => {
            lock(&context.state).engines.remove(&instance);
            let mut disk = lock(&context.disk);
            disk.aof.remove(&instance);
            disk.boot_of.remove(&instance);
            drop(disk);
            context.note(&format!("instance {instance} removed"));
            supervisor.on_cleaned(&instance, Ok(()), now);
        }
        Action::ReportStatus => {}
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Primary => "primary",
        Role::Standby => "standby",
    }
}

/// Starts (or restarts) an engine from its AOF. Returns whether it is a primary restarted after a
/// host reboot (DESIGN §4 rule 1's exception, `runtime/reboot.rs` in the real agent).
fn start_engine(context: &ShellContext, process: &DesiredProcess, generation: u64) -> bool {
    let mut disk = lock(&context.disk);
    let log = disk.aof.get(&process.instance).cloned().unwrap_or_default();
    let previous_boot = disk.boot_of.insert(process.instance.clone(), context.boot);
    drop(disk);
    // As `runtime/reboot.rs`: the engine last ran under another boot, and its spec is a primary
    // with a standby (only those fence).
    let after_reboot = previous_boot.is_some_and(|boot| boot != context.boot)
        && process.role == Role::Primary
        && process.fence_after_seconds.is_some();
    let mut state = lock(&context.state);
    let engine = state
        .engines
        .entry(process.instance.clone())
        .or_insert_with(|| Engine {
            running: false,
            generation,
            role: process.role,
            upstream: None,
            epoch: process.epoch,
            log: Vec::new(),
            fenced: false,
            paused: false,
            link_up: false,
            last_io: Duration::ZERO,
            acks: BTreeMap::new(),
            after_reboot: false,
            label: process.engine.clone(),
            engine_port: process.engine_port,
        });
    engine.running = true;
    engine.generation = generation;
    engine.log = log;
    engine.link_up = false;
    engine.acks.clear();
    engine.after_reboot = after_reboot;
    engine.label = process.engine.clone();
    engine.engine_port = process.engine_port;
    drop(state);
    configure(context, process);
    after_reboot
}

/// Applies role, upstream and epoch live (REPLICAOF), and records what the next boot needs.
fn configure(context: &ShellContext, process: &DesiredProcess) {
    let mut state = lock(&context.state);
    let Some(engine) = state.engines.get_mut(&process.instance) else {
        return;
    };
    let upstream = process
        .upstream
        .as_ref()
        .map(|u| SocketAddr::new(u.host, u.port));
    if engine.role != process.role || engine.upstream != upstream {
        engine.link_up = false;
        engine.acks.clear();
    }
    if engine.role == Role::Standby && process.role == Role::Primary {
        let epoch = process.epoch;
        let instance = process.instance.clone();
        drop(state);
        context.note(&format!("engine {instance} promoted at epoch {epoch}"));
        let mut history = lock(&context.history);
        history.promoted(&instance, &context.host, epoch);
        drop(history);
        state = lock(&context.state);
    }
    let Some(engine) = state.engines.get_mut(&process.instance) else {
        return;
    };
    engine.role = process.role;
    engine.upstream = upstream;
    engine.epoch = engine.epoch.max(process.epoch);
    engine.paused = process.role == Role::Primary && process.pause_writes;
}

fn apply_fencing(
    context: &ShellContext,
    supervisor: &Supervisor,
    fencing: &mut Fencing,
    coordinator_heard: Option<Duration>,
    authoritative: bool,
    now: Duration,
) {
    let mut state = lock(&context.state);
    let desired: Vec<DesiredProcess> = supervisor.desired_processes().cloned().collect();
    // The coordinator answered a reboot once the desired epoch moved past the one it restarted at.
    for process in &desired {
        if let Some(engine) = state.engines.get_mut(&process.instance)
            && engine.after_reboot
            && (process.role == Role::Standby || process.epoch > engine.epoch)
        {
            engine.after_reboot = false;
            engine.epoch = process.epoch;
        }
    }
    // Acks and I/O are stamped with simulated time; `now` is the agent's own clock.
    let sim_now = super::history::now();
    let inputs: Vec<FenceInput> = desired
        .iter()
        .filter(|p| p.role == Role::Primary)
        .map(|p| {
            let engine = state.engines.get(&p.instance);
            FenceInput {
                instance: p.instance.clone(),
                fence_after: p.fence_after_seconds.map(|s| Duration::from_secs(s.into())),
                replica_heard: engine.and_then(|e| e.replica_heard(sim_now, now)),
                from_cache: !authoritative,
                after_reboot: engine.is_some_and(|e| e.after_reboot),
            }
        })
        .collect();
    let mut fenced = fencing.update(now, coordinator_heard, inputs).clone();
    if context.no_fencing {
        fenced.clear();
    }
    let mut changes = Vec::new();
    for (name, engine) in state.engines.iter_mut() {
        let want = fenced.contains(name);
        if engine.fenced != want {
            engine.fenced = want;
            changes.push(format!(
                "{} {name} (coordinator heard {})",
                if want { "fenced" } else { "unfenced" },
                match coordinator_heard {
                    Some(at) => format!("{:.1}s ago", now.saturating_sub(at).as_secs_f64()),
                    None => "never".to_string(),
                }
            ));
        }
    }
    drop(state);
    for change in changes {
        context.note(&change);
    }
}

fn observe(context: &ShellContext, supervisor: &Supervisor) -> ObservedState {
    let state = lock(&context.state);
    let sim_now = super::history::now();
    let processes = supervisor
        .statuses()
        .into_iter()
        .map(|status| {
            let engine = state
                .engines
                .get(&status.instance)
                .filter(|e| e.running && status.status == ProcessStatus::Running);
            let info = engine.map(|e| e.info(sim_now)).unwrap_or_default();
            ProcessReport {
                epoch: engine.map_or(status.epoch, |e| e.epoch.max(status.epoch)),
                status: status.status,
                pid: status.pid.unwrap_or(0),
                restarts: status.restarts,
                last_error: status.last_error.clone().unwrap_or_default(),
                info,
                fenced: state
                    .engines
                    .get(&status.instance)
                    .is_some_and(|e| e.fenced),
                writes_paused: engine.is_some_and(|e| e.paused),
                after_reboot: engine.is_some_and(|e| e.after_reboot),
                instance: status.instance,
            }
        })
        .collect();
    ObservedState {
        desired_version: 0,
        processes,
    }
}
