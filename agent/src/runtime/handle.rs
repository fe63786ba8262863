//! The runtime's public face: its options, the desired and observed state types, and the handle
//! that tests, the testbed and `report.rs` use to drive it (no coordinator needed).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kvs_proto::model::{DesiredProcess, ProcessStatus};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use super::{EVENT_QUEUE_CAPACITY, Runtime};
use crate::engine::catalog::Catalog;
use crate::engine::info::EngineInfo;
use crate::engine::process::RunningEngine;
use crate::fencing::{Fencing, WritePauses};
use crate::supervisor::{RestartPolicy, Supervisor};

/// What the runtime needs from the host's configuration.
#[derive(Clone)]
pub struct RuntimeOptions {
    /// `instances/<name>/` directories live under here.
    pub data_dir: PathBuf,
    /// Engines listen on this (loopback) address.
    pub engine_bind: IpAddr,
    /// TLS fronts listen on this address (the host's client-facing address).
    pub front_address: IpAddr,
    /// The host certificate for the TLS fronts (`tls::server_config`: peer agents present
    /// their host certificate, customers none).
    pub tls: Arc<rustls::ServerConfig>,
    /// The replication tunnels' client side (`tls::client_config`: the cluster CA and the host
    /// certificate).
    pub tunnel_tls: Arc<rustls::ClientConfig>,
    /// INFO polling interval (and retry interval of fronts that failed to bind).
    pub report_interval: Duration,
    /// SIGTERM-to-SIGKILL grace period.
    pub stop_timeout: Duration,
    pub restart: RestartPolicy,
    /// This boot's id (`boot_id_file`); `None`: reboots are not detected.
    pub boot_id: Option<String>,
    /// Engines get SIGTERM from the kernel when the agent exits (`engines_exit_with_agent`).
    pub engines_exit_with_agent: bool,
}

/// The desired state for this host, as the coordinator sent it (or as cached on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredState {
    pub version: u64,
    pub processes: Vec<DesiredProcess>,
    /// From the coordinator (true) or the local cache (false): only an authoritative state may
    /// cause instance directories the agent did not itself start to be deleted.
    pub authoritative: bool,
}

/// What the runtime observes, published on every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedState {
    /// The version of the last desired state applied.
    pub desired_version: u64,
    pub processes: Vec<ProcessReport>,
}

impl ObservedState {
    pub fn process(&self, instance: &str) -> Option<&ProcessReport> {
        self.processes.iter().find(|p| p.instance == instance)
    }
}

/// One instance as reported up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessReport {
    pub instance: String,
    pub epoch: u64,
    pub status: ProcessStatus,
    pub pid: u32,
    pub restarts: u32,
    /// Empty if none.
    pub last_error: String,
    /// Last INFO of the live engine (default while not running).
    pub info: EngineInfo,
    /// Fenced (DESIGN §4 rule 5): customers refused, writes paused.
    pub fenced: bool,
    /// Client writes paused, and `info`'s offset read after the pause (switchover.rs).
    pub writes_paused: bool,
    /// A primary started from disk after a host reboot, fenced until the coordinator acts.
    pub after_reboot: bool,
}

/// Events from tasks to the loop.
pub(crate) enum Event {
    Started {
        instance: String,
        generation: u64,
        result: Result<RunningEngine, (String, bool)>,
        /// The engine last ran under another boot of this host (reboot.rs).
        after_reboot: bool,
    },
    Exited {
        instance: String,
        generation: u64,
        reason: String,
    },
    Info {
        instance: String,
        generation: u64,
        result: Result<EngineInfo, String>,
    },
    Reconfigured {
        instance: String,
        generation: u64,
        result: Result<(), String>,
    },
    Cleaned {
        instance: String,
        result: Result<(), String>,
    },
    Paused {
        instance: String,
        generation: u64,
        result: Result<(), String>,
    },
}

/// Controls a running runtime: feed it desired states, watch what it observes.
pub struct RuntimeHandle {
    desired: watch::Sender<Option<DesiredState>>,
    coordinator: watch::Sender<Option<Instant>>,
    observed: watch::Receiver<ObservedState>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RuntimeHandle {
    /// Converge to `state` (replaces any previous desired state).
    pub fn apply(&self, state: DesiredState) {
        self.desired.send_replace(Some(state));
    }

    /// The coordinator leader was heard just now (`report.rs`, on every message of the session,
    /// after applying it). Fencing counts the time since the last word.
    pub fn coordinator_heard(&self) {
        self.coordinator.send_replace(Some(Instant::now()));
    }

    /// A cloneable "the coordinator was heard just now", for a caller that stands in for the
    /// leader's heartbeats from its own task (tests without a coordinator).
    pub fn coordinator_ear(&self) -> impl Fn() + Send + Sync + 'static {
        let coordinator = self.coordinator.clone();
        move || {
            coordinator.send_replace(Some(Instant::now()));
        }
    }

    /// A receiver of observed states.
    pub fn observed(&self) -> watch::Receiver<ObservedState> {
        self.observed.clone()
    }

    /// Waits until `predicate` holds for the observed state; on timeout returns the last state.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        predicate: impl Fn(&ObservedState) -> bool,
    ) -> Result<ObservedState, ObservedState> {
        let mut observed = self.observed.clone();
        let found = tokio::time::timeout(timeout, observed.wait_for(|s| predicate(s))).await;
        match found {
            Ok(Ok(state)) => Ok(state.clone()),
            _ => Err(self.observed.borrow().clone()),
        }
    }

    /// Stops every engine and the fronts, and waits for the loop to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// The runtime's side of a [`RuntimeHandle`], for a runtime that is not [`spawn`]'s: the
/// simulation (sim/) runs the agent's session code over a simulated engine runtime.
pub struct RuntimeEnds {
    /// The desired states the handle was given.
    pub desired: watch::Receiver<Option<DesiredState>>,
    /// When the coordinator leader was last heard (`None`: not yet).
    pub coordinator: watch::Receiver<Option<Instant>>,
    /// Where the runtime publishes what it observes.
    pub observed: watch::Sender<ObservedState>,
    /// Cancelled by [`RuntimeHandle::shutdown`].
    pub cancel: CancellationToken,
}

impl RuntimeHandle {
    /// A handle driving the runtime `run` returns (spawned as a task).
    pub fn external<F>(run: impl FnOnce(RuntimeEnds) -> F) -> RuntimeHandle
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (desired_tx, desired_rx) = watch::channel(None);
        let (observed_tx, observed_rx) = watch::channel(ObservedState::default());
        let (coordinator_tx, coordinator_rx) = watch::channel(None);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(RuntimeEnds {
            desired: desired_rx,
            coordinator: coordinator_rx,
            observed: observed_tx,
            cancel: cancel.clone(),
        }));
        RuntimeHandle {
            desired: desired_tx,
            coordinator: coordinator_tx,
            observed: observed_rx,
            cancel,
            task,
        }
    }
}

/// Starts the runtime loop. Instance directories already on disk are taken over (and deleted
/// once an authoritative desired state omits them); engines a previous agent left running in
/// them are adopted, not restarted.
pub fn spawn(options: RuntimeOptions, catalog: Catalog) -> RuntimeHandle {
    RuntimeHandle::external(|ends| {
        let RuntimeEnds {
            desired,
            coordinator,
            observed,
            cancel,
        } = ends;
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE_CAPACITY);
        let runtime = new_runtime(options, catalog, events_tx, observed);
        let span = tracing::info_span!(parent: None, "runtime");
        tracing::Instrument::instrument(runtime.run(desired, coordinator, events_rx, cancel), span)
    })
}

fn new_runtime(
    options: RuntimeOptions,
    catalog: Catalog,
    events_tx: mpsc::Sender<Event>,
    observed_tx: watch::Sender<ObservedState>,
) -> Runtime {
    let binary_labels = super::adopt::catalog_binaries(&catalog);
    let binaries = binary_labels.iter().map(|(path, _)| path.clone()).collect();
    Runtime {
        binaries,
        binary_labels,
        acceptor: TlsAcceptor::from(options.tls.clone()),
        connector: TlsConnector::from(options.tunnel_tls.clone()),
        supervisor: Supervisor::new(options.restart),
        options,
        catalog: Arc::new(catalog),
        start: Instant::now(),
        engines: BTreeMap::new(),
        stop_requested: BTreeSet::new(),
        fronts: BTreeMap::new(),
        front_threads: crate::tls::threads::FrontThreads::for_host(),
        front_errors: BTreeMap::new(),
        tunnels: BTreeMap::new(),
        tunnel_errors: BTreeMap::new(),
        coordinator_heard: None,
        desired_authoritative: true,
        fencing: Fencing::new(),
        pauses: WritePauses::new(),
        paused_offsets: Default::default(),
        rebooted: BTreeMap::new(),
        adopted_after_reboot: BTreeSet::new(),
        infos: BTreeMap::new(),
        polling: BTreeSet::new(),
        desired_version: 0,
        events_tx,
        observed_tx,
    }
}
