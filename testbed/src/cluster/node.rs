//! One node of a testbed cluster (the coordinator or an agent): its config file, its log file and
//! its process across restarts, plus the orphans a `kill -9` leaves behind (an agent's engines).
//!
//! In netns mode a node is launched through `ip netns exec`, and an agent can be restarted behind
//! the testbed's back (by its host's sshd forced command). Such a node has a PID file, written by
//! its launch script: when the process the testbed started is gone and the PID file names another
//! living process, that process is adopted as the current incarnation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::process::{self, ChildProcess, ProcessId};

/// How long a node with a PID file may have no living incarnation before it counts as dead.
pub const RESTART_GRACE: Duration = Duration::from_secs(10);

/// A node the testbed can start, kill and restart on the same config and data.
pub struct Node {
    /// `coordinator`, `agent-a`, …
    pub name: String,
    /// The program started (kvs-coordinator, kvs-agent, or `ip` for a namespace launch).
    program: PathBuf,
    /// Its arguments (`--config PATH` unless launched otherwise).
    args: Vec<String>,
    /// Written by the launch script with the node's PID (netns agents).
    pid_file: Option<PathBuf>,
    /// An incarnation started by someone else (found through `pid_file`).
    adopted: Option<ProcessId>,
    /// When `check_alive` first found no incarnation of a node with a PID file.
    dead_since: Option<tokio::time::Instant>,
    /// Its `--config` file.
    pub config_path: PathBuf,
    /// stdout + stderr of every incarnation, appended.
    pub log_path: PathBuf,
    /// The running incarnation, if any.
    process: Option<ChildProcess>,
    /// Killed incarnations, kept until cluster stop: dropping one kills its process group, and the
    /// engines of a killed agent must live on until then (as on a real host).
    retired: Vec<ChildProcess>,
    /// Descendants of killed incarnations (killed at cluster stop if still the same processes).
    orphans: Vec<ProcessId>,
}

impl Node {
    pub fn new(name: &str, program: &Path, config_path: PathBuf, log_path: PathBuf) -> Node {
        let args = vec![
            "--config".into(),
            config_path.to_string_lossy().into_owned(),
        ];
        Node {
            name: name.to_string(),
            program: program.to_path_buf(),
            args,
            pid_file: None,
            adopted: None,
            dead_since: None,
            config_path,
            log_path,
            process: None,
            retired: Vec::new(),
            orphans: Vec::new(),
        }
    }

    /// Starts the node as `program args…` instead (e.g. `ip netns exec NS …`), optionally with a PID
    /// file its launch script writes.
    pub fn launched_with(
        mut self,
        program: &Path,
        args: Vec<String>,
        pid_file: Option<PathBuf>,
    ) -> Node {
        self.program = program.to_path_buf();
        self.args = args;
        self.pid_file = pid_file;
        self
    }

    /// Starts a new incarnation (the previous one must be dead).
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("{} is already running (pid {:?})", self.name, self.pid());
        }
        self.adopted = None;
        self.dead_since = None;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let child = ChildProcess::spawn(&self.name, &self.program, &args, &self.log_path)?;
        tracing::info!(node = %self.name, pid = child.pid(), log = %self.log_path.display(), "node started");
        self.process = Some(child);
        Ok(())
    }

    /// PID of the current incarnation (ours, or one started outside the testbed).
    pub fn pid(&self) -> Option<u32> {
        if let Some(own) = &self.process
            && process::alive(own.pid()).is_some()
        {
            return Some(own.pid());
        }
        self.pid_file_process().map(|p| p.pid)
    }

    /// Whether the testbed started an incarnation it has not killed or stopped since (it may
    /// have exited on its own: see [`Node::check_alive`]).
    pub fn has_incarnation(&self) -> bool {
        self.process.is_some() || self.adopted.is_some()
    }

    pub fn is_running(&mut self) -> bool {
        self.own_running() || self.adopt().is_some()
    }

    fn own_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|p| p.exit_status().is_none())
    }

    /// The living process the PID file names, if it is not the one we started.
    fn pid_file_process(&self) -> Option<ProcessId> {
        let text = std::fs::read_to_string(self.pid_file.as_ref()?).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        let ours = self.process.as_ref().map(ChildProcess::pid);
        process::alive(pid).filter(|_| Some(pid) != ours)
    }

    /// Adopts (and remembers) the incarnation the PID file names, see the module header.
    fn adopt(&mut self) -> Option<ProcessId> {
        let found = self.pid_file_process();
        if let Some(found) = found
            && self.adopted != Some(found)
        {
            tracing::info!(node = %self.name, pid = found.pid, "adopted an incarnation started outside the testbed");
        }
        self.adopted = found.or(self.adopted.filter(|a| process::alive(a.pid) == Some(*a)));
        self.adopted
    }

    /// `Err` if the current incarnation has exited (with the tail of its log).
    /// A node with a PID file may be between two incarnations (a restart over SSH, by the test or
    /// by the coordinator): it counts as dead only after [`RESTART_GRACE`] without one.
    pub fn check_alive(&mut self) -> Result<()> {
        if self.own_running() || self.adopt().is_some() {
            self.dead_since = None;
            return Ok(());
        }
        let Some(process) = self.process.as_mut() else {
            bail!("{} is not started", self.name)
        };
        if self.pid_file.is_some() {
            let since = *self
                .dead_since
                .get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() < RESTART_GRACE {
                return Ok(());
            }
        }
        if let Some(status) = process.exit_status() {
            bail!(
                "{} exited ({status}); log {}:\n{}",
                self.name,
                self.log_path.display(),
                process::log_tail(&self.log_path, 40)
            );
        }
        Ok(())
    }

    /// `kill -9` of the node's own process; its children (engines) keep running.
    pub fn kill_hard(&mut self) {
        if !self.own_running()
            && let Some(adopted) = self.adopt()
        {
            self.orphans.extend(process::descendants(adopted.pid));
            adopted.kill_if_same();
            self.adopted = None;
            tracing::info!(node = %self.name, pid = adopted.pid, "node killed with SIGKILL");
        }
        if let Some(mut process) = self.process.take() {
            let pid = process.pid();
            self.orphans.extend(process::descendants(pid));
            process.kill_hard();
            tracing::info!(node = %self.name, pid, "node killed with SIGKILL");
            self.retired.push(process);
        }
    }

    /// Polite stop (SIGTERM, bounded grace, SIGKILL), then everything it left behind.
    pub async fn stop(&mut self) {
        if !self.own_running()
            && let Some(adopted) = self.adopt()
        {
            process::signal(adopted.pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = tokio::time::Instant::now() + process::TERMINATE_GRACE;
            while process::alive(adopted.pid).is_some() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(crate::wait::POLL_INTERVAL).await;
            }
        }
        if let Some(mut process) = self.process.take() {
            self.orphans.extend(process::descendants(process.pid()));
            process.terminate().await;
        }
        self.kill_leftovers();
    }

    /// Immediate kill of the node, its process groups and its orphans (Drop path).
    pub fn kill_all(&mut self) {
        self.adopt();
        if let Some(mut process) = self.process.take() {
            self.orphans.extend(process::descendants(process.pid()));
            process.kill_group();
        }
        self.kill_leftovers();
    }

    fn kill_leftovers(&mut self) {
        if let Some(adopted) = self.adopted.take() {
            self.orphans.extend(process::descendants(adopted.pid));
            adopted.kill_if_same();
        }
        for mut retired in self.retired.drain(..) {
            retired.kill_group();
        }
        for orphan in self.orphans.drain(..) {
            orphan.kill_if_same();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_all();
    }
}
