//! `kvs-testbed dev`: a local cluster for humans. Starts the coordinator and three agents (zones a,
//! b, c on 127.0.0.11-13), writes the `kvs` CLI profile, makes sure `dev-app` has an instance,
//! prints its URL once it answers PING, and runs until SIGINT, SIGTERM or SIGHUP.
//!
//! ```text
//!   guard::acquire(dir) ─► Cluster::start (nodes die with us: PR_SET_PDEATHSIG; engines die
//!     with their agents) ─► instance available ─► ready::answering_ping ─► banner
//!     ─► wait for a signal ─► Cluster::stop (a second signal: exit at once, the kernel kills
//!        the rest)
//! ```
//!
//! The directory persists (default `.dev`): a second run restarts the same cluster from its data
//! and reuses the app's instance; `--fresh` starts over. Only one dev runs per directory.

mod guard;
mod ready;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kvs_proto::pb;
use tokio::signal::unix::{SignalKind, signal};

use crate::cluster::{Cluster, ClusterOptions};
use crate::{binaries, engine_client, profile};

/// How often the dev loop checks that every node is still alive.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(2);
/// Bound on the instance becoming available (an engine start, a Register round trip).
const AVAILABLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on an engine loading its dataset before it answers PING (large AOFs take a while).
const LOADING_TIMEOUT: Duration = Duration::from_secs(600);

/// `kvs-testbed dev` flags.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Cluster directory (configs, data, logs); kept between runs.
    #[arg(long, default_value = ".dev")]
    pub dir: PathBuf,
    /// Plan of the dev-app instance (premium-0: AOF and a standby in another zone).
    #[arg(long, default_value = "premium-0")]
    pub plan: String,
    /// App the instance is attached to.
    #[arg(long, default_value = "dev-app")]
    pub app: String,
    /// Engine version label (e.g. valkey-9, redis-7); default: the cluster's default.
    #[arg(long)]
    pub version: Option<String>,
    /// Number of agents (1..=3).
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
    /// Delete the directory first (only if it holds a testbed cluster).
    #[arg(long)]
    pub fresh: bool,
    /// Where to write the CLI profile; default: $KVS_PROFILE, $XDG_CONFIG_HOME/kvs/config.toml or
    /// ~/.config/kvs/config.toml.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Use the first free test address slot instead of the dev cluster's (127.0.0.x): for the
    /// tests of `kvs-testbed dev` itself.
    #[arg(long, hide = true)]
    pub any_slot: bool,
}

/// Prints a line; never panics (after SIGHUP the terminal may be gone).
fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Runs the dev cluster until a signal.
pub async fn run(args: DevArgs) -> Result<()> {
    let mut stop = StopSignals::install()?;
    let guard = guard::acquire(&args.dir)?;
    if args.fresh {
        remove_cluster_data(&args.dir)?;
    }
    let options = ClusterOptions {
        dir: Some(args.dir.clone()),
        agents: args.agents,
        slot: (!args.any_slot).then_some(0),
        cluster_id: "kvs-dev".into(),
        engines_exit_with_agents: true,
        ..ClusterOptions::default()
    };
    let mut cluster = tokio::select! {
        started = Cluster::start(options) => started?,
        () = stop.next() => {
            say("stopped before the cluster was up");
            return Ok(());
        }
    };
    let profile_path = write_profile(&cluster, &args)?;
    let instance = tokio::select! {
        ready = ensure_instance(&mut cluster, &args) => ready,
        () = stop.next() => Err(anyhow::anyhow!("stopped while waiting for the instance")),
    };
    let instance = match instance {
        Ok(instance) => instance,
        Err(err) => {
            cluster.stop().await;
            return Err(err);
        }
    };
    print_banner(&cluster, &instance, &profile_path);
    watch_until_stopped(&mut cluster, &mut stop).await;
    say("\nstopping the dev cluster …");
    tokio::select! {
        () = cluster.stop() => {}
        () = stop.next() => {
            say("second signal: exiting now (the kernel stops what is left)");
            std::process::exit(1);
        }
    }
    say(&format!(
        "stopped; data and logs stay in {} (run with --fresh to start over)",
        args.dir.display()
    ));
    drop(guard);
    Ok(())
}

/// SIGINT (Ctrl-C), SIGTERM (supervisors, `timeout`) and SIGHUP (a closed terminal).
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot install the {name} handler"))
        };
        Ok(Self {
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
            hangup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}

async fn watch_until_stopped(cluster: &mut Cluster, stop: &mut StopSignals) {
    let mut ticker = tokio::time::interval(LIVENESS_INTERVAL);
    let mut warned = false;
    loop {
        tokio::select! {
            () = stop.next() => return,
            _ = ticker.tick() => {
                if let Err(err) = cluster.check_alive() && !warned {
                    let first = format!("{err:#}");
                    let first = first.lines().next().unwrap_or_default();
                    let _ = writeln!(std::io::stderr(), "warning: {first}");
                    warned = true;
                }
            }
        }
    }
}

fn write_profile(cluster: &Cluster, args: &DevArgs) -> Result<PathBuf> {
    let profile_path = match &args.profile {
        Some(path) => path.clone(),
        None => profile::default_path()?,
    };
    let profile = profile::Profile {
        endpoint: cluster.endpoint(),
        token: cluster.admin_token().into(),
        ca_file: cluster.ca_path(),
    };
    profile::write(&profile_path, &profile)?;
    Ok(profile_path)
}

/// The app's instance (reused or created), once its URL answers PING.
async fn ensure_instance(cluster: &mut Cluster, args: &DevArgs) -> Result<pb::Instance> {
    // NOT_FOUND: the app has no instances yet (apps exist only through their attachments).
    let existing = match cluster
        .admin()?
        .list_instances(pb::ListInstancesRequest {
            app: args.app.clone(),
        })
        .await
    {
        Ok(reply) => reply.into_inner().instances,
        Err(status) if status.code() == tonic::Code::NotFound => Vec::new(),
        Err(status) => return Err(status).context("ListInstances"),
    };
    let name = match existing.first() {
        Some(instance) => {
            say(&format!(
                "reusing instance {} of app {}",
                instance.name, args.app
            ));
            instance.name.clone()
        }
        None => {
            let request = pb::CreateInstanceRequest {
                plan: args.plan.clone(),
                app: args.app.clone(),
                version: args.version.clone().unwrap_or_default(),
                ..Default::default()
            };
            cluster.create_instance_with(request).await?.name
        }
    };
    let instance = cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
    ready::answering_ping(
        cluster.dialer(),
        &instance.url,
        cluster.ca_pem(),
        LOADING_TIMEOUT,
    )
    .await?;
    Ok(instance)
}

fn print_banner(cluster: &Cluster, instance: &pb::Instance, profile_path: &Path) {
    let ca = cluster.ca_path().display().to_string();
    let url = &instance.url;
    let address = engine_client::parse_url(url)
        .map(|p| format!("{}:{}", p.host, p.port))
        .unwrap_or_default();
    let app = instance
        .attachments
        .first()
        .map(|a| a.app.as_str())
        .unwrap_or("dev-app");
    let name = &instance.name;
    let dir = cluster.dir().display();
    let lines = [
        String::new(),
        format!(
            "KVS dev cluster is up ({} agents, dir {dir})",
            cluster.agent_configs().len()
        ),
        format!("  coordinator   {}", cluster.endpoint()),
        format!(
            "  CLI profile   {} (written; `kvs` uses it)",
            profile_path.display()
        ),
        format!("  logs          {dir}/logs/"),
        format!(
            "  instance      {name} at {address} (plan {}, {}, app {app})",
            instance.plan, instance.version
        ),
        String::new(),
        format!("REDIS_URL={url}"),
        format!("CA={ca}"),
        String::new(),
        "Try, in another terminal:".into(),
        path_line(),
        format!("  redis-cli --tls --cacert {ca} -u '{url}' PING"),
        format!("  kvs info {name}"),
        format!("  kvs config --app {app}"),
        "  kvs create --plan mini --app other-app && kvs wait <NAME>".into(),
        format!(
            "  kvs run --app {app} -- sh -c 'redis-cli --tls --cacert {ca} -u \"$REDIS_URL\" DBSIZE'"
        ),
        String::new(),
        "Ctrl-C stops the cluster.".into(),
    ];
    for line in lines {
        say(&line);
    }
}

/// The line that puts the built `kvs` on the user's PATH (it is not installed anywhere).
fn path_line() -> String {
    match binaries::Binaries::locate().ok().and_then(|b| b.cli) {
        Some(cli) => {
            let dir = cli.parent().unwrap_or(Path::new("."));
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            format!(
                "  export PATH=\"{}:$PATH\"   # puts `kvs` on your PATH",
                dir.display()
            )
        }
        None => "  (the kvs CLI is not built: cargo build -p kvs-ctl)".into(),
    }
}

/// Deletes the cluster's data in `dir` (only if it holds a testbed cluster), keeping the lock.
fn remove_cluster_data(dir: &Path) -> Result<()> {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != guard::LOCK_FILE_NAME)
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    if !dir.join("coordinator").join("config.toml").exists() {
        bail!(
            "--fresh: {} does not look like a testbed cluster directory; not deleting it",
            dir.display()
        );
    }
    for entry in entries {
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("deleting {}", path.display()))?;
    }
    say(&format!("deleted the cluster in {}", dir.display()));
    Ok(())
}
