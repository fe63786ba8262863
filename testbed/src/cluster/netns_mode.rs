//! The netns mode of a [`Cluster`]: the coordinator and every host in a network namespace of their
//! own (see [`crate::netns`] for the wiring and how the test reaches the services), each host with
//! its own sshd ([`crate::sshd`]) that the coordinator probes and can restart the agent through.
//!
//! ```text
//!   Cluster::start (netns)
//!     ├─ Network::create: kvstbN-net + bridge; kvstbN-coord 10.77.N.1; kvstbN-{a,b,c} 10.77.N.11-13
//!     │    (replicated: also kvstbN-coord2 10.77.N.2 and kvstbN-coord3 10.77.N.3)
//!     ├─ coordinator: ip netns exec kvstbN-coord kvs-coordinator (API :7400, Raft :7500)
//!     ├─ probe keys: <coordinator data>/probe_key.pub of every node (generated if node 1 made none)
//!     ├─ per host: ssh host key, authorized_keys (forced command), sshd on 10.77.N.1x:22
//!     └─ per host: ip netns exec kvstbN-x /bin/sh agent-run.sh  (writes agent.pid, execs kvs-agent,
//!        engines on 127.0.0.1 inside the namespace)
//! ```
//!
//! `<dir>/agent-x/restart-agent.sh` is what the forced command `restart-agent` runs: SIGTERM (and
//! SIGCONT, in case the agent is frozen) to the PID in `agent.pid` if that process runs this host's
//! config, SIGKILL after 5 s, then a detached `agent-run.sh`, still inside the host's namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use super::{Cluster, Node};
use crate::config::{AgentConfig, CoordinatorConfig, HaSettings};
use crate::netns::{self, Netns, Network};
use crate::slot::{Slot, ZONES};
use crate::sshd::{self, Sshd, SshdSpec};
use crate::wait::{Probe, wait_until};

/// Last octet of the coordinator's address (10.77.N.1; nodes 2 and 3: .2, .3); hosts are 11-13.
const COORDINATOR_OCTET: u8 = 1;
const FIRST_HOST_OCTET: u8 = 11;
/// Fixed ports: every namespace has its own port space.
const API_PORT: u16 = 7400;
const RAFT_PORT: u16 = 7500;
pub const SSH_PORT: u16 = 22;
/// The probe user on every host (see [`crate::sshd`]: forced-commands-only root).
pub const PROBE_USER: &str = crate::sshd::PROBE_LOGIN;
/// Bound on the coordinator writing its probe key once it serves.
const PROBE_KEY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the cluster's hosts are networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Loopback addresses 127.0.k.x in the test's own namespace (works without root).
    #[default]
    Loopback,
    /// A network namespace per host, with sshd and the network faults (needs root and iproute2).
    Netns,
    /// Netns when it can run here, else loopback (saying which faults are then unavailable).
    Auto,
}

/// Netns if asked for and possible; Loopback otherwise (with a log line saying what is lost).
pub(super) fn resolve(mode: NetworkMode) -> Result<NetworkMode> {
    let why_not = netns::available().and_then(|()| sshd::available());
    match (mode, why_not) {
        (NetworkMode::Loopback, _) => Ok(NetworkMode::Loopback),
        (_, Ok(())) => Ok(NetworkMode::Netns),
        (NetworkMode::Netns, Err(why)) => anyhow::bail!("netns mode cannot run here: {why}"),
        (NetworkMode::Auto, Err(why)) => {
            tracing::warn!(
                "netns mode unavailable ({why}): loopback mode instead; cut_off/heal and sshd \
                 per host (SSH probes, restart-agent) need netns; kill_host, engine and agent \
                 faults still work"
            );
            Ok(NetworkMode::Loopback)
        }
    }
}

/// The netns-mode parts of a cluster: namespaces, the sshd of every host, the launch scripts.
pub(super) struct NetnsHosts {
    pub network: Network,
    /// Coordinator node i's namespace (`coord`, `coord2`, `coord3`).
    pub coordinators: Vec<Netns>,
    pub hosts: Vec<Netns>,
    /// Host i's sshd, once started.
    pub sshd: Vec<Option<Sshd>>,
}

impl NetnsHosts {
    /// Creates the namespaces for `coordinators` coordinator nodes and `agents` hosts.
    pub fn create(slot: &Slot, agents: usize, coordinators: usize) -> Result<NetnsHosts> {
        let mut network = Network::create(slot)?;
        let mut namespaces = Vec::new();
        for index in 0..coordinators {
            namespaces
                .push(network.add_member(&coordinator_label(index), coordinator_octet(index))?);
        }
        let mut hosts = Vec::new();
        for (index, zone) in ZONES.iter().enumerate().take(agents) {
            hosts.push(network.add_member(zone, host_octet(index))?);
        }
        Ok(NetnsHosts {
            network,
            coordinators: namespaces,
            hosts,
            sshd: (0..agents).map(|_| None).collect(),
        })
    }

    pub fn coordinator_address(&self, index: usize) -> Ipv4Addr {
        self.network.address(coordinator_octet(index))
    }

    pub fn host_address(&self, index: usize) -> Ipv4Addr {
        self.network.address(host_octet(index))
    }

    /// Coordinator node `index`'s config: fixed ports on its namespace address, probes on port 22
    /// as root.
    pub fn coordinator_config(
        &self,
        dir: &Path,
        cluster_id: &str,
        ha: &HaSettings,
        index: usize,
    ) -> CoordinatorConfig {
        let address = self.coordinator_address(index);
        let mut ha = ha.clone();
        ha.probe_port = Some(SSH_PORT);
        ha.probe_user = Some(PROBE_USER.into());
        CoordinatorConfig {
            node_id: index as u64 + 1,
            cluster_id: cluster_id.to_string(),
            data_dir: crate::config::coordinator_dir(dir, index).join("data"),
            listen: SocketAddr::from((address, API_PORT)),
            raft_listen: SocketAddr::from((address, RAFT_PORT)),
            tls_names: vec!["localhost".into()],
            agent_silence_timeout: "5s".into(),
            join: None,
            ha,
        }
    }

    /// Host `index`'s address, engines on its own loopback, and its sshd's host key.
    pub fn adapt_agent_config(&self, config: &mut AgentConfig, index: usize, dir: &Path) {
        config.address = self.host_address(index);
        config.engine_bind = Ipv4Addr::LOCALHOST;
        config.ssh_host_key_file = Some(ssh_dir(dir, index).join("ssh_host_ed25519_key.pub"));
    }

    /// Coordinator node `index`, launched inside its namespace.
    pub fn coordinator_node(&self, node: Node, program: &Path, index: usize) -> Node {
        let config = node.config_path.to_string_lossy().into_owned();
        let args = ip_exec(
            &self.coordinators[index],
            &[&program.to_string_lossy(), "--config", &config],
        );
        node.launched_with(&netns::ip_program(), args, None)
    }

    /// Host `index`'s agent node: writes its launch and restart scripts and launches it through
    /// them inside the host's namespace, with a PID file.
    pub fn agent_node(&self, node: Node, program: &Path, index: usize, dir: &Path) -> Result<Node> {
        let host_dir = dir.join(format!("agent-{}", ZONES[index]));
        let scripts = AgentScripts::write(&host_dir, program, &node.config_path, &node.log_path)?;
        let run = scripts.run.to_string_lossy().into_owned();
        let args = ip_exec(&self.hosts[index], &["/bin/sh", &run]);
        Ok(node.launched_with(&netns::ip_program(), args, Some(scripts.pid_file)))
    }
}

/// The namespace member label of coordinator node `index`: `coord`, `coord2`, `coord3`.
pub(super) fn coordinator_label(index: usize) -> String {
    match index {
        0 => "coord".into(),
        _ => format!("coord{}", index + 1),
    }
}

fn coordinator_octet(index: usize) -> u8 {
    COORDINATOR_OCTET + u8::try_from(index).expect("at most three coordinators")
}

fn host_octet(index: usize) -> u8 {
    FIRST_HOST_OCTET + u8::try_from(index).expect("at most three hosts")
}

fn ssh_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("agent-{}", ZONES[index])).join("ssh")
}

fn ip_exec(netns: &Netns, command: &[&str]) -> Vec<String> {
    ["netns", "exec", &netns.name]
        .iter()
        .chain(command)
        .map(|s| s.to_string())
        .collect()
}

/// `agent-run.sh`, `restart-agent.sh` and `agent.pid` of one host.
struct AgentScripts {
    run: PathBuf,
    pid_file: PathBuf,
}

impl AgentScripts {
    fn write(host_dir: &Path, agent: &Path, config: &Path, log: &Path) -> Result<AgentScripts> {
        std::fs::create_dir_all(host_dir)?;
        let run = host_dir.join("agent-run.sh");
        let restart = host_dir.join("restart-agent.sh");
        let pid_file = host_dir.join("agent.pid");
        for path in [&run, &pid_file, agent, config, log] {
            let text = path.to_string_lossy();
            ensure!(
                !text.contains(['"', '\'', ' ', '\\', '$', '`']),
                "{text}: the host scripts need paths without quotes or spaces"
            );
        }
        let rust_log = std::env::var("RUST_LOG")
            .ok()
            .filter(|v| {
                v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "=,_:-".contains(c))
            })
            .unwrap_or_else(|| "info".into());
        std::fs::write(
            &run,
            format!(
                "#!/bin/sh\n# kvs-testbed: starts this host's kvs-agent, recording its PID.\n\
                 export NO_COLOR=1\nexport RUST_LOG={rust_log}\necho $$ > {pid}\n\
                 exec {agent} --config {config}\n",
                pid = pid_file.display(),
                agent = agent.display(),
                config = config.display(),
            ),
        )?;
        std::fs::write(
            &restart,
            format!(
                r#"#!/bin/sh
# kvs-testbed: restarts this host's kvs-agent as `systemctl restart kvs-agent` would.
pid=$(cat {pid} 2>/dev/null)
alive() {{ [ -r /proc/$1/stat ] && [ "$(sed 's/.*) //' /proc/$1/stat | cut -c1)" != Z ]; }}
ours() {{ tr '\0' ' ' < /proc/$1/cmdline 2>/dev/null | grep -qF -- {config}; }}
if [ -n "$pid" ] && alive "$pid" && ours "$pid"; then
  kill -TERM "$pid"; kill -CONT "$pid"
  i=0
  while alive "$pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if alive "$pid"; then kill -KILL "$pid"; fi
fi
setsid /bin/sh {run} >> {log} 2>&1 < /dev/null &
echo "kvs-agent restarted"
"#,
                pid = pid_file.display(),
                config = config.display(),
                run = run.display(),
                log = log.display(),
            ),
        )?;
        Ok(AgentScripts { run, pid_file })
    }
}

impl Cluster {
    /// Netns mode, after the coordinators serve: every host's sshd, authorizing every coordinator
    /// node's probe key.
    pub(super) async fn start_sshds(&mut self) -> Result<()> {
        let Some(hosts) = self.netns.as_ref() else {
            return Ok(());
        };
        let mut probe_public_key = String::new();
        for index in 0..self.coordinator_configs.len() {
            let key = self.probe_key_path_of(index);
            let public = PathBuf::from(format!("{}.pub", key.display()));
            let found = wait_until("the coordinator's probe key", PROBE_KEY_TIMEOUT, || {
                let exists = public.exists();
                async move {
                    if exists {
                        Probe::Ready(())
                    } else {
                        Probe::Pending(format!("no probe_key.pub of node {} yet", index + 1))
                    }
                }
            })
            .await;
            if found.is_err() && !key.exists() && index == 0 {
                tracing::warn!(key = %key.display(), "the coordinator wrote no probe key; the testbed generates one (are its probes wired?)");
                sshd::keygen(&key, "kvs-probe (testbed)")?;
            }
            let line = std::fs::read_to_string(&public)
                .with_context(|| format!("reading {}", public.display()))?;
            probe_public_key.push_str(line.trim());
            probe_public_key.push('\n');
        }
        let mut started = Vec::new();
        for (index, zone) in ZONES.iter().enumerate().take(hosts.hosts.len()) {
            let spec = SshdSpec {
                name: format!("sshd-{zone}"),
                dir: ssh_dir(&self.dir, index),
                listen: SocketAddr::from((hosts.host_address(index), SSH_PORT)),
                user: PROBE_USER.into(),
                probe_public_key: probe_public_key.clone(),
                restart_script: self.dir.join(format!("agent-{zone}/restart-agent.sh")),
                log_path: self.dir.join(format!("logs/sshd-{zone}.log")),
                command_log: self.dir.join(format!("logs/ssh-commands-{zone}.log")),
            };
            let mut sshd = Sshd::prepare(spec)?;
            sshd.start(Some(&hosts.hosts[index]), &self.dialer).await?;
            started.push(sshd);
        }
        if let Some(hosts) = self.netns.as_mut() {
            hosts.sshd = started.into_iter().map(Some).collect();
        }
        Ok(())
    }

    /// Kills every host's sshd and every process left in the namespaces, then deletes them.
    pub(super) fn teardown_netns(&mut self) {
        if let Some(hosts) = self.netns.as_mut() {
            for sshd in hosts.sshd.iter_mut().flatten() {
                sshd.kill();
            }
            hosts.network.teardown();
        }
    }

    /// The coordinator's probe private key (`<data_dir>/probe_key`; several: node 1's).
    pub fn probe_key_path(&self) -> PathBuf {
        self.probe_key_path_of(0)
    }

    /// Coordinator node `index`'s probe private key.
    pub fn probe_key_path_of(&self, index: usize) -> PathBuf {
        self.coordinator_configs[index].probe_key_file()
    }
}
