//! t50: the replicated coordinator as separate `kvs-coordinator` processes with their own disks:
//! kill -9 of the leader while admin writes are made loses no acknowledged write; a rolling
//! restart of every node keeps the cluster writable; a node wiped and re-added catches up from a
//! snapshot.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kvs_proto::pb;
use kvs_testbed::raft_cluster::{CoordinatorCluster, RaftClusterOptions};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// One write: a host registration (a Raft commit with fsync on a majority). Returns the host id.
async fn register(cluster: &CoordinatorCluster, index: usize, n: u32) -> Result<String> {
    let join_token = std::fs::read_to_string(cluster.nodes[0].data_dir.join("join-token"))?;
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cluster.ca_pem));
    let channel: Channel = Endpoint::from_shared(cluster.nodes[index].endpoint())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let mut client = pb::agent_client::AgentClient::new(channel);
    let mut request = tonic::Request::new(pb::RegisterRequest {
        zone: "z".into(),
        address: format!("127.1.{}.{}", n / 250, n % 250 + 1),
        hostname: format!("host-{n}"),
        memory_total_bytes: 1 << 30,
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", join_token.trim()).parse()?,
    );
    Ok(client.register(request).await?.into_inner().host_id)
}

/// Registers through whichever node is the leader now (a client that follows the leader).
async fn register_anywhere(cluster: &CoordinatorCluster, n: u32) -> Result<String> {
    let leader = cluster.leader(Duration::from_secs(20)).await?;
    register(cluster, leader, n).await
}

async fn registered_hosts(cluster: &CoordinatorCluster, index: usize) -> Result<BTreeSet<String>> {
    let mut admin = cluster.admin(index)?;
    let hosts = admin
        .list_hosts(pb::ListHostsRequest {})
        .await?
        .into_inner()
        .hosts;
    Ok(hosts.into_iter().map(|h| h.id).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_leader_killed_during_writes_loses_no_acknowledged_write() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let dir = tempfile::tempdir()?;
    let mut cluster = CoordinatorCluster::start(dir.path(), RaftClusterOptions::default()).await?;
    let leader = cluster.leader(Duration::from_secs(20)).await?;

    let mut acknowledged = Vec::new();
    let mut failed = 0;
    {
        tracing::info!("--- writes through the leader, then kill -9 of the leader mid-stream");
        for n in 0..40u32 {
            if n == 20 {
                tracing::info!(node = cluster.nodes[leader].id, "--- kill -9 the leader");
                cluster.kill_hard(leader);
            }
            match register_anywhere(&cluster, n).await {
                Ok(id) => acknowledged.push(id),
                Err(e) => {
                    failed += 1;
                    tracing::info!(n, cause = %e, "write failed (in flight during the leader change)");
                }
            }
        }
    }
    let new_leader = cluster.leader(Duration::from_secs(20)).await?;
    ensure!(new_leader != leader, "a new leader must have been elected");
    ensure!(
        acknowledged.len() >= 30,
        "most writes succeed ({} acknowledged, {failed} failed)",
        acknowledged.len()
    );

    tracing::info!("--- every acknowledged write is present on the new leader");
    let present = registered_hosts(&cluster, new_leader).await?;
    for id in &acknowledged {
        ensure!(
            present.contains(id),
            "acknowledged host {id} is missing after the leader change"
        );
    }

    tracing::info!("--- the old leader restarts and catches up as a follower");
    cluster.restart(leader)?;
    cluster
        .wait_voters(3)
        .await
        .with_context(|| cluster.log_tail(leader))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t51_rolling_restart_keeps_the_cluster_writable() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let dir = tempfile::tempdir()?;
    let mut cluster = CoordinatorCluster::start(dir.path(), RaftClusterOptions::default()).await?;
    let mut written = Vec::new();
    for index in 0..3 {
        tracing::info!(node = index + 1, "--- restart one node");
        cluster.kill_hard(index);
        for n in 0..5u32 {
            written.push(register_anywhere(&cluster, index as u32 * 10 + n).await?);
        }
        cluster.restart(index)?;
        cluster
            .wait_voters(3)
            .await
            .with_context(|| cluster.log_tail(index))?;
    }
    let leader = cluster.leader(Duration::from_secs(20)).await?;
    let present = registered_hosts(&cluster, leader).await?;
    ensure!(
        written.iter().all(|id| present.contains(id)),
        "every write survives the rolling restart"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t52_wiped_node_rejoins_from_a_snapshot() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let dir = tempfile::tempdir()?;
    let options = RaftClusterOptions {
        snapshot_every_entries: 20,
        log_entries_kept: 5,
        ..Default::default()
    };
    let mut cluster = CoordinatorCluster::start(dir.path(), options).await?;

    tracing::info!("--- node 3 is removed and its data wiped");
    let leader = cluster.leader(Duration::from_secs(20)).await?;
    let victim = if leader == 2 { 1 } else { 2 };
    let victim_id = cluster.nodes[victim].id;
    cluster
        .admin(leader)?
        .remove_node(pb::RemoveNodeRequest { node_id: victim_id })
        .await?;
    cluster.kill_hard(victim);

    tracing::info!("--- enough writes that the log behind the snapshot no longer holds them");
    let mut written = Vec::new();
    for n in 0..60u32 {
        written.push(register_anywhere(&cluster, n).await?);
    }

    tracing::info!("--- the wiped node joins again and catches up");
    cluster.wipe(victim, leader)?;
    cluster.restart(victim)?;
    cluster
        .wait_voters(3)
        .await
        .with_context(|| cluster.log_tail(victim))?;
    let log = std::fs::read_to_string(dir.path().join(format!("node-{victim_id}.log")))?;
    ensure!(
        log.contains("snapshot"),
        "the rejoined node installed a snapshot:\n{}",
        cluster.log_tail(victim)
    );

    tracing::info!("--- it serves the replicated state: kill the others' leader and read from it");
    let leader = cluster.leader(Duration::from_secs(20)).await?;
    let state = cluster.status(victim).await?;
    ensure!(
        state.last_applied_index
            >= cluster
                .status(leader)
                .await?
                .last_applied_index
                .saturating_sub(1)
    );
    let ca = cluster
        .admin(victim)?
        .get_ca_bundle(pb::GetCaBundleRequest {})
        .await?
        .into_inner();
    ensure!(
        ca.pem.as_bytes() == cluster.ca_pem.as_slice(),
        "the wiped node has the cluster CA again"
    );
    ensure!(written.len() == 60);
    Ok(())
}
