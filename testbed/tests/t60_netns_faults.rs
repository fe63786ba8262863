//! t60: the testbed's netns mode and its fault injection, tested for themselves (the failover
//! behaviour built on them is tested elsewhere). Each test needs root, iproute2 and openssh-server;
//! without them it skips (fails under KVS_TEST_STRICT=1).
//!
//! - t60: a netns cluster comes up (coordinator + 3 hosts, each its own namespace and sshd); an
//!   instance is reachable over TLS from the test (dialing from the net namespace) and with
//!   redis-cli under `ip netns exec`; every sshd lets the probe key run `true` and nothing else.
//! - t61: cutting a host off makes it unreachable from the coordinator's namespace (and the host goes
//!   silent); healing brings both back.
//! - t62: engine faults (SIGSTOP/SIGCONT, kill -9) and kill_host: no process is left in the host's
//!   namespace; restart_host brings it back.
//! - t63: the forced command `restart-agent` restarts a running and a frozen agent inside its
//!   namespace.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kvs_proto::pb;
use kvs_testbed::cluster::{AVAILABLE_TIMEOUT, HOSTS_READY_TIMEOUT};
use kvs_testbed::wait::{Probe, wait_until};
use kvs_testbed::{Cluster, ClusterOptions, NetworkMode, engine_client};
use redis::AsyncCommands;

/// Bound on a fault becoming visible (a host going silent: agent_silence_timeout 5 s + margin).
const FAULT_VISIBLE: Duration = Duration::from_secs(30);
/// Bound on a restarted agent writing its PID file.
const RESTARTED: Duration = Duration::from_secs(15);
/// Bound on one reachability check across the bridge.
const REACH: Duration = Duration::from_secs(1);

/// A netns cluster with `agents` hosts, or `None` (after saying SKIPPED) where netns cannot run.
async fn netns_cluster(agents: usize) -> Result<Option<Cluster>> {
    kvs_testbed::init_test_tracing();
    let why_not = kvs_testbed::netns::available().and_then(|()| kvs_testbed::sshd::available());
    if let Err(why) = why_not {
        kvs_test_support::skip(&format!(
            "netns mode cannot run here ({why}); run as root with iproute2 and openssh-server"
        ));
        return Ok(None);
    }
    let options = ClusterOptions {
        agents,
        network: NetworkMode::Netns,
        ..ClusterOptions::default()
    };
    Ok(Some(Cluster::start(options).await?))
}

/// Waits until the host with `zone` is in a state other than `up` (silent).
async fn wait_host_not_up(cluster: &Cluster, zone: &str) -> Result<()> {
    let admin = cluster.admin()?;
    wait_until(&format!("host {zone} to leave 'up'"), FAULT_VISIBLE, || {
        let mut admin = admin.clone();
        async move {
            match admin.list_hosts(pb::ListHostsRequest {}).await {
                Ok(reply) => match reply.into_inner().hosts.iter().find(|h| h.zone == zone) {
                    Some(host) if host.state != "up" => Probe::Ready(()),
                    Some(host) => Probe::Pending(format!("host {zone} is {}", host.state)),
                    None => Probe::Pending(format!("no host {zone}")),
                },
                Err(status) => Probe::Pending(format!("ListHosts: {status}")),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_netns_cluster_serves_and_sshd_answers() -> Result<()> {
    let Some(mut cluster) = netns_cluster(3).await? else {
        return Ok(());
    };
    ensure!(cluster.network_mode() == NetworkMode::Netns);

    {
        tracing::info!("--- an instance, reachable over TLS from the net namespace");
        let name = cluster.create_instance("mini", "t60-app").await?;
        let instance = cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        let host = engine_client::parse_url(&instance.url)?.host;
        ensure!(
            host.starts_with("10.77."),
            "the URL names a namespace address: {host}"
        );
        let mut connection = cluster.connect(&name).await?;
        let _: () = connection.set("t60:key", "across the bridge").await?;
        let value: Option<String> = connection.get("t60:key").await?;
        ensure!(value.as_deref() == Some("across the bridge"), "{value:?}");
        if kvs_testbed::binaries::find_in_path("redis-cli").is_some() {
            let ca = cluster.ca_path();
            let output = cluster
                .client_command("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(&ca)
                .args(["-u", &instance.url, "GET", "t60:key"])
                .env("REDISCLI_HISTFILE", "/dev/null")
                .output();
            let output = tokio::time::timeout(Duration::from_secs(15), output).await??;
            let stdout = String::from_utf8_lossy(&output.stdout);
            ensure!(stdout.trim() == "across the bridge", "redis-cli: {stdout}");
        } else {
            kvs_test_support::skip(
                "redis-cli is not installed (scripts/install-engines): the redis-cli check did \
                 not run",
            );
        }
    }

    for index in 0..3 {
        tracing::info!(
            index,
            "--- sshd of the host runs `true` for the probe key, refuses others"
        );
        let output = cluster.ssh(index, "true").await?;
        ensure!(
            output.status.success(),
            "ssh true on host {index}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let output = cluster.ssh(index, "cat /etc/shadow").await?;
        ensure!(
            !output.status.success(),
            "a command outside the forced command ran"
        );
        let log = cluster.ssh_command_log(index);
        ensure!(
            log.contains(" true\n") && log.contains("cat /etc/shadow"),
            "{log}"
        );
    }

    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t61_cut_off_and_heal() -> Result<()> {
    let Some(mut cluster) = netns_cluster(2).await? else {
        return Ok(());
    };
    let (b, a) = (cluster.ssh_address(1)?, cluster.ssh_address(0)?);
    ensure!(
        cluster.reachable_from_coordinator(b, REACH).await,
        "b before the cut"
    );

    tracing::info!("--- cut host b off: unreachable from the coordinator, silent to it");
    cluster.cut_off(1)?;
    ensure!(
        !cluster.reachable_from_coordinator(b, REACH).await,
        "b reachable while cut off"
    );
    ensure!(
        cluster.reachable_from_coordinator(a, REACH).await,
        "a must stay reachable"
    );
    wait_host_not_up(&cluster, "b").await?;

    tracing::info!("--- heal: reachable again, and the host is up again");
    cluster.heal(1)?;
    wait_until("b to be reachable again", FAULT_VISIBLE, || {
        let cluster = &cluster;
        async move {
            if cluster.reachable_from_coordinator(b, REACH).await {
                Probe::Ready(())
            } else {
                Probe::Pending("connect to b's sshd fails".into())
            }
        }
    })
    .await?;
    cluster.wait_hosts_up(2, HOSTS_READY_TIMEOUT).await?;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t62_engine_faults_and_kill_host() -> Result<()> {
    let Some(mut cluster) = netns_cluster(2).await? else {
        return Ok(());
    };
    let name = cluster.create_instance("mini", "t62-app").await?;
    let instance = cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
    let host = engine_client::parse_url(&instance.url)?.host;
    let index = cluster.host_index(&host).context("the instance's host")?;

    {
        tracing::info!("--- SIGSTOP the engine: commands hang; SIGCONT: they answer again");
        let mut connection = cluster.connect(&name).await?;
        let pid = cluster.freeze_engine_on(index, &name)?;
        let frozen = tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await;
        ensure!(
            !matches!(frozen, Ok(Ok(_))),
            "a frozen engine answered: {frozen:?}"
        );
        ensure!(
            cluster.thaw_engine_on(index, &name)? == pid,
            "the same engine"
        );
        cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
    }

    {
        tracing::info!("--- kill -9 the engine: the agent starts a new one");
        let old = cluster.kill_engine_on(index, &name)?;
        wait_until("a new engine", AVAILABLE_TIMEOUT, || {
            let now = cluster.engine_pid_on(index, &name).ok();
            async move {
                match now {
                    Some(pid) if pid != old => Probe::Ready(()),
                    other => Probe::Pending(format!("engine pid {other:?}")),
                }
            }
        })
        .await?;
        cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
    }

    {
        tracing::info!("--- kill the host: nothing is left in its namespace");
        let netns = cluster.host_netns(index).context("netns")?.clone();
        ensure!(
            netns.pids().len() >= 3,
            "agent, engine and sshd run: {:?}",
            netns.pids()
        );
        cluster.kill_host(index)?;
        ensure!(
            netns.pids().is_empty(),
            "left in {}: {:?}",
            netns.name,
            netns.pids()
        );
        ensure!(
            cluster
                .dialer()
                .redis(&instance.url, cluster.ca_pem())
                .await
                .is_err(),
            "the dead host's front still answers"
        );
        wait_host_not_up(&cluster, &cluster.agent_configs()[index].zone.clone()).await?;
    }

    {
        tracing::info!("--- restart the host: sshd and agent again, the instance available");
        cluster.restart_host(index).await?;
        cluster.wait_hosts_up(2, HOSTS_READY_TIMEOUT).await?;
        cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        ensure!(
            cluster.ssh(index, "true").await?.status.success(),
            "sshd is back"
        );
    }

    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t63_restart_agent_over_ssh() -> Result<()> {
    let Some(mut cluster) = netns_cluster(1).await? else {
        return Ok(());
    };
    let netns = cluster.host_netns(0).context("netns")?.clone();
    for frozen in [false, true] {
        tracing::info!(
            frozen,
            "--- the forced command restart-agent replaces the agent"
        );
        let old = cluster.agent_pid(0).context("a running agent")?;
        if frozen {
            // Restarted at once, well before the coordinator could notice the silence itself.
            cluster.freeze_agent(0)?;
        }
        let output = cluster.ssh(0, "restart-agent").await?;
        ensure!(
            output.status.success(),
            "ssh restart-agent: {} {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let new = wait_until("a new agent", RESTARTED, || {
            let pid = cluster.agent_pid(0);
            async move {
                match pid {
                    Some(pid) if pid != old => Probe::Ready(pid),
                    other => Probe::Pending(format!("agent pid {other:?} (old {old})")),
                }
            }
        })
        .await?;
        ensure!(
            netns.pids().contains(&new),
            "the new agent {new} runs in {}",
            netns.name
        );
        ensure!(
            kvs_testbed::process::alive(old).is_none(),
            "the old agent {old} is gone"
        );
        cluster.wait_hosts_up(1, HOSTS_READY_TIMEOUT).await?;
    }
    let log = cluster.ssh_command_log(0);
    ensure!(log.matches("restart-agent").count() >= 2, "{log}");
    cluster.stop().await;
    Ok(())
}
