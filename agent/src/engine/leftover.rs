//! Engines left running by a previous agent (killed with `kill -9`, crashed, or upgraded): finding
//! them, watching an adopted one, and stopping one that cannot be adopted.
//!
//! ```text
//!   find(paths, binaries):  engine.pid ─► PID ─┐   (no pid file, or it names another process:
//!                           /proc scan ────────┤    every process whose cwd is the instance dir)
//!                                              ▼
//!        verify: /proc/PID/exe is one of the catalog's engine binaries
//!            and /proc/PID/cwd is this instance's directory (engines run there, `dir` = it)
//!        ─► Leftover { pid, start time, binary, port and bind from engine.conf }
//!   watch(leftover): the adopted engine as a RunningEngine; exit noticed by polling /proc (it is
//!        not our child: no wait status); stop = SIGTERM, grace period, SIGKILL
//!   stop(paths, binaries): SIGTERM, grace period, SIGKILL, and wait until it is gone (so its
//!        port is free before a new engine is started)
//! ```
//!
//! The command line cannot identify an engine: valkey-server and redis-server rewrite their
//! process title (`valkey-server 127.0.0.1:16380`) a few milliseconds after starting, so the
//! config file path is gone from `/proc/PID/cmdline`. The executable and the working directory
//! are stable; together they rule out an unrelated process that reused a PID from the pid file.
//! Once found, the process is tracked by PID and start time (`/proc/PID/stat` field 22).

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use super::process::{RunningEngine, last_log_message};
use super::render::InstancePaths;

/// How often a leftover engine is checked while waiting for it to exit after a signal.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How often an adopted engine is checked for an exit while it serves.
const WATCH_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// After SIGKILL, how long to wait for the process to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// An engine process of this instance that no agent supervises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: u32,
    /// `/proc/PID/stat` field 22: with the PID, names the process uniquely.
    pub start_time: u64,
    /// The engine binary it runs (canonical path, as in `binaries`).
    pub binary: PathBuf,
    /// `port` and `bind` of the engine.conf it was started with (None if unreadable).
    pub port: Option<u16>,
    pub bind: Option<IpAddr>,
}

/// Canonical paths of the engine binaries (symlinks such as redis-server → redis-check-rdb
/// resolved), to compare with `/proc/PID/exe`.
pub fn canonical_binaries<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<PathBuf> {
    paths
        .into_iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
        .collect()
}

/// Finds the engine a previous agent left running for this instance, if any.
pub async fn find(paths: &InstancePaths, binaries: &[PathBuf]) -> Option<Leftover> {
    let dir = tokio::fs::canonicalize(&paths.dir).await.ok()?;
    if let Some(pid) = read_pid_file(&paths.pid).await
        && let Some(found) = verify(pid, &dir, binaries, paths).await
    {
        return Some(found);
    }
    // No pid file (the agent died between spawn and writing it) or a stale one: look for a
    // process working in the instance directory. An engine's fork children (AOF rewrite) match
    // too; the engine itself is the oldest.
    let mut entries = tokio::fs::read_dir("/proc").await.ok()?;
    let mut oldest: Option<Leftover> = None;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(found) = verify(pid, &dir, binaries, paths).await
            && oldest
                .as_ref()
                .is_none_or(|o| found.start_time < o.start_time)
        {
            oldest = Some(found);
        }
    }
    oldest
}

async fn read_pid_file(path: &Path) -> Option<u32> {
    let text = tokio::fs::read_to_string(path).await.ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// `pid` as a leftover engine of the instance in `dir`, if it is one.
async fn verify(
    pid: u32,
    dir: &Path,
    binaries: &[PathBuf],
    paths: &InstancePaths,
) -> Option<Leftover> {
    if pid <= 1 || pid == std::process::id() {
        return None;
    }
    let cwd = tokio::fs::read_link(format!("/proc/{pid}/cwd"))
        .await
        .ok()?;
    if cwd != dir {
        return None;
    }
    let exe = tokio::fs::read_link(format!("/proc/{pid}/exe"))
        .await
        .ok()?;
    // An engine binary replaced on disk while it runs shows as "PATH (deleted)".
    let exe_text = exe.to_string_lossy();
    let exe = PathBuf::from(exe_text.strip_suffix(" (deleted)").unwrap_or(&exe_text));
    let binary = binaries.iter().find(|b| **b == exe)?.clone();
    let start_time = stat(pid).await.filter(|s| !s.zombie)?.start_time;
    let (port, bind) = match tokio::fs::read_to_string(&paths.conf).await {
        Ok(conf) => conf_address(&conf),
        Err(_) => (None, None),
    };
    Some(Leftover {
        pid,
        start_time,
        binary,
        port,
        bind,
    })
}

/// `port` and (first) `bind` address of a rendered engine.conf.
pub fn conf_address(conf: &str) -> (Option<u16>, Option<IpAddr>) {
    let mut port = None;
    let mut bind = None;
    for line in conf.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("port"), Some(value)) => port = value.parse().ok(),
            (Some("bind"), Some(value)) => bind = value.parse().ok(),
            _ => {}
        }
    }
    (port, bind)
}

struct Stat {
    zombie: bool,
    start_time: u64,
}

async fn stat(pid: u32) -> Option<Stat> {
    let text = tokio::fs::read_to_string(format!("/proc/{pid}/stat"))
        .await
        .ok()?;
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    Some(Stat {
        zombie: fields.first().is_some_and(|s| *s == "Z" || *s == "X"),
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// True while the process found as `leftover` lives (same PID and start time, not a zombie).
async fn alive(leftover: &Leftover) -> bool {
    stat(leftover.pid)
        .await
        .is_some_and(|s| !s.zombie && s.start_time == leftover.start_time)
}

fn signal(leftover: &Leftover, signal: Signal) {
    if let Ok(pid) = i32::try_from(leftover.pid) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// SIGTERM, wait up to `timeout`, SIGKILL, and wait until the process is gone. Returns a
/// description of how it ended.
async fn terminate(leftover: &Leftover, timeout: Duration) -> String {
    signal(leftover, Signal::SIGTERM);
    if wait_gone(leftover, timeout).await {
        return "stopped (SIGTERM)".to_string();
    }
    tracing::warn!(
        pid = leftover.pid,
        ?timeout,
        "engine ignored SIGTERM, sending SIGKILL"
    );
    signal(leftover, Signal::SIGKILL);
    if wait_gone(leftover, KILL_WAIT).await {
        "stopped (SIGKILL)".to_string()
    } else {
        format!(
            "stopped (SIGKILL; still present after {KILL_WAIT:?}, pid {})",
            leftover.pid
        )
    }
}

async fn wait_gone(leftover: &Leftover, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if !alive(leftover).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(STOP_POLL_INTERVAL).await;
    }
}

/// Stops the engine a previous agent left for this instance, if there is one, and waits until
/// it has exited (its port is then free).
pub async fn stop(paths: &InstancePaths, binaries: &[PathBuf], timeout: Duration) {
    let Some(leftover) = find(paths, binaries).await else {
        return;
    };
    tracing::warn!(pid = leftover.pid, dir = %paths.dir.display(), "stopping an engine left by a previous agent");
    let how = terminate(&leftover, timeout).await;
    tracing::info!(pid = leftover.pid, %how, "leftover engine gone");
    let _ = tokio::fs::remove_file(&paths.pid).await;
}

/// Takes over a leftover engine: the handle stops it like one the agent started, and the future
/// resolves when it exits (noticed within `WATCH_POLL_INTERVAL`).
pub async fn watch(
    leftover: Leftover,
    paths: InstancePaths,
    stop_timeout: Duration,
) -> (RunningEngine, impl Future<Output = String> + Send + 'static) {
    // Only what it writes from now on explains its exit.
    let log_offset = tokio::fs::metadata(&paths.log).await.map_or(0, |m| m.len());
    if let Err(error) = tokio::fs::write(&paths.pid, format!("{}\n", leftover.pid)).await {
        tracing::warn!(path = %paths.pid.display(), %error, "cannot write pid file");
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let engine = RunningEngine::new(leftover.pid, stop_tx);
    let exited = watch_exit(leftover, stop_rx, stop_timeout, paths, log_offset);
    (engine, exited)
}

async fn watch_exit(
    leftover: Leftover,
    mut stop: oneshot::Receiver<()>,
    stop_timeout: Duration,
    paths: InstancePaths,
    log_offset: u64,
) -> String {
    let mut tick = tokio::time::interval(WATCH_POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // A stop request, or the handle was dropped: stop either way.
            _ = &mut stop => {
                let how = terminate(&leftover, stop_timeout).await;
                let _ = tokio::fs::remove_file(&paths.pid).await;
                return how;
            }
            _ = tick.tick() => {
                if !alive(&leftover).await {
                    break;
                }
            }
        }
    }
    let _ = tokio::fs::remove_file(&paths.pid).await;
    // Not our child: the exit status went to its new parent.
    let mut reason = "engine (adopted from a previous agent) exited".to_string();
    if let Some(message) = last_log_message(&paths.log, log_offset).await {
        reason.push_str("; engine.log: ");
        reason.push_str(&message);
    }
    reason
}

#[cfg(test)]
#[path = "leftover_tests.rs"]
mod tests;
