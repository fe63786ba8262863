//! The async shell around the supervisor: runs engines, TLS fronts, replication tunnels and INFO
//! polling, applies fencing and paused writes, and feeds every outcome back into the pure cores
//! (`supervisor`, `fencing`).
//!
//! ```text
//!   RuntimeHandle::apply(DesiredState) ──watch──┐
//!                                               ▼
//!   tasks (start, watch exit, INFO, CONFIG SET, cleanup) ──events──► loop ──► Supervisor::poll(now)
//!        ▲                                                             │            │
//!        └───────────────────── spawned per Action ◄───────────────────┘◄── [Action]
//!   loop ──watch──► ObservedState (statuses + INFO metrics) ──► report.rs / tests
//!   RuntimeHandle::coordinator_heard ──watch──► loop ──► Fencing::update ──► fronts,
//!   fronts: last bytes from a replica ──────────┘                  WritePauses ──► CLIENT PAUSE
//! ```
//!
//! Fronts and tunnels are level-triggered from the desired processes (`links.rs`): every standby
//! has a tunnel on `engine_bind:tunnel_port` to its upstream's front; a changed upstream
//! re-creates it (dropping the old connections).
//!
//! The loop owns all state; tasks only send events, each tagged with the process generation so a
//! late event from an old process is ignored. Time is tokio's clock (`now` = time since start).
//! At startup, engines a previous agent left running are adopted (`adopt.rs`) before any desired
//! state is applied. On shutdown every engine is stopped (SIGTERM, then SIGKILL), adopted ones
//! too; data directories stay.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use crate::engine::catalog::Catalog;
use crate::engine::info::EngineInfo;
use crate::engine::process::RunningEngine;
use crate::engine::render::{self, InstancePaths};
use crate::fencing::{Fencing, WritePauses};
use crate::supervisor::{Action, Supervisor};
use crate::tls::front::Front;
use crate::tls::threads::FrontThreads;
use crate::tls::tunnel::Tunnel;

mod adopt;
mod fence;
mod handle;
mod links;
mod observe;
mod reboot;
mod switchover;
mod tasks;

use handle::Event;
pub use handle::{
    DesiredState, ObservedState, ProcessReport, RuntimeEnds, RuntimeHandle, RuntimeOptions, spawn,
};
pub use tasks::query_info;

/// Bound on queued events from tasks (a few per instance are ever in flight).
const EVENT_QUEUE_CAPACITY: usize = 1024;
/// Extra time, beyond `stop_timeout`, a shutdown waits for engines to exit.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

struct Runtime {
    options: RuntimeOptions,
    catalog: Arc<Catalog>,
    /// The catalog's engine binaries (canonical paths), to recognise a previous agent's engines.
    binaries: Arc<[PathBuf]>,
    binary_labels: Vec<(PathBuf, String)>,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    supervisor: Supervisor,
    start: Instant,
    /// Live engines by instance, with their generation.
    engines: BTreeMap<String, (u64, RunningEngine)>,
    /// Stops asked for before the engine's spawn result arrived.
    stop_requested: BTreeSet<(String, u64)>,
    fronts: BTreeMap<String, Front>,
    /// The fronts' own threads (dropped after the fronts).
    front_threads: FrontThreads,
    front_errors: BTreeMap<String, String>,
    tunnels: BTreeMap<String, Tunnel>,
    tunnel_errors: BTreeMap<String, String>,
    /// When the coordinator leader was last heard, on `now`'s clock (from report.rs through the
    /// handle).
    coordinator_heard: Option<Duration>,
    /// The desired state came from the coordinator (not the local cache).
    desired_authoritative: bool,
    fencing: Fencing,
    pauses: WritePauses,
    /// Whether each paused primary's offset was read after its pause (switchover.rs).
    paused_offsets: switchover::PausedOffsets,
    /// Primaries started after a host reboot, with the epoch they started at (reboot.rs).
    rebooted: BTreeMap<String, u64>,
    /// Engines adopted from a previous agent that last started under another boot: after-reboot
    /// once their desired spec is known (`reboot.rs`).
    adopted_after_reboot: BTreeSet<String>,
    infos: BTreeMap<String, EngineInfo>,
    /// Instances with an INFO poll in flight.
    polling: BTreeSet<String>,
    desired_version: u64,
    events_tx: mpsc::Sender<Event>,
    observed_tx: watch::Sender<ObservedState>,
}

impl Runtime {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn run(
        mut self,
        mut desired: watch::Receiver<Option<DesiredState>>,
        mut coordinator: watch::Receiver<Option<Instant>>,
        mut events: mpsc::Receiver<Event>,
        cancel: CancellationToken,
    ) {
        let on_disk = tasks::instances_on_disk(&self.options.data_dir).await;
        self.adopt_leftovers(&on_disk).await;
        self.supervisor.found_on_disk(on_disk, self.now());
        let mut tick = tokio::time::interval(self.options.report_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut catch_up = tokio::time::interval(switchover::CATCH_UP_POLL);
        catch_up.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown_at: Option<Instant> = None;
        loop {
            let catching_up = shutdown_at.is_none() && self.catching_up();
            let deadline = [
                self.supervisor.next_deadline(),
                self.fencing.next_deadline(),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|d| self.start + d);
            tokio::select! {
                _ = cancel.cancelled(), if shutdown_at.is_none() => {
                    tracing::info!("stopping every engine");
                    self.supervisor.shutdown();
                    shutdown_at = Some(Instant::now() + self.options.stop_timeout + SHUTDOWN_MARGIN);
                }
                changed = desired.changed(), if shutdown_at.is_none() => match changed {
                    Ok(()) => {
                        let state = desired.borrow_and_update().clone();
                        if let Some(state) = state {
                            self.apply(state);
                        }
                    }
                    // The handle is gone: nobody can steer us any more.
                    Err(_) => cancel.cancel(),
                },
                changed = coordinator.changed(), if shutdown_at.is_none() => match changed {
                    Ok(()) => {
                        // What the coordinator sent is applied before it counts as heard: a
                        // fence is lifted with the desired state as of now, never a stale one.
                        if desired.has_changed().unwrap_or(false) {
                            let state = desired.borrow_and_update().clone();
                            if let Some(state) = state {
                                self.apply(state);
                            }
                        }
                        let heard = *coordinator.borrow_and_update();
                        self.coordinator_heard =
                            heard.map(|at| at.saturating_duration_since(self.start));
                    }
                    Err(_) => cancel.cancel(),
                },
                Some(event) = events.recv() => self.handle(event),
                _ = tick.tick() => self.on_tick(),
                _ = catch_up.tick(), if catching_up => self.poll_catch_up(),
                _ = sleep_until_opt(deadline) => {}
                _ = sleep_until_opt(shutdown_at) => {
                    tracing::warn!("engines did not stop in time; leaving them to kill-on-drop");
                    break;
                }
            }
            let actions = self.supervisor.poll(self.now());
            for action in actions {
                self.execute(action);
            }
            if shutdown_at.is_none() {
                self.update_fencing();
                self.reconcile_links().await;
            }
            self.publish();
            if shutdown_at.is_some() && self.supervisor.is_idle() {
                break;
            }
        }
        self.fronts.clear();
        self.tunnels.clear();
    }

    fn apply(&mut self, state: DesiredState) {
        tracing::info!(
            version = state.version,
            processes = state.processes.len(),
            "desired state"
        );
        let rejected =
            self.supervisor
                .set_desired(state.processes, state.authoritative, self.now());
        for r in rejected {
            tracing::warn!(instance = %r.instance, reason = %r.reason, "desired process rejected");
        }
        self.desired_version = state.version;
        self.desired_authoritative = state.authoritative;
        self.resolve_adopted_reboots();
    }

    fn handle(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Started {
                instance,
                generation,
                result: Ok(engine),
                after_reboot,
            } => {
                tracing::info!(%instance, pid = engine.pid, generation, "engine started");
                if after_reboot && let Some(spec) = self.supervisor.running(&instance).cloned() {
                    self.on_started_after_reboot(&spec);
                }
                self.supervisor
                    .on_started(&instance, generation, engine.pid);
                let mut engine = engine;
                if self.stop_requested.remove(&(instance.clone(), generation)) {
                    engine.stop();
                }
                if let Some(spec) = self.supervisor.running(&instance).cloned() {
                    tasks::spawn_readiness(
                        &self.options,
                        &spec,
                        generation,
                        self.events_tx.clone(),
                    );
                }
                self.engines.insert(instance, (generation, engine));
            }
            Event::Started {
                instance,
                generation,
                result: Err((error, retryable)),
                ..
            } => {
                tracing::error!(%instance, %error, "engine did not start");
                self.stop_requested.remove(&(instance.clone(), generation));
                self.supervisor
                    .on_start_failed(&instance, generation, error, retryable, now);
            }
            Event::Exited {
                instance,
                generation,
                reason,
            } => {
                tracing::warn!(%instance, generation, %reason, "engine exited");
                if self
                    .engines
                    .get(&instance)
                    .is_some_and(|(g, _)| *g == generation)
                {
                    self.engines.remove(&instance);
                    self.infos.remove(&instance);
                }
                self.supervisor
                    .on_exited(&instance, generation, reason, now);
            }
            Event::Info {
                instance,
                generation,
                result,
            } => {
                self.polling.remove(&instance);
                if self.supervisor.generation(&instance) != Some(generation) {
                    return;
                }
                let ok = result.is_ok();
                match result {
                    Ok(info) => {
                        if !info.loading {
                            self.supervisor.on_ready(&instance, generation);
                        }
                        self.infos.insert(instance.clone(), info);
                    }
                    Err(error) => tracing::debug!(%instance, %error, "INFO failed"),
                }
                self.on_info_for_pause(&instance, ok);
            }
            Event::Reconfigured {
                instance,
                generation,
                result,
            } => {
                match &result {
                    Ok(()) => tracing::info!(%instance, "engine reconfigured live"),
                    Err(error) => tracing::warn!(%instance, %error, "live reconfiguration failed"),
                }
                let ok = result.is_ok();
                self.supervisor
                    .on_reconfigured(&instance, generation, result);
                // A role change (promotion, demotion) is reported at once, not at the next tick:
                // the coordinator completes a failover when it sees the new role.
                if ok
                    && let Some(spec) = self.supervisor.running(&instance).cloned()
                    && self.supervisor.generation(&instance) == Some(generation)
                    && self.infos.contains_key(&instance)
                    && self.polling.insert(instance.clone())
                {
                    tasks::spawn_info(&self.options, &spec, generation, self.events_tx.clone());
                }
                // An adopted engine is not known to serve until it answers INFO.
                if ok
                    && let Some(spec) = self.supervisor.running(&instance).cloned()
                    && self.supervisor.generation(&instance) == Some(generation)
                    && !self.infos.contains_key(&instance)
                {
                    tasks::spawn_readiness(
                        &self.options,
                        &spec,
                        generation,
                        self.events_tx.clone(),
                    );
                }
            }
            Event::Paused {
                instance,
                generation,
                result,
            } => {
                if let Err(error) = &result {
                    tracing::warn!(%instance, %error, "CLIENT PAUSE/UNPAUSE failed");
                }
                let was_paused = self.pauses.is_paused(&instance);
                self.pauses.on_done(&instance, generation, result, now);
                self.on_pause_changed(&instance, was_paused);
            }
            Event::Cleaned { instance, result } => {
                match &result {
                    Ok(()) => tracing::info!(%instance, "instance removed"),
                    Err(error) => {
                        tracing::error!(%instance, %error, "cannot remove instance directory")
                    }
                }
                self.supervisor.on_cleaned(&instance, result, now);
            }
        }
    }

    fn execute(&mut self, action: Action) {
        let events = self.events_tx.clone();
        match action {
            Action::Start {
                process,
                generation,
                restart,
            } => {
                tracing::info!(instance = %process.instance, generation, restart, engine = %process.engine, "starting engine");
                let Some(entry) = self.catalog.resolve(&process.engine) else {
                    let error = format!("engine {} not installed on this host", process.engine);
                    self.supervisor.on_start_failed(
                        &process.instance,
                        generation,
                        error,
                        false,
                        self.now(),
                    );
                    return;
                };
                tasks::spawn_start(
                    &self.options,
                    self.binaries.clone(),
                    entry.path.clone(),
                    process,
                    generation,
                    events,
                );
            }
            Action::Stop {
                instance,
                generation,
            } => {
                tracing::info!(%instance, generation, "stopping engine");
                match self.engines.get_mut(&instance) {
                    Some((g, engine)) if *g == generation => engine.stop(),
                    _ => {
                        self.stop_requested.insert((instance, generation));
                    }
                }
            }
            Action::Adopt {
                instance,
                generation,
                process,
            } => {
                tracing::info!(%instance, generation, epoch = process.epoch, "adopting the engine");
                adopt::spawn_adopt(&self.options, *process, generation, events);
            }
            Action::Reconfigure {
                instance,
                generation,
                from,
                to,
            } => {
                tracing::info!(%instance, changes = ?render::config_set_changes(&from, &to).iter().map(|c| c.0).collect::<Vec<_>>(), "reconfiguring engine");
                tasks::spawn_reconfigure(&self.options, *from, *to, generation, events);
            }
            Action::Replication {
                instance,
                generation,
                change,
                from,
                to,
            } => {
                tracing::info!(%instance, ?change, epoch = to.epoch, upstream = ?to.upstream, "changing the replication role");
                tasks::spawn_replication(&self.options, change, *from, *to, generation, events);
            }
            Action::Cleanup { instance } => {
                tracing::info!(%instance, "removing instance");
                self.fronts.remove(&instance);
                self.front_errors.remove(&instance);
                self.tunnels.remove(&instance);
                self.tunnel_errors.remove(&instance);
                tasks::spawn_cleanup(&self.options, self.binaries.clone(), instance, events);
            }
            Action::ReportStatus => {}
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Paths of an instance under this runtime's data dir.
pub(crate) fn paths(options: &RuntimeOptions, instance: &str) -> InstancePaths {
    InstancePaths::new(&options.data_dir, instance)
}
