//! Starting, watching and stopping one engine process.
//!
//! ```text
//!   start(): write engine.conf and users.acl ─► spawn `BINARY engine.conf` in its own process
//!            group, stdout/stderr appended to engine.log ─► write engine.pid
//!            (the caller first stops an engine a previous agent left behind: `leftover::stop`)
//!   watch future: resolves when the process exits, with a human-readable reason (exit code or
//!            signal, plus the engine's last log message, e.g. a corrupt AOF file name)
//!   stop:    drop or `stop()` the handle ─► SIGTERM, wait `stop_timeout`, SIGKILL
//! ```
//!
//! Processes are only ever signalled by PID. Engines run in their own process group, so a signal
//! to the agent's group (a terminal's Ctrl-C, a supervisor killing the agent's group) does not
//! reach them: an agent crash leaves the data path up, and the next agent adopts the engine
//! (`leftover.rs`). A graceful agent shutdown stops its engines itself.

use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use kvs_proto::model::DesiredProcess;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::render::{self, InstancePaths};

/// How much of engine.log's tail is read to explain an exit.
const LOG_TAIL_BYTES: u64 = 16 << 10;

/// A running engine. Dropping it stops the engine (gracefully, in the watch future).
#[derive(Debug)]
pub struct RunningEngine {
    pub pid: u32,
    stop: Option<oneshot::Sender<()>>,
}

impl RunningEngine {
    pub(super) fn new(pid: u32, stop: oneshot::Sender<()>) -> Self {
        Self {
            pid,
            stop: Some(stop),
        }
    }

    /// Asks the watch future to stop the engine: SIGTERM, then SIGKILL after the grace period.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Why an engine could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot prepare {path}: {error}")]
    Files { path: String, error: std::io::Error },
    #[error("cannot run {binary}: {error}")]
    Spawn {
        binary: String,
        error: std::io::Error,
    },
}

async fn write_private(path: &Path, contents: &str) -> Result<(), StartError> {
    let files = |error| StartError::Files {
        path: path.display().to_string(),
        error,
    };
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(0o600);
    let mut file = options.open(path).await.map_err(files)?;
    tokio::io::AsyncWriteExt::write_all(&mut file, contents.as_bytes())
        .await
        .map_err(files)?;
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(files)
}

/// Writes `engine.conf` and `users.acl` (0600: the ACL file holds passwords).
pub async fn write_files(
    process: &DesiredProcess,
    paths: &InstancePaths,
    bind: IpAddr,
) -> Result<(), StartError> {
    let files = |error| StartError::Files {
        path: paths.dir.display().to_string(),
        error,
    };
    tokio::fs::create_dir_all(&paths.dir).await.map_err(files)?;
    let meta = tokio::fs::metadata(&paths.dir).await.map_err(files)?;
    if !meta.is_dir() {
        return Err(files(std::io::Error::other(
            "exists and is not a directory",
        )));
    }
    write_private(&paths.acl, &render::users_acl(process)).await?;
    write_private(&paths.conf, &render::engine_conf(process, paths, bind)).await
}

/// How an engine is started, from the agent's options.
#[derive(Debug, Clone, Copy)]
pub struct Launch {
    /// The (loopback) address the engine listens on.
    pub bind: IpAddr,
    /// SIGTERM-to-SIGKILL grace period when it is stopped.
    pub stop_timeout: Duration,
    /// The kernel sends the engine SIGTERM when the agent exits (dev clusters).
    pub exit_with_agent: bool,
}

/// Starts an engine for `process`. Returns the handle and the future that resolves with the exit
/// reason; the caller must poll that future (it owns the child).
pub async fn start(
    binary: &Path,
    process: &DesiredProcess,
    paths: &InstancePaths,
    launch: Launch,
) -> Result<(RunningEngine, impl Future<Output = String> + Send + 'static), StartError> {
    let Launch {
        bind, stop_timeout, ..
    } = launch;
    write_files(process, paths, bind).await?;
    let log_error = |error| StartError::Files {
        path: paths.log.display().to_string(),
        error,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .map_err(log_error)?;
    // Only what this process writes explains its exit.
    let log_offset = log.metadata().map_err(log_error)?.len();
    let log_err = log.try_clone().map_err(log_error)?;
    let mut command = Command::new(binary);
    command
        .arg(&paths.conf)
        .current_dir(&paths.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        .kill_on_drop(true);
    if launch.exit_with_agent {
        exit_with_agent(&mut command);
    }
    let child = command.spawn().map_err(|error| StartError::Spawn {
        binary: binary.display().to_string(),
        error,
    })?;
    let pid = child.id().unwrap_or(0);
    if let Err(error) = tokio::fs::write(&paths.pid, format!("{pid}\n")).await {
        tracing::warn!(path = %paths.pid.display(), %error, "cannot write pid file");
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let watch = watch(child, stop_rx, stop_timeout, paths.clone(), log_offset);
    Ok((RunningEngine::new(pid, stop_tx), watch))
}

/// The kernel sends the engine SIGTERM (a clean shutdown) when the thread that started it exits:
/// the agent's runtime threads live as long as the agent. If the agent already died between
/// `fork` and the `prctl`, the engine does not start.
fn exit_with_agent(command: &mut Command) {
    let agent = nix::unistd::getpid();
    // SAFETY: runs in the forked child before `exec` and only makes two syscalls (prctl,
    // getppid), allocating nothing: async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
            if nix::unistd::getppid() != agent {
                return Err(std::io::Error::other(
                    "the agent exited before its engine started",
                ));
            }
            Ok(())
        });
    }
}

async fn watch(
    mut child: Child,
    stop: oneshot::Receiver<()>,
    stop_timeout: Duration,
    paths: InstancePaths,
    log_offset: u64,
) -> String {
    let status = tokio::select! {
        status = child.wait() => status,
        // A stop request, or the handle was dropped: stop either way.
        _ = stop => {
            let status = terminate(&mut child, stop_timeout).await;
            let _ = tokio::fs::remove_file(&paths.pid).await;
            return match status {
                Ok(status) => format!("stopped ({})", describe(status)),
                Err(error) => format!("stopped (wait failed: {error})"),
            };
        }
    };
    let _ = tokio::fs::remove_file(&paths.pid).await;
    let status = match status {
        Ok(status) => status,
        Err(error) => return format!("engine wait failed: {error}"),
    };
    let mut reason = describe(status);
    // A killed engine logs nothing about it; an engine that exits on its own says why.
    if status.code().is_some()
        && let Some(message) = last_log_message(&paths.log, log_offset).await
    {
        reason.push_str("; engine.log: ");
        reason.push_str(&message);
        if message.contains("append only file") {
            reason.push_str(&format!(
                " (AOF files in {})",
                paths.dir.join("appendonlydir").display()
            ));
        }
    }
    reason
}

/// SIGTERM, wait up to `timeout`, then SIGKILL.
async fn terminate(child: &mut Child, timeout: Duration) -> std::io::Result<ExitStatus> {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(timeout, child.wait()).await {
            return status;
        }
        tracing::warn!(pid, ?timeout, "engine ignored SIGTERM, sending SIGKILL");
    }
    child.start_kill()?;
    child.wait().await
}

/// "engine exited with code 1" / "engine killed by signal 9 (SIGKILL)".
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("engine exited with code {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = Signal::try_from(signal)
                .map(|s| s.as_str())
                .unwrap_or("unknown");
            format!("engine killed by signal {signal} ({name})")
        }
        None => "engine exited".to_string(),
    }
}

/// The engine's last warning (`#`) line written after `offset`, else its last line, without the
/// `pid:role date time` prefix.
pub async fn last_log_message(log: &Path, offset: u64) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(log).await.ok()?;
    let len = file.metadata().await.ok()?.len();
    file.seek(std::io::SeekFrom::Start(
        len.saturating_sub(LOG_TAIL_BYTES).max(offset),
    ))
    .await
    .ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).await.ok()?;
    let text = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains(" # "))
        .or(lines.last())?;
    let message = line.split_once(" # ").map_or(*line, |(_, m)| m);
    Some(message.chars().take(500).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn log_messages_are_extracted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("engine.log");
        std::fs::write(
            &log,
            "1:M 01 Jan 2025 00:00:00.000 * Server initialized\n\
             1:M 01 Jan 2025 00:00:00.001 # Bad file format reading the append only file appendonly.aof.1.incr.aof\n\
             1:M 01 Jan 2025 00:00:00.002 * exiting\n",
        )
        .expect("write");
        let message = last_log_message(&log, 0).await.expect("message");
        assert_eq!(
            message,
            "Bad file format reading the append only file appendonly.aof.1.incr.aof"
        );
        let len = std::fs::metadata(&log).expect("log").len();
        assert!(
            last_log_message(&log, len).await.is_none(),
            "only lines after the offset"
        );
        assert!(
            last_log_message(&dir.path().join("missing"), 0)
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn exit_statuses_are_described() {
        let status = Command::new("sh")
            .args(["-c", "exit 3"])
            .status()
            .await
            .expect("sh");
        assert_eq!(describe(status), "engine exited with code 3");
        let status = Command::new("sh")
            .args(["-c", "kill -9 $$"])
            .status()
            .await
            .expect("sh");
        assert_eq!(describe(status), "engine killed by signal 9 (SIGKILL)");
    }
}
