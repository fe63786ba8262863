//! t80: high availability under host faults, on network-namespace hosts with real sshd probes and
//! a short confirmation window (DESIGN.md §4). Needs root; elsewhere it skips (fails under KVS_TEST_STRICT=1).
//!
//! - t80: the primary's host is cut off → after the window the standby is promoted, the URL rotates
//!   (and a process under `kvs run` is restarted with it), no write acknowledged with WAIT is lost,
//!   a new standby is placed in the third zone and HA is Available again; the old host heals → it
//!   is cleaned up (its replacement standby is already in sync, decision 0004): its engine stops,
//!   its front refuses connections, and a client on the old URL never gets a write through.
//! - t81: cut off for less than the window → no failover.
//! - t82: the primary's agent is killed → the coordinator restarts it over SSH; kill -9 of the
//!   primary's engine → restarted in place; neither fails over, and the data is still there.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kvs_proto::pb;
use kvs_testbed::cluster::AVAILABLE_TIMEOUT;
use kvs_testbed::config::HaSettings;
use kvs_testbed::wait::{Probe, wait_until};
use kvs_testbed::workload::{
    ACKNOWLEDGED_BEFORE_FAULT_MIN, ACKNOWLEDGED_BEFORE_FAULT_TIMEOUT, Writer, missing_writes,
};
use kvs_testbed::{Cluster, ClusterOptions, NetworkMode};
use tokio::sync::Mutex;

/// The confirmation window of these tests (production default: 120 s).
const WINDOW: Duration = Duration::from_secs(12);
/// SSH probes run this often in these tests.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

fn ha() -> HaSettings {
    HaSettings {
        probe_interval: Some(PROBE_INTERVAL),
        probe_timeout: Some(Duration::from_millis(900)),
        confirmation_window: Some(WINDOW),
        fence_after: Some(Duration::from_secs(2)),
        ..HaSettings::default()
    }
}

async fn netns_cluster() -> Result<Option<Cluster>> {
    kvs_testbed::init_test_tracing();
    if let Err(why) = kvs_testbed::netns::available().and_then(|()| kvs_testbed::sshd::available())
    {
        kvs_test_support::skip(&format!(
            "netns mode cannot run here ({why}); run as root with iproute2 and openssh-server"
        ));
        return Ok(None);
    }
    let options = ClusterOptions {
        agents: 3,
        network: NetworkMode::Netns,
        ha: ha(),
        ..ClusterOptions::default()
    };
    Ok(Some(Cluster::start(options).await?))
}

async fn instance(cluster: &Arc<Mutex<Cluster>>, name: &str) -> Result<pb::Instance> {
    cluster.lock().await.instance(name).await
}

/// Waits for `condition` on the instance (bounded), describing what it saw.
async fn wait_instance(
    cluster: &Arc<Mutex<Cluster>>,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Fn(&pb::Instance) -> bool,
) -> Result<pb::Instance> {
    wait_until(what, timeout, || async {
        match instance(cluster, name).await {
            Ok(i) if condition(&i) => Probe::Ready(i),
            Ok(i) => Probe::Pending(format!(
                "status {} HA {} epoch {} primary {} standbys {:?} {:?} failover {:?}",
                i.status,
                i.ha_status,
                i.epoch,
                i.primary_host,
                i.standby_hosts,
                i.standby_zones,
                i.failover
            )),
            Err(e) => Probe::Pending(e.to_string()),
        }
    })
    .await
}

fn ha_available(epoch: u64) -> impl Fn(&pb::Instance) -> bool {
    move |i| {
        i.ha_status == "Available"
            && i.epoch == epoch
            && i.failover.is_empty()
            && i.status == "available"
    }
}

/// A premium instance, available with an in-sync standby; returns it and its primary host index.
async fn premium(cluster: &Arc<Mutex<Cluster>>, app: &str) -> Result<(pb::Instance, usize)> {
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
        Duration::from_secs(90),
        ha_available(1),
    )
    .await?;
    let host = url_host(&ready.url)?;
    let index = cluster
        .lock()
        .await
        .host_index(&host)
        .context("primary host index")?;
    Ok((ready, index))
}

fn url_host(url: &str) -> Result<String> {
    let after_at = url
        .rsplit_once('@')
        .map(|(_, h)| h)
        .context("URL without host")?;
    Ok(after_at
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(after_at)
        .to_string())
}

/// `kvs run -a APP -- sh -c 'echo "$REDIS_URL" >> FILE; sleep 600'` inside the client namespace.
async fn kvs_run(
    cluster: &Cluster,
    app: &str,
    file: &std::path::Path,
) -> Result<tokio::process::Child> {
    let cli = kvs_testbed::binaries::Binaries::locate()?
        .cli
        .context("the kvs CLI is not built")?;
    let mut command = cluster.client_command(&cli.display().to_string());
    command
        .args(["run", "--app", app, "--grace", "1", "--", "sh", "-c"])
        .arg(format!(
            "echo \"$REDIS_URL\" >> {}; exec sleep 600",
            file.display()
        ))
        .env("KVS_ENDPOINT", cluster.endpoint())
        .env("KVS_TOKEN", cluster.admin_token())
        .env("KVS_CA_FILE", cluster.ca_path())
        .stdin(std::process::Stdio::null());
    Ok(command.spawn()?)
}

fn urls_written(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// After the old primary's host heals: its agent reports again, the instance has no process there
/// any more, the stale engine is gone, and the old URL refuses connections; until then every
/// write through the old URL is refused (never acknowledged).
async fn old_host_cleaned_up(
    cluster: &Arc<Mutex<Cluster>>,
    old: usize,
    before: &pb::Instance,
    settled: &pb::Instance,
) -> Result<()> {
    ensure!(
        !settled.standby_hosts.contains(&before.primary_host)
            && settled.primary_host != before.primary_host,
        "the old host holds no process of the instance: {settled:?}"
    );
    wait_until(
        "the old host's agent to report again",
        Duration::from_secs(60),
        || async {
            let c = cluster.lock().await;
            let hosts = match c.admin() {
                Ok(mut admin) => admin.list_hosts(pb::ListHostsRequest {}).await,
                Err(e) => return Probe::Pending(format!("{e:#}")),
            };
            match hosts.map(|r| r.into_inner().hosts) {
                Ok(hosts) => match hosts.iter().find(|h| h.id == before.primary_host) {
                    Some(h) if h.state == "up" => Probe::Ready(()),
                    other => Probe::Pending(format!("{other:?}")),
                },
                Err(status) => Probe::Pending(status.to_string()),
            }
        },
    )
    .await?;
    wait_until(
        "the stale engine to stop and the old URL to refuse connections",
        Duration::from_secs(30),
        || async {
            let c = cluster.lock().await;
            let engine = c.engine_pid_on(old, &before.name).ok();
            match c.dialer().redis(&before.url, c.ca_pem()).await {
                Ok(mut connection) => {
                    let write: redis::RedisResult<()> = redis::cmd("SET")
                        .arg("t80:old")
                        .arg(1)
                        .query_async(&mut connection)
                        .await;
                    match write {
                        Ok(()) => Probe::Fatal(anyhow::anyhow!(
                            "a write through the old URL was acknowledged after the failover"
                        )),
                        Err(e) => Probe::Pending(format!("old URL connects, write refused: {e}")),
                    }
                }
                Err(e) if engine.is_none() && format!("{e:#}").contains("refused") => {
                    Probe::Ready(())
                }
                Err(e) => Probe::Pending(format!("engine {engine:?}; old URL: {e:#}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_cut_off_primary_fails_over_after_the_window() -> Result<()> {
    let Some(cluster) = netns_cluster().await? else {
        return Ok(());
    };
    let cluster = Arc::new(Mutex::new(cluster));
    let (before, primary) = premium(&cluster, "t80").await?;
    let urls_file = cluster.lock().await.dir().join("t80-urls.txt");
    let mut runner = kvs_run(&*cluster.lock().await, "t80", &urls_file).await?;
    wait_until(
        "kvs run to start its command",
        Duration::from_secs(20),
        || async {
            if urls_written(&urls_file).is_empty() {
                Probe::Pending("no URL yet".into())
            } else {
                Probe::Ready(())
            }
        },
    )
    .await?;
    ensure!(
        urls_written(&urls_file) == vec![before.url.clone()],
        "kvs run started with REDIS_URL"
    );
    let writer = Writer::start(cluster.clone(), &before.name, "t80");
    writer
        .wait_acknowledged(
            ACKNOWLEDGED_BEFORE_FAULT_MIN,
            ACKNOWLEDGED_BEFORE_FAULT_TIMEOUT,
        )
        .await?;

    tracing::info!(host = primary, "--- cut the primary's host off");
    let cut_at = tokio::time::Instant::now();
    cluster.lock().await.cut_off(primary)?;
    let after = wait_instance(
        &cluster,
        &before.name,
        "failover",
        WINDOW + Duration::from_secs(90),
        |i| {
            i.epoch >= 2
                && i.failover.is_empty()
                && i.primary_host != before.primary_host
                && i.status == "available"
        },
    )
    .await?;
    let failed_over_after = cut_at.elapsed();
    tracing::info!(
        ms = failed_over_after.as_millis() as u64,
        "--- failover observed (cut → epoch 2 seen by the test)"
    );
    // The window counts from the last sign of life (DESIGN §4 rule 3: no successful probe, no
    // report, no standby I/O inside it), which precedes the cut by up to one probe interval; the
    // simulation checks the rule exactly against ground truth.
    ensure!(
        failed_over_after + PROBE_INTERVAL >= WINDOW,
        "no failover before the window ({failed_over_after:?})"
    );
    ensure!(
        after.primary_host == before.standby_hosts[0],
        "the standby was promoted"
    );
    ensure!(after.url != before.url, "the URL rotated");

    tracing::info!("--- the URL rotated everywhere: config vars and the process under kvs run");
    let vars = cluster.lock().await.config_vars("t80").await?;
    ensure!(vars.vars.get("REDIS_URL") == Some(&after.url));
    wait_until(
        "kvs run to restart with the new URL",
        Duration::from_secs(30),
        || async {
            let urls = urls_written(&urls_file);
            if urls.last() == Some(&after.url) {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{urls:?}"))
            }
        },
    )
    .await?;

    tracing::info!("--- a new standby in the third zone; HA Available again");
    let zones: Vec<String> = {
        let c = cluster.lock().await;
        c.agent_configs().iter().map(|a| a.zone.clone()).collect()
    };
    let settled = wait_instance(
        &cluster,
        &before.name,
        "a new standby in sync",
        Duration::from_secs(90),
        |i| {
            ha_available(i.epoch)(i)
                && !i.standby_zones.is_empty()
                && !i.standby_hosts.contains(&before.primary_host)
        },
    )
    .await?;
    let third = zones
        .iter()
        .find(|z| **z != before.primary_zone && **z != settled.primary_zone);
    ensure!(
        settled.standby_zones.first() == third,
        "standby in the third zone: {:?}",
        settled.standby_zones
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = writer.stop().await;
    {
        let first_write = log.first_write_on.get(&after.url).with_context(|| {
            format!(
                "no write on the new primary {}: writes landed on {:?}, {} errors, {} acknowledged",
                after.url,
                log.first_write_on.keys().collect::<Vec<_>>(),
                log.errors,
                log.acknowledged.len()
            )
        })?;
        tracing::info!(
            acknowledged = log.acknowledged.len(),
            errors = log.errors,
            overhead_ms = first_write
                .duration_since(cut_at)
                .saturating_sub(WINDOW)
                .as_millis() as u64,
            "--- no acknowledged write is lost"
        );
        let c = cluster.lock().await;
        let missing = missing_writes(&c, &after.url, "t80", &log).await?;
        ensure!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
        let events = c
            .admin()?
            .list_events(pb::InstanceRef {
                name: before.name.clone(),
            })
            .await?
            .into_inner();
        ensure!(
            events
                .events
                .iter()
                .any(|e| e.message.contains("data loss")),
            "the failover event records the data loss estimate"
        );
    }

    tracing::info!("--- the old host heals: cleaned up (decision 0004), it never takes a write");
    cluster.lock().await.heal(primary)?;
    old_host_cleaned_up(&cluster, primary, &before, &settled).await?;
    let _ = runner.kill().await;
    let cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("cluster still shared"))?
        .into_inner();
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_cut_off_shorter_than_the_window_does_not_fail_over() -> Result<()> {
    let Some(cluster) = netns_cluster().await? else {
        return Ok(());
    };
    let cluster = Arc::new(Mutex::new(cluster));
    let (before, primary) = premium(&cluster, "t81").await?;
    tracing::info!("--- cut off for half the window, then heal");
    cluster.lock().await.cut_off(primary)?;
    tokio::time::sleep(WINDOW / 2).await;
    cluster.lock().await.heal(primary)?;
    tokio::time::sleep(WINDOW * 2).await;
    let now = instance(&cluster, &before.name).await?;
    ensure!(
        now.epoch == 1 && now.primary_host == before.primary_host,
        "no failover: {now:?}"
    );
    wait_instance(
        &cluster,
        &before.name,
        "HA Available again",
        Duration::from_secs(60),
        ha_available(1),
    )
    .await?;
    let cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("cluster still shared"))?
        .into_inner();
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_agent_and_engine_crashes_do_not_fail_over() -> Result<()> {
    let Some(cluster) = netns_cluster().await? else {
        return Ok(());
    };
    let cluster = Arc::new(Mutex::new(cluster));
    let (before, primary) = premium(&cluster, "t82").await?;
    {
        let c = cluster.lock().await;
        let mut connection = c.dialer().redis(&before.url, c.ca_pem()).await?;
        let _: () = redis::cmd("SET")
            .arg("t82:key")
            .arg("kept")
            .query_async(&mut connection)
            .await?;
    }

    tracing::info!("--- kill the primary's agent: the coordinator restarts it over SSH");
    let old_agent = cluster
        .lock()
        .await
        .agent_pid(primary)
        .context("agent pid")?;
    cluster.lock().await.kill_agent(primary)?;
    wait_until(
        "the agent restarted over SSH",
        Duration::from_secs(60),
        || async {
            let c = cluster.lock().await;
            let log = c.ssh_command_log(primary);
            match c.agent_pid(primary) {
                Some(pid) if pid != old_agent && log.contains("restart-agent") => Probe::Ready(()),
                other => Probe::Pending(format!("agent pid {other:?}, ssh commands: {log}")),
            }
        },
    )
    .await?;

    tracing::info!("--- kill -9 the primary's engine: restarted in place");
    cluster.lock().await.kill_engine_on(primary, &before.name)?;
    wait_instance(
        &cluster,
        &before.name,
        "HA Available, same epoch",
        Duration::from_secs(60),
        ha_available(1),
    )
    .await?;
    let now = instance(&cluster, &before.name).await?;
    ensure!(
        now.epoch == 1 && now.primary_host == before.primary_host && now.url == before.url,
        "no failover"
    );
    let c = cluster.lock().await;
    let mut connection = c.dialer().redis(&before.url, c.ca_pem()).await?;
    let value: Option<String> = redis::cmd("GET")
        .arg("t82:key")
        .query_async(&mut connection)
        .await?;
    ensure!(value.as_deref() == Some("kept"), "the data survived (AOF)");
    drop(c);
    let cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("cluster still shared"))?
        .into_inner();
    cluster.stop().await;
    Ok(())
}

/// A primary whose host reboots (every process killed, a new boot id) and comes back long before
/// the window ends: its agent restarts it fenced (after a power loss its AOF could be a second
/// short) and the coordinator fails over to the standby, which has every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t83_rebooted_primary_fails_over_to_its_standby() -> Result<()> {
    let Some(cluster) = netns_cluster().await? else {
        return Ok(());
    };
    let cluster = Arc::new(Mutex::new(cluster));
    let (before, primary) = premium(&cluster, "t83").await?;
    let writer = Writer::start(cluster.clone(), &before.name, "t83");
    writer
        .wait_acknowledged(
            ACKNOWLEDGED_BEFORE_FAULT_MIN,
            ACKNOWLEDGED_BEFORE_FAULT_TIMEOUT,
        )
        .await?;

    tracing::info!(host = primary, "--- reboot the primary's host");
    cluster.lock().await.reboot_host(primary).await?;
    let after = wait_instance(
        &cluster,
        &before.name,
        "a failover to the standby",
        Duration::from_secs(60),
        |i| i.epoch >= 2 && i.failover.is_empty() && i.status == "available",
    )
    .await?;
    ensure!(
        after.primary_host == before.standby_hosts[0] && after.url != before.url,
        "the standby took over: {after:?}"
    );
    let events = cluster
        .lock()
        .await
        .leader_admin()
        .await?
        .list_events(pb::InstanceRef {
            name: before.name.clone(),
        })
        .await?
        .into_inner()
        .events;
    ensure!(
        events.iter().any(|e| e.message.contains("rebooted")),
        "the event says why: {events:?}"
    );
    wait_until(
        "a write on the new primary",
        Duration::from_secs(30),
        || async {
            if writer.log().await.first_ack_on.contains_key(&after.url) {
                Probe::Ready(())
            } else {
                Probe::Pending("none yet".into())
            }
        },
    )
    .await?;
    let log = writer.stop().await;
    let c = cluster.lock().await;
    let missing = missing_writes(&c, &after.url, "t83", &log).await?;
    tracing::info!(
        acknowledged = log.acknowledged.len(),
        errors = log.errors,
        "--- no acknowledged write is lost"
    );
    ensure!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    drop(c);
    let cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("cluster still shared"))?
        .into_inner();
    cluster.stop().await;
    Ok(())
}
