//! Helpers for the high-availability end-to-end tests (`tests/t90_*`): a netns cluster or a skip
//! (a failure under `KVS_TEST_STRICT=1`),
//! a premium instance with an in-sync standby, bounded waits on an instance's fields.
//!
//! ```text
//!   netns_or_skip(options) ─► None (skip: not root / no iproute2 / no sshd) | Cluster
//!   premium(cluster, app)  ─► create premium-0 ─► available ─► HA Available at epoch 1
//!   wait_instance(cluster, name, what, timeout, condition) ─► the instance, or what it last was
//!   catch_failover_intent(cluster, name, timeout) ─► (leader index, instance with `failover` set)
//!   writer_kept_going(log, when, max_pause) · agents_kept_reporting(cluster, when)
//! ```
//!
//! The cluster is shared as `Arc<Mutex<Cluster>>` (the [`crate::workload::Writer`] needs it too);
//! every helper holds the lock only for one call.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use kvs_proto::pb;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::cluster::{AVAILABLE_TIMEOUT, HOSTS_READY_TIMEOUT, STATUS_TIMEOUT};
use crate::config::HaSettings;
use crate::wait::{Probe, wait_until};
use crate::workload::WriterLog;
use crate::{Cluster, ClusterOptions};

/// A cluster shared between the test and its writer.
pub type SharedCluster = Arc<Mutex<Cluster>>;

/// How often [`catch_failover_intent`] asks (an intent lives for about one agent report).
pub const INTENT_POLL: Duration = Duration::from_millis(20);

/// Bound on a premium instance's standby getting in sync.
pub const HA_AVAILABLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Probes every second and fails over after `window` (production: 5 s probes, 120 s window), with
/// the production `fence_after` (2 s; the coordinator accepts windows of 7 s and more).
pub fn short_window(window: Duration) -> HaSettings {
    HaSettings {
        probe_interval: Some(Duration::from_secs(1)),
        probe_timeout: Some(Duration::from_millis(900)),
        confirmation_window: Some(window),
        fence_after: None,
        ..HaSettings::default()
    }
}

/// Starts a cluster with `options` (netns mode), or says SKIPPED and returns `None` where netns
/// mode cannot run (not root, no iproute2, no openssh-server).
pub async fn netns_or_skip(options: ClusterOptions) -> Result<Option<SharedCluster>> {
    crate::init_test_tracing();
    if let Err(why) = crate::netns::available().and_then(|()| crate::sshd::available()) {
        kvs_test_support::skip(&format!(
            "netns mode cannot run here ({why}); run as root with iproute2 and openssh-server"
        ));
        return Ok(None);
    }
    let options = ClusterOptions {
        network: crate::NetworkMode::Netns,
        ..options
    };
    Ok(Some(Arc::new(Mutex::new(Cluster::start(options).await?))))
}

/// Stops a shared cluster once every other holder (the writer) is gone.
pub async fn stop(cluster: SharedCluster) -> Result<()> {
    let cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow!("the cluster is still shared (a writer still runs?)"))?
        .into_inner();
    cluster.stop().await;
    Ok(())
}

/// One line saying where an instance stands (for waits and logs).
pub fn describe(i: &pb::Instance) -> String {
    format!(
        "status {} HA {} epoch {} primary {} standbys {:?} {:?} failover {:?}",
        i.status,
        i.ha_status,
        i.epoch,
        i.primary_host,
        i.standby_hosts,
        i.standby_zones,
        i.failover
    )
}

/// Waits for `condition` on the instance (asking the leader), describing what it saw last.
pub async fn wait_instance(
    cluster: &SharedCluster,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Fn(&pb::Instance) -> bool,
) -> Result<pb::Instance> {
    wait_until(what, timeout, || async {
        match cluster.lock().await.instance(name).await {
            Ok(i) if condition(&i) => Probe::Ready(i),
            Ok(i) => Probe::Pending(describe(&i)),
            Err(e) => Probe::Pending(format!("{e:#}")),
        }
    })
    .await
}

/// HA Available at `epoch`, no failover in flight, serving.
pub fn ha_available(epoch: u64) -> impl Fn(&pb::Instance) -> bool {
    move |i| {
        i.ha_status == "Available"
            && i.epoch == epoch
            && i.failover.is_empty()
            && i.status == "available"
    }
}

/// A premium instance attached to `app`, available with an in-sync standby; it and the index of
/// its primary's host.
pub async fn premium(cluster: &SharedCluster, app: &str) -> Result<(pb::Instance, usize)> {
    let name = {
        let mut c = cluster.lock().await;
        let name = c.create_instance("premium-0", app).await?;
        c.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        name
    };
    let ready = wait_instance(
        cluster,
        &name,
        "HA Available",
        HA_AVAILABLE_TIMEOUT,
        ha_available(1),
    )
    .await?;
    let host = crate::engine_client::parse_url(&ready.url)?.host;
    let index = cluster
        .lock()
        .await
        .host_index(&host)
        .with_context(|| format!("no host has the primary's address {host}"))?;
    Ok((ready, index))
}

/// The writer so far never failed, never paused longer than `max_pause`, and had acknowledged
/// writes.
pub fn writer_kept_going(log: &WriterLog, when: &str, max_pause: Duration) -> Result<()> {
    tracing::info!(
        when,
        acknowledged = log.acknowledged.len(),
        errors = log.errors,
        longest_pause_ms = log.longest_pause.as_millis() as u64,
        "writer"
    );
    ensure!(
        log.errors == 0 && log.longest_pause < max_pause,
        "{when}: the writer failed {} times, longest pause {:?} (limit {max_pause:?}); errors \
         (write number, message): {:?}",
        log.errors,
        log.longest_pause,
        log.error_messages
    );
    ensure!(
        !log.acknowledged.is_empty(),
        "{when}: no write acknowledged"
    );
    Ok(())
}

/// Asks the leader that every host is up, and checks no agent was restarted over SSH (netns mode:
/// the coordinator restarts an agent that stopped reporting).
pub async fn agents_kept_reporting(cluster: &SharedCluster, when: &str) -> Result<()> {
    let mut c = cluster.lock().await;
    let hosts = c.agent_configs().len();
    c.wait_hosts_up(hosts, HOSTS_READY_TIMEOUT)
        .await
        .with_context(|| format!("{when}: hosts up on the leader"))?;
    for host in 0..hosts {
        let commands = c.ssh_command_log(host);
        ensure!(
            !commands.contains("restart-agent"),
            "{when}: the agent of host {host} was restarted over SSH (it stopped reporting): {commands}"
        );
    }
    Ok(())
}

/// Polls the leader every 20 ms (without holding the cluster lock) until instance `name` has a
/// failover in flight: the leader's index and what it showed. Fails if the failover completed
/// between two polls, or after `timeout`.
pub async fn catch_failover_intent(
    cluster: &SharedCluster,
    name: &str,
    timeout: Duration,
) -> Result<(usize, pb::Instance)> {
    let deadline = Instant::now() + timeout;
    let (mut leader, mut admin) = {
        let c = cluster.lock().await;
        let leader = c.leader_index().await?;
        (leader, c.admin_node(leader)?)
    };
    let epoch = admin
        .get_instance(pb::InstanceRef { name: name.into() })
        .await?
        .into_inner()
        .epoch;
    while Instant::now() < deadline {
        let reference = pb::InstanceRef { name: name.into() };
        match tokio::time::timeout(STATUS_TIMEOUT, admin.get_instance(reference)).await {
            Ok(Ok(reply)) => {
                let i = reply.into_inner();
                if !i.failover.is_empty() {
                    return Ok((leader, i));
                }
                ensure!(
                    i.epoch == epoch,
                    "the failover completed before the test saw its intent: {}",
                    describe(&i)
                );
            }
            _ => {
                let c = cluster.lock().await;
                leader = c.leader_index().await?;
                admin = c.admin_node(leader)?;
            }
        }
        tokio::time::sleep(INTENT_POLL).await;
    }
    bail!("no failover intent within {timeout:?}")
}
