//! A real KVS cluster on this machine: one kvs-coordinator and up to three kvs-agents (zones a, b,
//! c), each its own process with its own data directory, running real engines behind real TLS.
//!
//! ```text
//!   Cluster::start
//!     ├─ claim an address slot (127.0.k.0/24)            ├─ spawn kvs-coordinator --config …
//!     ├─ wait: ca.pem + admin-token written, port open, ListHosts answers
//!     ├─ spawn kvs-agent (zone a, 127.0.k.11) …          └─ wait: ListHosts shows every host "up"
//!   … test …
//!   Cluster::stop  (success: SIGTERM, bounded grace, SIGKILL, sweep; the temp dir is removed)
//!   Drop without stop (failure, panic, `?`): SIGKILL everything by PID, keep the dir, print the
//!     log paths and their last lines
//! ```

mod instance;
mod node;

pub use instance::AVAILABLE_TIMEOUT;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use kvs_proto::pb;
use tonic::transport::Channel;

use crate::admin::{self, AdminClient};
use crate::binaries::Binaries;
use crate::config::{self, AgentConfig, CoordinatorConfig};
use crate::process;
use crate::slot::{Slot, ZONES};
use crate::wait::{Probe, wait_until};
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
    /// Address slot; `None`: the first free test slot (1..). The dev cluster uses 0.
    pub slot: Option<u8>,
    /// Written into the coordinator's config; refuses a data dir of another cluster.
    pub cluster_id: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            dir: None,
            agents: 3,
            slot: None,
            cluster_id: "kvs-testbed".into(),
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
    coordinator_config: CoordinatorConfig,
    coordinator: Node,
    agent_configs: Vec<AgentConfig>,
    agents: Vec<Node>,
    /// The cluster CA (PEM), read once the coordinator has bootstrapped.
    ca_pem: Vec<u8>,
    admin_token: String,
    /// Shared lazily-connecting channel to the coordinator.
    channel: Option<Channel>,
    /// Set by [`Cluster::stop`]; a drop without it is a failure and keeps the logs.
    stopped: bool,
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
        crate::install_crypto_provider();
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
        let coordinator_config = config::coordinator_config(&dir, &slot, &options.cluster_id)?;
        let coordinator_config_path = dir.join("coordinator").join("config.toml");
        config::write_toml(&coordinator_config_path, &coordinator_config)?;
        let coordinator = Node::new(
            "coordinator",
            &binaries.coordinator,
            coordinator_config_path,
            dir.join("logs/coordinator.log"),
        );
        let mut agent_configs = Vec::new();
        let mut agents = Vec::new();
        for (index, zone) in ZONES.iter().enumerate().take(options.agents) {
            let config = config::agent_config(&dir, &slot, index, &coordinator_config, &binaries);
            let path = dir.join(format!("agent-{zone}")).join("config.toml");
            config::write_toml(&path, &config)?;
            let name = format!("agent-{zone}");
            agents.push(Node::new(
                &name,
                &binaries.agent,
                path,
                dir.join(format!("logs/{name}.log")),
            ));
            agent_configs.push(config);
        }
        tracing::info!(dir = %dir.display(), slot = slot.index, agents = options.agents, "starting cluster");
        let mut cluster = Cluster {
            dir,
            temp,
            slot,
            coordinator_config,
            coordinator,
            agent_configs,
            agents,
            ca_pem: Vec::new(),
            admin_token: String::new(),
            channel: None,
            stopped: false,
        };
        // From here on a failure drops `cluster`, which kills what started and reports the logs.
        cluster.start_coordinator().await?;
        for index in 0..cluster.agents.len() {
            cluster.agents[index].start()?;
        }
        cluster
            .wait_hosts_up(cluster.agents.len(), HOSTS_READY_TIMEOUT)
            .await?;
        tracing::info!(endpoint = %cluster.endpoint(), "cluster ready");
        Ok(cluster)
    }

    /// Starts the coordinator (again) on its data dir and waits until it serves the admin API.
    pub async fn start_coordinator(&mut self) -> Result<()> {
        self.coordinator.start()?;
        let ca_file = self.coordinator_config.ca_file();
        let token_file = self.coordinator_config.admin_token_file();
        let listen = self.coordinator_config.listen;
        let node = &mut self.coordinator;
        wait_until(
            "the coordinator to bootstrap and listen",
            COORDINATOR_READY_TIMEOUT,
            || {
                let alive = node.check_alive();
                let files = ca_file.exists() && token_file.exists();
                let ca_display = ca_file.display().to_string();
                async move {
                    if let Err(err) = alive {
                        return Probe::Fatal(err);
                    }
                    if !files {
                        return Probe::Pending(format!(
                            "{ca_display} / admin-token not written yet"
                        ));
                    }
                    match tokio::net::TcpStream::connect(listen).await {
                        Ok(_) => Probe::Ready(()),
                        Err(err) => Probe::Pending(format!("connect {listen}: {err}")),
                    }
                }
            },
        )
        .await?;
        self.ca_pem =
            std::fs::read(&ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("reading {}", token_file.display()))?;
        self.admin_token = token.trim().to_string();
        self.channel = Some(admin::channel(&self.endpoint(), &self.ca_pem)?);
        let client = self.admin()?;
        wait_until(
            "the coordinator to answer ListHosts",
            COORDINATOR_READY_TIMEOUT,
            || {
                let mut client = client.clone();
                async move {
                    match client.list_hosts(pb::ListHostsRequest {}).await {
                        Ok(_) => Probe::Ready(()),
                        Err(status) => Probe::Pending(format!("ListHosts: {status}")),
                    }
                }
            },
        )
        .await
    }

    /// `kill -9` of the coordinator.
    pub fn kill_coordinator(&mut self) {
        self.coordinator.kill_hard();
    }

    /// `kill -9` of the coordinator, then a restart on the same data dir; waits until hosts are up.
    pub async fn restart_coordinator(&mut self) -> Result<()> {
        self.kill_coordinator();
        self.start_coordinator().await?;
        self.wait_hosts_up(self.agents.len(), HOSTS_READY_TIMEOUT)
            .await?;
        Ok(())
    }

    /// `kill -9` of agent `index` (zone a = 0); its engines keep running.
    pub fn kill_agent(&mut self, index: usize) -> Result<()> {
        self.agents
            .get_mut(index)
            .ok_or_else(|| anyhow!("no agent {index}"))?
            .kill_hard();
        Ok(())
    }

    /// Starts agent `index` again on its data dir.
    pub fn start_agent(&mut self, index: usize) -> Result<()> {
        self.agents
            .get_mut(index)
            .ok_or_else(|| anyhow!("no agent {index}"))?
            .start()
    }

    /// Waits until ListHosts shows at least `count` hosts, every one of them `up`.
    pub async fn wait_hosts_up(
        &mut self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<pb::Host>> {
        let client = self.admin()?;
        let nodes = &mut self.agents;
        wait_until(&format!("{count} hosts to be up"), timeout, || {
            let alive: Result<Vec<()>> = nodes.iter_mut().map(Node::check_alive).collect();
            let mut client = client.clone();
            async move {
                if let Err(err) = alive {
                    return Probe::Fatal(err);
                }
                match client.list_hosts(pb::ListHostsRequest {}).await {
                    Ok(reply) => {
                        let hosts = reply.into_inner().hosts;
                        let up = hosts.iter().filter(|h| h.state == "up").count();
                        if hosts.len() >= count && up == hosts.len() {
                            Probe::Ready(hosts)
                        } else {
                            let states: Vec<String> = hosts
                                .iter()
                                .map(|h| format!("{}({}):{}", h.hostname, h.zone, h.state))
                                .collect();
                            Probe::Pending(format!("hosts: [{}]", states.join(", ")))
                        }
                    }
                    Err(status) => Probe::Pending(format!("ListHosts: {status}")),
                }
            }
        })
        .await
    }

    /// An admin client with the cluster's admin token.
    pub fn admin(&self) -> Result<AdminClient> {
        self.admin_with_token(Some(&self.admin_token))
    }

    /// An admin client with any token (None: no authorization header), for the auth tests.
    pub fn admin_with_token(&self, token: Option<&str>) -> Result<AdminClient> {
        let channel = self
            .channel
            .clone()
            .ok_or_else(|| anyhow!("the coordinator has not started"))?;
        admin::client(channel, token)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn endpoint(&self) -> String {
        self.coordinator_config.endpoint()
    }
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }
    /// The CA bundle file (what `--cacert` and the CLI profile point at).
    pub fn ca_path(&self) -> PathBuf {
        self.coordinator_config.ca_file()
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
        std::iter::once(&self.coordinator)
            .chain(&self.agents)
            .map(|n| n.log_path.clone())
            .collect()
    }
    /// `Err` naming the first node that has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.coordinator.check_alive()?;
        self.agents.iter_mut().try_for_each(Node::check_alive)
    }

    /// Stops everything politely (agents first), kills leftovers, and removes a temporary dir.
    pub async fn stop(mut self) {
        for agent in &mut self.agents {
            agent.stop().await;
        }
        self.coordinator.stop().await;
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

impl Drop for Cluster {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            agent.kill_all();
        }
        self.coordinator.kill_all();
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
