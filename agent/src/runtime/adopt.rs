//! Engines a previous agent left running (it was killed with `kill -9`, crashed, or was
//! upgraded): found at startup, before any desired state is applied, and handed to the supervisor
//! as running processes, so they keep serving instead of being restarted.
//!
//! ```text
//!   startup: instances on disk ─► leftover::find (pid file / cwd, exe) ─► Supervisor::on_adopted
//!            ─► leftover::watch (exit by polling /proc; stop = SIGTERM, SIGKILL) ─► Exited event
//!   Action::Adopt (the first desired spec): write the files, then as kvs-admin CONFIG SET every
//!            live setting, ACL LOAD, REPLICAOF for the role ─► Reconfigured event ─► readiness
//! ```
//!
//! A leftover that cannot be adopted (another engine bind address, a binary the catalog does not
//! know) is left to the start task, which stops it and waits for its port before starting anew.

use std::net::SocketAddr;
use std::path::PathBuf;

use kvs_proto::model::DesiredProcess;
use tokio::sync::mpsc;

use super::tasks::{ADMIN_TIMEOUT, admin_connection};
use super::{Event, Runtime, RuntimeOptions, paths};
use crate::engine::catalog::Catalog;
use crate::engine::{leftover, process, render};
use crate::supervisor::AdoptedEngine;

/// Canonical engine binary paths of the catalog, with their labels.
pub(super) fn catalog_binaries(catalog: &Catalog) -> Vec<(PathBuf, String)> {
    catalog
        .engines()
        .into_iter()
        .filter_map(|engine| {
            let entry = catalog.resolve(&engine.label)?;
            let path = leftover::canonical_binaries([entry.path.as_path()]).pop()?;
            Some((path, engine.label))
        })
        .collect()
}

impl Runtime {
    /// Finds and adopts the engines previous agents left for `instances`.
    pub(super) async fn adopt_leftovers(&mut self, instances: &[String]) {
        for name in instances {
            let paths = paths(&self.options, name);
            let Some(found) = leftover::find(&paths, &self.binaries).await else {
                continue;
            };
            let label = self
                .binary_labels
                .iter()
                .find(|(path, _)| *path == found.binary)
                .map(|(_, label)| label.clone());
            let Some(label) = label.filter(|_| found.bind == Some(self.options.engine_bind)) else {
                tracing::warn!(instance = %name, pid = found.pid, bind = ?found.bind, binary = %found.binary.display(),
                    "an engine left by a previous agent cannot be adopted; it is replaced when the instance starts");
                continue;
            };
            let adopted = AdoptedEngine {
                pid: found.pid,
                engine: label,
                engine_port: found.port,
            };
            let Some(generation) = self.supervisor.on_adopted(name, adopted, self.now()) else {
                continue;
            };
            tracing::info!(instance = %name, pid = found.pid, port = ?found.port, generation,
                "adopted an engine left running by a previous agent");
            // The previous agent may have been restarted before the coordinator answered a reboot
            // (the boot marker is only moved on once it has): still after-reboot.
            if super::reboot::started_under_another_boot(
                &paths.dir,
                self.options.boot_id.as_deref(),
            )
            .await
            {
                self.adopted_after_reboot.insert(name.clone());
            }
            let (engine, exited) = leftover::watch(found, paths, self.options.stop_timeout).await;
            self.engines.insert(name.clone(), (generation, engine));
            let (events, instance) = (self.events_tx.clone(), name.clone());
            tokio::spawn(async move {
                let reason = exited.await;
                let _ = events
                    .send(Event::Exited {
                        instance,
                        generation,
                        reason,
                    })
                    .await;
            });
        }
    }
}

/// Applies the whole spec to an adopted engine, whose exact configuration is unknown: the files,
/// every live setting, the users and the replication role. Reports `Reconfigured`.
pub(super) fn spawn_adopt(
    options: &RuntimeOptions,
    process: DesiredProcess,
    generation: u64,
    events: mpsc::Sender<Event>,
) {
    let paths = paths(options, &process.instance);
    let bind = options.engine_bind;
    let addr = SocketAddr::new(bind, process.engine_port);
    tokio::spawn(async move {
        let apply = async {
            process::write_files(&process, &paths, bind)
                .await
                .map_err(|e| e.to_string())?;
            let mut conn = admin_connection(addr, &process.admin_password)
                .await
                .map_err(|e| format!("AUTH kvs-admin: {e}"))?;
            for (name, value) in render::config_set_all(&process) {
                conn.command(&["CONFIG", "SET", name, &value])
                    .await
                    .map_err(|e| format!("CONFIG SET {name}: {e}"))?;
            }
            conn.command(&["ACL", "LOAD"])
                .await
                .map_err(|e| format!("ACL LOAD: {e}"))?;
            // Idempotent: a primary stays one; a standby already replicating from the tunnel
            // answers "Already connected to specified master" and keeps its link.
            match render::replicaof(&process, bind) {
                None => conn.command(&["REPLICAOF", "NO", "ONE"]).await,
                Some((host, port)) => conn.command(&["REPLICAOF", &host, &port]).await,
            }
            .map(drop)
            .map_err(|e| format!("REPLICAOF: {e}"))
        };
        let result = match tokio::time::timeout(ADMIN_TIMEOUT * 4, apply).await {
            Ok(result) => result,
            Err(_) => Err("timed out".to_string()),
        };
        match &result {
            Ok(()) => tracing::info!(instance = %process.instance, "adopted engine configured"),
            Err(error) => {
                tracing::warn!(instance = %process.instance, %error, "adopted engine cannot be configured; replacing it")
            }
        }
        let _ = events
            .send(Event::Reconfigured {
                instance: process.instance.clone(),
                generation,
                result,
            })
            .await;
    });
}
