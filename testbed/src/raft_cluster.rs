//! A coordinator-only cluster of real `kvs-coordinator` processes on 127.0.0.1 (each its own
//! process, config file and data directory): node 1 bootstraps, the others join on their own.
//! For the replicated-coordinator tests (kill -9 the leader, rolling restarts, wipe and re-add)
//! and the Raft benchmark.
//!
//! ```text
//!   CoordinatorCluster::start(3)
//!     node 1: bootstrap (CA, tokens) ─► nodes 2, 3: join = node 1 (admin token + CA copied)
//!   leader() · admin(i) · kill_hard(i) · restart(i) · wipe(i)
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kvs_proto::pb;

use crate::admin::{self, AdminClient};
use crate::binaries::Binaries;
use crate::process::ChildProcess;
use crate::wait::{Probe, wait_until};

/// How long a node may take to bootstrap, join or restart.
pub const NODE_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one leader lookup inside a longer wait.
const LEADER_LOOKUP: Duration = Duration::from_secs(5);

/// Settings of every node, beyond addresses.
#[derive(Debug, Clone)]
pub struct RaftClusterOptions {
    pub nodes: usize,
    /// `snapshot_every_entries` (small values make snapshot catch-up testable).
    pub snapshot_every_entries: u64,
    /// `log_entries_kept`.
    pub log_entries_kept: u64,
}

impl Default for RaftClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            snapshot_every_entries: 1000,
            log_entries_kept: 1000,
        }
    }
}

/// One coordinator node of the cluster.
pub struct RaftNode {
    pub id: u64,
    pub api_addr: String,
    pub raft_addr: String,
    pub data_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    process: Option<ChildProcess>,
}

impl RaftNode {
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.api_addr)
    }
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::pid)
    }
}

pub struct CoordinatorCluster {
    pub dir: PathBuf,
    pub nodes: Vec<RaftNode>,
    pub token: String,
    pub ca_pem: Vec<u8>,
    binaries: Binaries,
    options: RaftClusterOptions,
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl CoordinatorCluster {
    /// Starts `options.nodes` coordinators under `dir` and waits until all are voters.
    pub async fn start(dir: &Path, options: RaftClusterOptions) -> Result<CoordinatorCluster> {
        let binaries = Binaries::locate()?;
        let mut nodes = Vec::new();
        for index in 0..options.nodes {
            let id = index as u64 + 1;
            let data_dir = dir.join(format!("node-{id}"));
            std::fs::create_dir_all(&data_dir)?;
            nodes.push(RaftNode {
                id,
                api_addr: format!("127.0.0.1:{}", free_port()?),
                raft_addr: format!("127.0.0.1:{}", free_port()?),
                config_path: dir.join(format!("node-{id}.toml")),
                log_path: dir.join(format!("node-{id}.log")),
                data_dir,
                process: None,
            });
        }
        let mut cluster = CoordinatorCluster {
            dir: dir.to_path_buf(),
            nodes,
            token: String::new(),
            ca_pem: Vec::new(),
            binaries,
            options,
        };
        cluster.write_config(0, None)?;
        cluster.spawn(0)?;
        let first = cluster.nodes[0].data_dir.clone();
        let (token, ca) = wait_until("node 1 to bootstrap", NODE_START_TIMEOUT, || async {
            match (
                std::fs::read_to_string(first.join("admin-token")),
                std::fs::read(first.join("ca.pem")),
            ) {
                (Ok(token), Ok(ca)) if !token.trim().is_empty() => {
                    Probe::Ready((token.trim().to_string(), ca))
                }
                _ => Probe::Pending("no admin-token / ca.pem yet".into()),
            }
        })
        .await?;
        cluster.token = token;
        cluster.ca_pem = ca;
        let join = cluster.nodes[0].endpoint();
        for index in 1..cluster.nodes.len() {
            std::fs::write(
                cluster.nodes[index].data_dir.join("admin-token"),
                &cluster.token,
            )?;
            std::fs::write(
                cluster.nodes[index].data_dir.join("ca.pem"),
                &cluster.ca_pem,
            )?;
            cluster.write_config(index, Some(&join))?;
            cluster.spawn(index)?;
            // One join at a time, as an operator would add nodes.
            cluster
                .wait_voters(index + 1)
                .await
                .with_context(|| cluster.log_tail(index))?;
        }
        Ok(cluster)
    }

    fn write_config(&self, index: usize, join: Option<&str>) -> Result<()> {
        let node = &self.nodes[index];
        let join = join
            .map(|j| format!("join = \"{j}\"\n"))
            .unwrap_or_default();
        let text = format!(
            "node_id = {}\ncluster_id = \"testbed-raft\"\ndata_dir = \"{}\"\nlisten = \"{}\"\nraft_listen = \"{}\"\n\
             snapshot_every_entries = {}\nlog_entries_kept = {}\n{join}",
            node.id,
            node.data_dir.display(),
            node.api_addr,
            node.raft_addr,
            self.options.snapshot_every_entries,
            self.options.log_entries_kept,
        );
        std::fs::write(&node.config_path, text)
            .with_context(|| format!("writing {}", node.config_path.display()))
    }

    fn spawn(&mut self, index: usize) -> Result<()> {
        let node = &mut self.nodes[index];
        let config = node.config_path.display().to_string();
        let process = ChildProcess::spawn(
            &format!("coordinator-{}", node.id),
            &self.binaries.coordinator,
            &["--config", &config],
            &node.log_path,
        )?;
        node.process = Some(process);
        Ok(())
    }

    /// An admin client for node `index` (0-based).
    pub fn admin(&self, index: usize) -> Result<AdminClient> {
        admin::client(
            admin::channel(&self.nodes[index].endpoint(), &self.ca_pem)?,
            Some(&self.token),
        )
    }

    /// The cluster status as node `index` sees it.
    pub async fn status(&self, index: usize) -> Result<pb::ClusterStatusResponse> {
        let mut client = self.admin(index)?;
        Ok(client
            .cluster_status(pb::ClusterStatusRequest {})
            .await?
            .into_inner())
    }

    /// Waits until some live node reports a leader, and returns the leader's index.
    pub async fn leader(&self, timeout: Duration) -> Result<usize> {
        wait_until("a leader", timeout, || async {
            // The leader named in the highest term, confirmed by that node in that term: a node
            // just restarted may name itself from its persisted vote of an older term.
            let mut named: Option<(u64, u64)> = None; // (term, leader id)
            for (index, node) in self.nodes.iter().enumerate() {
                if node.process.is_none() {
                    continue;
                }
                if let Ok(status) = self.status(index).await
                    && status.leader_id != 0
                    && named.is_none_or(|(term, _)| status.term > term)
                {
                    named = Some((status.term, status.leader_id));
                }
            }
            if let Some((term, id)) = named
                && let Some(leader) = self.nodes.iter().position(|n| n.id == id)
                && self.nodes[leader].process.is_some()
                && self
                    .status(leader)
                    .await
                    .is_ok_and(|s| s.leader_id == id && s.term >= term)
            {
                return Probe::Ready(leader);
            }
            Probe::Pending("no live node names a live leader".into())
        })
        .await
    }

    /// Waits until the leader counts `voters` voters, all caught up.
    pub async fn wait_voters(&self, voters: usize) -> Result<()> {
        wait_until(
            &format!("{voters} caught-up voters"),
            NODE_START_TIMEOUT,
            || async {
                // Found again on every attempt: leadership may move meanwhile.
                let leader = match self.leader(LEADER_LOOKUP).await {
                    Ok(leader) => leader,
                    Err(e) => return Probe::Pending(format!("{e:#}")),
                };
                match self.status(leader).await {
                    Ok(s)
                        if s.leader_id == self.nodes[leader].id
                            && s.nodes
                                .iter()
                                .filter(|n| n.role == "voter" && n.lag == 0)
                                .count()
                                == voters =>
                    {
                        Probe::Ready(())
                    }
                    Ok(s) => Probe::Pending(format!("{:?}", s.nodes)),
                    Err(e) => Probe::Pending(e.to_string()),
                }
            },
        )
        .await
    }

    /// kill -9 of node `index`.
    pub fn kill_hard(&mut self, index: usize) {
        if let Some(mut process) = self.nodes[index].process.take() {
            process.kill_hard();
        }
    }

    /// Starts node `index` again on its data directory (after a kill or a wipe).
    pub fn restart(&mut self, index: usize) -> Result<()> {
        if self.nodes[index].process.is_some() {
            bail!("node {} is still running", self.nodes[index].id);
        }
        self.spawn(index)
    }

    /// Deletes node `index`'s Raft data (keeping the admin token and CA a joining node needs) and
    /// makes it join through `via` on its next start.
    pub fn wipe(&mut self, index: usize, via: usize) -> Result<()> {
        let data = self.nodes[index].data_dir.clone();
        for entry in std::fs::read_dir(&data)? {
            let path = entry?.path();
            let keep = path
                .file_name()
                .is_some_and(|n| n == "admin-token" || n == "ca.pem");
            if !keep {
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        let join = self.nodes[via].endpoint();
        self.write_config(index, Some(&join))
    }

    /// The tail of node `index`'s log, for failure messages.
    pub fn log_tail(&self, index: usize) -> String {
        crate::process::log_tail(&self.nodes[index].log_path, 30)
    }
}
