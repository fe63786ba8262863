//! t30: the coordinator is killed with `kill -9` and restarted on the same data dir. While it is
//! down, instances keep serving (the data path never goes through it); after the restart every
//! instance, setting and config var is exactly as before.

use anyhow::{Result, ensure};
use kvs_proto::pb;
use kvs_testbed::Cluster;
use kvs_testbed::cluster::AVAILABLE_TIMEOUT;
use redis::AsyncCommands;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_coordinator_restart_keeps_state() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let mut cluster = Cluster::start_default(3).await?;
    let apps = ["t30-one", "t30-two"];

    let names = {
        tracing::info!("--- two instances, one with changed settings, a key in each");
        let mut names = Vec::new();
        for app in apps {
            let name = cluster.create_instance("mini", app).await?;
            cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
            names.push(name);
        }
        let update = pb::UpdateSettingsRequest {
            name: names[1].clone(),
            timeout_seconds: Some(60),
            maxmemory_policy: Some("allkeys-lru".into()),
            notify_keyspace_events: Some("KEA".into()),
        };
        cluster.admin()?.update_settings(update).await?;
        for name in &names {
            let mut connection = cluster.connect(name).await?;
            let _: () = connection.set("t30:key", name.as_str()).await?;
        }
        names
    };

    let (instances_before, vars_before) = {
        tracing::info!("--- record ListInstances and GetConfigVars");
        let instances = cluster.list_instances("").await?;
        ensure!(instances.len() == 2, "two instances: {instances:?}");
        let changed = instances
            .iter()
            .find(|i| i.name == names[1])
            .expect("listed");
        ensure!(
            changed.maxmemory_policy == "allkeys-lru" && changed.timeout_seconds == 60,
            "{changed:?}"
        );
        let mut vars = Vec::new();
        for app in apps {
            vars.push(cluster.config_vars(app).await?);
        }
        (instances, vars)
    };

    {
        tracing::info!("--- kill -9 the coordinator; instances keep serving meanwhile");
        cluster.kill_coordinator();
        for name in &names {
            // The URL is known; the coordinator is not needed to use it.
            let url = instances_before
                .iter()
                .find(|i| &i.name == name)
                .expect("listed")
                .url
                .clone();
            let mut connection =
                kvs_testbed::engine_client::connect(&url, cluster.ca_pem()).await?;
            let value: String = connection.get("t30:key").await?;
            ensure!(
                &value == name,
                "{name} serves its data with the coordinator down"
            );
        }
    }

    {
        tracing::info!("--- restart it on the same data dir; wait for the agents to report again");
        cluster.start_coordinator().await?;
        cluster
            .wait_hosts_up(3, kvs_testbed::cluster::HOSTS_READY_TIMEOUT)
            .await?;
        for name in &names {
            cluster.wait_available(name, AVAILABLE_TIMEOUT).await?;
        }
    }

    {
        tracing::info!("--- ListInstances and GetConfigVars are exactly as before");
        let instances_after = cluster.list_instances("").await?;
        for (before, after) in instances_before.iter().zip(&instances_after) {
            ensure!(
                before == after,
                "instance changed across the restart:\nbefore {before:?}\nafter  {after:?}"
            );
        }
        ensure!(
            instances_before.len() == instances_after.len(),
            "instance count changed"
        );
        for (app, before) in apps.iter().zip(&vars_before) {
            let after = cluster.config_vars(app).await?;
            ensure!(
                before == &after,
                "config vars of {app} changed:\nbefore {before:?}\nafter  {after:?}"
            );
        }
    }

    {
        tracing::info!("--- the admin API still works: create one more instance after the restart");
        let name = cluster.create_instance("mini", "t30-three").await?;
        cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        ensure!(!names.contains(&name), "a new name, not a reused one");
    }

    cluster.stop().await;
    Ok(())
}
