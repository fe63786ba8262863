//! t70: high availability without host faults (works on the loopback testbed): a premium
//! instance gets a standby in another zone and reaches HA Status Available; a planned switchover
//! (`kvs failover`) promotes the standby, rotates the URL and loses no write acknowledged with
//! `WAIT 1 1000`; the old primary follows the new one, refuses writes, and HA is Available again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kvs_proto::pb;
use kvs_testbed::Cluster;
use kvs_testbed::cluster::AVAILABLE_TIMEOUT;
use kvs_testbed::engine_client;
use kvs_testbed::wait::{Probe, wait_until};
use kvs_testbed::workload::{
    ACKNOWLEDGED_BEFORE_FAULT_MIN, ACKNOWLEDGED_BEFORE_FAULT_TIMEOUT, Writer, missing_writes,
};
use tokio::sync::Mutex;

async fn instance(cluster: &Arc<Mutex<Cluster>>, name: &str) -> Result<pb::Instance> {
    cluster.lock().await.instance(name).await
}

async fn wait_ha_available(
    cluster: &Arc<Mutex<Cluster>>,
    name: &str,
    epoch: u64,
) -> Result<pb::Instance> {
    wait_until(
        &format!("{name} HA Status Available at epoch {epoch}"),
        Duration::from_secs(90),
        || async {
            match instance(cluster, name).await {
                Ok(i)
                    if i.ha_status == "Available"
                        && i.epoch == epoch
                        && i.failover.is_empty()
                        && i.status == "available" =>
                {
                    Probe::Ready(i)
                }
                Ok(i) => Probe::Pending(format!(
                    "status {} HA {} epoch {} standbys {:?} failover {:?}",
                    i.status, i.ha_status, i.epoch, i.standby_zones, i.failover
                )),
                Err(e) => Probe::Pending(e.to_string()),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_planned_switchover_loses_no_acknowledged_write() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let mut started = Cluster::start_default(3).await?;
    let name = started.create_instance("premium-0", "t70").await?;
    started.wait_available(&name, AVAILABLE_TIMEOUT).await?;
    let cluster = Arc::new(Mutex::new(started));

    let before = {
        tracing::info!("--- a standby in another zone, in sync");
        let before = wait_ha_available(&cluster, &name, 1).await?;
        ensure!(
            before.standby_zones.len() == 1,
            "one standby: {:?}",
            before.standby_zones
        );
        ensure!(
            before.standby_zones[0] != before.primary_zone,
            "the standby is in another zone"
        );
        before
    };

    let writer = Writer::start(cluster.clone(), &name, "t70");
    writer
        .wait_acknowledged(
            ACKNOWLEDGED_BEFORE_FAULT_MIN,
            ACKNOWLEDGED_BEFORE_FAULT_TIMEOUT,
        )
        .await?;

    {
        tracing::info!("--- planned switchover");
        let mut admin = cluster.lock().await.admin()?;
        admin
            .failover(pb::FailoverRequest {
                name: name.clone(),
                allow_data_loss: false,
            })
            .await?;
    }
    let after = wait_ha_available(&cluster, &name, 2).await?;
    ensure!(
        after.primary_host == before.standby_hosts[0],
        "the standby became the primary"
    );
    ensure!(after.url != before.url, "the URL rotated");
    let vars = cluster.lock().await.config_vars("t70").await?;
    ensure!(
        vars.vars.get("REDIS_URL") == Some(&after.url),
        "REDIS_URL points at the new primary"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = writer.stop().await;
    {
        tracing::info!(
            acknowledged = log.acknowledged.len(),
            errors = log.errors,
            longest_pause_ms = log.longest_pause.as_millis() as u64,
            "--- every acknowledged write is on the new primary"
        );
        ensure!(log.acknowledged.len() > 10, "the writer made progress");
        let missing = missing_writes(&*cluster.lock().await, &after.url, "t70", &log).await?;
        ensure!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    }

    {
        tracing::info!("--- the old primary follows the new one and refuses writes");
        let ca = cluster.lock().await.ca_pem().to_vec();
        let mut old = engine_client::connect(&before.url, &ca)
            .await
            .context("the old URL still connects (as a replica)")?;
        let write: redis::RedisResult<()> = redis::cmd("SET")
            .arg("t70:old")
            .arg(1)
            .query_async(&mut old)
            .await;
        let error = write
            .err()
            .context("a write on the old primary must fail")?;
        let text = error.to_string().to_lowercase();
        ensure!(
            text.contains("readonly") || text.contains("read only"),
            "refused as a replica: {error}"
        );
    }
    let cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("cluster still shared"))?
        .into_inner();
    cluster.stop().await;
    Ok(())
}
