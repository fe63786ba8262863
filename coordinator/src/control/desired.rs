//! The desired processes of one host, derived from the replicated state. The agent converges to
//! exactly this list; anything it runs that is not on it is stopped and cleaned up.

use kvs_proto::model::{DesiredProcess, Role};

use crate::state::ClusterState;

pub fn for_host(state: &ClusterState, host_id: &str) -> Vec<DesiredProcess> {
    state
        .instances
        .values()
        .filter(|i| i.primary.host_id == host_id)
        .map(|i| DesiredProcess {
            instance: i.name.clone(),
            epoch: i.epoch,
            role: Role::Primary,
            engine_port: i.primary.engine_port,
            front_port: i.primary.front_port,
            engine: i.engine.clone(),
            maxmemory_bytes: i.maxmemory_bytes,
            maxclients: i.max_connections,
            settings: i.settings.clone(),
            appendonly: i.persistence,
            default_password: i.credentials.default_password.clone(),
            admin_password: i.credentials.admin_password.clone(),
            replication_password: i.credentials.replication_password.clone(),
            upstream: None,
            fence_after_seconds: None,
            pause_writes: false,
        })
        .collect()
}
