//! One node of a testbed cluster (the coordinator or an agent): its config file, its log file and
//! its process across restarts, plus the orphans a `kill -9` leaves behind (an agent's engines).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::process::{self, ChildProcess, ProcessId};

/// A node the testbed can start, kill and restart on the same config and data.
pub struct Node {
    /// `coordinator`, `agent-a`, …
    pub name: String,
    /// The binary (kvs-coordinator or kvs-agent).
    program: PathBuf,
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
        Node {
            name: name.to_string(),
            program: program.to_path_buf(),
            config_path,
            log_path,
            process: None,
            retired: Vec::new(),
            orphans: Vec::new(),
        }
    }

    /// Starts a new incarnation (the previous one must be dead).
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("{} is already running (pid {:?})", self.name, self.pid());
        }
        let config = self.config_path.to_string_lossy().into_owned();
        let child = ChildProcess::spawn(
            &self.name,
            &self.program,
            &["--config", &config],
            &self.log_path,
        )?;
        tracing::info!(node = %self.name, pid = child.pid(), log = %self.log_path.display(), "node started");
        self.process = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::pid)
    }

    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|p| p.exit_status().is_none())
    }

    /// `Err` if the current incarnation has exited (with the tail of its log).
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(process) = self.process.as_mut() else {
            bail!("{} is not started", self.name)
        };
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
        if let Some(mut process) = self.process.take() {
            self.orphans.extend(process::descendants(process.pid()));
            process.terminate().await;
        }
        self.kill_leftovers();
    }

    /// Immediate kill of the node, its process groups and its orphans (Drop path).
    pub fn kill_all(&mut self) {
        if let Some(mut process) = self.process.take() {
            self.orphans.extend(process::descendants(process.pid()));
            process.kill_group();
        }
        self.kill_leftovers();
    }

    fn kill_leftovers(&mut self) {
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
