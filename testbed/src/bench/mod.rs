//! `kvs-testbed bench-front`: what the agent's TLS front costs, measured with redis-benchmark
//! against the same engine build and settings.
//!
//! ```text
//!   (a) front    redis-benchmark ─TLS─► agent front (rustls) ─TCP─► KVS engine (redis-7 instance)
//!   (b) native   redis-benchmark ─TLS─► bench redis-server (own tls-port, host cert of the agent)
//!   (c) plain    redis-benchmark ─TCP─► bench redis-server (plain port)
//!   (d) engine   redis-benchmark ─TCP─► KVS engine directly (engine_port, no front)
//! ```
//!
//! The bench redis-server is the same binary as the instance's engine and is started from the
//! instance's own engine.conf (same maxmemory, persistence, ACL users) with only the listeners,
//! directory and TLS files replaced. Ratios a/b, a/c and a/d are printed per test and pipeline.
//!
//! Every run also prints the CPU time each process used per request (redis-benchmark, the agent
//! with the front, the KVS engine, the bench redis-server): on a machine with few cores the
//! front's throughput is bounded by how much CPU the three processes of path (a) need.

mod cpu;
mod engine;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cluster::{Cluster, ClusterOptions};
use crate::engine_client;
use report::{Measurement, Target};

/// Bound on one redis-benchmark run (100k requests take seconds; a hang must not).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// `kvs-testbed bench-front` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Requests per run (redis-benchmark -n).
    #[arg(long, default_value_t = 100_000)]
    pub requests: u32,
    /// Parallel clients (redis-benchmark -c); the plan must allow this many connections.
    #[arg(long, default_value_t = 50)]
    pub clients: u32,
    /// Pipeline depths to run (redis-benchmark -P).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub pipelines: Vec<u32>,
    /// Plan of the benchmarked instance (mini allows only 20 connections).
    #[arg(long, default_value = "premium-2")]
    pub plan: String,
    /// Engine version label; must be a TLS-capable redis-server for (b).
    #[arg(long, default_value = "redis-7")]
    pub version: String,
    /// Agents in the cluster; 1 means no standby, so no replication traffic skews (a).
    #[arg(long, default_value_t = 1)]
    pub agents: usize,
    /// Cluster directory; default: a temporary directory (removed after a successful run).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs the whole benchmark and prints the report.
pub async fn run(args: BenchArgs) -> Result<()> {
    let benchmark = crate::binaries::find_in_path("redis-benchmark")
        .context("redis-benchmark not found: run scripts/install-engines (Debian redis-tools)")?;
    let options = ClusterOptions {
        dir: args.dir.clone(),
        agents: args.agents,
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(options).await?;
    let request = kvs_proto::pb::CreateInstanceRequest {
        plan: args.plan.clone(),
        app: "bench-app".into(),
        version: args.version.clone(),
        ..Default::default()
    };
    let name = cluster.create_instance_with(request).await?.name;
    let instance = cluster
        .wait_available(&name, crate::cluster::AVAILABLE_TIMEOUT)
        .await?;
    let url = engine_client::parse_url(&instance.url)?;
    if instance.max_connections < args.clients {
        bail!(
            "plan {} allows {} connections; --clients {} would be refused",
            args.plan,
            instance.max_connections,
            args.clients
        );
    }
    let instance_dir = cluster.instance_dir(&name).await?;
    let tls_dir = cluster.agent_config(0).context("agent 0")?.tls_dir();
    let bench_dir = cluster.dir().join("bench");
    let native =
        engine::BenchServer::start(&instance_dir, &tls_dir, &bench_dir, &url.host, &instance)
            .await?;

    let tracked = tracked_processes(&instance_dir, native.pid());
    let ca = cluster.ca_path();
    let targets = [
        Target::tls("a front", &url.host, url.port, &ca),
        Target::tls("b native-tls", &url.host, native.tls_port, &ca),
        Target::plain("c plain", &url.host, native.plain_port),
        Target::plain("d engine-direct", &url.host, url.port + 10_000),
    ];
    println!(
        "bench-front: instance {name} ({} {}, maxmemory {} B), {} clients, {} requests per run",
        instance.plan,
        instance.engine_version,
        instance.maxmemory_bytes,
        args.clients,
        args.requests
    );
    warn_if_busy();
    let mut results = Vec::new();
    for &pipeline in &args.pipelines {
        for target in &targets {
            let before = cpu::sample(&tracked);
            let runs = run_benchmark(&benchmark, target, &url.password, &args, pipeline).await?;
            let usage = cpu::usage(&tracked, &before, &cpu::sample(&tracked));
            for m in &runs {
                println!(
                    "  {:<16} P={:<3} {:<4} {:>12.0} ops/s  p99 {:>7.3} ms",
                    target.label, pipeline, m.test, m.rps, m.p99_ms
                );
            }
            println!(
                "  {:<16} P={:<3}      {}",
                target.label,
                pipeline,
                usage.line(u64::from(args.requests) * runs.len() as u64, cores())
            );
            results.extend(runs);
        }
    }
    report::print_ratios(&results);
    drop(native);
    cluster.stop().await;
    Ok(())
}

/// The processes whose CPU time is reported: the instance's engine (its pid file), the agent
/// (the engine's parent: the front runs in the agent) and the bench redis-server.
fn tracked_processes(instance_dir: &std::path::Path, native: u32) -> Vec<cpu::Tracked> {
    let mut tracked = Vec::new();
    let engine = std::fs::read_to_string(instance_dir.join("engine.pid"))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    if let Some(engine) = engine {
        if let Some(agent) = cpu::parent_of(engine) {
            tracked.push(cpu::Tracked {
                label: "agent",
                pid: agent,
            });
        }
        tracked.push(cpu::Tracked {
            label: "engine",
            pid: engine,
        });
    } else {
        println!(
            "warning: no engine.pid in {}; CPU of the agent and engine not shown",
            instance_dir.display()
        );
    }
    tracked.push(cpu::Tracked {
        label: "native-server",
        pid: native,
    });
    tracked
}

/// One redis-benchmark run (SET and GET) against `target` at `pipeline`.
async fn run_benchmark(
    benchmark: &std::path::Path,
    target: &Target,
    password: &str,
    args: &BenchArgs,
    pipeline: u32,
) -> Result<Vec<Measurement>> {
    let mut command = tokio::process::Command::new(benchmark);
    command
        .args(["-h", &target.host, "-p", &target.port.to_string()])
        .args(["--user", "default", "-a", password])
        .args([
            "-c",
            &args.clients.to_string(),
            "-n",
            &args.requests.to_string(),
            "-P",
            &pipeline.to_string(),
        ])
        .args(["-t", "set,get", "--csv"])
        .kill_on_drop(true);
    if let Some(ca) = &target.ca {
        command.arg("--tls").arg("--cacert").arg(ca);
    }
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .with_context(|| {
            format!(
                "redis-benchmark against {} took more than {RUN_TIMEOUT:?}",
                target.label
            )
        })?
        .context("running redis-benchmark")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "redis-benchmark against {} failed ({}): {}",
            target.label,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let runs = report::parse_csv(&stdout, target.label, pipeline)?;
    if runs.len() != 2 {
        bail!(
            "redis-benchmark against {} gave {} results, expected SET and GET:\n{stdout}",
            target.label,
            runs.len()
        );
    }
    Ok(runs)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Benchmarks on a busy machine mostly measure the other load: say so next to the numbers.
fn warn_if_busy() {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok());
    let cores = cores();
    if let Some(load) = load {
        println!("machine: {cores} cores, load average (1 min) {load:.2}");
        if load > cores as f64 * 0.5 {
            println!(
                "warning: the machine is busy; the numbers below are noisy (compare ratios across runs)"
            );
        }
    }
}
