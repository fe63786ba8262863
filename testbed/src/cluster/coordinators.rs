//! The coordinator nodes of a replicated [`Cluster`] (`coordinators: 3`): joining nodes 2 and 3,
//! per-node admin clients and status, and the per-node faults.
//!
//! ```text
//!   join_coordinators: for node 2, 3: copy admin-token + ca.pem ─► start (join = node 1)
//!                                     ─► wait: a caught-up voter (one join at a time)
//!   kill_coordinator_node(i)   SIGKILL by PID          stop_coordinator_node(i)   SIGTERM, bounded
//!   terminate_coordinator_node(i, grace): SIGTERM, then SIGKILL after grace; did it exit by itself
//!   start_coordinator_node(i)  same data dir; serves   restart_coordinator_node(i) kill -9 + start
//!   wait_coordinator_caught_up(i): the leader counts node i a voter with lag 0, and node i itself
//!     names that leader and has applied the leader's last log index
//!   cut_off_coordinator_node(i) / heal_…(i): faults.rs (its switch port, netns mode)
//! ```
//!
//! Node i has node id i + 1. Every node has its own probe key (every host authorizes them all).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use kvs_proto::pb;
use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::Cluster;
use crate::admin::AdminClient;
use crate::config::CoordinatorConfig;
use crate::netns::dial::Dialer;
use crate::process;
use crate::wait::{Probe, wait_until};

/// Bound on a coordinator node joining, or serving and catching up after a restart.
pub const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);

impl Cluster {
    /// How many coordinator nodes the cluster has.
    pub fn coordinator_count(&self) -> usize {
        self.coordinator_configs.len()
    }

    /// Coordinator node `index`'s config.
    pub fn coordinator_node_config(&self, index: usize) -> Option<&CoordinatorConfig> {
        self.coordinator_configs.get(index)
    }

    /// Every coordinator node's endpoint, in node order (what the agents are given).
    pub fn coordinator_endpoints(&self) -> Vec<String> {
        self.coordinator_configs
            .iter()
            .map(CoordinatorConfig::endpoint)
            .collect()
    }

    /// PID of coordinator node `index`'s current process.
    pub fn coordinator_pid(&self, index: usize) -> Option<u32> {
        self.coordinators.get(index)?.pid()
    }

    /// The index of the current leader (found through ClusterStatus, bounded by `LEADER_WAIT`).
    pub async fn leader_index(&self) -> Result<usize> {
        self.coordinators_handle()?.leader().await
    }

    /// An admin client for node `index` itself (no leader lookup), dialing from the test.
    pub fn admin_node(&self, index: usize) -> Result<AdminClient> {
        self.coordinators_handle()?.client(index)
    }

    /// An admin client for node `index` that dials from inside the node's own namespace, so it
    /// reaches the node even while it is cut off (loopback mode: the same as [`Self::admin_node`]).
    pub fn admin_inside(&self, index: usize) -> Result<AdminClient> {
        let config = self.node_config(index)?;
        let dialer = self
            .coordinator_node_netns(index)
            .map_or(Dialer::Direct, Dialer::from);
        let channel = dialer.admin_channel(&config.endpoint(), &self.ca_pem)?;
        crate::admin::client(channel, Some(&self.admin_token))
    }

    /// ClusterStatus as node `index` sees it (bounded by `STATUS_TIMEOUT`).
    pub async fn cluster_status(&self, index: usize) -> Result<pb::ClusterStatusResponse> {
        self.coordinators_handle()?.status(index).await
    }

    /// At start: nodes 2 and 3 join node 1, one at a time, each until it is a caught-up voter.
    pub(super) async fn join_coordinators(&mut self) -> Result<()> {
        let first = self.node_config(0)?.clone();
        for index in 1..self.coordinator_count() {
            let config = self.node_config(index)?.clone();
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            for (from, to) in [
                (first.admin_token_file(), config.admin_token_file()),
                (first.ca_file(), config.ca_file()),
            ] {
                std::fs::copy(&from, &to)
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            }
            self.start_coordinator_node(index).await?;
            self.wait_coordinator_caught_up(index, NODE_READY_TIMEOUT)
                .await
                .with_context(|| format!("coordinator node {} joining", index + 1))?;
            tracing::info!(node = index + 1, "coordinator node joined");
        }
        Ok(())
    }

    /// Starts coordinator node `index` on its data dir and waits until it answers ClusterStatus.
    pub async fn start_coordinator_node(&mut self, index: usize) -> Result<()> {
        self.check_coordinator_index(index)?;
        if self.leader.is_none() {
            ensure!(index == 0, "node 1 must bootstrap first");
            return self.start_coordinator().await;
        }
        self.coordinators[index].start()?;
        let leader = self.coordinators_handle()?.clone();
        let listen = self.coordinator_configs[index].listen;
        let dialer = self.dialer.clone();
        let node = &mut self.coordinators[index];
        wait_until(
            &format!("coordinator node {} to serve", index + 1),
            NODE_READY_TIMEOUT,
            || {
                let alive = node.check_alive();
                let (leader, dialer) = (leader.clone(), dialer.clone());
                async move {
                    if let Err(err) = alive {
                        return Probe::Fatal(err);
                    }
                    if let Err(err) = dialer.tcp(listen).await {
                        return Probe::Pending(format!("connect {listen}: {err}"));
                    }
                    match leader.status(index).await {
                        Ok(status) => Probe::Ready(status),
                        Err(err) => Probe::Pending(format!("{err:#}")),
                    }
                }
            },
        )
        .await?;
        Ok(())
    }

    /// `kill -9` of coordinator node `index`.
    pub fn kill_coordinator_node(&mut self, index: usize) -> Result<()> {
        self.check_coordinator_index(index)?;
        self.coordinators[index].kill_hard();
        Ok(())
    }

    /// SIGTERM to coordinator node `index` (SIGKILL after [`process::TERMINATE_GRACE`]).
    pub async fn stop_coordinator_node(&mut self, index: usize) -> Result<()> {
        self.terminate_coordinator_node(index, process::TERMINATE_GRACE)
            .await
            .map(|_| ())
    }

    /// SIGTERM to coordinator node `index`, SIGKILL if it has not exited after `grace`; whether it
    /// exited on its own.
    pub async fn terminate_coordinator_node(
        &mut self,
        index: usize,
        grace: Duration,
    ) -> Result<bool> {
        self.check_coordinator_index(index)?;
        let node = &mut self.coordinators[index];
        let pid = node
            .pid()
            .with_context(|| format!("{} is not running", node.name))?;
        process::signal(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while process::alive(pid).is_some() && Instant::now() < deadline {
            tokio::time::sleep(crate::wait::POLL_INTERVAL).await;
        }
        let exited = process::alive(pid).is_none();
        node.stop().await;
        tracing::info!(
            node = index + 1,
            pid,
            exited_on_sigterm = exited,
            "coordinator node stopped"
        );
        Ok(exited)
    }

    /// `kill -9` of coordinator node `index`, a restart on the same data dir, and a wait until it
    /// is a caught-up voter again.
    pub async fn restart_coordinator_node(&mut self, index: usize) -> Result<()> {
        self.kill_coordinator_node(index)?;
        self.start_coordinator_node(index).await?;
        self.wait_coordinator_caught_up(index, NODE_READY_TIMEOUT)
            .await
    }

    /// Waits until the leader counts node `index` a voter with lag 0 and the node itself names
    /// that leader and has applied the leader's last log index.
    pub async fn wait_coordinator_caught_up(
        &mut self,
        index: usize,
        timeout: Duration,
    ) -> Result<()> {
        let id = self.node_config(index)?.node_id;
        let handle = self.coordinators_handle()?.clone();
        let node = &mut self.coordinators[index];
        wait_until(
            &format!("coordinator node {} to be a caught-up voter", index + 1),
            timeout,
            || {
                let alive = node.check_alive();
                let handle = handle.clone();
                async move {
                    if let Err(err) = alive {
                        return Probe::Fatal(err);
                    }
                    let leader = match handle.find_leader().await {
                        Ok(leader) => leader,
                        Err(why) => return Probe::Pending(why),
                    };
                    let (led, own) = match (handle.status(leader).await, handle.status(index).await) {
                        (Ok(led), Ok(own)) => (led, own),
                        (Err(err), _) | (_, Err(err)) => return Probe::Pending(format!("{err:#}")),
                    };
                    let seen = led.nodes.iter().find(|n| n.id == id);
                    match seen {
                        Some(n)
                            if n.role == "voter"
                                && n.lag == 0
                                && own.leader_id == led.leader_id
                                && own.last_applied_index >= led.last_log_index =>
                        {
                            Probe::Ready(())
                        }
                        _ => Probe::Pending(format!(
                            "leader {} sees {seen:?} (last log {}); node {id} names leader {}, applied {}",
                            led.leader_id, led.last_log_index, own.leader_id, own.last_applied_index
                        )),
                    }
                }
            },
        )
        .await
    }

    fn node_config(&self, index: usize) -> Result<&CoordinatorConfig> {
        self.coordinator_configs
            .get(index)
            .ok_or_else(|| anyhow!("no coordinator node {index} (0-based)"))
    }

    pub(super) fn check_coordinator_index(&self, index: usize) -> Result<()> {
        self.node_config(index).map(|_| ())
    }
}
