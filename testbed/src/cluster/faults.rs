//! Fault injection on a running [`Cluster`], for the failure-handling tests (DESIGN.md §4).
//!
//! ```text
//!   fault                          loopback mode              netns mode
//!   kill_host / restart_host       agent + engines (by PID)   every PID in the host's namespace
//!   cut_off / heal                 -                          the host's switch port down / up
//!   cut_off_coordinator / heal_…   -                          the coordinator's switch port
//!   cut_off_coordinator_node(i)    -                          node i's switch port
//!   kill / stop / restart node i   coordinators.rs            same
//!   kill_engine_on (-9)            yes                        yes
//!   freeze_engine_on / thaw_…      SIGSTOP / SIGCONT          same
//!   kill_agent (-9) / start_agent  yes                        yes
//!   freeze_agent / thaw_agent      SIGSTOP / SIGCONT          same
//!   ssh (as the coordinator)       -                          ssh from the coordinator's namespace
//! ```
//!
//! Engines are found by their working directory (the agent runs each in its instance directory on
//! that host), so a fault can target the primary or a standby of an instance on a given host, even
//! when the engine is frozen and cannot answer INFO. Everything is by PID; nothing by name.

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use nix::sys::signal::Signal;

use super::{Cluster, NetworkMode, PROBE_USER, SSH_PORT};
use crate::netns::Netns;
use crate::netns::dial::Dialer;
use crate::process;
use crate::slot::ZONES;

/// Bound on one `ssh` run (connect timeout inside, plus the remote command).
pub const SSH_TIMEOUT: Duration = Duration::from_secs(20);

impl Cluster {
    /// Loopback or Netns (never Auto: resolved at start).
    pub fn network_mode(&self) -> NetworkMode {
        if self.netns.is_some() {
            NetworkMode::Netns
        } else {
            NetworkMode::Loopback
        }
    }

    /// Where the test's own clients dial from.
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Host `index`'s namespace (netns mode).
    pub fn host_netns(&self, index: usize) -> Option<&Netns> {
        self.netns.as_ref()?.hosts.get(index)
    }

    /// The coordinator's namespace (netns mode; several coordinators: node 1's).
    pub fn coordinator_netns(&self) -> Option<&Netns> {
        self.coordinator_node_netns(0)
    }

    /// Coordinator node `index`'s namespace (netns mode).
    pub fn coordinator_node_netns(&self, index: usize) -> Option<&Netns> {
        self.netns.as_ref()?.coordinators.get(index)
    }

    /// The namespace the test's clients dial from (netns mode).
    pub fn client_netns(&self) -> Option<&Netns> {
        Some(self.netns.as_ref()?.network.client())
    }

    /// A command that runs where the test's clients run (netns mode: `ip netns exec <net> …`),
    /// for redis-cli, kvs and the like; bounded by the caller, killed on drop.
    pub fn client_command(&self, program: &str) -> tokio::process::Command {
        let mut command = match self.client_netns() {
            Some(netns) => {
                let mut c = tokio::process::Command::new(crate::netns::ip_program());
                c.args(["netns", "exec", &netns.name, program]);
                c
            }
            None => tokio::process::Command::new(program),
        };
        command.kill_on_drop(true);
        command
    }

    /// The index of the host with `address` (as a URL names it).
    pub fn host_index(&self, address: &str) -> Option<usize> {
        self.agent_configs
            .iter()
            .position(|a| a.address.to_string() == address)
    }

    /// The index of the host the coordinator registered as `host_id` (its address from ListHosts).
    pub async fn host_index_of_id(&self, host_id: &str) -> Result<usize> {
        let hosts = self
            .leader_admin()
            .await?
            .list_hosts(kvs_proto::pb::ListHostsRequest {})
            .await
            .context("ListHosts")?
            .into_inner()
            .hosts;
        let address = hosts
            .iter()
            .find(|h| h.id == host_id)
            .map(|h| h.address.clone())
            .with_context(|| format!("the coordinator lists no host {host_id}"))?;
        self.host_index(&address)
            .with_context(|| format!("no testbed host has the address {address} of {host_id}"))
    }

    /// `kill -9` of every process of host `index`: as if the machine lost power. Returns how many
    /// processes were killed.
    pub fn kill_host(&mut self, index: usize) -> Result<usize> {
        let agent = self.agents.get_mut(index).context("no such host")?;
        let mut victims: Vec<u32> = agent.pid().into_iter().collect();
        victims.extend(agent.pid().map_or(Vec::new(), |p| {
            process::descendants(p).iter().map(|d| d.pid).collect()
        }));
        victims.extend(process::processes_in_dir(
            &self.agent_configs[index].data_dir,
        ));
        if let Some(hosts) = self.netns.as_mut() {
            if let Some(sshd) = hosts.sshd[index].as_mut() {
                victims.extend(sshd.pid());
                sshd.kill();
            }
            victims.extend(hosts.hosts[index].pids());
        }
        victims.sort_unstable();
        victims.dedup();
        for &pid in &victims {
            process::signal(pid, Signal::SIGKILL);
        }
        agent.kill_hard();
        let left = self.netns.as_ref().map_or(0, |h| h.hosts[index].kill_all());
        tracing::info!(
            host = ZONES[index],
            killed = victims.len() + left,
            "host killed"
        );
        Ok(victims.len() + left)
    }

    /// Starts a killed host again: its sshd (netns mode), then its agent on the same data dir.
    pub async fn restart_host(&mut self, index: usize) -> Result<()> {
        if let Some(hosts) = self.netns.as_mut()
            && let Some(sshd) = hosts.sshd[index].as_mut()
        {
            sshd.start(Some(&hosts.hosts[index]), &self.dialer).await?;
        }
        self.start_agent(index)
    }

    /// A host reboot: every process killed (as `kill_host`), a new boot id, then its sshd and
    /// agent started again on the same data dir. (The page cache survives here, so the AOF is
    /// whole; the agent only knows the host rebooted.)
    pub async fn reboot_host(&mut self, index: usize) -> Result<()> {
        self.kill_host(index)?;
        let file = &self
            .agent_configs
            .get(index)
            .context("no such host")?
            .boot_id_file;
        let previous = std::fs::read_to_string(file).unwrap_or_default();
        let boot = previous
            .trim()
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        std::fs::write(file, format!("testbed-boot-{}-{boot}\n", ZONES[index]))
            .with_context(|| format!("writing {}", file.display()))?;
        tracing::info!(host = ZONES[index], boot, "host rebooted (new boot id)");
        self.restart_host(index).await
    }

    /// Cuts host `index` off the network: its switch port goes down; packets are dropped silently.
    pub fn cut_off(&self, index: usize) -> Result<()> {
        self.set_port(ZONES.get(index).context("no such host")?, false)
    }

    /// Reconnects host `index`.
    pub fn heal(&self, index: usize) -> Result<()> {
        self.set_port(ZONES.get(index).context("no such host")?, true)
    }

    /// Cuts the coordinator (node 1 of several) off from every host and from the test's clients.
    pub fn cut_off_coordinator(&self) -> Result<()> {
        self.cut_off_coordinator_node(0)
    }

    pub fn heal_coordinator(&self) -> Result<()> {
        self.heal_coordinator_node(0)
    }

    /// Cuts coordinator node `index` off from its peers, the hosts and the test's clients: its
    /// switch port goes down.
    pub fn cut_off_coordinator_node(&self, index: usize) -> Result<()> {
        self.check_coordinator_index(index)?;
        self.set_port(&super::netns_mode::coordinator_label(index), false)
    }

    /// Reconnects coordinator node `index`.
    pub fn heal_coordinator_node(&self, index: usize) -> Result<()> {
        self.check_coordinator_index(index)?;
        self.set_port(&super::netns_mode::coordinator_label(index), true)
    }

    fn set_port(&self, label: &str, up: bool) -> Result<()> {
        let hosts = self
            .netns
            .as_ref()
            .ok_or_else(|| anyhow!("cutting {label} off needs netns mode (root and iproute2)"))?;
        hosts.network.set_link(label, up)
    }

    /// PID of agent `index`'s current incarnation (also one restarted over SSH).
    pub fn agent_pid(&self, index: usize) -> Option<u32> {
        self.agents.get(index)?.pid()
    }

    /// SIGSTOP of agent `index` (alive but silent); returns its PID.
    pub fn freeze_agent(&self, index: usize) -> Result<u32> {
        self.signal_agent(index, Signal::SIGSTOP)
    }

    /// SIGCONT of agent `index`.
    pub fn thaw_agent(&self, index: usize) -> Result<u32> {
        self.signal_agent(index, Signal::SIGCONT)
    }

    fn signal_agent(&self, index: usize, signal: Signal) -> Result<u32> {
        let agent = self.agents.get(index).context("no such host")?;
        let pid = agent
            .pid()
            .with_context(|| format!("{} is not running", agent.name))?;
        process::signal(pid, signal);
        tracing::info!(node = %agent.name, pid, ?signal, "agent signalled");
        Ok(pid)
    }

    /// PID of instance `name`'s engine on host `index` (primary or standby), by its working dir.
    pub fn engine_pid_on(&self, index: usize, name: &str) -> Result<u32> {
        let config = self.agent_configs.get(index).context("no such host")?;
        let dir = config.instance_dir(name);
        let engines: Vec<u32> = process::processes_in_dir(&dir)
            .into_iter()
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
                    let file = exe.file_name().unwrap_or_default().to_string_lossy();
                    file.starts_with("valkey-server") || file.starts_with("redis-server")
                })
            })
            .collect();
        match engines.as_slice() {
            [pid] => Ok(*pid),
            [] => bail!(
                "no engine of {name} runs on host {} ({})",
                config.zone,
                dir.display()
            ),
            many => bail!(
                "several engines of {name} on host {}: {many:?}",
                config.zone
            ),
        }
    }

    /// `kill -9` of instance `name`'s engine on host `index`; its PID.
    pub fn kill_engine_on(&self, index: usize, name: &str) -> Result<u32> {
        self.signal_engine(index, name, Signal::SIGKILL)
    }

    /// SIGSTOP of instance `name`'s engine on host `index` (hung, not dead); its PID.
    pub fn freeze_engine_on(&self, index: usize, name: &str) -> Result<u32> {
        self.signal_engine(index, name, Signal::SIGSTOP)
    }

    /// SIGCONT of instance `name`'s engine on host `index`.
    pub fn thaw_engine_on(&self, index: usize, name: &str) -> Result<u32> {
        self.signal_engine(index, name, Signal::SIGCONT)
    }

    fn signal_engine(&self, index: usize, name: &str, signal: Signal) -> Result<u32> {
        let pid = self.engine_pid_on(index, name)?;
        process::signal(pid, signal);
        tracing::info!(name, host = ZONES[index], pid, ?signal, "engine signalled");
        Ok(pid)
    }

    /// Runs `ssh <probe user>@<host index> COMMAND` from the coordinator's namespace with the
    /// coordinator's probe key, pinning the host key the host's sshd has (netns mode).
    pub async fn ssh(&self, index: usize, command: &str) -> Result<Output> {
        let hosts = self
            .netns
            .as_ref()
            .context("ssh to a host needs netns mode")?;
        let sshd = hosts.sshd[index].as_ref().context("the host has no sshd")?;
        let address = hosts.host_address(index);
        let host_key = std::fs::read_to_string(sshd.host_public_key_file())?;
        let known_hosts = sshd.spec.dir.join("known_hosts");
        std::fs::write(&known_hosts, format!("{address} {}", host_key.trim()))?;
        let mut ssh = tokio::process::Command::new(crate::netns::ip_program());
        ssh.args([
            "netns",
            "exec",
            &hosts.coordinators[0].name,
            "ssh",
            "-F",
            "/dev/null",
            "-i",
        ])
        .arg(self.probe_key_path())
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-p",
            &SSH_PORT.to_string(),
            &format!("{PROBE_USER}@{address}"),
        ])
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        tokio::time::timeout(SSH_TIMEOUT, ssh.output())
            .await
            .map_err(|_| anyhow!("ssh {address} {command:?} did not finish in {SSH_TIMEOUT:?}"))?
            .context("running ssh")
    }

    /// Whether a TCP connection from the coordinator's namespace to `addr` succeeds in `timeout`
    /// (netns mode; loopback mode dials from the test's own namespace).
    pub async fn reachable_from_coordinator(&self, addr: SocketAddr, timeout: Duration) -> bool {
        let dialer = self
            .coordinator_netns()
            .map_or(Dialer::Direct, Dialer::from);
        dialer.tcp_within(addr, timeout).await.is_ok()
    }

    /// Host `index`'s sshd address (netns mode).
    pub fn ssh_address(&self, index: usize) -> Result<SocketAddr> {
        let hosts = self
            .netns
            .as_ref()
            .context("sshd per host needs netns mode")?;
        ensure!(index < hosts.hosts.len(), "no host {index}");
        Ok(SocketAddr::from((hosts.host_address(index), SSH_PORT)))
    }

    /// Forced commands host `index`'s sshd ran (`<unix time> <command>` lines).
    pub fn ssh_command_log(&self, index: usize) -> String {
        self.netns
            .as_ref()
            .and_then(|h| h.sshd.get(index)?.as_ref())
            .map(|s| s.command_log())
            .unwrap_or_default()
    }
}
