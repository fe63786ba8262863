//! The runtime's I/O tasks, one per action: each does its work and sends one event (two for a
//! start: started, then exited) back to the loop. They hold no state of their own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kvs_proto::metadata::{ADMIN_USER, REPLICATION_USER};
use kvs_proto::model::DesiredProcess;
use tokio::sync::mpsc;

use super::{Event, RuntimeOptions, paths};
use crate::engine::info::{self, EngineInfo};
use crate::engine::render;
use crate::engine::resp::{Connection, RespError};
use crate::engine::{leftover, process};
use crate::fencing::{PauseCommand, PauseOrder};
use crate::supervisor::RoleChange;

/// Longest an admin command (connect, AUTH, INFO, CONFIG SET) may take.
pub(super) const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// After a start, readiness is checked this often…
const READINESS_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// …for this long; after that the regular report tick takes over (e.g. a long AOF load).
const READINESS_POLL_WINDOW: Duration = Duration::from_secs(10);

/// Instance directories present under `data_dir/instances`.
pub(super) async fn instances_on_disk(data_dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(render::instances_dir(data_dir)).await else {
        return names;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

/// Spawns the engine, reports `Started`, then waits for its exit and reports `Exited`.
pub(super) fn spawn_start(
    options: &RuntimeOptions,
    binaries: Arc<[PathBuf]>,
    binary: PathBuf,
    process: DesiredProcess,
    generation: u64,
    events: mpsc::Sender<Event>,
) {
    let paths = paths(options, &process.instance);
    let (bind, stop_timeout) = (options.engine_bind, options.stop_timeout);
    let exit_with_agent = options.engines_exit_with_agent;
    let boot_id = options.boot_id.clone();
    tokio::spawn(async move {
        let instance = process.instance.clone();
        // An engine a previous agent left (and that could not be adopted) holds the port: stop
        // it and wait until it is gone.
        leftover::stop(&paths, &binaries, stop_timeout).await;
        let after_reboot =
            super::reboot::started_under_another_boot(&paths.dir, boot_id.as_deref()).await;
        let launch = process::Launch {
            bind,
            stop_timeout,
            exit_with_agent,
        };
        match process::start(&binary, &process, &paths, launch).await {
            Ok((engine, exited)) => {
                // A rebooted primary keeps the old boot in its marker until the coordinator
                // answers (`reboot.rs`), so a restarted agent still knows.
                if !(after_reboot && super::reboot::fences_after_reboot(&process)) {
                    super::reboot::mark(&paths.dir, boot_id.as_deref()).await;
                }
                let started = Event::Started {
                    instance: instance.clone(),
                    generation,
                    result: Ok(engine),
                    after_reboot,
                };
                // If the loop is gone, the engine handle is dropped here, which stops the engine.
                if events.send(started).await.is_err() {
                    exited.await;
                    return;
                }
                let reason = exited.await;
                let _ = events
                    .send(Event::Exited {
                        instance,
                        generation,
                        reason,
                    })
                    .await;
            }
            Err(error) => {
                // Disk and spawn errors may be transient: they count against the restart budget.
                let result = Err((error.to_string(), true));
                let _ = events
                    .send(Event::Started {
                        instance,
                        generation,
                        result,
                        after_reboot: false,
                    })
                    .await;
            }
        }
    });
}

fn engine_addr(options: &RuntimeOptions, process: &DesiredProcess) -> SocketAddr {
    SocketAddr::new(options.engine_bind, process.engine_port)
}

pub(super) async fn admin_connection(
    addr: SocketAddr,
    password: &str,
) -> Result<Connection<tokio::net::TcpStream>, RespError> {
    let mut conn = Connection::connect(addr, ADMIN_TIMEOUT).await?;
    conn.auth(ADMIN_USER, password).await?;
    Ok(conn)
}

/// AUTH as kvs-admin and INFO, within `ADMIN_TIMEOUT`.
pub async fn query_info(addr: SocketAddr, admin_password: &str) -> Result<EngineInfo, String> {
    let query = async {
        let mut conn = admin_connection(addr, admin_password).await?;
        Ok::<_, RespError>(info::parse(&conn.info().await?))
    };
    match tokio::time::timeout(ADMIN_TIMEOUT, query).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("INFO timed out after {ADMIN_TIMEOUT:?}")),
    }
}

/// One INFO poll.
pub(super) fn spawn_info(
    options: &RuntimeOptions,
    process: &DesiredProcess,
    generation: u64,
    events: mpsc::Sender<Event>,
) {
    let addr = engine_addr(options, process);
    let (instance, password) = (process.instance.clone(), process.admin_password.clone());
    tokio::spawn(async move {
        let result = query_info(addr, &password).await;
        let _ = events
            .send(Event::Info {
                instance,
                generation,
                result,
            })
            .await;
    });
}

/// Polls INFO quickly after a start until the engine serves (not loading), so `running` is
/// reported within tens of milliseconds rather than at the next report tick.
pub(super) fn spawn_readiness(
    options: &RuntimeOptions,
    process: &DesiredProcess,
    generation: u64,
    events: mpsc::Sender<Event>,
) {
    let addr = engine_addr(options, process);
    let (instance, password) = (process.instance.clone(), process.admin_password.clone());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + READINESS_POLL_WINDOW;
        while tokio::time::Instant::now() < deadline {
            if let Ok(info) = query_info(addr, &password).await
                && !info.loading
            {
                let _ = events
                    .send(Event::Info {
                        instance,
                        generation,
                        result: Ok(info),
                    })
                    .await;
                return;
            }
            tokio::time::sleep(READINESS_POLL_INTERVAL).await;
        }
    });
}

/// Re-renders the files, then applies the change live: CONFIG SET for settings, ACL LOAD for users
/// (authenticated with the admin password the engine currently has).
pub(super) fn spawn_reconfigure(
    options: &RuntimeOptions,
    from: DesiredProcess,
    to: DesiredProcess,
    generation: u64,
    events: mpsc::Sender<Event>,
) {
    let paths = paths(options, &to.instance);
    let (bind, addr) = (options.engine_bind, engine_addr(options, &from));
    tokio::spawn(async move {
        let apply = async {
            process::write_files(&to, &paths, bind)
                .await
                .map_err(|e| e.to_string())?;
            let mut conn = admin_connection(addr, &from.admin_password)
                .await
                .map_err(|e| e.to_string())?;
            for (name, value) in render::config_set_changes(&from, &to) {
                conn.command(&["CONFIG", "SET", name, &value])
                    .await
                    .map_err(|e| format!("CONFIG SET {name}: {e}"))?;
            }
            if render::acl_changed(&from, &to) {
                conn.command(&["ACL", "LOAD"])
                    .await
                    .map_err(|e| format!("ACL LOAD: {e}"))?;
            }
            Ok::<(), String>(())
        };
        let result = match tokio::time::timeout(ADMIN_TIMEOUT * 4, apply).await {
            Ok(result) => result,
            Err(_) => Err("timed out".to_string()),
        };
        let _ = events
            .send(Event::Reconfigured {
                instance: to.instance.clone(),
                generation,
                result,
            })
            .await;
    });
}

/// Changes the engine's replication role live: re-renders the files for `to` (so a restart keeps
/// the role), then `REPLICAOF NO ONE` (promote) or `REPLICAOF <engine_bind> <tunnel_port>`
/// (demote, re-point) with the replication credentials set first.
pub(super) fn spawn_replication(
    options: &RuntimeOptions,
    change: RoleChange,
    from: DesiredProcess,
    to: DesiredProcess,
    generation: u64,
    events: mpsc::Sender<Event>,
) {
    let paths = paths(options, &to.instance);
    let (bind, addr) = (options.engine_bind, engine_addr(options, &from));
    tokio::spawn(async move {
        let apply = async {
            process::write_files(&to, &paths, bind)
                .await
                .map_err(|e| e.to_string())?;
            let mut conn = admin_connection(addr, &from.admin_password)
                .await
                .map_err(|e| e.to_string())?;
            let target = match change {
                RoleChange::Promote => None,
                RoleChange::Demote | RoleChange::Repoint => Some(
                    render::replicaof(&to, bind)
                        .ok_or_else(|| "a standby without an upstream".to_string())?,
                ),
            };
            let Some((host, port)) = target else {
                return conn
                    .command(&["REPLICAOF", "NO", "ONE"])
                    .await
                    .map(drop)
                    .map_err(|e| format!("REPLICAOF NO ONE: {e}"));
            };
            for (name, value) in [
                ("masteruser", REPLICATION_USER),
                ("masterauth", to.replication_password.as_str()),
                ("replica-read-only", "yes"),
            ] {
                conn.command(&["CONFIG", "SET", name, value])
                    .await
                    .map_err(|e| format!("CONFIG SET {name}: {e}"))?;
            }
            conn.command(&["REPLICAOF", &host, &port])
                .await
                .map(drop)
                .map_err(|e| format!("REPLICAOF {host} {port}: {e}"))
        };
        let result = match tokio::time::timeout(ADMIN_TIMEOUT * 4, apply).await {
            Ok(result) => result,
            Err(_) => Err("timed out".to_string()),
        };
        match &result {
            Ok(()) => tracing::info!(instance = %to.instance, ?change, "replication role changed"),
            Err(error) => {
                tracing::warn!(instance = %to.instance, ?change, %error, "replication role change failed")
            }
        }
        let _ = events
            .send(Event::Reconfigured {
                instance: to.instance.clone(),
                generation,
                result,
            })
            .await;
    });
}

/// `CLIENT PAUSE <ms> WRITE` or `CLIENT UNPAUSE` as kvs-admin.
pub(super) fn spawn_pause(
    options: &RuntimeOptions,
    process: &DesiredProcess,
    order: PauseOrder,
    events: mpsc::Sender<Event>,
) {
    let addr = engine_addr(options, process);
    let password = process.admin_password.clone();
    tokio::spawn(async move {
        let apply = async {
            let mut conn = admin_connection(addr, &password).await?;
            match order.command {
                PauseCommand::Pause {
                    millis,
                    unpause_first,
                    ..
                } => {
                    if unpause_first {
                        conn.command(&["CLIENT", "UNPAUSE"]).await?;
                    }
                    conn.command(&["CLIENT", "PAUSE", &millis.to_string(), "WRITE"])
                        .await?;
                }
                PauseCommand::Unpause => {
                    conn.command(&["CLIENT", "UNPAUSE"]).await?;
                }
            }
            Ok::<(), RespError>(())
        };
        let result = match tokio::time::timeout(ADMIN_TIMEOUT, apply).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("timed out after {ADMIN_TIMEOUT:?}")),
        };
        let _ = events
            .send(Event::Paused {
                instance: order.instance,
                generation: order.generation,
                result,
            })
            .await;
    });
}

/// Stops a leftover engine of a previous agent, then removes the instance directory.
pub(super) fn spawn_cleanup(
    options: &RuntimeOptions,
    binaries: Arc<[PathBuf]>,
    instance: String,
    events: mpsc::Sender<Event>,
) {
    let paths = paths(options, &instance);
    let stop_timeout = options.stop_timeout;
    tokio::spawn(async move {
        leftover::stop(&paths, &binaries, stop_timeout).await;
        let result = match tokio::fs::remove_dir_all(&paths.dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", paths.dir.display())),
        };
        let _ = events.send(Event::Cleaned { instance, result }).await;
    });
}
