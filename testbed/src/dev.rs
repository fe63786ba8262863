//! `kvs-testbed dev`: a local cluster for humans. Starts the coordinator and three agents (zones a,
//! b, c on 127.0.0.11-13), writes the `kvs` CLI profile, makes sure `dev-app` has an instance,
//! prints its URL and how to use it, and runs until Ctrl-C.
//!
//! The directory persists (default `.dev`): a second run restarts the same cluster from its data
//! and reuses the app's instance; `--fresh` starts over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kvs_proto::pb;

use crate::cluster::{Cluster, ClusterOptions};
use crate::{engine_client, profile};

/// How often the dev loop checks that every node is still alive.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(2);
/// Bound on the instance becoming available (an engine start, a Register round trip).
const AVAILABLE_TIMEOUT: Duration = Duration::from_secs(90);

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
}

/// Runs the dev cluster until Ctrl-C.
pub async fn run(args: DevArgs) -> Result<()> {
    if args.fresh {
        remove_cluster_dir(&args.dir)?;
    }
    let options = ClusterOptions {
        dir: Some(args.dir.clone()),
        agents: args.agents,
        slot: Some(0),
        cluster_id: "kvs-dev".into(),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(options).await?;

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
            println!("reusing instance {} of app {}", instance.name, args.app);
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
    print_banner(&cluster, &instance, &profile_path);

    let mut ticker = tokio::time::interval(LIVENESS_INTERVAL);
    let mut warned = false;
    loop {
        tokio::select! {
            result = tokio::signal::ctrl_c() => {
                result.context("waiting for Ctrl-C")?;
                break;
            }
            _ = ticker.tick() => {
                if let Err(err) = cluster.check_alive() && !warned {
                    eprintln!("warning: {err:#}");
                    warned = true;
                }
            }
        }
    }
    println!("\nstopping the dev cluster …");
    cluster.stop().await;
    println!(
        "stopped; data and logs stay in {} (run with --fresh to start over)",
        args.dir.display()
    );
    Ok(())
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
    println!();
    println!(
        "KVS dev cluster is up ({} agents, dir {dir})",
        cluster.agent_configs().len()
    );
    println!("  coordinator   {}", cluster.endpoint());
    println!(
        "  CLI profile   {} (written; `kvs` uses it)",
        profile_path.display()
    );
    println!("  logs          {dir}/logs/");
    println!(
        "  instance      {name} at {address} (plan {}, {}, app {app})",
        instance.plan, instance.version
    );
    println!();
    println!("REDIS_URL={url}");
    println!("CA={ca}");
    println!();
    println!("Try, in another terminal:");
    println!("  redis-cli --tls --cacert {ca} -u '{url}' PING");
    println!("  kvs info {name}");
    println!("  kvs config --app {app}");
    println!("  kvs create --plan mini --app other-app && kvs wait <NAME>");
    println!(
        "  kvs run --app {app} -- sh -c 'redis-cli --tls --cacert {ca} -u \"$REDIS_URL\" DBSIZE'"
    );
    println!();
    println!("Ctrl-C stops the cluster.");
}

/// Deletes `dir` if it holds a testbed cluster (refuses any other directory).
fn remove_cluster_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.join("coordinator").join("config.toml").exists() {
        bail!(
            "--fresh: {} does not look like a testbed cluster directory; not deleting it",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("deleting {}", dir.display()))?;
    println!("deleted {}", dir.display());
    Ok(())
}
