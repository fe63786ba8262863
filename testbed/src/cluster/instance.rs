//! Instance operations on a testbed cluster, the way a customer and an operator see them: create
//! through the admin API, wait for `available`, connect through the TLS front, find the engine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kvs_proto::pb;
use redis::aio::MultiplexedConnection;

use super::Cluster;
use crate::engine_client;
use crate::wait::{Probe, wait_until};

/// Bound on an instance becoming available in tests and the dev cluster.
pub const AVAILABLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Cluster {
    /// Creates an instance on `plan` attached to `app` (default version and settings); its name.
    pub async fn create_instance(&self, plan: &str, app: &str) -> Result<String> {
        let request = pb::CreateInstanceRequest {
            plan: plan.into(),
            app: app.into(),
            ..Default::default()
        };
        Ok(self.create_instance_with(request).await?.name)
    }

    /// Creates an instance from a full request.
    pub async fn create_instance_with(
        &self,
        request: pb::CreateInstanceRequest,
    ) -> Result<pb::Instance> {
        let (plan, app) = (request.plan.clone(), request.app.clone());
        let instance = self
            .leader_admin()
            .await?
            .create_instance(request)
            .await
            .with_context(|| format!("CreateInstance(plan {plan}, app {app})"))?
            .into_inner();
        tracing::info!(name = %instance.name, plan, app, status = %instance.status, "instance created");
        Ok(instance)
    }

    /// GetInstance.
    pub async fn instance(&self, name: &str) -> Result<pb::Instance> {
        let reference = pb::InstanceRef { name: name.into() };
        Ok(self
            .leader_admin()
            .await?
            .get_instance(reference)
            .await
            .with_context(|| format!("GetInstance({name})"))?
            .into_inner())
    }

    /// Waits until the instance's status is `available` and its URL accepts a TLS connection
    /// (the coordinator's view may run a report ahead of the front).
    pub async fn wait_available(&mut self, name: &str, timeout: Duration) -> Result<pb::Instance> {
        let leader = self.coordinators_handle()?.clone();
        let ca = self.ca_pem.clone();
        let dialer = self.dialer.clone();
        let nodes = &mut self.agents;
        wait_until(&format!("instance {name} to be available"), timeout, || {
            let alive: Result<Vec<()>> = nodes.iter_mut().map(|n| n.check_alive()).collect();
            let leader = leader.clone();
            let ca = ca.clone();
            let name = name.to_string();
            let dialer = dialer.clone();
            async move {
                if let Err(err) = alive {
                    return Probe::Fatal(err);
                }
                let mut client = match leader.leader_client().await {
                    Ok(client) => client,
                    Err(err) => return Probe::Pending(format!("{err:#}")),
                };
                let instance = match client.get_instance(pb::InstanceRef { name }).await {
                    Ok(reply) => reply.into_inner(),
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        return Probe::Fatal(anyhow!("GetInstance: {status}"));
                    }
                    Err(status) => return Probe::Pending(format!("GetInstance: {status}")),
                };
                if instance.status != "available" {
                    return Probe::Pending(format!("status {}", instance.status));
                }
                match dialer.redis(&instance.url, &ca).await {
                    Ok(_) => Probe::Ready(instance),
                    Err(err) => Probe::Pending(format!(
                        "status available, but the URL does not connect: {err:#}"
                    )),
                }
            }
        })
        .await
    }

    /// The instance's URL (GetCredentials).
    pub async fn url(&self, name: &str) -> Result<String> {
        let reference = pb::InstanceRef { name: name.into() };
        let credentials = self
            .leader_admin()
            .await?
            .get_credentials(reference)
            .await
            .with_context(|| format!("GetCredentials({name})"))?;
        Ok(credentials.into_inner().url)
    }

    /// A customer connection to the instance, through its TLS front, verifying the cluster CA.
    pub async fn connect(&self, name: &str) -> Result<MultiplexedConnection> {
        self.dialer
            .redis(&self.url(name).await?, &self.ca_pem)
            .await
    }

    /// Destroys the instance (with the right confirmation).
    pub async fn destroy_instance(&self, name: &str) -> Result<()> {
        let request = pb::DestroyInstanceRequest {
            name: name.into(),
            confirm: name.into(),
        };
        self.leader_admin()
            .await?
            .destroy_instance(request)
            .await
            .with_context(|| format!("DestroyInstance({name})"))?;
        tracing::info!(name, "instance destroyed");
        Ok(())
    }

    /// PID of the primary engine process: `INFO server` `process_id` through the front, checked
    /// against `/proc` (it must be a valkey-server or redis-server that this cluster's agent runs).
    pub async fn engine_pid(&self, name: &str) -> Result<u32> {
        let mut connection = self.connect(name).await?;
        let pid = engine_client::engine_pid(&mut connection).await?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).with_context(|| {
            format!("engine pid {pid} from INFO is not a process on this machine")
        })?;
        let file = exe
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !file.starts_with("valkey-server") && !file.starts_with("redis-server") {
            bail!(
                "engine pid {pid} from INFO runs {}, not an engine",
                exe.display()
            );
        }
        Ok(pid)
    }

    /// `kill -9` of the instance's primary engine; returns its PID. Refuses a PID that is not a
    /// descendant of one of this cluster's agents.
    pub async fn kill_engine(&self, name: &str) -> Result<u32> {
        let pid = self.engine_pid(name).await?;
        let ours = self
            .agents
            .iter()
            .filter_map(|agent| agent.pid())
            .any(|agent| {
                crate::process::descendants(agent)
                    .iter()
                    .any(|d| d.pid == pid)
            });
        if !ours {
            bail!(
                "engine pid {pid} of {name} is not a child of this cluster's agents; not killing it"
            );
        }
        crate::process::signal(pid, nix::sys::signal::Signal::SIGKILL);
        tracing::info!(name, pid, "engine killed with SIGKILL");
        Ok(pid)
    }

    /// The agent data directory of the instance's primary host (where engine.conf lives).
    pub async fn instance_dir(&self, name: &str) -> Result<PathBuf> {
        let instance = self.instance(name).await?;
        let host = engine_client::parse_url(&instance.url)?.host;
        let agent = self
            .agent_configs
            .iter()
            .find(|a| a.address.to_string() == host)
            .ok_or_else(|| anyhow!("no agent has the address {host} of instance {name}"))?;
        Ok(agent.instance_dir(name))
    }

    /// ListInstances for `app` ("" = all), sorted by name.
    pub async fn list_instances(&self, app: &str) -> Result<Vec<pb::Instance>> {
        let request = pb::ListInstancesRequest { app: app.into() };
        let mut instances = self
            .leader_admin()
            .await?
            .list_instances(request)
            .await
            .context("ListInstances")?
            .into_inner()
            .instances;
        instances.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(instances)
    }

    /// GetConfigVars for `app`.
    pub async fn config_vars(&self, app: &str) -> Result<pb::ConfigVars> {
        let request = pb::AppRef { app: app.into() };
        Ok(self
            .leader_admin()
            .await?
            .get_config_vars(request)
            .await
            .with_context(|| format!("GetConfigVars({app})"))?
            .into_inner())
    }
}
