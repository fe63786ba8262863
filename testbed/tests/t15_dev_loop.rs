//! t15: `kvs-testbed dev` (what `make dev` runs) is safe to start and stop: it prints the URL once
//! the instance answers, a second dev on the same directory is refused with one line, SIGTERM
//! stops every process it started, and even SIGKILL leaves nothing behind (the kernel kills its
//! nodes, and their engines, through the parent-death signal). Every process is checked by PID.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use kvs_testbed::binaries::Binaries;
use kvs_testbed::process::{self, ChildProcess, ProcessId};
use kvs_testbed::wait::{Probe, wait_until};
use nix::sys::signal::Signal;

/// Bound on the dev cluster printing its URL (a fresh cluster, a premium instance in sync).
const URL_TIMEOUT: Duration = Duration::from_secs(120);
/// What the issue promises: nothing left within 10 s of the signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `kvs-testbed dev` on `dir` (its own address slot and profile file).
fn start_dev(testbed: &Path, dir: &Path, log: &Path) -> Result<ChildProcess> {
    let profile = dir.with_extension("profile.toml");
    let args = [
        "dev",
        "--any-slot",
        "--dir",
        &dir.display().to_string(),
        "--profile",
        &profile.display().to_string(),
    ];
    ChildProcess::spawn("dev", testbed, &args, log)
}

/// Waits for the `REDIS_URL=` line of the `n`-th start in `log`.
async fn wait_url(dev: &mut ChildProcess, log: &Path, n: usize) -> Result<String> {
    wait_until("kvs-testbed dev to print REDIS_URL", URL_TIMEOUT, || {
        let exited = dev.exit_status();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        async move {
            let urls: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("REDIS_URL="))
                .collect();
            match (urls.get(n - 1), exited) {
                (Some(url), _) => Probe::Ready(url.to_string()),
                (None, Some(status)) => Probe::Fatal(anyhow::anyhow!(
                    "kvs-testbed dev exited ({status}):\n{}",
                    process::log_tail(log, 40)
                )),
                (None, None) => Probe::Pending("no URL yet".into()),
            }
        }
    })
    .await
}

/// Every process of the dev cluster (by PID and start time), the dev itself included.
fn cluster_processes(dev: &ChildProcess, dir: &Path) -> Vec<ProcessId> {
    let mut all: Vec<ProcessId> = process::processes_using(dir)
        .into_iter()
        .filter_map(|(pid, _)| process::alive(pid))
        .collect();
    all.extend(process::alive(dev.pid()));
    all.sort_by_key(|p| p.pid);
    all.dedup();
    all
}

/// Waits until none of `processes` is alive any more.
async fn all_gone(processes: &[ProcessId], after: &str) -> Result<()> {
    let processes = processes.to_vec();
    wait_until(
        &format!("every process to exit after {after}"),
        STOP_TIMEOUT,
        || {
            let alive: Vec<u32> = processes
                .iter()
                .filter(|p| process::alive(p.pid).is_some_and(|now| now == **p))
                .map(|p| p.pid)
                .collect();
            async move {
                if alive.is_empty() {
                    Probe::Ready(())
                } else {
                    Probe::Pending(format!("still alive: {alive:?}"))
                }
            }
        },
    )
    .await
}

/// Kills, by PID, whatever still uses the directory when the test ends (a failed run).
struct Sweep<'a>(&'a Path);

impl Drop for Sweep<'_> {
    fn drop(&mut self) {
        for (pid, _) in process::processes_using(self.0) {
            if let Some(id) = process::alive(pid) {
                id.kill_if_same();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_dev_stops_everything_it_started() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let Some(testbed) = Binaries::locate()?.testbed else {
        bail!("kvs-testbed is not built (cargo build --workspace)");
    };
    let work = tempfile::tempdir()?;
    let dir = work.path().join("dev");
    let log = work.path().join("dev.log");
    let _sweep = Sweep(&dir);

    let mut dev = start_dev(&testbed, &dir, &log)?;
    let url = wait_url(&mut dev, &log, 1).await?;
    let first = cluster_processes(&dev, &dir);
    tracing::info!(processes = first.len(), "--- the dev cluster is up");
    // The dev, a coordinator, three agents, a premium instance's primary and standby engines.
    ensure!(first.len() >= 7, "processes of the cluster: {first:?}");
    ensure!(url.starts_with("rediss://"), "{url}");
    let banner = std::fs::read_to_string(&log)?;
    ensure!(
        banner.contains("export PATH="),
        "the banner puts kvs on PATH: {banner}"
    );

    {
        tracing::info!("--- a second dev on the same directory: one line, non-zero exit");
        let second_log = work.path().join("second.log");
        let mut second = start_dev(&testbed, &dir, &second_log)?;
        let status = wait_until("the second dev to exit", STOP_TIMEOUT, || {
            let status = second.exit_status();
            async move { status.map_or(Probe::Pending("running".into()), Probe::Ready) }
        })
        .await?;
        ensure!(!status.contains("exit status: 0"), "{status}");
        let text = std::fs::read_to_string(&second_log)?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        ensure!(lines.len() == 1, "one line: {text}");
        ensure!(
            lines[0].contains(&format!("pid {}", dev.pid())),
            "names the running dev: {text}"
        );
    }

    tracing::info!("--- SIGTERM: every process exits within 10 s");
    process::signal(dev.pid(), Signal::SIGTERM);
    all_gone(&first, "SIGTERM").await?;

    tracing::info!("--- a second start on the same directory reuses the cluster");
    let mut dev = start_dev(&testbed, &dir, &log)?;
    wait_url(&mut dev, &log, 2).await?;
    let text = std::fs::read_to_string(&log)?;
    ensure!(text.contains("reusing instance"), "{text}");
    let second = cluster_processes(&dev, &dir);
    ensure!(second.len() >= 7, "processes of the cluster: {second:?}");

    tracing::info!("--- SIGKILL: the kernel stops the nodes, and they their engines");
    process::signal(dev.pid(), Signal::SIGKILL);
    all_gone(&second, "SIGKILL")
        .await
        .context("after SIGKILL")?;
    drop(dev);
    Ok(())
}
