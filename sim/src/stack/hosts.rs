//! An agent host of the full-stack simulation: a simulated sshd (probes, and the coordinator's
//! agent restart), the engines (they outlive an agent crash, not a host crash; their AOF is
//! synced every second to the host's disk, which outlives reboots), and the REAL agent code:
//! `report::register`, `identity` storage, `report::session_loop` with its leader search,
//! desired-state cache and fencing signal, over the simulated engine runtime (`engines.rs`).
//!
//! turmoil re-runs [`main`] when the host restarts after a crash: a new boot (new boot id, no
//! engines running), the same disk.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvs_agent::engine::catalog::{Catalog, CatalogEntry};
use kvs_agent::runtime::RuntimeHandle;
use kvs_proto::model::Engine as EngineLabel;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::engines::{self, Disk, HostState, SharedHost, ShellContext};
use super::history::History;
use super::lock;

/// The port of the simulated sshd.
pub const SSH_PORT: u16 = 22;
/// The agent's report interval (the production default is 1 s too).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Everything an agent host needs, shared by its boots.
#[derive(Clone)]
pub struct AgentHost {
    pub name: String,
    pub zone: String,
    pub data_dir: PathBuf,
    pub coordinators: Vec<String>,
    pub join_token: String,
    pub ca_file: PathBuf,
    pub history: Arc<Mutex<History>>,
    pub disk: Arc<Mutex<Disk>>,
    pub boots: Arc<AtomicU64>,
    /// The engines of the current boot (the fault plan crashes them through it).
    pub current: Arc<Mutex<Option<SharedHost>>>,
    /// Cancelled to crash the current agent (the fault plan, or a restart over SSH).
    pub agent_kill: Arc<Mutex<CancellationToken>>,
    /// The deliberately broken rule `no-fencing`: the agent never fences.
    pub no_fencing: bool,
}

impl AgentHost {
    fn note(&self, what: String) {
        lock(&self.history).note(&self.name, what);
    }

    /// Crashes the current agent (kill -9: its engines keep running); it restarts after 1 s.
    pub fn kill_agent(&self) {
        lock(&self.agent_kill).cancel();
    }

    /// Crashes one engine of the current boot (the agent restarts it in place).
    pub fn crash_engine(&self, instance: &str) -> bool {
        let current = lock(&self.current).clone();
        let Some(state) = current else { return false };
        let mut state = lock(&state);
        if !state.engines.get(instance).is_some_and(|e| e.running) {
            return false;
        }
        state.crash_requests.push(instance.to_string());
        true
    }

    /// The engines of the current boot, if the host is up.
    pub fn engines(&self) -> Option<SharedHost> {
        lock(&self.current).clone()
    }
}

/// One boot of the host, until turmoil crashes it.
pub async fn main(host: AgentHost) -> turmoil::Result {
    let boot = host.boots.fetch_add(1, Ordering::SeqCst) + 1;
    let state: SharedHost = Arc::new(Mutex::new(HostState::default()));
    *lock(&host.current) = Some(state.clone());
    host.note(format!("boot {boot}"));
    tokio::spawn(sshd(host.clone()));
    tokio::spawn(sync_aof(state.clone(), host.disk.clone()));
    loop {
        let kill = CancellationToken::new();
        *lock(&host.agent_kill) = kill.clone();
        agent_life(&host, boot, &state, &kill).await;
        host.note("agent stopped; restarting in 1 s".into());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `appendfsync everysec`: what a crash of the engine or the host keeps.
async fn sync_aof(state: SharedHost, disk: Arc<Mutex<Disk>>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let logs: Vec<(String, Vec<u64>)> = lock(&state)
            .engines
            .iter()
            .filter(|(_, e)| e.running)
            .map(|(name, e)| (name.clone(), e.log.clone()))
            .collect();
        let mut disk = lock(&disk);
        for (name, log) in logs {
            disk.aof.insert(name, log);
        }
    }
}

/// The simulated sshd: a banner for probes; `restart-agent` restarts the agent.
async fn sshd(host: AgentHost) {
    let Ok(listener) = super::net::listen(SSH_PORT).await else {
        host.note("sshd cannot listen".into());
        return;
    };
    while let Ok((stream, _)) = listener.accept().await {
        let host = host.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            if write.write_all(b"SSH-2.0-kvs-sim\n").await.is_err() {
                return;
            }
            let mut lines = BufReader::new(read).lines();
            if let Ok(Some(command)) = lines.next_line().await {
                if command.trim() == "restart-agent" {
                    host.note("agent restarted over SSH".into());
                    host.kill_agent();
                }
                let _ = write.write_all(b"OK\n").await;
            }
        });
    }
}

fn agent_config(host: &AgentHost) -> kvs_agent::Config {
    let address = turmoil::lookup(host.name.as_str());
    kvs_agent::Config {
        coordinators: host.coordinators.clone(),
        ca_file: host.ca_file.clone(),
        join_token: Some(host.join_token.clone()),
        zone: host.zone.clone(),
        address,
        hostname: host.name.clone(),
        engine_bind: IpAddr::from([127, 0, 0, 1]),
        data_dir: host.data_dir.clone(),
        report_interval: REPORT_INTERVAL,
        ssh_host_key_file: host.data_dir.join("ssh_host_ed25519_key.pub"),
        ..kvs_agent::Config::default()
    }
}

fn catalog() -> Catalog {
    Catalog::from_entries(vec![CatalogEntry {
        engine: EngineLabel {
            kind: "valkey".into(),
            version: "9.0.0".into(),
            label: "valkey-9".into(),
        },
        path: PathBuf::from("/simulated/valkey-server"),
    }])
}

/// One life of the agent: identity (stored, or register), runtime, session until killed.
async fn agent_life(host: &AgentHost, boot: u64, state: &SharedHost, kill: &CancellationToken) {
    let config = agent_config(host);
    let catalog = catalog();
    let dial = super::net::agent_dial();
    let _ = std::fs::create_dir_all(&config.data_dir);
    let _ = std::fs::write(
        &config.ssh_host_key_file,
        format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} {}\n",
            host.name, host.name
        ),
    );
    let identity = loop {
        if let Some(identity) = kvs_agent::identity::load(&config.data_dir).await {
            break identity;
        }
        let previous = kvs_agent::identity::load_host_id(&config.data_dir).await;
        match kvs_agent::report::register(&config, &catalog, previous, &dial).await {
            Ok(identity) => {
                if let Err(error) = kvs_agent::identity::store(&config.data_dir, &identity).await {
                    host.note(format!("cannot store the identity: {error}"));
                }
                host.note(format!("registered as {}", identity.host_id));
                break identity;
            }
            Err(_) => {
                tokio::select! {
                    _ = kill.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let context = ShellContext {
        host: host.name.clone(),
        boot,
        state: state.clone(),
        disk: host.disk.clone(),
        history: host.history.clone(),
        no_fencing: host.no_fencing,
    };
    let handle = RuntimeHandle::external(|ends| engines::run(context, ends));
    if let Some(cached) = kvs_agent::report::load_cached_desired(&config.data_dir).await {
        handle.apply(cached);
    }
    kvs_agent::report::session_loop(&config, &identity, &catalog, &handle, kill, &dial).await;
    handle.shutdown().await;
}
