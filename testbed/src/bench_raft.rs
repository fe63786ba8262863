//! `kvs-testbed bench-raft`: the replicated coordinator under load, on three local
//! `kvs-coordinator` processes with fsync on (real redb files):
//!
//! ```text
//!   1. commit latency: sequential admin writes (UpdateSettings) → p50 / p99
//!   2. throughput: concurrent admin writes for a fixed time → writes/s
//!   3. agent load: N simulated agents (real Register, real mTLS sessions), each reporting M
//!      instances every second → the leader's CPU (fraction of one core) and resident memory
//! ```
//!
//! Heartbeats stay out of the Raft log by design; the figures show what that buys.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kvs_proto::pb;
use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::raft_cluster::{CoordinatorCluster, RaftClusterOptions};

#[derive(Debug, clap::Args)]
pub struct BenchRaftArgs {
    /// Sequential admin writes for the latency figures.
    #[arg(long, default_value_t = 500)]
    pub writes: usize,
    /// Concurrent writers for the throughput figure.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds of the throughput run.
    #[arg(long, default_value_t = 5)]
    pub throughput_seconds: u64,
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Instances each simulated agent reports.
    #[arg(long, default_value_t = 5)]
    pub instances_per_agent: usize,
    /// Seconds the leader's CPU is measured while every agent reports once a second.
    #[arg(long, default_value_t = 20)]
    pub load_seconds: u64,
    /// Keep the cluster here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// CPU time and memory of one process, from /proc.
struct ProcessSample {
    cpu_ticks: u64,
    rss_kib: u64,
}

fn sample(pid: u32) -> Result<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(ProcessSample {
        cpu_ticks: utime + stime,
        rss_kib,
    })
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Target {
    endpoint: String,
    ca_pem: Vec<u8>,
    join_token: String,
}

impl Target {
    async fn channel(&self, identity: Option<Identity>) -> Result<Channel> {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some(identity) = identity {
            tls = tls.identity(identity);
        }
        Ok(Endpoint::from_shared(self.endpoint.clone())?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?)
    }

    /// Registers a simulated host; returns its id and mTLS identity.
    async fn register(&self, n: usize) -> Result<(String, Identity)> {
        let mut client = pb::agent_client::AgentClient::new(self.channel(None).await?);
        let mut request = tonic::Request::new(pb::RegisterRequest {
            zone: ["a", "b", "c"][n % 3].into(),
            address: format!("127.2.{}.{}", n / 250, n % 250 + 1),
            hostname: format!("sim-{n}"),
            memory_total_bytes: 64 << 30,
            engines: vec![pb::EngineInfo {
                kind: "valkey".into(),
                version: "9.0.0".into(),
                label: "valkey-9".into(),
            }],
            ..Default::default()
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.join_token).parse()?,
        );
        let reply = client.register(request).await?.into_inner();
        Ok((
            reply.host_id,
            Identity::from_pem(reply.cert_pem, reply.key_pem),
        ))
    }
}

fn observed(host_id: &str, instances: usize) -> pb::AgentMessage {
    let processes = (0..instances)
        .map(|i| pb::ProcessObserved {
            instance: format!("redis-sim-{}", 1000 + i),
            epoch: 1,
            status: "running".into(),
            role: "master".into(),
            used_memory_bytes: 1 << 20,
            connected_clients: 3,
            ops_per_sec: 100,
            replication_offset: 12_345,
            ..Default::default()
        })
        .collect();
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Observed(pb::Observed {
            host_id: host_id.into(),
            host: Some(pb::HostMetrics {
                memory_total_bytes: 64 << 30,
                memory_available_bytes: 32 << 30,
                ..Default::default()
            }),
            processes,
            engines: vec![pb::EngineInfo {
                kind: "valkey".into(),
                version: "9.0.0".into(),
                label: "valkey-9".into(),
            }],
            ..Default::default()
        })),
    }
}

/// Runs one simulated agent: a session that reports every second until `stop`.
async fn simulated_agent(
    target: &Target,
    host_id: String,
    identity: Identity,
    instances: usize,
    phase: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut client = pb::agent_client::AgentClient::new(target.channel(Some(identity)).await?);
    let (tx, rx) = mpsc::channel(2);
    tx.send(observed(&host_id, instances)).await?;
    let mut down = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    tokio::spawn(async move { while let Ok(Some(_)) = down.message().await {} });
    tokio::time::sleep(phase).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if tx.send(observed(&host_id, instances)).await.is_err() {
                    anyhow::bail!("session of {host_id} closed");
                }
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return Ok(()),
        }
    }
}

pub async fn run(args: BenchRaftArgs) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    eprintln!("bench-raft: starting 3 coordinators in {}", dir.display());
    let cluster = CoordinatorCluster::start(&dir, RaftClusterOptions::default()).await?;
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    let leader_pid = cluster.nodes[leader].pid().context("leader pid")?;
    let target = Target {
        endpoint: cluster.nodes[leader].endpoint(),
        ca_pem: cluster.ca_pem.clone(),
        join_token: std::fs::read_to_string(cluster.nodes[0].data_dir.join("join-token"))?
            .trim()
            .to_string(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // One live host and one instance to write settings to.
    let (host_id, identity) = target.register(0).await?;
    let keeper = {
        let target = Target {
            endpoint: target.endpoint.clone(),
            ca_pem: target.ca_pem.clone(),
            join_token: target.join_token.clone(),
        };
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            simulated_agent(&target, host_id, identity, 0, Duration::ZERO, stop).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut admin = cluster.admin(leader)?;
    let create = pb::CreateInstanceRequest {
        plan: "mini".into(),
        app: "bench".into(),
        ..Default::default()
    };
    let instance = admin
        .create_instance(create)
        .await
        .context("creating the bench instance")?
        .into_inner()
        .name;

    eprintln!("bench-raft: {} sequential writes", args.writes);
    let mut latencies = Vec::with_capacity(args.writes);
    for i in 0..args.writes {
        let update = pb::UpdateSettingsRequest {
            name: instance.clone(),
            timeout_seconds: Some(300 + (i % 2) as u32),
            ..Default::default()
        };
        let started = tokio::time::Instant::now();
        admin.update_settings(update).await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();

    eprintln!(
        "bench-raft: {} concurrent writers for {} s",
        args.concurrency, args.throughput_seconds
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.throughput_seconds);
    let mut writers = Vec::new();
    for w in 0..args.concurrency {
        let mut admin = cluster.admin(leader)?;
        let name = instance.clone();
        writers.push(tokio::spawn(async move {
            let mut done = 0u64;
            while tokio::time::Instant::now() < deadline {
                let update = pb::UpdateSettingsRequest {
                    name: name.clone(),
                    timeout_seconds: Some(100 + (w as u32) + (done % 2) as u32),
                    ..Default::default()
                };
                if admin.update_settings(update).await.is_ok() {
                    done += 1;
                }
            }
            done
        }));
    }
    let mut total = 0;
    for writer in writers {
        total += writer.await?;
    }
    let throughput = total as f64 / args.throughput_seconds as f64;

    eprintln!("bench-raft: registering {} simulated agents", args.agents);
    let mut identities = Vec::with_capacity(args.agents);
    for chunk_start in (0..args.agents).step_by(32) {
        let batch: Vec<_> = (chunk_start..(chunk_start + 32).min(args.agents))
            .map(|n| target.register(n + 1))
            .collect();
        for result in futures_join_all(batch).await {
            identities.push(result?);
        }
    }
    let target = std::sync::Arc::new(target);
    let mut agents = Vec::new();
    for (n, (host_id, identity)) in identities.into_iter().enumerate() {
        let target = target.clone();
        let stop = stop_rx.clone();
        let phase = Duration::from_millis((n as u64 * 1000) / args.agents.max(1) as u64);
        let instances = args.instances_per_agent;
        agents.push(tokio::spawn(async move {
            simulated_agent(&target, host_id, identity, instances, phase, stop).await
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks = clock_ticks_per_second();
    let before = sample(leader_pid)?;
    let bench_before = sample(std::process::id())?;
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(args.load_seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let after = sample(leader_pid)?;
    let bench_after = sample(std::process::id())?;
    let mut hosts_up = 0;
    if let Ok(hosts) = admin.list_hosts(pb::ListHostsRequest {}).await {
        hosts_up = hosts
            .into_inner()
            .hosts
            .iter()
            .filter(|h| h.state == "up")
            .count();
    }
    let _ = stop_tx.send(true);
    let mut failed_agents = 0;
    for agent in agents {
        if !matches!(agent.await, Ok(Ok(()))) {
            failed_agents += 1;
        }
    }
    let _ = keeper.await;
    let leader_cores = (after.cpu_ticks - before.cpu_ticks) as f64 / ticks as f64 / elapsed;
    let bench_cores =
        (bench_after.cpu_ticks - bench_before.cpu_ticks) as f64 / ticks as f64 / elapsed;

    println!(
        "bench-raft: 3 coordinators on one machine ({} cores), redb with fsync, TLS",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "  commit latency (UpdateSettings, sequential, n={}): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 100.0))
    );
    println!(
        "  throughput ({} concurrent writers, {} s): {:.0} writes/s",
        args.concurrency, args.throughput_seconds, throughput
    );
    println!(
        "  agent load: {} agents × {} instances, one report/s each, {:.0} s measured",
        args.agents, args.instances_per_agent, elapsed
    );
    println!(
        "    hosts seen up by the leader: {hosts_up} (simulated agents + the bench host); sessions that failed: {failed_agents}"
    );
    println!(
        "    leader CPU: {:.3} cores   leader RSS: {} MiB (was {} MiB before the agents)",
        leader_cores,
        after.rss_kib / 1024,
        before.rss_kib / 1024
    );
    println!(
        "    load generator CPU (same machine): {:.3} cores",
        bench_cores
    );
    ensure!(
        failed_agents == 0,
        "{failed_agents} simulated agents failed"
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut handles = Vec::with_capacity(futures.len());
    for f in futures {
        handles.push(f);
    }
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await);
    }
    out
}
