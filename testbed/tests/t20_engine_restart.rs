//! t20: an engine process dies (`kill -9`) on a healthy host. The agent restarts it in place, with
//! no failover, and on a persistent plan (premium-0: AOF, fsync every second) the data written
//! before the kill is still there.

use std::time::Duration;

use anyhow::{Result, ensure};
use kvs_testbed::Cluster;
use kvs_testbed::cluster::AVAILABLE_TIMEOUT;
use kvs_testbed::wait::{Probe, wait_until};
use redis::AsyncCommands;

/// Keys written before the kill.
const KEYS: usize = 200;
/// Longer than `appendfsync everysec`'s window, so every write is on disk before the kill.
const FSYNC_WAIT: Duration = Duration::from_secs(2);
/// Bound on the agent noticing the death and starting the engine again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_engine_killed_is_restarted_with_its_data() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let mut cluster = Cluster::start_default(3).await?;

    let (name, before) = {
        tracing::info!("--- create a premium-0 instance (AOF) and write {KEYS} keys");
        let name = cluster.create_instance("premium-0", "t20-app").await?;
        let instance = cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        ensure!(
            instance.persistence == "AOF",
            "premium-0 persists: {instance:?}"
        );
        let mut connection = cluster.connect(&name).await?;
        for i in 0..KEYS {
            let _: () = connection
                .set(format!("t20:{i}"), format!("value-{i}"))
                .await?;
        }
        let _: () = connection.incr("t20:counter", 7).await?;
        tokio::time::sleep(FSYNC_WAIT).await;
        (name, instance)
    };

    let old_pid = {
        tracing::info!("--- kill -9 the engine");
        cluster.kill_engine(&name).await?
    };

    let new_pid = {
        tracing::info!("--- the agent restarts it; the URL works again with a new engine process");
        let url = before.url.clone();
        let ca = cluster.ca_pem().to_vec();
        wait_until("the engine to be restarted", RESTART_TIMEOUT, || {
            let (url, ca) = (url.clone(), ca.clone());
            async move {
                let mut connection = match kvs_testbed::engine_client::connect(&url, &ca).await {
                    Ok(c) => c,
                    Err(err) => return Probe::Pending(format!("connect: {err:#}")),
                };
                match kvs_testbed::engine_client::engine_pid(&mut connection).await {
                    Ok(pid) if pid != old_pid => Probe::Ready(pid),
                    Ok(_) => Probe::Pending("still the old pid?".into()),
                    Err(err) => Probe::Pending(format!("INFO: {err:#}")),
                }
            }
        })
        .await?
    };
    tracing::info!(old_pid, new_pid, "engine restarted");

    {
        tracing::info!("--- every key written before the kill is still there");
        let mut connection = cluster.connect(&name).await?;
        for i in 0..KEYS {
            let value: Option<String> = connection.get(format!("t20:{i}")).await?;
            ensure!(
                value.as_deref() == Some(format!("value-{i}").as_str()),
                "t20:{i} = {value:?}"
            );
        }
        let counter: i64 = connection.get("t20:counter").await?;
        ensure!(counter == 7, "counter {counter}");
    }

    {
        tracing::info!(
            "--- no failover: same URL, same primary host, same epoch; status available"
        );
        let after = cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        ensure!(
            after.url == before.url,
            "URL changed on an in-place restart"
        );
        ensure!(
            after.primary_host == before.primary_host,
            "primary moved: {} → {}",
            before.primary_host,
            after.primary_host
        );
        ensure!(
            after.epoch == before.epoch,
            "epoch changed: {} → {}",
            before.epoch,
            after.epoch
        );
        let events = cluster
            .admin()?
            .list_events(kvs_proto::pb::InstanceRef { name: name.clone() })
            .await;
        if let Ok(events) = events {
            for event in events.into_inner().events {
                tracing::info!(message = %event.message, "event");
            }
        }
    }

    cluster.stop().await;
    Ok(())
}
