//! Validated domain types, built from the raw `pb` types with `TryFrom` at the boundary.
//!
//! Required fields are plain (non-`Option`) here; anything missing or out of range becomes a
//! [`ProtocolError`] naming the field. Conversions back to `pb` are infallible.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{ProtocolError, names, pb, settings};

/// A validated `CreateInstance` request. The plan name is checked against the catalog by the
/// coordinator (operators can add plans), so here it only has to be present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateInstance {
    pub plan: String,
    pub app: String,
    /// Engine catalog label; `None`: the catalog default.
    pub version: Option<String>,
    pub settings: settings::Settings,
}

impl TryFrom<pb::CreateInstanceRequest> for CreateInstance {
    type Error = ProtocolError;
    fn try_from(req: pb::CreateInstanceRequest) -> Result<Self, ProtocolError> {
        if req.plan.is_empty() {
            return Err(ProtocolError::Missing("plan"));
        }
        let mut settings = settings::Settings::default();
        if let Some(timeout) = req.timeout_seconds {
            settings.timeout_seconds = settings::validate_timeout(timeout)?;
        }
        if !req.maxmemory_policy.is_empty() {
            settings.maxmemory_policy = settings::validate_maxmemory_policy(&req.maxmemory_policy)?;
        }
        settings.notify_keyspace_events =
            settings::validate_keyspace_events(&req.notify_keyspace_events)?;
        Ok(Self {
            plan: req.plan,
            app: names::validate_app(&req.app)?,
            version: (!req.version.is_empty()).then_some(req.version),
            settings,
        })
    }
}

/// A validated `UpdateSettings` request: only the given settings change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SettingsChange {
    pub timeout_seconds: Option<u32>,
    pub maxmemory_policy: Option<String>,
    pub notify_keyspace_events: Option<String>,
}

impl SettingsChange {
    pub fn apply_to(&self, settings: &mut settings::Settings) {
        if let Some(t) = self.timeout_seconds {
            settings.timeout_seconds = t;
        }
        if let Some(p) = &self.maxmemory_policy {
            settings.maxmemory_policy = p.clone();
        }
        if let Some(k) = &self.notify_keyspace_events {
            settings.notify_keyspace_events = k.clone();
        }
    }
}

impl TryFrom<pb::UpdateSettingsRequest> for (String, SettingsChange) {
    type Error = ProtocolError;
    fn try_from(req: pb::UpdateSettingsRequest) -> Result<Self, ProtocolError> {
        let name = names::validate_instance_name(&req.name)?;
        let change = SettingsChange {
            timeout_seconds: req
                .timeout_seconds
                .map(settings::validate_timeout)
                .transpose()?,
            maxmemory_policy: req
                .maxmemory_policy
                .as_deref()
                .map(settings::validate_maxmemory_policy)
                .transpose()?,
            notify_keyspace_events: req
                .notify_keyspace_events
                .as_deref()
                .map(settings::validate_keyspace_events)
                .transpose()?,
        };
        if change == SettingsChange::default() {
            return Err(ProtocolError::invalid("settings", "nothing to change"));
        }
        Ok((name, change))
    }
}

/// An engine binary a host offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engine {
    /// `valkey` or `redis`.
    pub kind: String,
    /// Full version, e.g. `9.0.1`.
    pub version: String,
    /// Catalog label, e.g. `valkey-9`.
    pub label: String,
}

impl TryFrom<pb::EngineInfo> for Engine {
    type Error = ProtocolError;
    fn try_from(e: pb::EngineInfo) -> Result<Self, ProtocolError> {
        if !matches!(e.kind.as_str(), "valkey" | "redis") {
            return Err(ProtocolError::invalid(
                "engines.kind",
                format!("'{}' is not valkey or redis", e.kind),
            ));
        }
        if e.label.is_empty() {
            return Err(ProtocolError::Missing("engines.label"));
        }
        Ok(Self {
            kind: e.kind,
            version: e.version,
            label: e.label,
        })
    }
}

impl From<Engine> for pb::EngineInfo {
    fn from(e: Engine) -> Self {
        Self {
            kind: e.kind,
            version: e.version,
            label: e.label,
        }
    }
}

/// A validated host registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub host_id: Option<String>,
    pub zone: String,
    pub address: IpAddr,
    pub hostname: String,
    pub memory_total_bytes: u64,
    pub engines: Vec<Engine>,
    /// OpenSSH public host key line, pinned by the probes; `None`: the host cannot be probed.
    pub ssh_host_key: Option<String>,
}

impl TryFrom<pb::RegisterRequest> for Registration {
    type Error = ProtocolError;
    fn try_from(req: pb::RegisterRequest) -> Result<Self, ProtocolError> {
        if req.zone.is_empty() {
            return Err(ProtocolError::Missing("zone"));
        }
        let address = req.address.parse().map_err(|_| {
            ProtocolError::invalid("address", format!("'{}' is not an IP address", req.address))
        })?;
        if req.hostname.is_empty() {
            return Err(ProtocolError::Missing("hostname"));
        }
        Ok(Self {
            host_id: (!req.host_id.is_empty()).then_some(req.host_id),
            zone: req.zone,
            address,
            hostname: req.hostname,
            memory_total_bytes: req.memory_total_bytes,
            engines: req
                .engines
                .into_iter()
                .map(Engine::try_from)
                .collect::<Result<_, _>>()?,
            ssh_host_key: validate_ssh_key(&req.ssh_host_key)?,
        })
    }
}

/// An OpenSSH public key line: `<algorithm> <base64> [comment]`.
fn validate_ssh_key(line: &str) -> Result<Option<String>, ProtocolError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let algorithm = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    let known = algorithm.starts_with("ssh-") || algorithm.starts_with("ecdsa-");
    let base64 = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
    if !known || !base64 || line.len() > 16 * 1024 {
        return Err(ProtocolError::invalid(
            "ssh_host_key",
            "not an OpenSSH public key line",
        ));
    }
    Ok(Some(format!("{algorithm} {key}")))
}

/// The role a process plays for its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        match s {
            "primary" => Ok(Role::Primary),
            "standby" => Ok(Role::Standby),
            other => Err(ProtocolError::invalid(
                "role",
                format!("'{other}' is not primary or standby"),
            )),
        }
    }
}

/// Where a standby replicates from: the primary host's client TLS front, reached through a local
/// TLS tunnel the agent opens on `tunnel_port` (the standby engine replicates from the tunnel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub host: IpAddr,
    pub port: u16,
    pub tunnel_port: u16,
}

/// One engine process the coordinator wants on a host. Passwords are secrets: never log them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredProcess {
    pub instance: String,
    pub epoch: u64,
    pub role: Role,
    pub engine_port: u16,
    pub front_port: u16,
    pub engine: String,
    pub maxmemory_bytes: u64,
    pub maxclients: u32,
    pub settings: settings::Settings,
    pub appendonly: bool,
    pub default_password: String,
    pub admin_password: String,
    pub replication_password: String,
    /// Standby only: where to replicate from.
    pub upstream: Option<Upstream>,
    /// Primary with a standby only: fence (refuse client writes) after losing both the
    /// coordinator and the standby for this many seconds. `None`: never fence.
    pub fence_after_seconds: Option<u32>,
    /// Primary only, planned switchover: client writes paused.
    pub pause_writes: bool,
    /// Standby only, planned switchover to this standby: report the offset as it moves.
    pub catch_up: bool,
}

impl std::fmt::Debug for DesiredProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesiredProcess")
            .field("instance", &self.instance)
            .field("epoch", &self.epoch)
            .field("role", &self.role)
            .field("engine_port", &self.engine_port)
            .field("front_port", &self.front_port)
            .field("engine", &self.engine)
            .field("maxmemory_bytes", &self.maxmemory_bytes)
            .field("maxclients", &self.maxclients)
            .field("settings", &self.settings)
            .field("appendonly", &self.appendonly)
            .field("upstream", &self.upstream)
            .field("fence_after_seconds", &self.fence_after_seconds)
            .field("pause_writes", &self.pause_writes)
            .field("catch_up", &self.catch_up)
            .finish_non_exhaustive()
    }
}

fn port(field: &'static str, value: u32) -> Result<u16, ProtocolError> {
    match u16::try_from(value) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(ProtocolError::invalid(
            field,
            format!("{value} is not a port (1-65535)"),
        )),
    }
}

fn secret(field: &'static str, value: String) -> Result<String, ProtocolError> {
    if value.len() < 16 || !value.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ProtocolError::invalid(
            field,
            "must be at least 16 ASCII letters or digits",
        ));
    }
    Ok(value)
}

impl TryFrom<pb::DesiredProcess> for DesiredProcess {
    type Error = ProtocolError;
    fn try_from(p: pb::DesiredProcess) -> Result<Self, ProtocolError> {
        if p.maxmemory_bytes == 0 {
            return Err(ProtocolError::invalid(
                "maxmemory_bytes",
                "must be positive",
            ));
        }
        if p.maxclients == 0 {
            return Err(ProtocolError::invalid("maxclients", "must be positive"));
        }
        if p.engine.is_empty() {
            return Err(ProtocolError::Missing("engine"));
        }
        let role = Role::parse(&p.role)?;
        let upstream = match role {
            Role::Standby => Some(Upstream {
                host: p.upstream_host.parse().map_err(|_| {
                    ProtocolError::invalid(
                        "upstream_host",
                        format!("'{}' is not an IP address", p.upstream_host),
                    )
                })?,
                port: port("upstream_port", p.upstream_port)?,
                tunnel_port: port("tunnel_port", p.tunnel_port)?,
            }),
            Role::Primary => {
                if !p.upstream_host.is_empty() || p.upstream_port != 0 || p.tunnel_port != 0 {
                    return Err(ProtocolError::invalid(
                        "upstream_host",
                        "a primary has no upstream",
                    ));
                }
                None
            }
        };
        if role == Role::Standby && (p.fence_enabled || p.pause_writes) {
            return Err(ProtocolError::invalid(
                "role",
                "fencing and paused writes apply to primaries only",
            ));
        }
        if role == Role::Primary && p.catch_up {
            return Err(ProtocolError::invalid(
                "catch_up",
                "catching up applies to standbys only",
            ));
        }
        let fence_after_seconds = match (p.fence_enabled, p.fence_after_seconds) {
            (false, _) => None,
            (true, 0) => {
                return Err(ProtocolError::invalid(
                    "fence_after_seconds",
                    "must be positive",
                ));
            }
            (true, seconds) => Some(seconds),
        };
        Ok(Self {
            instance: names::validate_instance_name(&p.instance)?,
            epoch: p.epoch,
            role,
            engine_port: port("engine_port", p.engine_port)?,
            front_port: port("front_port", p.front_port)?,
            engine: p.engine,
            maxmemory_bytes: p.maxmemory_bytes,
            maxclients: p.maxclients,
            settings: settings::Settings {
                timeout_seconds: settings::validate_timeout(p.timeout_seconds)?,
                maxmemory_policy: settings::validate_maxmemory_policy(&p.maxmemory_policy)?,
                notify_keyspace_events: settings::validate_keyspace_events(
                    &p.notify_keyspace_events,
                )?,
            },
            appendonly: p.appendonly,
            default_password: secret("default_password", p.default_password)?,
            admin_password: secret("admin_password", p.admin_password)?,
            replication_password: secret("replication_password", p.replication_password)?,
            upstream,
            fence_after_seconds,
            pause_writes: p.pause_writes,
            catch_up: p.catch_up,
        })
    }
}

impl From<DesiredProcess> for pb::DesiredProcess {
    fn from(p: DesiredProcess) -> Self {
        Self {
            instance: p.instance,
            epoch: p.epoch,
            role: p.role.as_str().into(),
            engine_port: p.engine_port.into(),
            front_port: p.front_port.into(),
            engine: p.engine,
            maxmemory_bytes: p.maxmemory_bytes,
            maxclients: p.maxclients,
            maxmemory_policy: p.settings.maxmemory_policy,
            timeout_seconds: p.settings.timeout_seconds,
            notify_keyspace_events: p.settings.notify_keyspace_events,
            appendonly: p.appendonly,
            default_password: p.default_password,
            admin_password: p.admin_password,
            replication_password: p.replication_password,
            upstream_host: p
                .upstream
                .as_ref()
                .map(|u| u.host.to_string())
                .unwrap_or_default(),
            upstream_port: p
                .upstream
                .as_ref()
                .map(|u| u.port.into())
                .unwrap_or_default(),
            tunnel_port: p
                .upstream
                .as_ref()
                .map(|u| u.tunnel_port.into())
                .unwrap_or_default(),
            fence_enabled: p.fence_after_seconds.is_some(),
            fence_after_seconds: p.fence_after_seconds.unwrap_or_default(),
            pause_writes: p.pause_writes,
            catch_up: p.catch_up,
        }
    }
}

/// What the agent reports about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessStatus {
    Starting,
    Running,
    Restarting,
    CrashLooping,
    Stopped,
    Failed,
}

impl ProcessStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessStatus::Starting => "starting",
            ProcessStatus::Running => "running",
            ProcessStatus::Restarting => "restarting",
            ProcessStatus::CrashLooping => "crash_looping",
            ProcessStatus::Stopped => "stopped",
            ProcessStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        Ok(match s {
            "starting" => ProcessStatus::Starting,
            "running" => ProcessStatus::Running,
            "restarting" => ProcessStatus::Restarting,
            "crash_looping" => ProcessStatus::CrashLooping,
            "stopped" => ProcessStatus::Stopped,
            "failed" => ProcessStatus::Failed,
            other => {
                return Err(ProtocolError::invalid(
                    "status",
                    format!("unknown process status '{other}'"),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> pb::DesiredProcess {
        pb::DesiredProcess {
            instance: "redis-acute-6762".into(),
            epoch: 1,
            role: "primary".into(),
            engine_port: 7001,
            front_port: 17001,
            engine: "valkey-9".into(),
            maxmemory_bytes: 1 << 20,
            maxclients: 20,
            maxmemory_policy: "noeviction".into(),
            timeout_seconds: 300,
            notify_keyspace_events: String::new(),
            appendonly: false,
            default_password: "a".repeat(32),
            admin_password: "b".repeat(32),
            replication_password: "c".repeat(32),
            ..Default::default()
        }
    }

    #[test]
    fn desired_round_trips() {
        let domain = DesiredProcess::try_from(desired()).unwrap();
        assert_eq!(pb::DesiredProcess::from(domain), desired());
    }

    #[test]
    fn desired_rejects_bad_fields() {
        let mut bad = desired();
        bad.engine_port = 70000;
        assert!(
            DesiredProcess::try_from(bad)
                .unwrap_err()
                .to_string()
                .contains("engine_port")
        );
        let mut bad = desired();
        bad.default_password = "short\nline".into();
        assert!(DesiredProcess::try_from(bad).is_err());
        let mut bad = desired();
        bad.instance = "../etc".into();
        assert!(DesiredProcess::try_from(bad).is_err());
    }

    #[test]
    fn standby_needs_an_upstream_and_primary_has_none() {
        let mut standby = desired();
        standby.role = "standby".into();
        assert!(
            DesiredProcess::try_from(standby.clone()).is_err(),
            "standby without upstream"
        );
        standby.upstream_host = "127.0.0.12".into();
        standby.upstream_port = 6380;
        standby.tunnel_port = 26380;
        let domain = DesiredProcess::try_from(standby.clone()).unwrap();
        assert_eq!(domain.upstream.as_ref().map(|u| u.tunnel_port), Some(26380));
        assert_eq!(pb::DesiredProcess::from(domain), standby);
        let mut fenced_standby = standby;
        fenced_standby.fence_enabled = true;
        fenced_standby.fence_after_seconds = 60;
        assert!(DesiredProcess::try_from(fenced_standby).is_err());
        let mut primary = desired();
        primary.tunnel_port = 1;
        assert!(
            DesiredProcess::try_from(primary).is_err(),
            "primary with upstream"
        );
        let mut zero_fence = desired();
        zero_fence.fence_enabled = true;
        assert!(DesiredProcess::try_from(zero_fence).is_err());
    }

    #[test]
    fn debug_hides_passwords() {
        let domain = DesiredProcess::try_from(desired()).unwrap();
        assert!(!format!("{domain:?}").contains("aaaa"));
    }

    #[test]
    fn create_request_validation() {
        let ok = pb::CreateInstanceRequest {
            plan: "mini".into(),
            app: "dev-app".into(),
            ..Default::default()
        };
        let c = CreateInstance::try_from(ok).unwrap();
        assert_eq!(c.settings, settings::Settings::default());
        let bad = pb::CreateInstanceRequest {
            plan: "mini".into(),
            app: "dev-app".into(),
            maxmemory_policy: "sometimes".into(),
            ..Default::default()
        };
        assert!(CreateInstance::try_from(bad).is_err());
    }
}
