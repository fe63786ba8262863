//! `kvs-agent --config PATH`: parses the command line, installs tracing, and runs the agent
//! until SIGINT or SIGTERM (then engines are stopped gracefully).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// KVS host agent: supervises valkey-server/redis-server, terminates client TLS, reports to the
/// coordinator.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Path of the agent's TOML config file.
    #[arg(long, env = "KVS_AGENT_CONFIG")]
    config: PathBuf,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kvs-agent: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = kvs_agent::Config::load(&args.config)?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    kvs_agent::run(config, shutdown).await
}
