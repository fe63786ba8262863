//! `kvs run -a APP -- CMD ARGS...`: run a command with the app's config vars (REDIS_URL, ...) in
//! its environment and restart it whenever they change (failover, credential rotation).
//!
//! ```text
//!   WatchConfig(app) ──vars──► changed? ──yes──► SIGTERM to the child's process group
//!        ▲                                        ├─ grace period (--grace, default 10 s)
//!        │ stream broke: note on stderr,          ├─ SIGKILL if still running
//!        └─ reconnect with backoff (1 s .. 30 s)  └─ start CMD again with the new vars
//!
//!   child exits on its own ─► kvs exits with its code (128 + signal if killed by one)
//!   SIGINT / SIGTERM / SIGHUP to kvs ─► stop the child as above, exit 128 + signal
//! ```
//!
//! The child runs in its own process group so a restart reaches its whole tree (shell wrappers,
//! worker processes). The cost: it is not the terminal's foreground group, so a child that reads
//! from the terminal is stopped by SIGTTIN. Servers and workers, the intended use, do not.
//!
//! Before the first vars arrive, errors the user must fix (bad token, unknown app) end the run.
//! After that, every stream failure is retried: the coordinator being down must not stop the app.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use kvs_proto::pb;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tonic::{Code, Streaming};

use crate::cli::RunArgs;
use crate::commands::Context;
use crate::connect::Client;

/// First reconnect delay after the config stream breaks.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Reconnect delays double up to this, so a long outage costs one attempt per 30 s.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Doubling delay between reconnect attempts. Pure: the caller sleeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: RECONNECT_BACKOFF_MIN,
        }
    }
}

impl Backoff {
    /// The delay to wait now; the one after it is twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(RECONNECT_BACKOFF_MAX);
        delay
    }

    /// A message arrived: the next failure starts again from the minimum.
    pub fn reset(&mut self) {
        self.next = RECONNECT_BACKOFF_MIN;
    }
}

/// Names of vars added, removed or changed (never values: they hold passwords).
pub fn changed_keys(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<String> = new
        .iter()
        .filter(|(key, value)| old.get(*key) != Some(*value))
        .map(|(key, _)| key.clone())
        .chain(old.keys().filter(|key| !new.contains_key(*key)).cloned())
        .collect();
    keys.sort();
    keys
}

/// A shell's view of an exit status: the code, or 128 + the signal that killed the process.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

/// Errors the user must fix; retrying them before the first vars would only hide the problem.
fn is_fatal(code: Code) -> bool {
    matches!(
        code,
        Code::Unauthenticated
            | Code::PermissionDenied
            | Code::InvalidArgument
            | Code::NotFound
            | Code::Unimplemented
    )
}

/// The WatchConfig stream, reopened with backoff whenever it breaks.
struct Watcher {
    client: Client,
    /// To connect again (possibly to another coordinator node) after the stream broke.
    ctx: Context,
    app: String,
    /// The open stream, `None` while disconnected.
    stream: Option<Streaming<pb::ConfigVars>>,
    backoff: Backoff,
    /// Whether any vars arrived yet; before that, fatal statuses end the run.
    received: bool,
}

impl Watcher {
    /// The next vars message. Cancel-safe enough for `select!`: a cancelled call leaves the
    /// stream either open or `None`, and the next call carries on from there.
    async fn next(&mut self) -> anyhow::Result<BTreeMap<String, String>> {
        loop {
            let failure = match self.stream.as_mut() {
                None => match self.open().await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        continue;
                    }
                    Err(status) => status,
                },
                Some(stream) => match stream.message().await {
                    Ok(Some(message)) => {
                        self.received = true;
                        self.backoff.reset();
                        return Ok(message.vars.into_iter().collect());
                    }
                    Ok(None) => tonic::Status::unavailable("the coordinator closed the stream"),
                    Err(status) => status,
                },
            };
            self.stream = None;
            if !self.received && is_fatal(failure.code()) {
                return Err(self.client.status_error(&failure));
            }
            let delay = self.backoff.next_delay();
            eprintln!(
                "kvs run: config stream for {} broke ({}); reconnecting in {} s",
                self.app,
                failure.message(),
                delay.as_secs()
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn open(&mut self) -> Result<Streaming<pb::ConfigVars>, tonic::Status> {
        if self.received {
            // The coordinator may have moved: resolve the endpoints (and the leader) again.
            match self.ctx.client().await {
                Ok(client) => self.client = client,
                Err(err) => return Err(tonic::Status::unavailable(err.to_string())),
            }
        }
        let message = pb::AppRef {
            app: self.app.clone(),
        };
        let mut config = self.client.config();
        // No deadline on the stream itself (it lives as long as the app); only on opening it.
        self.client
            .call_status(config.watch_config(tonic::Request::new(message)))
            .await
    }
}

/// The running command and its process group.
struct Child {
    process: tokio::process::Child,
    /// Process id, which is also the process group id (`process_group(0)`).
    pid: Pid,
}

fn spawn(command: &[String], vars: &BTreeMap<String, String>) -> anyhow::Result<Child> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| anyhow!("no command to run"))?;
    let process = tokio::process::Command::new(program)
        .args(args)
        .envs(vars)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let pid = process
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| anyhow!("{program} exited before it could be tracked"))?;
    Ok(Child {
        process,
        pid: Pid::from_raw(pid),
    })
}

/// SIGTERM to the group, `grace` to exit, then SIGKILL. Returns the exit status.
async fn stop(child: &mut Child, grace: Duration) -> anyhow::Result<ExitStatus> {
    if let Some(status) = child.process.try_wait()? {
        return Ok(status);
    }
    // ESRCH (already gone) is fine; the wait below reaps it.
    let _ = killpg(child.pid, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.process.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            eprintln!(
                "kvs run: still running after {} s; sending SIGKILL",
                grace.as_secs()
            );
            let _ = killpg(child.pid, Signal::SIGKILL);
            Ok(child.process.wait().await?)
        }
    }
}

pub async fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<ExitCode> {
    kvs_proto::names::validate_app(&args.app)?;
    let grace = Duration::from_secs(args.grace);
    let program = args.command.first().cloned().unwrap_or_default();
    let client = ctx.client().await?;
    let mut watcher = Watcher {
        client,
        ctx: ctx.clone(),
        app: args.app.clone(),
        stream: None,
        backoff: Backoff::default(),
        received: false,
    };
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;

    let mut vars = tokio::select! {
        vars = watcher.next() => vars?,
        _ = interrupt.recv() => return Ok(ExitCode::from(130)),
        _ = terminate.recv() => return Ok(ExitCode::from(143)),
        _ = hangup.recv() => return Ok(ExitCode::from(129)),
    };
    let mut child = spawn(&args.command, &vars)?;
    eprintln!(
        "kvs run: started {program} (pid {}) with {} config vars of {}",
        child.pid,
        vars.len(),
        args.app
    );
    loop {
        let signal_code: u8 = tokio::select! {
            status = child.process.wait() => return Ok(ExitCode::from(exit_code(status?))),
            next = watcher.next() => {
                let next = match next {
                    Ok(next) => next,
                    Err(err) => {
                        stop(&mut child, grace).await?;
                        return Err(err);
                    }
                };
                let changed = changed_keys(&vars, &next);
                if !changed.is_empty() {
                    eprintln!("kvs run: {} changed ({}); restarting {program}", args.app, changed.join(", "));
                    stop(&mut child, grace).await?;
                    vars = next;
                    child = spawn(&args.command, &vars)?;
                    eprintln!("kvs run: started {program} (pid {})", child.pid);
                }
                continue;
            }
            _ = interrupt.recv() => 130,
            _ = terminate.recv() => 143,
            _ = hangup.recv() => 129,
        };
        stop(&mut child, grace).await?;
        return Ok(ExitCode::from(signal_code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), RECONNECT_BACKOFF_MIN);
    }

    #[test]
    fn changed_keys_names_added_removed_and_modified() {
        let old: BTreeMap<String, String> = [
            ("A".into(), "1".into()),
            ("B".into(), "2".into()),
            ("C".into(), "3".into()),
        ]
        .into();
        let new: BTreeMap<String, String> = [
            ("A".into(), "1".into()),
            ("B".into(), "9".into()),
            ("D".into(), "4".into()),
        ]
        .into();
        assert_eq!(changed_keys(&old, &new), ["B", "C", "D"]);
        assert!(changed_keys(&old, &old).is_empty());
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(
            exit_code(ExitStatus::from_raw(15)),
            143,
            "killed by SIGTERM"
        );
    }

    #[test]
    fn only_user_errors_are_fatal() {
        assert!(is_fatal(Code::Unauthenticated));
        assert!(!is_fatal(Code::Unavailable));
        assert!(!is_fatal(Code::Internal));
    }
}
