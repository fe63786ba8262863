//! `ClusterState` and its pure, deterministic `apply`.
//!
//! ```text
//!   admin request ──validate──► Command ──raft log──► apply(&mut ClusterState, &Command) ──► CommandOutcome
//! ```
//!
//! No I/O, no clock, no randomness: commands carry their timestamps, names and passwords, so every
//! node that applies the same log reaches the same state. Maps are `BTreeMap` so iteration order
//! (and serialized snapshots) are deterministic.

mod command;
mod ha;
mod model;

use std::collections::{BTreeMap, VecDeque};

pub use command::{Applied, Command, CommandOutcome, Refusal};
pub use model::{
    App, ClusterInfo, CompletedFailover, CoordinatorNode, Credentials, Event, FailoverIntent, Host,
    Instance, InstanceStatus, Placement, TUNNEL_PORT_OFFSET,
};

/// Events kept per instance; older ones are dropped first.
pub const EVENTS_PER_INSTANCE_MAX: usize = 200;

/// The replicated state of the whole cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterState {
    pub cluster: Option<ClusterInfo>,
    pub hosts: BTreeMap<String, Host>,
    pub instances: BTreeMap<String, Instance>,
    pub apps: BTreeMap<String, App>,
    pub events: BTreeMap<String, VecDeque<Event>>,
    /// Grows on every change that alters some host's desired processes.
    pub desired_version: u64,
    /// Coordinator nodes by id (addresses only; membership lives in Raft).
    pub coordinators: BTreeMap<u64, CoordinatorNode>,
}

impl ClusterState {
    pub fn apply(&mut self, command: &Command) -> CommandOutcome {
        match command {
            Command::InitCluster(info) => {
                if self.cluster.is_some() {
                    return Err(Refusal::AlreadyInitialized);
                }
                self.cluster = Some(info.clone());
                Ok(Applied::Done)
            }
            Command::RegisterHost(host) => {
                self.hosts.insert(host.id.clone(), host.clone());
                Ok(Applied::Done)
            }
            Command::CreateInstance { instance, app } => self.create_instance(instance, app),
            Command::SetInstanceStatus {
                name,
                status,
                at_ms,
                reason,
            } => {
                let instance = self
                    .instances
                    .get_mut(name)
                    .ok_or_else(|| Refusal::NoSuchInstance(name.clone()))?;
                if instance.status != *status {
                    instance.status = *status;
                    let message = format!("status {}: {reason}", status.as_str());
                    self.push_event(name, *at_ms, message);
                }
                Ok(Applied::Done)
            }
            Command::UpdateSettings {
                name,
                change,
                at_ms,
            } => {
                let instance = self
                    .instances
                    .get_mut(name)
                    .ok_or_else(|| Refusal::NoSuchInstance(name.clone()))?;
                change.apply_to(&mut instance.settings);
                let message = format!(
                    "settings changed: timeout {} s, maxmemory-policy {}, keyspace notifications '{}'",
                    instance.settings.timeout_seconds,
                    instance.settings.maxmemory_policy,
                    instance.settings.notify_keyspace_events
                );
                self.desired_version += 1;
                self.push_event(name, *at_ms, message);
                Ok(Applied::Done)
            }
            Command::PromoteAttachment {
                app,
                instance,
                at_ms,
            } => self.promote_attachment(app, instance, *at_ms),
            Command::SetCoordinator(node) => {
                self.coordinators.insert(node.id, node.clone());
                Ok(Applied::Done)
            }
            Command::RemoveCoordinator { id } => {
                self.coordinators.remove(id);
                Ok(Applied::Done)
            }
            Command::PlaceStandby { .. }
            | Command::BeginFailover { .. }
            | Command::OrderPromotion { .. }
            | Command::CompleteFailover { .. }
            | Command::CorrectDataLoss { .. }
            | Command::AbortFailover { .. }
            | Command::RemoveStandby { .. }
            | Command::ResumeAfterReboot { .. }
            | Command::RecordEvent { .. } => self.apply_ha(command),
            Command::DestroyInstance { name, at_ms: _ } => {
                if self.instances.remove(name).is_none() {
                    return Err(Refusal::NoSuchInstance(name.clone()));
                }
                self.events.remove(name);
                for app in self.apps.values_mut() {
                    let before = app.attachments.len();
                    app.attachments.retain(|_, instance| instance != name);
                    if app.attachments.len() != before {
                        app.version += 1;
                    }
                }
                self.apps.retain(|_, app| !app.attachments.is_empty());
                self.desired_version += 1;
                Ok(Applied::Done)
            }
        }
    }

    fn create_instance(&mut self, instance: &Instance, app_name: &str) -> CommandOutcome {
        if self.instances.contains_key(&instance.name) {
            return Err(Refusal::InstanceExists(instance.name.clone()));
        }
        let host = &instance.primary.host_id;
        if !self.hosts.contains_key(host) {
            return Err(Refusal::NoSuchHost(host.clone()));
        }
        for port in instance.primary.ports() {
            if self.ports_in_use(host).contains(&port) {
                return Err(Refusal::PortTaken {
                    host: host.clone(),
                    port,
                });
            }
        }
        let app = self.apps.entry(app_name.to_string()).or_default();
        let config_var =
            kvs_proto::names::next_config_var(app.attachments.keys().map(String::as_str))
                .ok_or_else(|| Refusal::NoConfigVarLeft(app_name.to_string()))?;
        app.attachments
            .insert(config_var.clone(), instance.name.clone());
        app.version += 1;
        self.instances
            .insert(instance.name.clone(), instance.clone());
        self.desired_version += 1;
        let message = format!(
            "created on plan {} ({}), primary on host {} port {}, attached to {app_name} as {config_var}",
            instance.plan, instance.engine, instance.primary.host_id, instance.primary.front_port
        );
        self.push_event(&instance.name, instance.created_at_ms, message);
        Ok(Applied::Attached { config_var })
    }

    fn promote_attachment(&mut self, app_name: &str, instance: &str, at_ms: i64) -> CommandOutcome {
        use kvs_proto::names::{PRIMARY_CONFIG_VAR, next_config_var};
        if !self.instances.contains_key(instance) {
            return Err(Refusal::NoSuchInstance(instance.to_string()));
        }
        let mut app = self.apps.get(app_name).cloned().unwrap_or_default();
        if app.attachments.get(PRIMARY_CONFIG_VAR).map(String::as_str) == Some(instance) {
            return Ok(Applied::Attached {
                config_var: PRIMARY_CONFIG_VAR.to_string(),
            });
        }
        // The target's own color attachment moves to REDIS_URL.
        app.attachments.retain(|_, attached| attached != instance);
        if let Some(previous) = app.attachments.remove(PRIMARY_CONFIG_VAR) {
            let still_attached = app.attachments.values().any(|i| *i == previous);
            if !still_attached {
                let color = next_config_var(
                    app.attachments
                        .keys()
                        .map(String::as_str)
                        .chain([PRIMARY_CONFIG_VAR]),
                )
                .ok_or_else(|| Refusal::NoConfigVarLeft(app_name.to_string()))?;
                app.attachments.insert(color.clone(), previous.clone());
                self.push_event(
                    &previous,
                    at_ms,
                    format!("{app_name}: moved from REDIS_URL to {color}"),
                );
            }
        }
        app.attachments
            .insert(PRIMARY_CONFIG_VAR.to_string(), instance.to_string());
        app.version += 1;
        self.apps.insert(app_name.to_string(), app);
        self.push_event(
            instance,
            at_ms,
            format!("promoted to REDIS_URL on {app_name}"),
        );
        Ok(Applied::Attached {
            config_var: PRIMARY_CONFIG_VAR.to_string(),
        })
    }

    fn push_event(&mut self, instance: &str, at_ms: i64, message: String) {
        let events = self.events.entry(instance.to_string()).or_default();
        events.push_back(Event { at_ms, message });
        while events.len() > EVENTS_PER_INSTANCE_MAX {
            events.pop_front();
        }
    }

    /// Every placement (primary first, then standbys) of every instance on a host.
    pub fn placements_on<'a>(
        &'a self,
        host_id: &'a str,
    ) -> impl Iterator<Item = (&'a Instance, &'a Placement)> + 'a {
        self.instances.values().flat_map(move |i| {
            std::iter::once(&i.primary)
                .chain(i.standbys.iter())
                .filter(move |p| p.host_id == host_id)
                .map(move |p| (i, p))
        })
    }

    /// Every front, engine and tunnel port taken on a host, by primaries and standbys alike.
    pub fn ports_in_use(&self, host_id: &str) -> Vec<u16> {
        self.placements_on(host_id)
            .flat_map(|(_, p)| p.ports())
            .collect()
    }

    /// Plan memory placed on a host (primaries and standbys).
    pub fn memory_reserved(&self, host_id: &str) -> u64 {
        self.placements_on(host_id)
            .map(|(i, _)| i.maxmemory_bytes)
            .sum()
    }

    /// The client URL of an instance: `rediss://default:PASSWORD@HOST:PORT`.
    pub fn url(&self, instance: &Instance) -> Option<String> {
        let host = self.hosts.get(&instance.primary.host_id)?;
        let address = match host.address {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        Some(format!(
            "rediss://{}:{}@{address}:{}",
            kvs_proto::metadata::CUSTOMER_USER,
            instance.credentials.default_password,
            instance.primary.front_port
        ))
    }

    /// An app's config vars, name → URL.
    pub fn config_vars(&self, app: &str) -> Option<(u64, BTreeMap<String, String>)> {
        let app = self.apps.get(app)?;
        let vars = app
            .attachments
            .iter()
            .filter_map(|(var, name)| Some((var.clone(), self.url(self.instances.get(name)?)?)))
            .collect();
        Some((app.version, vars))
    }

    /// The attachments (app, config var) of an instance.
    pub fn attachments(&self, instance: &str) -> Vec<(String, String)> {
        self.apps
            .iter()
            .flat_map(|(app, a)| {
                a.attachments
                    .iter()
                    .filter(|(_, i)| *i == instance)
                    .map(move |(var, _)| (app.clone(), var.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
