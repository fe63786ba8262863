//! `kvs-testbed`: the developer's entry points to a local KVS cluster.
//!
//! - `kvs-testbed dev`: coordinator + 3 agents + an instance for `dev-app`, the CLI profile written,
//!   running until Ctrl-C.
//! - `kvs-testbed bench-front`: redis-benchmark through the agent's TLS front vs the same engine's
//!   native TLS and plain TCP.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kvs-testbed",
    about = "Local KVS clusters for development, tests and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local dev cluster until Ctrl-C.
    Dev(kvs_testbed::dev::DevArgs),
    /// Benchmark the agent's TLS front against the engine's own TLS and plain TCP.
    BenchFront(kvs_testbed::bench::BenchArgs),
    /// Benchmark the replicated coordinator: commit latency, throughput, 1,000 simulated agents.
    BenchRaft(kvs_testbed::bench_raft::BenchRaftArgs),
    /// Benchmark failover: host cut off, engine crash, planned switchover (needs root: netns).
    BenchFailover(kvs_testbed::bench_failover::BenchFailoverArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Dev(args) => kvs_testbed::dev::run(args).await,
        Command::BenchFront(args) => kvs_testbed::bench::run(args).await,
        Command::BenchRaft(args) => kvs_testbed::bench_raft::run(args).await,
        Command::BenchFailover(args) => kvs_testbed::bench_failover::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kvs-testbed: {}", one_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error chain on one line (`a: b: c`), without backtraces or the log tails some causes
/// carry (those are printed above it, with the cluster's logs).
fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(|cause| {
            cause
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(": ")
}
