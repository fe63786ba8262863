//! The agent's configuration: one typed struct read from TOML (`kvs-agent --config PATH`).
//!
//! Defaults are defined once, in `Default`; `validate` turns a parsed file into a config the rest
//! of the agent can trust (zone set, engines on loopback, sane intervals), with errors that name
//! the offending key. The file format is the contract in `docs/interfaces.md`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::supervisor::RestartPolicy;

/// Shortest accepted `report_interval`: faster reporting only loads the coordinator.
const REPORT_INTERVAL_MIN: Duration = Duration::from_millis(50);
/// Longest accepted `report_interval`: slower than this and the coordinator thinks we are silent.
const REPORT_INTERVAL_MAX: Duration = Duration::from_secs(60);

/// The coordinator endpoint when none is configured.
const DEFAULT_COORDINATOR: &str = "https://127.0.0.1:7400";
/// Where Linux publishes the current boot's id.
const DEFAULT_BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";
/// Where OpenSSH keeps the ed25519 host key.
const DEFAULT_SSH_HOST_KEY_FILE: &str = "/etc/ssh/ssh_host_ed25519_key.pub";

/// Everything `kvs-agent` reads from its config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// One coordinator gRPC endpoint (`https://HOST:PORT`); the same as a one-element
    /// `coordinators`. Set at most one of the two.
    pub coordinator: Option<String>,
    /// Coordinator gRPC endpoints (any nodes): tried in turn on failure; the agent follows the
    /// leader they point to. After `validate`, always the full list (`coordinator` folded in).
    pub coordinators: Vec<String>,
    /// The cluster CA bundle (PEM), used to verify the coordinator on first registration.
    pub ca_file: PathBuf,
    /// File holding the cluster join token (used by Register).
    pub join_token_file: Option<PathBuf>,
    /// The join token itself, instead of `join_token_file`.
    pub join_token: Option<String>,
    /// Availability zone of this host (placement spreads primaries and standbys across zones).
    pub zone: String,
    /// The address clients and peers reach this host at; client TLS fronts listen here.
    pub address: IpAddr,
    /// Host name for the registration and the certificate SAN; empty: the OS host name.
    pub hostname: String,
    /// Where engines listen: loopback only, so clients can reach them only through the TLS front.
    pub engine_bind: IpAddr,
    /// `host.json`, `tls/`, `desired.json` and `instances/<name>/` live here.
    pub data_dir: PathBuf,
    /// How often observed state (INFO of every engine, host metrics) is reported.
    #[serde(with = "humantime_serde")]
    pub report_interval: Duration,
    /// The host's SSH public host key, sent at registration so the coordinators' probes can pin
    /// it. A missing file: an empty key (the host cannot be probed), with a warning.
    pub ssh_host_key_file: PathBuf,
    /// Engine binaries; unset ones are searched in `PATH`.
    pub engines: EnginesConfig,
    /// Grace period between SIGTERM and SIGKILL when an engine is stopped.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// Restarts allowed within `restart_budget_window` before an engine is crash-looping.
    pub restart_budget_max: u32,
    /// The sliding window the restart budget is counted over.
    #[serde(with = "humantime_serde")]
    pub restart_budget_window: Duration,
    /// Delay before the second restart in a window (the first is immediate); doubles after that.
    #[serde(with = "humantime_serde")]
    pub restart_backoff_min: Duration,
    /// Cap on the doubling restart delay.
    #[serde(with = "humantime_serde")]
    pub restart_backoff_max: Duration,
    /// How long a crash-looping engine waits before it is tried again.
    #[serde(with = "humantime_serde")]
    pub crash_loop_retry_interval: Duration,
    /// The kernel's boot id (changes at every boot). A primary whose engine last ran under
    /// another boot restarts fenced until the coordinator acts: its AOF may miss the last second
    /// of writes its standby acknowledged. Unreadable: no reboot detection (a warning).
    pub boot_id_file: PathBuf,
    /// Dev clusters only: the kernel sends each engine SIGTERM when this agent exits, even by
    /// SIGKILL, so nothing outlives a stopped dev cluster. Off in production: an engine keeps
    /// serving across an agent restart and the next agent adopts it.
    pub engines_exit_with_agent: bool,
}

/// Explicit engine binary paths (`[engines]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnginesConfig {
    /// Path of `valkey-server`; unset: search `PATH`.
    pub valkey_server: Option<PathBuf>,
    /// Path of `redis-server`; unset: search `PATH`.
    pub redis_server: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        let restart = RestartPolicy::default();
        Self {
            coordinator: None,
            coordinators: Vec::new(),
            ca_file: "/etc/kvs/ca.pem".into(),
            join_token_file: None,
            join_token: None,
            zone: String::new(),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            hostname: String::new(),
            engine_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            data_dir: "/var/lib/kvs/agent".into(),
            report_interval: Duration::from_secs(1),
            ssh_host_key_file: DEFAULT_SSH_HOST_KEY_FILE.into(),
            engines: EnginesConfig::default(),
            stop_timeout: Duration::from_secs(5),
            restart_budget_max: restart.budget_max,
            restart_budget_window: restart.budget_window,
            restart_backoff_min: restart.backoff_min,
            restart_backoff_max: restart.backoff_max,
            crash_loop_retry_interval: restart.crash_loop_retry_interval,
            boot_id_file: DEFAULT_BOOT_ID_FILE.into(),
            engines_exit_with_agent: false,
        }
    }
}

/// A config file that cannot be used, naming the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid config file {path}: {error}")]
    Parse {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },
    #[error("invalid `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Config {
    /// Reads and validates a TOML config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let config: Config = toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            error: Box::new(error),
        })?;
        config.validate()
    }

    /// Checks every field and fills in derived defaults (the OS host name).
    pub fn validate(mut self) -> Result<Config, ConfigError> {
        if self.zone.trim().is_empty() {
            return Err(invalid("zone", "must be set (e.g. zone = \"a\")"));
        }
        match (
            self.coordinator.take().filter(|c| !c.is_empty()),
            self.coordinators.is_empty(),
        ) {
            (Some(_), false) => {
                return Err(invalid(
                    "coordinators",
                    "set either coordinator or coordinators, not both",
                ));
            }
            (Some(one), true) => self.coordinators = vec![one],
            (None, true) => self.coordinators = vec![DEFAULT_COORDINATOR.to_string()],
            (None, false) => {}
        }
        for endpoint in &self.coordinators {
            if !endpoint.starts_with("https://") {
                return Err(invalid(
                    "coordinators",
                    format!("'{endpoint}' must be an https:// URL"),
                ));
            }
        }
        if !self.engine_bind.is_loopback() {
            return Err(invalid(
                "engine_bind",
                format!(
                    "{} is not a loopback address; engines must only be reachable through the TLS front",
                    self.engine_bind
                ),
            ));
        }
        if self.address.is_unspecified() {
            return Err(invalid(
                "address",
                "must be the address clients reach this host at, not 0.0.0.0",
            ));
        }
        if !(REPORT_INTERVAL_MIN..=REPORT_INTERVAL_MAX).contains(&self.report_interval) {
            return Err(invalid(
                "report_interval",
                format!(
                    "{:?} is outside {REPORT_INTERVAL_MIN:?}..={REPORT_INTERVAL_MAX:?}",
                    self.report_interval
                ),
            ));
        }
        if self.restart_budget_max == 0 {
            return Err(invalid("restart_budget_max", "must be at least 1"));
        }
        if self.restart_backoff_min > self.restart_backoff_max {
            return Err(invalid(
                "restart_backoff_min",
                "must not exceed restart_backoff_max",
            ));
        }
        if self.join_token.as_deref().is_some_and(|t| !t.is_empty())
            && self
                .join_token_file
                .as_deref()
                .is_some_and(|p| !p.as_os_str().is_empty())
        {
            return Err(invalid(
                "join_token",
                "set either join_token or join_token_file, not both",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must be set"));
        }
        if self.hostname.is_empty() {
            self.hostname = hostname::get()
                .map_err(|e| {
                    invalid(
                        "hostname",
                        format!("not set and the OS host name is unreadable: {e}"),
                    )
                })?
                .to_string_lossy()
                .into_owned();
        }
        Ok(self)
    }

    /// The SSH host public key line, trimmed; empty (with a warning) if it cannot be read.
    pub fn read_ssh_host_key(&self) -> String {
        match std::fs::read_to_string(&self.ssh_host_key_file) {
            Ok(text) => {
                let line = text.lines().map(str::trim).find(|l| !l.is_empty());
                line.unwrap_or_default().to_string()
            }
            Err(error) => {
                tracing::warn!(path = %self.ssh_host_key_file.display(), %error, "no SSH host key; the coordinators cannot probe this host");
                String::new()
            }
        }
    }

    /// The restart policy the supervisor applies.
    pub fn restart_policy(&self) -> RestartPolicy {
        RestartPolicy {
            budget_max: self.restart_budget_max,
            budget_window: self.restart_budget_window,
            backoff_min: self.restart_backoff_min,
            backoff_max: self.restart_backoff_max,
            crash_loop_retry_interval: self.crash_loop_retry_interval,
        }
    }

    /// The join token, from `join_token` or `join_token_file` (trimmed).
    pub fn read_join_token(&self) -> Result<String, ConfigError> {
        if let Some(token) = self.join_token.as_deref().filter(|t| !t.is_empty()) {
            return Ok(token.trim().to_string());
        }
        let Some(path) = self
            .join_token_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
        else {
            return Err(invalid(
                "join_token",
                "no join token configured (set join_token or join_token_file)",
            ));
        };
        let token = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(invalid(
                "join_token_file",
                format!("{} is empty", path.display()),
            ));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        toml::from_str::<Config>(text)
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn contract_example_parses() {
        let config = parse(
            r#"
            coordinator = "https://127.0.0.1:7400"
            ca_file = "/etc/kvs/ca.pem"
            join_token_file = "/etc/kvs/join-token"
            zone = "a"
            address = "127.0.0.11"
            hostname = "host-a"
            engine_bind = "127.0.0.1"
            data_dir = "/var/lib/kvs/agent"
            report_interval = "1s"
            [engines]
            valkey_server = "/usr/local/bin/valkey-server"
            redis_server = "/usr/bin/redis-server"
            "#,
        )
        .expect("valid");
        assert_eq!(config.address.to_string(), "127.0.0.11");
        assert_eq!(config.report_interval, Duration::from_secs(1));
        assert_eq!(
            config.engines.redis_server.as_deref(),
            Some(Path::new("/usr/bin/redis-server"))
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse("zone = \"\"").unwrap_err();
        assert!(err.contains("`zone`"), "{err}");
        let err = parse("zone = \"a\"\nengine_bind = \"10.0.0.1\"").unwrap_err();
        assert!(err.contains("engine_bind"), "{err}");
        let err = parse("zone = \"a\"\nreport_interval = \"5ms\"").unwrap_err();
        assert!(err.contains("report_interval"), "{err}");
        let err = parse("zone = \"a\"\nreport_interval = \"soon\"").unwrap_err();
        assert!(err.contains("report_interval"), "{err}");
        let err = parse("zone = \"a\"\nbogus = 1").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn coordinators_one_or_many() {
        let one = parse("zone = \"a\"\ncoordinator = \"https://10.0.0.1:7400\"").expect("one");
        assert_eq!(one.coordinators, ["https://10.0.0.1:7400"]);
        assert_eq!(one.coordinator, None);
        assert_eq!(one.clone().validate().expect("idempotent"), one);
        let many = parse(
            "zone = \"a\"\ncoordinators = [\"https://10.0.0.1:7400\", \"https://10.0.0.2:7400\"]",
        )
        .expect("many");
        assert_eq!(many.coordinators.len(), 2);
        let none = parse("zone = \"a\"").expect("default");
        assert_eq!(none.coordinators, ["https://127.0.0.1:7400"]);
        let both =
            parse("zone = \"a\"\ncoordinator = \"https://a:1\"\ncoordinators = [\"https://b:1\"]")
                .unwrap_err();
        assert!(both.contains("coordinators"), "{both}");
        let http = parse("zone = \"a\"\ncoordinators = [\"http://a:1\"]").unwrap_err();
        assert!(http.contains("https://"), "{http}");
    }

    #[test]
    fn ssh_host_key_is_read_or_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pub");
        std::fs::write(&path, "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA root@host\n").expect("write");
        let mut config = parse("zone = \"a\"").expect("valid");
        assert_eq!(
            config.ssh_host_key_file,
            Path::new("/etc/ssh/ssh_host_ed25519_key.pub")
        );
        config.ssh_host_key_file = path;
        assert_eq!(
            config.read_ssh_host_key(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA root@host"
        );
        config.ssh_host_key_file = dir.path().join("missing.pub");
        assert_eq!(config.read_ssh_host_key(), "");
    }

    #[test]
    fn hostname_defaults_to_os() {
        let config = parse("zone = \"a\"").expect("valid");
        assert!(!config.hostname.is_empty());
    }
}
