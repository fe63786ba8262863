//! `kvs-coordinator`: parses flags and the config file, installs logging, and runs the node until
//! SIGINT or SIGTERM. Everything else lives in the library (`kvs_coordinator::node::run`).

use std::path::PathBuf;

use clap::Parser;
use kvs_coordinator::config::Config;

/// KVS coordinator node: the control plane of a KVS cluster.
///
/// Example: kvs-coordinator --config /etc/kvs/coordinator.toml
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Config file (TOML); see deploy/config/coordinator.example.toml for every key.
    #[arg(long, env = "KVS_COORDINATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Override `data_dir` from the config file.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Override `listen` from the config file.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr (the journal keeps it); no backtrace: this is an operating error.
            eprintln!("kvs-coordinator: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    kvs_coordinator::node::run(config, shutdown_signal()).await
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(cause = %e, "cannot listen for SIGTERM; only Ctrl-C stops this node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
