//! Node lifecycle of a [`Cluster`]: (re)starting the (first) coordinator and waiting until it
//! serves, killing and restarting agents, waiting for every host to be up. The other coordinator
//! nodes of a replicated cluster: `coordinators.rs`.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use kvs_proto::pb;

use super::{COORDINATOR_READY_TIMEOUT, Cluster, Coordinators, HOSTS_READY_TIMEOUT, Node};
use crate::wait::{Probe, wait_until};

impl Cluster {
    /// Starts the coordinator (node 1 of several) again on its data dir and waits until it
    /// serves the admin API (ListHosts answers, through the leader).
    pub async fn start_coordinator(&mut self) -> Result<()> {
        self.coordinators[0].start()?;
        let ca_file = self.coordinator_configs[0].ca_file();
        let token_file = self.coordinator_configs[0].admin_token_file();
        let listen = self.coordinator_configs[0].listen;
        let dialer = self.dialer.clone();
        let node = &mut self.coordinators[0];
        wait_until(
            "the coordinator to bootstrap and listen",
            COORDINATOR_READY_TIMEOUT,
            || {
                let alive = node.check_alive();
                let files = ca_file.exists() && token_file.exists();
                let ca_display = ca_file.display().to_string();
                let dialer = dialer.clone();
                async move {
                    if let Err(err) = alive {
                        return Probe::Fatal(err);
                    }
                    if !files {
                        return Probe::Pending(format!(
                            "{ca_display} / admin-token not written yet"
                        ));
                    }
                    match dialer.tcp(listen).await {
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
        if self.leader.is_none() {
            let channels = self
                .coordinator_configs
                .iter()
                .map(|c| self.dialer.admin_channel(&c.endpoint(), &self.ca_pem))
                .collect::<Result<Vec<_>>>()?;
            let ids = self.coordinator_configs.iter().map(|c| c.node_id).collect();
            self.leader = Some(Coordinators::new(channels, ids, self.admin_token.clone()));
        }
        let leader = self.coordinators_handle()?.clone();
        wait_until(
            "the coordinator to answer ListHosts",
            COORDINATOR_READY_TIMEOUT,
            || {
                let leader = leader.clone();
                async move {
                    let mut client = match leader.leader_client().await {
                        Ok(client) => client,
                        Err(err) => return Probe::Pending(format!("{err:#}")),
                    };
                    match client.list_hosts(pb::ListHostsRequest {}).await {
                        Ok(_) => Probe::Ready(()),
                        Err(status) => Probe::Pending(format!("ListHosts: {status}")),
                    }
                }
            },
        )
        .await
    }

    /// `kill -9` of the coordinator (node 1 of several).
    pub fn kill_coordinator(&mut self) {
        self.coordinators[0].kill_hard();
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
        let leader = self.coordinators_handle()?.clone();
        let nodes = &mut self.agents;
        wait_until(&format!("{count} hosts to be up"), timeout, || {
            let alive: Result<Vec<()>> = nodes.iter_mut().map(Node::check_alive).collect();
            let leader = leader.clone();
            async move {
                if let Err(err) = alive {
                    return Probe::Fatal(err);
                }
                let mut client = match leader.leader_client().await {
                    Ok(client) => client,
                    Err(err) => return Probe::Pending(format!("{err:#}")),
                };
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
}
