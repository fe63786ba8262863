//! A child process the testbed started: its output goes to a log file, it leads its own process
//! group, it is killed by PID when dropped (also when a test panics), and the kernel kills it when
//! the testbed dies, even by SIGKILL (`PR_SET_PDEATHSIG`, see [`die_with_parent`]).
//!
//! Engines are the agents' children, not ours. They are found and killed by PID too:
//! - through the agent's process group (engines inherit it unless the agent moves them);
//! - through a `/proc` snapshot of the agent's descendants taken before the agent is killed;
//! - through [`sweep_dir`], which kills processes whose working directory lies inside the
//!   testbed's own cluster directory (engines run with `dir` = their instance directory).
//!
//! Nothing is ever matched by program name.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::wait::POLL_INTERVAL;

/// How long a polite stop (SIGTERM) may take before SIGKILL.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// One process started by the testbed.
pub struct ChildProcess {
    /// Short name for messages, e.g. `coordinator` or `agent-a`.
    name: String,
    /// The process; also the leader of its own process group (pgid == pid).
    child: Child,
    /// Where its stdout and stderr go (appended: a restart continues the same log).
    log_path: PathBuf,
}

impl ChildProcess {
    /// Starts `program args…` in a new process group with output appended to `log_path`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        log_path: &Path,
    ) -> Result<ChildProcess> {
        let log = open_log(log_path)?;
        let log_err = log.try_clone().context("cloning the log file handle")?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        die_with_parent(&mut command);
        // Log files, not terminals: no colour codes (tracing-subscriber honours NO_COLOR).
        command.env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        let child = command.spawn().with_context(|| {
            format!("starting {name}: {} {}", program.display(), args.join(" "))
        })?;
        tracing::debug!(name, pid = child.id(), log = %log_path.display(), "started");
        Ok(ChildProcess {
            name: name.to_string(),
            child,
            log_path: log_path.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some(description)` once the process has exited.
    pub fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(err) => Some(format!("unknown ({err})")),
        }
    }

    /// `kill -9` of this process only (its children, e.g. engines, live on).
    pub fn kill_hard(&mut self) {
        if self.exit_status().is_none() {
            signal(self.child.id(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }

    /// SIGTERM, wait up to [`TERMINATE_GRACE`], then SIGKILL; finally kills what is left of the group.
    pub async fn terminate(&mut self) {
        if self.exit_status().is_none() {
            signal(self.child.id(), Signal::SIGTERM);
            let deadline = tokio::time::Instant::now() + TERMINATE_GRACE;
            while self.exit_status().is_none() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            if self.exit_status().is_none() {
                tracing::warn!(name = %self.name, "did not stop within {TERMINATE_GRACE:?}: SIGKILL");
            }
        }
        self.kill_group();
    }

    /// SIGKILL to the whole process group (the process and any children that stayed in it).
    pub fn kill_group(&mut self) {
        let pgid = self.child.id();
        if self.exit_status().is_none() {
            signal(pgid, Signal::SIGKILL);
            let _ = self.child.wait();
        }
        // The leader is reaped; members of its group may remain (engines of a killed agent).
        if let Ok(pgid) = i32::try_from(pgid) {
            let _ = kill(Pid::from_raw(-pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Makes the kernel SIGKILL the child when the thread that spawned it exits (the testbed's
/// runtime threads live as long as the testbed), so nothing the testbed started outlives it.
/// If the testbed already died between `fork` and the `prctl`, the child exits at once.
fn die_with_parent(command: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before `exec`; it only makes two syscalls
    // (prctl, getppid) and allocates nothing, which is async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other(
                    "the testbed exited before its child started",
                ));
            }
            Ok(())
        });
    }
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log file {}", path.display()))
}

/// Sends `sig` to one PID, ignoring "no such process".
pub fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// A process identified by PID and start time, so a recycled PID is never killed by mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat` (clock ticks since boot).
    pub start_time: u64,
}

impl ProcessId {
    /// SIGKILL, if the PID still names the same process.
    pub fn kill_if_same(self) {
        if stat(self.pid).is_some_and(|s| s.start_time == self.start_time) {
            signal(self.pid, Signal::SIGKILL);
        }
    }
}

/// The process `pid` if it exists and is not a zombie (identified with its start time).
pub fn alive(pid: u32) -> Option<ProcessId> {
    let st = stat(pid)?;
    (st.state != 'Z' && st.state != 'X').then_some(ProcessId {
        pid,
        start_time: st.start_time,
    })
}

/// The parts of `/proc/PID/stat` the testbed needs.
struct Stat {
    state: char,
    parent: u32,
    start_time: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field N is fields[N - 3].
    Some(Stat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every living descendant of `root` (children, grandchildren, …), not `root` itself.
pub fn descendants(root: u32) -> Vec<ProcessId> {
    let table: Vec<(u32, Stat)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, stat(p)?)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, st) in &table {
            if st.parent == parent && !found.iter().any(|f: &ProcessId| f.pid == *pid) {
                found.push(ProcessId {
                    pid: *pid,
                    start_time: st.start_time,
                });
                frontier.push(*pid);
            }
        }
    }
    found
}

/// PIDs of the processes whose working directory is inside `dir` (not this process).
pub fn processes_in_dir(dir: &Path) -> Vec<u32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
        })
        .collect()
}

/// `(pid, command name)` of every other process that works inside `dir`, holds a file in it
/// open (a log, a store, a lock) or names a file in it on its command line (`--config
/// DIR/agent-a/config.toml`): what still uses a cluster directory.
pub fn processes_using(dir: &Path) -> Vec<(u32, String)> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut found: Vec<(u32, String)> = all_pids()
        .into_iter()
        .filter(|&pid| pid != me && uses_dir(pid, &dir))
        .map(|pid| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (pid, name.trim().to_string())
        })
        .collect();
    found.sort();
    found
}

/// Whether process `pid` works in, holds a file in, or names a file in the canonical `dir`.
fn uses_dir(pid: u32, dir: &Path) -> bool {
    let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
        return false;
    };
    if cwd.starts_with(dir) {
        return true;
    }
    let holds = std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(Result::ok)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| p.starts_with(dir)))
    });
    if holds {
        return true;
    }
    // Arguments are read as that process would (relative to its cwd), lexically: resolving
    // them here would follow `/proc/self` and `/dev/fd/N` into this process, not that one.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| lexical(&cwd.join(String::from_utf8_lossy(arg).as_ref())))
        .any(|path| path.starts_with(dir))
}

/// `path` with `.` and `..` resolved without touching the file system.
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Kills, by PID, every process working inside `dir` (a testbed-owned cluster directory).
pub fn sweep_dir(dir: &Path) -> usize {
    let pids = processes_in_dir(dir);
    for &pid in &pids {
        tracing::debug!(pid, dir = %dir.display(), "sweep: SIGKILL to a leftover process");
        signal(pid, Signal::SIGKILL);
    }
    pids.len()
}

/// The last `lines` lines of a log file, for failure reports.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stat_parses_and_descendants_are_found() {
        let me = stat(std::process::id()).expect("own stat");
        assert!(me.start_time > 0);
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("sleep.log");
        let mut child = ChildProcess::spawn(
            "sleep",
            Path::new("/bin/sh"),
            &["-c", "sleep 30 & wait"],
            &log,
        )
        .expect("spawn");
        let mut seen = Vec::new();
        for _ in 0..50 {
            seen = descendants(child.pid());
            if !seen.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(seen.len(), 1, "the shell's sleep child: {seen:?}");
        child.kill_group();
        assert!(child.exit_status().is_some());
    }
}
