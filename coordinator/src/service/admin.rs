//! The Admin gRPC service: create, inspect, tune and destroy instances; list hosts, plans and
//! events; hand out the CA bundle. Requests are authenticated by the admin-token interceptor
//! before they reach this code.

use kvs_proto::model::{CreateInstance, SettingsChange};
use kvs_proto::pb::admin_server::Admin;
use kvs_proto::{ApiError, names, pb, plan};
use tonic::{Request, Response, Status};

use super::{SharedRef, cluster, convert};
use crate::control::observation::HostLiveness;
use crate::control::placement;
use crate::state::{Command, Credentials, Instance, InstanceStatus, Placement};

/// How many random names to try before giving up (collisions are rare: 32 × 9000 names).
const NAME_ATTEMPTS_MAX: usize = 16;

pub struct AdminService {
    pub shared: SharedRef,
}

impl AdminService {
    /// The wire view of an instance; HA Status from the leader's observations.
    fn to_pb(&self, s: &crate::state::ClusterState, i: &Instance) -> pb::Instance {
        let now = self.shared.clock.now();
        let ha = self
            .shared
            .observe(|o| crate::control::ha_status::of(i, o, now, &self.shared.ha));
        convert::instance_with_ha(s, i, ha)
    }

    fn instance_pb(&self, name: &str) -> Result<pb::Instance, ApiError> {
        self.shared.read(|s| {
            s.instances
                .get(name)
                .map(|i| self.to_pb(s, i))
                .ok_or_else(|| not_found(name))
        })
    }

    fn live_hosts(&self) -> Vec<String> {
        let now = self.shared.clock.now();
        let silence = self.shared.config.agent_silence_timeout;
        let ids: Vec<String> = self.shared.read(|s| s.hosts.keys().cloned().collect());
        self.shared.observe(|o| {
            ids.into_iter()
                .filter(|id| o.liveness(id, now, silence) == HostLiveness::Up)
                .collect()
        })
    }

    async fn create(&self, request: CreateInstance) -> Result<pb::Instance, ApiError> {
        let plan = plan::find_plan(&self.shared.plans, &request.plan)?.clone();
        let live = self.live_hosts();
        let (engine, placed, name) = self.shared.read(|s| {
            let offered = live
                .iter()
                .filter_map(|id| s.hosts.get(id))
                .flat_map(|h| h.engines.iter().map(|e| e.label.as_str()));
            let engine = match &request.version {
                Some(v) => v.clone(),
                None => placement::default_engine(offered).ok_or_else(|| {
                    ApiError::FailedPrecondition(
                        "no live host offers any engine; is an agent running?".into(),
                    )
                })?,
            };
            let placed = placement::place(s, &live, &engine, plan.maxmemory_bytes)
                .map_err(|e| ApiError::FailedPrecondition(e.to_string()))?;
            let name = (0..NAME_ATTEMPTS_MAX)
                .map(|_| self.shared.secrets.instance_name())
                .find(|n| !s.instances.contains_key(n))
                .ok_or_else(|| {
                    ApiError::ResourceExhausted("could not find a free instance name".into())
                })?;
            Ok::<_, ApiError>((engine, placed, name))
        })?;
        let secrets = &self.shared.secrets;
        let instance = Instance {
            name: name.clone(),
            plan: plan.name.clone(),
            maxmemory_bytes: plan.maxmemory_bytes,
            max_connections: plan.max_connections,
            persistence: plan.persistence,
            engine,
            settings: request.settings,
            credentials: Credentials {
                default_password: secrets.password(),
                admin_password: secrets.password(),
                replication_password: secrets.password(),
            },
            epoch: 1,
            primary: Placement {
                host_id: placed.host_id,
                front_port: placed.front_port,
                engine_port: placed.engine_port,
            },
            status: InstanceStatus::Creating,
            created_at_ms: self.shared.clock.now_ms(),
            maintenance_window: String::new(),
            standbys: Vec::new(),
            standby_required: plan.standby,
            failover: None,
            last_failover: None,
        };
        self.shared
            .submit(Command::CreateInstance {
                instance,
                app: request.app.clone(),
            })
            .await?;
        tracing::info!(instance = %name, plan = %plan.name, app = %request.app, "instance created");
        self.instance_pb(&name)
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no instance named {name}; see `kvs list`"))
}

fn app_not_found(app: &str) -> ApiError {
    ApiError::NotFound(format!("app {app} has no instances attached"))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_instance(
        &self,
        request: Request<pb::CreateInstanceRequest>,
    ) -> Result<Response<pb::Instance>, Status> {
        let request = CreateInstance::try_from(request.into_inner())?;
        self.shared.ensure_leader().await?;
        Ok(Response::new(self.create(request).await?))
    }

    async fn get_instance(
        &self,
        request: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::Instance>, Status> {
        let name = names::validate_instance_name(&request.into_inner().name)?;
        Ok(Response::new(self.instance_pb(&name)?))
    }

    async fn list_instances(
        &self,
        request: Request<pb::ListInstancesRequest>,
    ) -> Result<Response<pb::ListInstancesResponse>, Status> {
        let app = request.into_inner().app;
        let instances = self.shared.read(|s| {
            if app.is_empty() {
                return Ok(s.instances.values().map(|i| self.to_pb(s, i)).collect());
            }
            let attached = s.apps.get(&app).ok_or_else(|| app_not_found(&app))?;
            Ok::<_, ApiError>(
                attached
                    .attachments
                    .values()
                    .filter_map(|n| s.instances.get(n))
                    .map(|i| self.to_pb(s, i))
                    .collect(),
            )
        })?;
        Ok(Response::new(pb::ListInstancesResponse { instances }))
    }

    async fn destroy_instance(
        &self,
        request: Request<pb::DestroyInstanceRequest>,
    ) -> Result<Response<pb::DestroyInstanceResponse>, Status> {
        let request = request.into_inner();
        let name = names::validate_instance_name(&request.name)?;
        self.shared.ensure_leader().await?;
        if request.confirm != name {
            return Err(ApiError::FailedPrecondition(format!(
                "confirmation {:?} did not match {name}; destroy needs --confirm {name}",
                request.confirm
            ))
            .into());
        }
        if !self.shared.read(|s| s.instances.contains_key(&name)) {
            return Err(not_found(&name).into());
        }
        let at_ms = self.shared.clock.now_ms();
        self.shared
            .submit(Command::DestroyInstance {
                name: name.clone(),
                at_ms,
            })
            .await?;
        tracing::info!(instance = %name, "instance destroyed");
        Ok(Response::new(pb::DestroyInstanceResponse { name }))
    }

    async fn get_credentials(
        &self,
        request: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::Credentials>, Status> {
        let name = names::validate_instance_name(&request.into_inner().name)?;
        let url = self.instance_pb(&name)?.url;
        Ok(Response::new(pb::Credentials { name, url }))
    }

    async fn update_settings(
        &self,
        request: Request<pb::UpdateSettingsRequest>,
    ) -> Result<Response<pb::Instance>, Status> {
        let (name, change): (String, SettingsChange) = request.into_inner().try_into()?;
        self.shared.ensure_leader().await?;
        if !self.shared.read(|s| s.instances.contains_key(&name)) {
            return Err(not_found(&name).into());
        }
        let at_ms = self.shared.clock.now_ms();
        self.shared
            .submit(Command::UpdateSettings {
                name: name.clone(),
                change,
                at_ms,
            })
            .await?;
        Ok(Response::new(self.instance_pb(&name)?))
    }

    async fn get_config_vars(
        &self,
        request: Request<pb::AppRef>,
    ) -> Result<Response<pb::ConfigVars>, Status> {
        let app = names::validate_app(&request.into_inner().app)?;
        let (version, vars) = self
            .shared
            .read(|s| s.config_vars(&app))
            .ok_or_else(|| app_not_found(&app))?;
        Ok(Response::new(pb::ConfigVars {
            app,
            version,
            vars: vars.into_iter().collect(),
        }))
    }

    async fn list_hosts(
        &self,
        _request: Request<pb::ListHostsRequest>,
    ) -> Result<Response<pb::ListHostsResponse>, Status> {
        // Liveness is leader memory: a follower would show every host as unknown.
        self.shared.ensure_leader().await?;
        let now = self.shared.clock.now();
        let silence = self.shared.config.agent_silence_timeout;
        let observations = self.shared.observe(|o| o.clone());
        let hosts = self
            .shared
            .read(|s| convert::hosts(s, &observations, now, silence));
        Ok(Response::new(pb::ListHostsResponse { hosts }))
    }

    async fn list_plans(
        &self,
        _request: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        let plans = self
            .shared
            .plans
            .iter()
            .map(|p| pb::Plan {
                name: p.name.clone(),
                maxmemory_bytes: p.maxmemory_bytes,
                max_connections: p.max_connections,
                persistence: p.persistence,
                standby: p.standby,
            })
            .collect();
        Ok(Response::new(pb::ListPlansResponse { plans }))
    }

    async fn get_ca_bundle(
        &self,
        _request: Request<pb::GetCaBundleRequest>,
    ) -> Result<Response<pb::CaBundle>, Status> {
        Ok(Response::new(pb::CaBundle {
            pem: self.shared.ca.ca_pem().to_string(),
        }))
    }

    async fn list_events(
        &self,
        request: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let name = names::validate_instance_name(&request.into_inner().name)?;
        let events = self.shared.read(|s| {
            if !s.instances.contains_key(&name) {
                return Err(not_found(&name));
            }
            Ok(s.events
                .get(&name)
                .map(|events| {
                    events
                        .iter()
                        .map(|e| pb::Event {
                            at_ms: e.at_ms,
                            instance: name.clone(),
                            message: e.message.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default())
        })?;
        Ok(Response::new(pb::ListEventsResponse { events }))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(cluster::status(&self.shared)))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(
            cluster::add_node(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(
            cluster::remove_node(&self.shared, request.into_inner().node_id).await?,
        ))
    }

    async fn issue_node_certificate(
        &self,
        request: Request<pb::IssueNodeCertificateRequest>,
    ) -> Result<Response<pb::NodeCertificate>, Status> {
        Ok(Response::new(cluster::issue_node_certificate(
            &self.shared,
            request.into_inner(),
        )?))
    }

    async fn failover(
        &self,
        request: Request<pb::FailoverRequest>,
    ) -> Result<Response<pb::Instance>, Status> {
        let request = request.into_inner();
        let name = names::validate_instance_name(&request.name)?;
        self.shared.ensure_leader().await?;
        self.instance_pb(&name)?;
        let at_ms = self.shared.clock.now_ms();
        let command = self
            .shared
            .read(|s| {
                crate::control::failover::plan_switchover(s, &name, request.allow_data_loss, at_ms)
            })
            .map_err(ApiError::FailedPrecondition)?;
        self.shared.submit(command).await?;
        tracing::info!(instance = %name, allow_data_loss = request.allow_data_loss, "planned switchover started");
        Ok(Response::new(self.instance_pb(&name)?))
    }

    async fn promote(
        &self,
        request: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::ConfigVars>, Status> {
        let request = request.into_inner();
        let name = names::validate_instance_name(&request.name)?;
        let app = names::validate_app(&request.app)?;
        self.shared.ensure_leader().await?;
        self.instance_pb(&name)?;
        let at_ms = self.shared.clock.now_ms();
        self.shared
            .submit(Command::PromoteAttachment {
                app: app.clone(),
                instance: name.clone(),
                at_ms,
            })
            .await?;
        tracing::info!(instance = %name, %app, "promoted to REDIS_URL");
        let (version, vars) = self
            .shared
            .read(|s| s.config_vars(&app))
            .ok_or_else(|| app_not_found(&app))?;
        Ok(Response::new(pb::ConfigVars {
            app,
            version,
            vars: vars.into_iter().collect(),
        }))
    }
}
