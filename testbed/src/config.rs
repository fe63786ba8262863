//! The config files the testbed writes for each node, following docs/interfaces.md (the contract),
//! and the layout of a cluster directory:
//!
//! ```text
//!   <dir>/coordinator/config.toml   <dir>/coordinator/data/{ca.pem,admin-token,join-token,…}
//!   <dir>/coordinator-2/…, coordinator-3/…   (replicated coordinators: nodes 2 and 3 join node 1)
//!   <dir>/agent-a/config.toml       <dir>/agent-a/data/{host.json,tls/,instances/<name>/…}
//!   <dir>/logs/{coordinator,coordinator-2,agent-a,…}.log   (stdout + stderr, appended on restart)
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::binaries::Binaries;
use crate::slot::{Slot, ZONES};
use serde::Serialize;

/// `kvs-coordinator --config` file.
#[derive(Debug, Clone, Serialize)]
pub struct CoordinatorConfig {
    pub node_id: u64,
    pub cluster_id: String,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub raft_listen: SocketAddr,
    pub tls_names: Vec<String>,
    pub agent_silence_timeout: String,
    /// `https://HOST:PORT` of a running node: join its cluster on first start (nodes 2 and 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    /// Probe and failover settings; unset keys keep the coordinator's defaults.
    #[serde(flatten)]
    pub ha: HaSettings,
}

/// The coordinator's probe and failover keys (DESIGN.md §4); `None`: the coordinator's default.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HaSettings {
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_millis")]
    pub probe_interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_millis")]
    pub probe_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_millis")]
    pub confirmation_window: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_millis")]
    pub fence_after: Option<Duration>,
}

/// A duration as humantime text in milliseconds (`"1500ms"`).
fn as_millis<S: serde::Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_str(&format!("{}ms", d.as_millis())),
        None => s.serialize_none(),
    }
}

impl CoordinatorConfig {
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }
    pub fn admin_token_file(&self) -> PathBuf {
        self.data_dir.join("admin-token")
    }
    pub fn join_token_file(&self) -> PathBuf {
        self.data_dir.join("join-token")
    }
    /// The node's SSH probe key (the coordinator creates it on first start).
    pub fn probe_key_file(&self) -> PathBuf {
        self.data_dir.join("probe_key")
    }
    /// `https://IP:PORT`: what agents and the CLI connect to.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.listen)
    }
}

/// `kvs-agent --config` file.
#[derive(Debug, Clone, Serialize)]
pub struct AgentConfig {
    /// The one coordinator (a single-node cluster); otherwise `coordinators`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<String>,
    /// Every coordinator node (a replicated cluster); the agent follows the leader.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub coordinators: Vec<String>,
    pub ca_file: PathBuf,
    pub join_token_file: PathBuf,
    pub zone: String,
    pub address: Ipv4Addr,
    pub hostname: String,
    /// Same as `address` here: all hosts share `lo`, so engines need distinct addresses too.
    pub engine_bind: Ipv4Addr,
    pub data_dir: PathBuf,
    pub report_interval: String,
    /// The host's SSH public host key (netns mode: the host's own sshd); unset: the agent default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_host_key_file: Option<PathBuf>,
    /// The host's own boot id file (every testbed host shares the machine's kernel; the
    /// `reboot_host` fault writes a new id).
    pub boot_id_file: PathBuf,
    /// Engines get SIGTERM from the kernel when their agent exits (`make dev`: nothing outlives
    /// the dev cluster); unset: the agent default (off: engines survive an agent restart).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub engines_exit_with_agent: bool,
    pub engines: EnginePaths,
}

/// The `[engines]` table: binaries the agent offers in its catalog.
#[derive(Debug, Clone, Serialize)]
pub struct EnginePaths {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valkey_server: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_server: Option<PathBuf>,
}

impl AgentConfig {
    /// Points the agent at `endpoints`: `coordinator` for one, `coordinators` for several.
    pub fn set_coordinators(&mut self, endpoints: &[String]) {
        if let [one] = endpoints {
            self.coordinator = Some(one.clone());
            self.coordinators.clear();
        } else {
            self.coordinator = None;
            self.coordinators = endpoints.to_vec();
        }
    }
    /// Where the agent keeps an instance's files (engine.conf, users.acl, engine.log, AOF).
    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("instances").join(name)
    }
    /// The host certificate and key the agent got at Register (also used by its TLS fronts).
    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }
}

/// Writes `value` as TOML to `path` (creating parent directories).
pub fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = toml::to_string(value).context("rendering TOML")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A port on `address` that nothing listens on right now (the OS picks it).
pub fn free_port(address: Ipv4Addr) -> Result<u16> {
    let listener = std::net::TcpListener::bind((address, 0))
        .with_context(|| format!("binding {address}:0"))?;
    Ok(listener.local_addr()?.port())
}

/// `preferred` if it is free on `address`, else any free port.
pub fn port_preferring(address: Ipv4Addr, preferred: u16) -> Result<u16> {
    match std::net::TcpListener::bind((address, preferred)) {
        Ok(_) => Ok(preferred),
        Err(_) => free_port(address),
    }
}

/// The coordinator's config for a cluster in `dir` on `slot` (slot 0 prefers ports 7400/7500).
pub fn coordinator_config(dir: &Path, slot: &Slot, cluster_id: &str) -> Result<CoordinatorConfig> {
    coordinator_node_config(dir, slot, cluster_id, 0)
}

/// `<dir>/coordinator` for node 1 (index 0), `<dir>/coordinator-N` for node N.
pub fn coordinator_dir(dir: &Path, index: usize) -> PathBuf {
    match index {
        0 => dir.join("coordinator"),
        _ => dir.join(format!("coordinator-{}", index + 1)),
    }
}

/// Coordinator node `index`'s config (node id `index + 1`, address 127.0.k.(1 + index)); nodes
/// after the first join the first one.
pub fn coordinator_node_config(
    dir: &Path,
    slot: &Slot,
    cluster_id: &str,
    index: usize,
) -> Result<CoordinatorConfig> {
    let address = slot.coordinator_node_address(index);
    let (listen_port, raft_port) = if slot.index == 0 && index == 0 {
        (
            port_preferring(address, 7400)?,
            port_preferring(address, 7500)?,
        )
    } else {
        (free_port(address)?, free_port(address)?)
    };
    Ok(CoordinatorConfig {
        node_id: index as u64 + 1,
        cluster_id: cluster_id.to_string(),
        data_dir: coordinator_dir(dir, index).join("data"),
        listen: (address, listen_port).into(),
        raft_listen: (address, raft_port).into(),
        tls_names: vec!["localhost".into()],
        agent_silence_timeout: "5s".into(),
        join: None,
        ha: HaSettings::default(),
    })
}

/// Agent `index`'s config: zone a/b/c, the slot's host address for both fronts and engines.
pub fn agent_config(
    dir: &Path,
    slot: &Slot,
    index: usize,
    coordinator: &CoordinatorConfig,
    binaries: &Binaries,
) -> AgentConfig {
    let zone = ZONES[index];
    let address = slot.host_address(index);
    AgentConfig {
        coordinator: Some(coordinator.endpoint()),
        coordinators: Vec::new(),
        ca_file: coordinator.ca_file(),
        join_token_file: coordinator.join_token_file(),
        zone: zone.to_string(),
        address,
        hostname: format!("host-{zone}"),
        engine_bind: address,
        data_dir: dir.join(format!("agent-{zone}")).join("data"),
        report_interval: "1s".into(),
        ssh_host_key_file: None,
        boot_id_file: dir.join(format!("agent-{zone}")).join("boot_id"),
        engines_exit_with_agent: false,
        engines: EnginePaths {
            valkey_server: binaries.valkey_server.clone(),
            redis_server: binaries.redis_server.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_config_renders_the_contract_keys() {
        let config = AgentConfig {
            coordinator: Some("https://127.0.0.1:7400".into()),
            coordinators: Vec::new(),
            ca_file: "/d/ca.pem".into(),
            join_token_file: "/d/join-token".into(),
            zone: "a".into(),
            address: Ipv4Addr::new(127, 0, 0, 11),
            hostname: "host-a".into(),
            engine_bind: Ipv4Addr::new(127, 0, 0, 11),
            data_dir: "/d/agent".into(),
            report_interval: "1s".into(),
            ssh_host_key_file: None,
            boot_id_file: "/d/agent/boot_id".into(),
            engines_exit_with_agent: false,
            engines: EnginePaths {
                valkey_server: Some("/usr/local/bin/valkey-server".into()),
                redis_server: None,
            },
        };
        let text = toml::to_string(&config).expect("toml");
        assert!(text.contains("address = \"127.0.0.11\""), "{text}");
        assert!(
            text.contains("[engines]\nvalkey_server = \"/usr/local/bin/valkey-server\""),
            "{text}"
        );
        assert!(!text.contains("redis_server"), "{text}");
        assert!(
            !text.contains("ssh_host_key_file"),
            "unset keys keep the agent default"
        );
    }

    #[test]
    fn agents_get_one_coordinator_or_all_of_them() {
        let slot = Slot::claim_any().expect("slot");
        let dir = Path::new("/d");
        let binaries = Binaries {
            coordinator: "/bin/kvs-coordinator".into(),
            agent: "/bin/kvs-agent".into(),
            cli: None,
            testbed: None,
            valkey_server: None,
            redis_server: None,
        };
        let first = coordinator_config(dir, &slot, "c1").expect("config");
        let second = coordinator_node_config(dir, &slot, "c1", 1).expect("config");
        assert_eq!(second.node_id, 2);
        assert_eq!(second.listen.ip(), slot.coordinator_node_address(1));
        assert!(second.data_dir.starts_with("/d/coordinator-2"));
        let mut agent = agent_config(dir, &slot, 0, &first, &binaries);
        let one = toml::to_string(&agent).expect("toml");
        assert!(
            one.contains("coordinator = \"https://") && !one.contains("coordinators"),
            "{one}"
        );
        agent.set_coordinators(&[first.endpoint(), second.endpoint()]);
        let many = toml::to_string(&agent).expect("toml");
        assert!(
            many.contains("coordinators = [") && !many.contains("coordinator = "),
            "{many}"
        );
    }

    #[test]
    fn ha_settings_render_only_what_is_set() {
        let slot = Slot::claim_any().expect("slot");
        let dir = Path::new("/d");
        let mut config = coordinator_config(dir, &slot, "c1").expect("config");
        let text = toml::to_string(&config).expect("toml");
        assert!(
            !text.contains("probe_") && !text.contains("fence_after"),
            "{text}"
        );
        config.ha = HaSettings {
            probe_interval: Some(Duration::from_millis(1500)),
            probe_user: Some("kvs-test-ssh".into()),
            fence_after: Some(Duration::from_secs(5)),
            ..HaSettings::default()
        };
        let text = toml::to_string(&config).expect("toml");
        assert!(text.contains("probe_interval = \"1500ms\""), "{text}");
        assert!(text.contains("probe_user = \"kvs-test-ssh\""), "{text}");
        assert!(text.contains("fence_after = \"5000ms\""), "{text}");
        assert!(!text.contains("confirmation_window"), "{text}");
    }
}
