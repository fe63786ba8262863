//! The coordinator's configuration: a typed struct with defaults defined once, read from TOML
//! (`deploy/config/coordinator.example.toml` documents every key) and checked by `validate`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::control::HaConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Unique id of this node within the cluster.
    pub node_id: u64,
    /// The cluster this node belongs to; a data dir of another cluster is refused.
    pub cluster_id: String,
    /// Where the Raft log, state machine, CA bundle and tokens live.
    pub data_dir: PathBuf,
    /// TLS gRPC address for the Admin, Agent and Config services.
    pub listen: SocketAddr,
    /// Peer-only Raft gRPC address (mutual TLS).
    pub raft_listen: SocketAddr,
    /// Extra subject names of this node's server certificate (the listen IP is always included).
    pub tls_names: Vec<String>,
    /// File holding the admin bearer token; default `<data_dir>/admin-token`.
    pub admin_token_file: Option<PathBuf>,
    /// File holding the agents' join token; default `<data_dir>/join-token`.
    pub join_token_file: Option<PathBuf>,
    /// No report from an agent for this long: its host is "silent".
    #[serde(with = "humantime_serde")]
    pub agent_silence_timeout: Duration,
    /// How often the leader compares observed and desired state.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Address other nodes, agents and the CLI use for this node's API (default: `listen`).
    /// Set it when `listen` is a wildcard such as 0.0.0.0.
    pub advertise_api: Option<SocketAddr>,
    /// Address peers use for this node's Raft service (default: `raft_listen`).
    pub advertise_raft: Option<SocketAddr>,
    /// Join an existing cluster through this node's API URL (`https://HOST:PORT`) on first start,
    /// instead of bootstrapping a new cluster. Needs the cluster's admin token in
    /// `admin_token_file` and its CA bundle in `join_ca_file`. Ignored once this node has state.
    pub join: Option<String>,
    /// The CA bundle to trust the node named by `join` (default: `<data_dir>/ca.pem`).
    pub join_ca_file: Option<PathBuf>,
    /// How often every node probes every host over SSH.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Deadline of one probe (connect, handshake, authenticate, run).
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// SSH port and user of the probes on every host.
    pub probe_port: u16,
    pub probe_user: String,
    /// The probe's ed25519 key; created on first start (default `<data_dir>/probe_key`, with the
    /// public half in `probe_key.pub` for the hosts' authorized_keys).
    pub probe_key_file: Option<PathBuf>,
    /// A host must be unreachable from every vantage point, its agent silent and its standbys'
    /// links down for this whole window before its instances fail over.
    #[serde(with = "humantime_serde")]
    pub confirmation_window: Duration,
    /// A primary that heard neither the coordinator leader nor its standby for this long stops
    /// taking writes (at least 2 s; `confirmation_window` must exceed it by 5 s; decision 0007).
    #[serde(with = "humantime_serde")]
    pub fence_after: Duration,
    /// Take a Raft snapshot after this many applied entries (bounds the log and what a restarting
    /// node replays).
    pub snapshot_every_entries: u64,
    /// Entries kept behind the last snapshot, so a briefly lagging follower catches up from the
    /// log rather than from a whole snapshot.
    pub log_entries_kept: u64,
    /// A standby lagging its primary by more than this is not promoted without
    /// `--allow-data-loss`.
    pub max_lag_bytes: u64,
    /// A primary restarted after a host reboot waits this long for a standby that may hold the
    /// acknowledged writes its AOF lost, while that standby is down, before resuming from its own
    /// data (decision 0006).
    #[serde(with = "humantime_serde")]
    pub reboot_standby_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 1,
            cluster_id: "kvs".into(),
            data_dir: PathBuf::from("/var/lib/kvs/coordinator"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            raft_listen: SocketAddr::from(([127, 0, 0, 1], 7500)),
            tls_names: vec!["localhost".into()],
            admin_token_file: None,
            join_token_file: None,
            agent_silence_timeout: Duration::from_secs(5),
            reconcile_interval: Duration::from_millis(500),
            advertise_api: None,
            advertise_raft: None,
            join: None,
            join_ca_file: None,
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            probe_port: 22,
            probe_user: "kvs-probe".into(),
            probe_key_file: None,
            confirmation_window: Duration::from_secs(120),
            fence_after: Duration::from_secs(2),
            max_lag_bytes: 1024 * 1024,
            reboot_standby_wait: Duration::from_secs(600),
            snapshot_every_entries: crate::raft::SNAPSHOT_LOGS_SINCE_LAST,
            log_entries_kept: crate::raft::LOGS_KEPT_AFTER_SNAPSHOT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str::<Config>(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::Invalid("node_id must be 1 or more".into()));
        }
        if self.cluster_id.is_empty()
            || !self
                .cluster_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(ConfigError::Invalid(format!(
                "cluster_id {:?} must be letters, digits and dashes",
                self.cluster_id
            )));
        }
        if self.listen == self.raft_listen && self.listen.port() != 0 {
            return Err(ConfigError::Invalid(
                "listen and raft_listen must differ".into(),
            ));
        }
        if self.agent_silence_timeout < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "agent_silence_timeout must be at least 1s".into(),
            ));
        }
        if let Some(join) = &self.join
            && !join.starts_with("https://")
        {
            return Err(ConfigError::Invalid(format!(
                "join {join:?} must be an https:// URL"
            )));
        }
        for (name, addr) in [
            ("advertise_api", self.advertise_api),
            ("advertise_raft", self.advertise_raft),
        ] {
            if let Some(addr) = addr
                && addr.ip().is_unspecified()
            {
                return Err(ConfigError::Invalid(format!(
                    "{name} {addr} must be an address peers can reach"
                )));
            }
        }
        if self.probe_interval.is_zero() || self.probe_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "probe_interval and probe_timeout must be positive".into(),
            ));
        }
        if self.probe_timeout > self.probe_interval {
            return Err(ConfigError::Invalid(format!(
                "probe_timeout ({:?}) must not exceed probe_interval ({:?})",
                self.probe_timeout, self.probe_interval
            )));
        }
        // The HA rules (fence before promotion, window against probes) live in one place, and
        // are checked here, before this node opens its store or joins a cluster.
        self.ha_config()
            .validate()
            .map_err(|e| ConfigError::Invalid(e.0))?;
        if self.snapshot_every_entries == 0 {
            return Err(ConfigError::Invalid(
                "snapshot_every_entries must be positive".into(),
            ));
        }
        if self.reconcile_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "reconcile_interval must be positive".into(),
            ));
        }
        Ok(self)
    }

    /// The HA policy's settings (`control::HaConfig`), from this config's keys.
    pub fn ha_config(&self) -> HaConfig {
        HaConfig {
            confirmation_window: self.confirmation_window,
            probe_interval: self.probe_interval,
            fence_after: self.fence_after,
            max_lag_bytes: self.max_lag_bytes,
            reboot_standby_wait: self.reboot_standby_wait,
            agent_silence_timeout: self.agent_silence_timeout,
            ..HaConfig::default()
        }
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.admin_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin-token"))
    }

    pub fn join_token_path(&self) -> PathBuf {
        self.join_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("join-token"))
    }

    pub fn ca_bundle_path(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }

    pub fn probe_key_path(&self) -> PathBuf {
        self.probe_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("probe_key"))
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.advertise_api.unwrap_or(self.listen)
    }

    pub fn raft_addr(&self) -> SocketAddr {
        self.advertise_raft.unwrap_or(self.raft_listen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        assert!(Config::default().validate().is_ok());
        let bad = Config {
            node_id: 0,
            ..Config::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("node_id"));
        let text = "node_id = 2\ncluster_id = \"c1\"\nagent_silence_timeout = \"3s\"\n";
        let parsed: Config = toml::from_str(text).unwrap();
        assert_eq!(parsed.agent_silence_timeout, Duration::from_secs(3));
        assert!(
            toml::from_str::<Config>("nonsense = 1").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn the_ha_rules_are_checked_before_the_node_starts() {
        // One rule set (HaConfig::validate): what the node would refuse later is refused here.
        let fence_too_late = Config {
            fence_after: Duration::from_secs(116),
            ..Config::default()
        };
        let err = fence_too_late.clone().validate().unwrap_err().to_string();
        assert!(err.contains("fence_after"), "{err}");
        let window_too_short = Config {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            confirmation_window: Duration::from_secs(14),
            fence_after: Duration::from_secs(2),
            ..Config::default()
        };
        let err = window_too_short.clone().validate().unwrap_err().to_string();
        assert!(err.contains("3 probe intervals"), "{err}");
        for config in [Config::default(), window_too_short, fence_too_late] {
            assert_eq!(
                config.clone().validate().is_ok(),
                config.ha_config().validate().is_ok(),
                "the node config and the HA policy agree"
            );
        }
    }
}
