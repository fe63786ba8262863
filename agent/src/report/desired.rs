//! Desired states from the coordinator: validation (invalid processes never delete an instance)
//! and the on-disk cache (`desired.json`, 0600) used after an agent restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kvs_proto::model::DesiredProcess;
use kvs_proto::pb;
use serde::{Deserialize, Serialize};

use crate::runtime::DesiredState;

/// The cached desired state (`desired.json`).
#[derive(Serialize, Deserialize)]
pub(super) struct CachedDesired {
    pub(super) version: u64,
    pub(super) processes: Vec<DesiredProcess>,
}

pub(super) fn cache_path(data_dir: &Path) -> PathBuf {
    data_dir.join("desired.json")
}

/// Loads the last applied desired state, as a non-authoritative state.
pub async fn load_cached_desired(data_dir: &Path) -> Option<DesiredState> {
    let text = std::fs::read_to_string(cache_path(data_dir)).ok()?;
    match serde_json::from_str::<CachedDesired>(&text) {
        Ok(cached) => Some(DesiredState {
            version: cached.version,
            processes: cached.processes,
            authoritative: false,
        }),
        Err(error) => {
            tracing::warn!(%error, "ignoring unreadable desired.json");
            None
        }
    }
}

/// Turns a `Desired` message into a state to apply, validating every process.
pub(super) fn validate_desired(
    desired: pb::Desired,
    last_valid: &mut BTreeMap<String, DesiredProcess>,
) -> DesiredState {
    let mut processes = Vec::with_capacity(desired.processes.len());
    for raw in desired.processes {
        let name = raw.instance.clone();
        match DesiredProcess::try_from(raw) {
            Ok(process) => processes.push(process),
            Err(error) => match last_valid.get(&name) {
                Some(previous) => {
                    tracing::error!(instance = %name, %error, "invalid desired process; keeping its previous spec");
                    processes.push(previous.clone());
                }
                None => {
                    tracing::error!(instance = %name, %error, "invalid desired process skipped")
                }
            },
        }
    }
    *last_valid = processes
        .iter()
        .map(|p| (p.instance.clone(), p.clone()))
        .collect();
    DesiredState {
        version: desired.version,
        processes,
        authoritative: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, password: &str) -> pb::DesiredProcess {
        pb::DesiredProcess {
            instance: name.into(),
            epoch: 1,
            role: "primary".into(),
            engine_port: 16380,
            front_port: 6380,
            engine: "redis-7".into(),
            maxmemory_bytes: 1 << 20,
            maxclients: 20,
            maxmemory_policy: "noeviction".into(),
            timeout_seconds: 300,
            notify_keyspace_events: String::new(),
            appendonly: false,
            default_password: password.into(),
            admin_password: "a".repeat(32),
            replication_password: "r".repeat(32),
            ..Default::default()
        }
    }

    #[test]
    fn invalid_processes_keep_their_previous_spec_or_are_skipped() {
        let mut last_valid = BTreeMap::new();
        let good = "d".repeat(32);
        let state = validate_desired(
            pb::Desired {
                version: 1,
                processes: vec![raw("redis-a-1", &good)],
            },
            &mut last_valid,
        );
        assert_eq!(state.processes.len(), 1);
        let bad = pb::Desired {
            version: 2,
            processes: vec![raw("redis-a-1", "short"), raw("redis-b-2", "short")],
        };
        let state = validate_desired(bad, &mut last_valid);
        assert_eq!(state.version, 2);
        assert_eq!(
            state.processes.len(),
            1,
            "the unknown invalid one is skipped"
        );
        assert_eq!(
            state.processes[0].default_password, good,
            "the known one keeps its last valid spec"
        );
        assert!(state.authoritative);
    }
}
