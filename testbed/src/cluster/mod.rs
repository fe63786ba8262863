//! A real KVS cluster on this machine: one kvs-coordinator (or three, replicated) and up to three
//! kvs-agents (zones a, b, c), each its own process with its own data directory, running real
//! engines behind real TLS.
//!
//! ```text
//!   Cluster::start
//!     ├─ claim an address slot (127.0.k.0/24)            ├─ spawn kvs-coordinator --config …
//!     ├─ wait: ca.pem + admin-token written, port open, ListHosts answers
//!     ├─ (coordinators: 3) nodes 2, 3 join node 1, one at a time: caught-up voters
//!     ├─ spawn kvs-agent (zone a, 127.0.k.11) …          └─ wait: ListHosts shows every host "up"
//!   … test …
//!   Cluster::stop  (success: SIGTERM, bounded grace, SIGKILL, sweep; the temp dir is removed)
//!   Drop without stop (failure, panic, `?`): SIGKILL everything by PID, keep the dir, print the
//!     log paths and their last lines
//! ```
//!
//! [`NetworkMode::Netns`] puts the coordinator and each host in a network namespace with its own
//! sshd (`netns_mode`); `faults` has the fault injection. Loopback stays the default. With several
//! coordinators the admin helpers talk to the current leader (`leader`), and `coordinators` has
//! the per-node lifecycle and faults.

mod coordinators;
mod faults;
mod instance;
mod leader;
mod lifecycle;
mod netns_mode;
mod node;

pub use leader::{Coordinators, LEADER_WAIT, STATUS_TIMEOUT};

pub use netns_mode::{NetworkMode, PROBE_USER, SSH_PORT};

pub use instance::AVAILABLE_TIMEOUT;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::admin::AdminClient;
use crate::binaries::Binaries;
use crate::config::{self, AgentConfig, CoordinatorConfig, HaSettings};
use crate::netns::dial::Dialer;
use crate::process;
use crate::slot::{Slot, ZONES};
pub use node::Node;

/// Bound on the coordinator becoming ready (bootstrap, Raft election, TLS listener).
pub const COORDINATOR_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on every agent registering and reporting.
pub const HOSTS_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Set to keep the cluster directory even after a successful stop.
pub const KEEP_ENV: &str = "KVS_TESTBED_KEEP";

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Cluster directory; `None`: a fresh temporary directory.
    pub dir: Option<PathBuf>,
    /// Number of agents, 1..=3 (zones a, b, c).
    pub agents: usize,
    /// Number of coordinator nodes, 1..=3 (3: a replicated coordinator; nodes 2 and 3 join node 1).
    pub coordinators: usize,
    /// Address slot; `None`: the first free test slot (1..). The dev cluster uses 0.
    pub slot: Option<u8>,
    /// Written into the coordinator's config; refuses a data dir of another cluster.
    pub cluster_id: String,
    /// Loopback (default), netns, or netns-if-possible.
    pub network: NetworkMode,
    /// The coordinator's probe and failover settings (unset: its defaults).
    pub ha: HaSettings,
    /// Engines die with their agent (`make dev`); tests leave it off, since some kill an agent
    /// and expect the next one to adopt its engines.
    pub engines_exit_with_agents: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            dir: None,
            agents: 3,
            coordinators: 1,
            slot: None,
            cluster_id: "kvs-testbed".into(),
            network: NetworkMode::Loopback,
            ha: HaSettings::default(),
            engines_exit_with_agents: false,
        }
    }
}

/// A running testbed cluster. Every process it started dies with it.
pub struct Cluster {
    /// The cluster directory (configs, data, logs).
    dir: PathBuf,
    /// Owns `dir` when it is temporary.
    temp: Option<tempfile::TempDir>,
    /// The claimed address block.
    slot: Slot,
    /// Coordinator node i has node id i + 1; node 0 bootstraps the cluster.
    coordinator_configs: Vec<CoordinatorConfig>,
    coordinators: Vec<Node>,
    agent_configs: Vec<AgentConfig>,
    agents: Vec<Node>,
    /// The cluster CA (PEM), read once the coordinator has bootstrapped.
    ca_pem: Vec<u8>,
    admin_token: String,
    /// Lazily connecting channels to every coordinator node and the leader last seen; set once
    /// node 0 has bootstrapped.
    leader: Option<Coordinators>,
    /// Set by [`Cluster::stop`]; a drop without it is a failure and keeps the logs.
    stopped: bool,
    /// Where the test's own clients dial from (netns mode: the net namespace).
    dialer: Dialer,
    /// Netns mode: the namespaces and every host's sshd.
    netns: Option<netns_mode::NetnsHosts>,
}

impl Cluster {
    /// Starts a cluster with `agents` agents in a temporary directory.
    pub async fn start_default(agents: usize) -> Result<Cluster> {
        Cluster::start(ClusterOptions {
            agents,
            ..ClusterOptions::default()
        })
        .await
    }

    /// Starts the coordinator, then the agents, and waits until every host is up.
    pub async fn start(options: ClusterOptions) -> Result<Cluster> {
        anyhow::ensure!(
            (1..=ZONES.len()).contains(&options.agents),
            "agents must be 1..=3"
        );
        anyhow::ensure!(
            (1..=3).contains(&options.coordinators),
            "coordinators must be 1..=3"
        );
        crate::install_crypto_provider();
        let mode = netns_mode::resolve(options.network)?;
        let binaries = Binaries::locate()?;
        let slot = match options.slot {
            Some(index) => Slot::claim(index)?,
            None => Slot::claim_any()?,
        };
        let (dir, temp) = match options.dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                (dir.canonicalize()?, None)
            }
            None => {
                let temp = tempfile::Builder::new().prefix("kvs-testbed-").tempdir()?;
                (temp.path().canonicalize()?, Some(temp))
            }
        };
        std::fs::create_dir_all(dir.join("logs"))?;
        let netns = match mode {
            NetworkMode::Netns => Some(netns_mode::NetnsHosts::create(
                &slot,
                options.agents,
                options.coordinators,
            )?),
            _ => None,
        };
        let mut coordinator_configs: Vec<CoordinatorConfig> = Vec::new();
        let mut coordinators = Vec::new();
        for index in 0..options.coordinators {
            let mut config = match &netns {
                Some(hosts) => {
                    hosts.coordinator_config(&dir, &options.cluster_id, &options.ha, index)
                }
                None => CoordinatorConfig {
                    ha: options.ha.clone(),
                    ..config::coordinator_node_config(&dir, &slot, &options.cluster_id, index)?
                },
            };
            if index > 0 {
                config.join = Some(coordinator_configs[0].endpoint());
            }
            let path = config::coordinator_dir(&dir, index).join("config.toml");
            config::write_toml(&path, &config)?;
            let name = coordinator_name(index);
            let log = dir.join(format!("logs/{name}.log"));
            let mut node = Node::new(&name, &binaries.coordinator, path, log);
            if let Some(hosts) = &netns {
                node = hosts.coordinator_node(node, &binaries.coordinator, index);
            }
            coordinators.push(node);
            coordinator_configs.push(config);
        }
        let endpoints: Vec<String> = coordinator_configs.iter().map(|c| c.endpoint()).collect();
        let mut agent_configs = Vec::new();
        let mut agents = Vec::new();
        for (index, zone) in ZONES.iter().enumerate().take(options.agents) {
            let mut config =
                config::agent_config(&dir, &slot, index, &coordinator_configs[0], &binaries);
            config.set_coordinators(&endpoints);
            config.engines_exit_with_agent = options.engines_exit_with_agents;
            if let Some(hosts) = &netns {
                hosts.adapt_agent_config(&mut config, index, &dir);
            }
            let path = dir.join(format!("agent-{zone}")).join("config.toml");
            config::write_toml(&path, &config)?;
            std::fs::write(&config.boot_id_file, format!("testbed-boot-{zone}-1\n"))
                .with_context(|| format!("writing {}", config.boot_id_file.display()))?;
            let name = format!("agent-{zone}");
            let log = dir.join(format!("logs/{name}.log"));
            let mut node = Node::new(&name, &binaries.agent, path, log);
            if let Some(hosts) = &netns {
                node = hosts.agent_node(node, &binaries.agent, index, &dir)?;
            }
            agents.push(node);
            agent_configs.push(config);
        }
        let dialer = match &netns {
            Some(hosts) => Dialer::Netns(std::sync::Arc::new(hosts.network.client().path())),
            None => Dialer::Direct,
        };
        tracing::info!(dir = %dir.display(), slot = slot.index, agents = options.agents, coordinators = options.coordinators, ?mode, "starting cluster");
        let mut cluster = Cluster {
            dir,
            temp,
            slot,
            coordinator_configs,
            coordinators,
            agent_configs,
            agents,
            ca_pem: Vec::new(),
            admin_token: String::new(),
            leader: None,
            stopped: false,
            dialer,
            netns,
        };
        // From here on a failure drops `cluster`, which kills what started and reports the logs.
        cluster.start_coordinator().await?;
        cluster.join_coordinators().await?;
        cluster.start_sshds().await?;
        for index in 0..cluster.agents.len() {
            cluster.agents[index].start()?;
        }
        cluster
            .wait_hosts_up(cluster.agents.len(), HOSTS_READY_TIMEOUT)
            .await?;
        tracing::info!(endpoint = %cluster.endpoint(), "cluster ready");
        Ok(cluster)
    }

    /// An admin client with the cluster's admin token, for the coordinator (several: the leader
    /// last found; [`Cluster::leader_admin`] looks it up first).
    pub fn admin(&self) -> Result<AdminClient> {
        self.admin_with_token(Some(&self.admin_token))
    }

    /// An admin client with any token (None: no authorization header), for the auth tests.
    pub fn admin_with_token(&self, token: Option<&str>) -> Result<AdminClient> {
        let leader = self.coordinators_handle()?;
        leader.client_with_token(leader.cached(), token)
    }

    /// An admin client for the current coordinator leader (one coordinator: that one, at once).
    pub async fn leader_admin(&self) -> Result<AdminClient> {
        self.coordinators_handle()?.leader_client().await
    }

    /// The admin channels of every coordinator node and the leader lookup.
    pub fn coordinators_handle(&self) -> Result<&Coordinators> {
        self.leader
            .as_ref()
            .ok_or_else(|| anyhow!("the coordinator has not started"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The coordinator's endpoint (several: the leader last found).
    pub fn endpoint(&self) -> String {
        let index = self.leader.as_ref().map_or(0, Coordinators::cached);
        self.coordinator_configs[index].endpoint()
    }
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }
    /// The CA bundle file (what `--cacert` and the CLI profile point at).
    pub fn ca_path(&self) -> PathBuf {
        self.coordinator_configs[0].ca_file()
    }
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }
    pub fn slot_index(&self) -> u8 {
        self.slot.index
    }
    pub fn agent_config(&self, index: usize) -> Option<&AgentConfig> {
        self.agent_configs.get(index)
    }
    pub fn agent_configs(&self) -> &[AgentConfig] {
        &self.agent_configs
    }
    /// Every node's log file.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        self.coordinators
            .iter()
            .chain(&self.agents)
            .map(|n| n.log_path.clone())
            .collect()
    }
    /// `Err` naming the first node that has exited (a coordinator node the test killed or stopped
    /// on purpose does not count).
    pub fn check_alive(&mut self) -> Result<()> {
        self.coordinators
            .iter_mut()
            .filter(|n| n.has_incarnation())
            .try_for_each(Node::check_alive)?;
        self.agents.iter_mut().try_for_each(Node::check_alive)
    }

    /// Stops everything politely (agents first), kills leftovers, and removes a temporary dir.
    pub async fn stop(mut self) {
        for agent in &mut self.agents {
            agent.stop().await;
        }
        if self.coordinators.len() > 1 {
            // All at once: a node's graceful shutdown may wait for its peers' connections.
            for pid in self.coordinators.iter().filter_map(Node::pid) {
                process::signal(pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
        for coordinator in &mut self.coordinators {
            coordinator.stop().await;
        }
        self.teardown_netns();
        process::sweep_dir(&self.dir);
        self.stopped = true;
        tracing::info!(dir = %self.dir.display(), "cluster stopped");
    }

    /// Prints where the logs are and their last lines (on failure).
    fn report(&self) {
        eprintln!(
            "\n==== kvs-testbed: cluster in {} (kept for inspection) ====",
            self.dir.display()
        );
        for log in self.log_paths() {
            eprintln!(
                "---- {} (last 30 lines) ----\n{}",
                log.display(),
                process::log_tail(&log, 30)
            );
        }
        eprintln!(
            "==== end of cluster logs: {}/logs ====\n",
            self.dir.display()
        );
    }
}

/// `coordinator` for node 1 (index 0), `coordinator-N` for node N: node and log names.
fn coordinator_name(index: usize) -> String {
    match index {
        0 => "coordinator".into(),
        _ => format!("coordinator-{}", index + 1),
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            agent.kill_all();
        }
        for coordinator in &mut self.coordinators {
            coordinator.kill_all();
        }
        self.teardown_netns();
        process::sweep_dir(&self.dir);
        let failed = !self.stopped || std::thread::panicking();
        let keep = failed || std::env::var_os(KEEP_ENV).is_some();
        if failed {
            self.report();
        }
        if keep && let Some(temp) = self.temp.as_mut() {
            temp.disable_cleanup(true);
        }
    }
}
