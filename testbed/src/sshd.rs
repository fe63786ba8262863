//! One host's own OpenSSH daemon, the way a real KVS host runs the OS's sshd: the coordinators
//! probe it with their probe key and, when the agent is silent, restart the agent through it.
//!
//! ```text
//!   <host dir>/ssh/ssh_host_ed25519_key{,.pub}   generated per host; the agent registers the .pub
//!   <host dir>/ssh/authorized_keys               restrict,command="/bin/sh …/forced-command.sh" <probe key>
//!                                                (one line per coordinator node's probe key)
//!   <host dir>/ssh/forced-command.sh             dispatch on $SSH_ORIGINAL_COMMAND (below)
//!   <host dir>/ssh/sshd_config                   ListenAddress <host address>, Port, AllowUsers <user>
//!   <cluster>/logs/sshd-<zone>.log               sshd -D -e output; ssh-commands-<zone>.log: each command
//! ```
//!
//! The forced command: `true` or nothing → exit 0 (the probe); `restart-agent` (also
//! `systemctl restart kvs-agent`, with or without `sudo`, as DESIGN.md §4 words it) → the host's
//! restart script; anything else → refused, exit 1. As root the user is `root` with
//! `PermitRootLogin forced-commands-only` (the probe key can do nothing but the forced command, and
//! restarting the root-owned agent needs root anyway); nothing is added to the machine's users.
//! sshd runs inside the host's namespace (`ip netns exec`) and is killed by PID.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::netns::Netns;
use crate::netns::dial::Dialer;
use crate::process::ChildProcess;
use crate::wait::{Probe, wait_until};

/// Where Debian's openssh-server puts the daemon (sshd insists on an absolute path).
pub const SSHD: &str = "/usr/sbin/sshd";
/// Bound on sshd listening after it was started.
pub const SSHD_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Why hosts cannot run sshd here, or `Ok`.
pub fn available() -> std::result::Result<(), String> {
    if !Path::new(SSHD).exists() {
        return Err(format!("{SSHD} is not installed (openssh-server)"));
    }
    if crate::binaries::find_in_path("ssh-keygen").is_none() {
        return Err("ssh-keygen is not installed (openssh-client)".into());
    }
    ensure_probe_login()
}

/// The login of the coordinators' probes on testbed hosts: a uid-0 alias whose shell is /bin/sh.
/// sshd runs every command (the forced one included) through the login shell, and root's bash
/// sources ~/.bashrc for ssh sessions: a slow ~/.bashrc (a stale pyenv lock, seen on this machine)
/// made every probe and every `restart-agent` hang, and a host killed mid-command left the lock
/// behind. /bin/sh reads no startup file. Root is still needed to restart the agent.
pub const PROBE_LOGIN: &str = "kvs-test-ssh";

/// Creates [`PROBE_LOGIN`] if missing (no password login, home /) and makes sure it is not locked.
fn ensure_probe_login() -> std::result::Result<(), String> {
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !run("getent", &["passwd", PROBE_LOGIN]) {
        let created = run(
            "useradd",
            &[
                "-o",
                "-u",
                "0",
                "-g",
                "0",
                "-M",
                "-d",
                "/",
                "-s",
                "/bin/sh",
                "-p",
                "*",
                PROBE_LOGIN,
            ],
        );
        if !created {
            return Err(format!(
                "cannot create the probe login {PROBE_LOGIN} (useradd; needs root)"
            ));
        }
    }
    // sshd refuses a locked account ("!"); "*" allows key logins only.
    if !run("usermod", &["-p", "*", PROBE_LOGIN]) {
        return Err(format!(
            "cannot unlock the probe login {PROBE_LOGIN} (usermod)"
        ));
    }
    Ok(())
}

/// What one host's sshd is set up with.
#[derive(Debug, Clone)]
pub struct SshdSpec {
    /// `sshd-a`, … (log names).
    pub name: String,
    /// `<host dir>/ssh`.
    pub dir: PathBuf,
    /// ListenAddress and Port.
    pub listen: SocketAddr,
    /// The only user allowed in (the coordinators' `probe_user`).
    pub user: String,
    /// The coordinators' probe public key lines (every node's `probe_key.pub`, one a line).
    pub probe_public_key: String,
    /// Run by the forced command on `restart-agent`.
    pub restart_script: PathBuf,
    /// sshd's own output.
    pub log_path: PathBuf,
    /// Every forced command run, one line each (`<unix time> <command>`).
    pub command_log: PathBuf,
}

/// A host's sshd: its files and its process.
pub struct Sshd {
    pub spec: SshdSpec,
    process: Option<ChildProcess>,
}

impl Sshd {
    /// Generates the host key and writes the forced command, authorized_keys and sshd_config.
    pub fn prepare(spec: SshdSpec) -> Result<Sshd> {
        std::fs::create_dir_all(&spec.dir)
            .with_context(|| format!("creating {}", spec.dir.display()))?;
        for path in [&spec.dir, &spec.restart_script, &spec.command_log] {
            let text = path.to_string_lossy();
            ensure!(
                !text.contains(['"', '\'', ' ', '\\', '$', '`']),
                "{text}: the sshd config and forced command need a path without quotes or spaces"
            );
        }
        let key = spec.dir.join("ssh_host_ed25519_key");
        if !key.exists() {
            keygen(&key, &spec.name)?;
        }
        let forced = spec.dir.join("forced-command.sh");
        std::fs::write(&forced, forced_command(&spec))?;
        let mut authorized = String::new();
        let keys = spec.probe_public_key.lines().map(str::trim);
        for probe in keys.filter(|l| !l.is_empty()) {
            ensure!(
                probe.starts_with("ssh-"),
                "the probe public key is not an OpenSSH key line: {probe:?}"
            );
            writeln!(
                authorized,
                "restrict,command=\"/bin/sh {}\" {probe}",
                forced.display()
            )?;
        }
        ensure!(!authorized.is_empty(), "no probe public key");
        std::fs::write(spec.dir.join("authorized_keys"), authorized)?;
        let mut config = String::new();
        let root_login = if spec.user == "root" || spec.user == PROBE_LOGIN {
            "forced-commands-only"
        } else {
            "no"
        };
        for line in [
            format!("Port {}", spec.listen.port()),
            format!("ListenAddress {}", spec.listen.ip()),
            format!("HostKey {}", key.display()),
            format!(
                "AuthorizedKeysFile {}",
                spec.dir.join("authorized_keys").display()
            ),
            format!("PidFile {}", spec.dir.join("sshd.pid").display()),
            format!("AllowUsers {}", spec.user),
            format!("PermitRootLogin {root_login}"),
            "StrictModes no\nUsePAM no\nPasswordAuthentication no".into(),
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUseDNS no".into(),
            "PrintMotd no\nLogLevel VERBOSE\nMaxStartups 100:30:200".into(),
        ] {
            writeln!(config, "{line}")?;
        }
        std::fs::write(spec.dir.join("sshd_config"), config)?;
        Ok(Sshd {
            spec,
            process: None,
        })
    }

    /// The host's public key line (what the agent registers and the coordinators pin).
    pub fn host_public_key_file(&self) -> PathBuf {
        self.spec.dir.join("ssh_host_ed25519_key.pub")
    }

    /// Starts sshd (inside `netns` if given) and waits until it accepts TCP connections.
    pub async fn start(&mut self, netns: Option<&Netns>, dialer: &Dialer) -> Result<()> {
        if self.is_running() {
            bail!("{} is already running", self.spec.name);
        }
        // sshd's privilege separation directory; it refuses to start without it.
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        let config = self.spec.dir.join("sshd_config");
        let config = config.to_string_lossy();
        let sshd_args = [SSHD, "-D", "-e", "-f", &config];
        let child = match netns {
            Some(ns) => {
                let mut args = vec!["netns", "exec", &ns.name];
                args.extend(sshd_args);
                ChildProcess::spawn(
                    &self.spec.name,
                    &crate::netns::ip_program(),
                    &args,
                    &self.spec.log_path,
                )?
            }
            None => ChildProcess::spawn(
                &self.spec.name,
                Path::new(SSHD),
                &sshd_args[1..],
                &self.spec.log_path,
            )?,
        };
        tracing::info!(name = %self.spec.name, pid = child.pid(), listen = %self.spec.listen, "sshd started");
        self.process = Some(child);
        let listen = self.spec.listen;
        let log = self.spec.log_path.clone();
        let process = &mut self.process;
        wait_until(
            &format!("{} to listen on {listen}", self.spec.name),
            SSHD_READY_TIMEOUT,
            || {
                let exited = process.as_mut().and_then(ChildProcess::exit_status);
                let dialer = dialer.clone();
                let log = log.clone();
                async move {
                    if let Some(status) = exited {
                        let tail = crate::process::log_tail(&log, 20);
                        return Probe::Fatal(anyhow::anyhow!("sshd exited ({status}):\n{tail}"));
                    }
                    match dialer.tcp(listen).await {
                        Ok(_) => Probe::Ready(()),
                        Err(err) => Probe::Pending(format!("connect {listen}: {err}")),
                    }
                }
            },
        )
        .await
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::pid)
    }

    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|p| p.exit_status().is_none())
    }

    /// SIGKILL by PID (and reaps it).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill_group();
        }
    }

    /// Forced commands run so far (`<unix time> <command>` lines).
    pub fn command_log(&self) -> String {
        std::fs::read_to_string(&self.spec.command_log).unwrap_or_default()
    }
}

fn forced_command(spec: &SshdSpec) -> String {
    format!(
        r#"#!/bin/sh
# kvs-testbed: the forced command of the coordinators' probe key on {name}.
echo "$(date +%s) ${{SSH_ORIGINAL_COMMAND:-}}" >> {log}
case "${{SSH_ORIGINAL_COMMAND:-}}" in
  ""|true) exit 0 ;;
  restart-agent|"systemctl restart kvs-agent"|"sudo systemctl restart kvs-agent")
    exec /bin/sh {restart} ;;
  *) echo "kvs-testbed forced command: refused: $SSH_ORIGINAL_COMMAND" >&2; exit 1 ;;
esac
"#,
        name = spec.name,
        log = spec.command_log.display(),
        restart = spec.restart_script.display(),
    )
}

/// `ssh-keygen -t ed25519 -N '' -f path` (writes `path` and `path.pub`).
pub fn keygen(path: &Path, comment: &str) -> Result<()> {
    let output = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running ssh-keygen")?;
    ensure!(
        output.status.success(),
        "ssh-keygen -f {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}
