//! t25: the agent of the primary's host is killed with `kill -9` (the engine, its child, lives on)
//! and started again, as systemd would. The coordinator sees the host go silent and come back; the
//! instance is available again at the same URL with its data, and no failover happened.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kvs_proto::pb;
use kvs_testbed::Cluster;
use kvs_testbed::cluster::AVAILABLE_TIMEOUT;
use kvs_testbed::wait::{Probe, wait_until};
use redis::AsyncCommands;

/// Longer than `appendfsync everysec`'s window.
const FSYNC_WAIT: Duration = Duration::from_secs(2);
/// agent_silence_timeout (5 s in the testbed) plus margin.
const SILENT_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t25_agent_killed_and_restarted() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let mut cluster = Cluster::start_default(3).await?;

    let (name, before, agent) = {
        tracing::info!("--- a premium-0 instance with a key");
        let name = cluster.create_instance("premium-0", "t25-app").await?;
        let before = cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        let mut connection = cluster.connect(&name).await?;
        let _: () = connection.set("t25:key", "kept").await?;
        tokio::time::sleep(FSYNC_WAIT).await;
        let host = kvs_testbed::engine_client::parse_url(&before.url)?.host;
        let agent = cluster
            .agent_configs()
            .iter()
            .position(|a| a.address.to_string() == host)
            .context("the primary's agent")?;
        (name, before, agent)
    };

    {
        tracing::info!("--- kill -9 agent {agent}; the coordinator marks its host silent");
        cluster.kill_agent(agent)?;
        let admin = cluster.admin()?;
        let zone = cluster.agent_configs()[agent].zone.clone();
        wait_until(
            "the killed agent's host to be silent",
            SILENT_TIMEOUT,
            || {
                let mut admin = admin.clone();
                let zone = zone.clone();
                async move {
                    match admin.list_hosts(pb::ListHostsRequest {}).await {
                        Ok(reply) => match reply
                            .into_inner()
                            .hosts
                            .into_iter()
                            .find(|h| h.zone == zone)
                        {
                            Some(host) if host.state != "up" => Probe::Ready(()),
                            Some(host) => {
                                Probe::Pending(format!("host in zone {zone} is {}", host.state))
                            }
                            None => Probe::Pending(format!("no host in zone {zone}")),
                        },
                        Err(status) => Probe::Pending(format!("ListHosts: {status}")),
                    }
                }
            },
        )
        .await?;
    }

    {
        tracing::info!("--- start the agent again; the host is up and the instance available");
        cluster.start_agent(agent)?;
        cluster
            .wait_hosts_up(3, kvs_testbed::cluster::HOSTS_READY_TIMEOUT)
            .await?;
        let after = cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        ensure!(after.url == before.url, "URL changed");
        ensure!(
            after.epoch == before.epoch,
            "epoch changed: {} → {}",
            before.epoch,
            after.epoch
        );
        let mut connection = cluster.connect(&name).await?;
        let value: Option<String> = connection.get("t25:key").await?;
        ensure!(value.as_deref() == Some("kept"), "t25:key = {value:?}");
    }

    cluster.stop().await;
    Ok(())
}
