//! t90: the replicated coordinator (three kvs-coordinator nodes, each in its own network namespace,
//! agents given all three) under coordinator faults, while a premium instance serves a writer.
//! Needs root; elsewhere it skips (fails under KVS_TEST_STRICT=1).
//!
//! - t90: a minority partition, first of a follower, then of the leader (held past a confirmation
//!   window): the cut-off node cannot commit (a write sent to it, from inside its namespace, fails
//!   and changes nothing), the majority keeps (or elects) a leader and keeps committing (an instance
//!   created, a setting changed), nothing fails over, the writer never fails; healed, the node
//!   catches up (lag 0) and the hosts are up.
//! - t91: rolling restart of the three nodes (SIGTERM, kill -9, kill -9), each back as a caught-up
//!   voter before the next; the writer keeps succeeding, hosts stay up, no agent is restarted.
//! - t92: the leader is killed (-9) right after it committed a failover intent: the new leader
//!   completes that failover exactly once (epoch 2, one completion event, the app's config vars
//!   version + 1) and no acknowledged write is lost.
//! - t93 (loopback mode, no root needed): SIGTERM to the leader while agents are connected: it
//!   exits within the testbed's grace and a new leader takes over.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use kvs_proto::pb;
use kvs_testbed::cluster::{AVAILABLE_TIMEOUT, HOSTS_READY_TIMEOUT};
use kvs_testbed::ha_testing::{
    self, SharedCluster, agents_kept_reporting, describe, ha_available, wait_instance,
    writer_kept_going,
};
use kvs_testbed::workload::{
    ACKNOWLEDGED_BEFORE_FAULT_MIN, ACKNOWLEDGED_BEFORE_FAULT_TIMEOUT, Writer, missing_writes,
};
use kvs_testbed::{Cluster, ClusterOptions};
use tokio::time::Instant;

/// The confirmation window of these tests (production default: 120 s; the shortest the
/// coordinator accepts is fence_after (at least 2 s) + 5 s). Fencing after 2 s (the default).
const WINDOW: Duration = Duration::from_secs(12);
/// The longest the writer may go without a successful write while only coordinators are faulted.
const MAX_PAUSE: Duration = Duration::from_secs(3);
/// Bound on a write sent to a cut-off node (it must fail, not hang forever).
const ISOLATED_WRITE: Duration = Duration::from_secs(5);
/// Bound on a healed or restarted node catching up.
const CATCH_UP: Duration = Duration::from_secs(30);
/// t92 freezes the standby's agent this long before the window ends (less than the agent silence
/// timeout, 5 s, minus a report interval, so the leader still counts the standby healthy).
const FREEZE_BEFORE_WINDOW_END: Duration = Duration::from_secs(2);
/// Bound on every agent reporting to the majority's leader (keepalive 4 s, then all nodes at once).
const AGENTS_FOLLOW: Duration = Duration::from_secs(20);

async fn replicated() -> Result<Option<SharedCluster>> {
    ha_testing::netns_or_skip(ClusterOptions {
        agents: 3,
        coordinators: 3,
        ha: ha_testing::short_window(WINDOW),
        ..ClusterOptions::default()
    })
    .await
}

/// The majority commits: a new instance becomes available, a setting of `name` changes.
async fn majority_commits(
    cluster: &SharedCluster,
    app: &str,
    name: &str,
    timeout: u32,
) -> Result<()> {
    let mut c = cluster.lock().await;
    // The agents follow the new leader by themselves; placement needs them reporting to it.
    let searching = Instant::now();
    let hosts = c.wait_hosts_up(3, AGENTS_FOLLOW).await?;
    tracing::info!(
        hosts = hosts.len(),
        ms = searching.elapsed().as_millis() as u64,
        "every agent reports to the leader"
    );
    let created = c.create_instance("mini", app).await?;
    c.wait_available(&created, AVAILABLE_TIMEOUT).await?;
    let update = pb::UpdateSettingsRequest {
        name: name.into(),
        timeout_seconds: Some(timeout),
        ..Default::default()
    };
    let updated = c
        .leader_admin()
        .await?
        .update_settings(update)
        .await?
        .into_inner();
    ensure!(
        updated.timeout_seconds == timeout,
        "the setting changed: {updated:?}"
    );
    Ok(())
}

/// No instance is attached to `app` (ListInstances says NotFound or lists none), on the leader and
/// on node `index` itself.
async fn nothing_for(cluster: &Cluster, app: &str, index: usize) -> Result<()> {
    for mut admin in [cluster.leader_admin().await?, cluster.admin_node(index)?] {
        let request = pb::ListInstancesRequest { app: app.into() };
        match admin.list_instances(request).await {
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Ok(reply) if reply.get_ref().instances.is_empty() => {}
            other => bail!("the refused write to the cut-off node took effect: {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_minority_partition_cannot_commit_and_majority_goes_on() -> Result<()> {
    let Some(cluster) = replicated().await? else {
        return Ok(());
    };
    let (instance, _) = ha_testing::premium(&cluster, "t90").await?;
    let writer = Writer::start(cluster.clone(), &instance.name, "t90");
    writer
        .wait_acknowledged(
            ACKNOWLEDGED_BEFORE_FAULT_MIN,
            ACKNOWLEDGED_BEFORE_FAULT_TIMEOUT,
        )
        .await?;
    for (round, cut_leader) in [("follower", false), ("leader", true)] {
        let started = Instant::now();
        let leader = cluster.lock().await.leader_index().await?;
        let victim = if cut_leader { leader } else { (leader + 1) % 3 };
        tracing::info!(
            round,
            node = victim + 1,
            leader = leader + 1,
            "--- cut a coordinator off"
        );
        cluster.lock().await.cut_off_coordinator_node(victim)?;

        tracing::info!(round, "--- a write sent to the cut-off node fails");
        let ghost = format!("t90-ghost-{round}");
        let request = pb::CreateInstanceRequest {
            plan: "mini".into(),
            app: ghost.clone(),
            ..Default::default()
        };
        let mut inside = cluster.lock().await.admin_inside(victim)?;
        let attempt = tokio::time::timeout(ISOLATED_WRITE, inside.create_instance(request)).await;
        match attempt {
            Ok(Ok(reply)) => bail!("the cut-off node committed a write: {reply:?}"),
            Ok(Err(status)) => {
                tracing::info!(round, code = ?status.code(), message = status.message(), "refused");
                if !cut_leader {
                    ensure!(
                        status.code() == tonic::Code::Unavailable
                            && status.message().contains("leader"),
                        "a cut-off follower says it is not the leader: {status:?}"
                    );
                }
            }
            Err(_) => tracing::info!(round, "no answer within {ISOLATED_WRITE:?} (cannot commit)"),
        }

        tracing::info!(round, "--- the majority has a leader and commits");
        let new_leader = cluster.lock().await.leader_index().await?;
        ensure!(
            new_leader != victim,
            "the cut-off node cannot lead the majority"
        );
        if !cut_leader {
            ensure!(
                new_leader == leader,
                "cutting a follower off keeps the leader"
            );
        }
        majority_commits(
            &cluster,
            &format!("t90-{round}"),
            &instance.name,
            100 + victim as u32,
        )
        .await?;
        // A cut-off follower stays out past a few election timeouts (its term grows); a cut-off
        // leader past a whole confirmation window (its successor must not fail anything over).
        let hold = if cut_leader {
            WINDOW
        } else {
            Duration::from_secs(3)
        };
        let until = started + hold + Duration::from_secs(2);
        tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
        let mut inside = cluster.lock().await.admin_inside(victim)?;
        let call = inside.cluster_status(pb::ClusterStatusRequest {});
        let seen = tokio::time::timeout(ISOLATED_WRITE, call).await;
        let seen = seen.map(|r| r.map(|s| (s.get_ref().leader_id, s.get_ref().term)));
        tracing::info!(round, node = victim + 1, leader_and_term = ?seen, "the cut-off node's own view");
        writer_kept_going(&writer.log().await, &format!("{round} cut off"), MAX_PAUSE)?;

        tracing::info!(
            round,
            "--- heal: the node catches up and the write it refused is nowhere"
        );
        let mut c = cluster.lock().await;
        c.heal_coordinator_node(victim)?;
        c.wait_coordinator_caught_up(victim, CATCH_UP).await?;
        nothing_for(&c, &ghost, victim).await?;
        c.wait_hosts_up(3, HOSTS_READY_TIMEOUT).await?;
        drop(c);
        tracing::info!(
            round,
            ms = started.elapsed().as_millis() as u64,
            "--- round done"
        );
    }
    let log = writer.stop().await;
    writer_kept_going(&log, "the end", MAX_PAUSE)?;
    let c = cluster.lock().await;
    let missing = missing_writes(&c, &instance.url, "t90", &log).await?;
    ensure!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    let now = c.instance(&instance.name).await?;
    ensure!(
        now.epoch == 1 && now.url == instance.url,
        "no failover: {}",
        describe(&now)
    );
    drop(c);
    ha_testing::stop(cluster).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_rolling_restart_of_every_coordinator_node() -> Result<()> {
    let Some(cluster) = replicated().await? else {
        return Ok(());
    };
    let (instance, _) = ha_testing::premium(&cluster, "t91").await?;
    let writer = Writer::start(cluster.clone(), &instance.name, "t91");
    writer
        .wait_acknowledged(
            ACKNOWLEDGED_BEFORE_FAULT_MIN,
            ACKNOWLEDGED_BEFORE_FAULT_TIMEOUT,
        )
        .await?;
    for (node, polite) in [(0, true), (1, false), (2, false)] {
        let started = Instant::now();
        let mut c = cluster.lock().await;
        let leader = c.leader_index().await?;
        let how = if polite { "SIGTERM" } else { "kill -9" };
        tracing::info!(
            node = node + 1,
            leader = leader + 1,
            how,
            "--- restart a coordinator node"
        );
        if polite {
            c.stop_coordinator_node(node).await?;
        } else {
            c.kill_coordinator_node(node)?;
        }
        drop(c);
        // The agents are with the (new) leader before the node returns: a node restarted while
        // agents look for the leader may lead its old term for a moment and keep their sessions
        // after stepping down (a product bug, reproduced by t93's logs).
        agents_kept_reporting(&cluster, &format!("node {} down", node + 1)).await?;
        let mut c = cluster.lock().await;
        c.start_coordinator_node(node).await?;
        c.wait_coordinator_caught_up(node, CATCH_UP).await?;
        drop(c);
        agents_kept_reporting(&cluster, &format!("after restarting node {}", node + 1)).await?;
        writer_kept_going(
            &writer.log().await,
            &format!("node {} restarted", node + 1),
            MAX_PAUSE,
        )?;
        tracing::info!(
            node = node + 1,
            ms = started.elapsed().as_millis() as u64,
            "--- node back"
        );
    }
    let log = writer.stop().await;
    writer_kept_going(&log, "the end", MAX_PAUSE)?;
    let c = cluster.lock().await;
    let missing = missing_writes(&c, &instance.url, "t91", &log).await?;
    ensure!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    drop(c);
    let now = wait_instance(
        &cluster,
        &instance.name,
        "HA Available",
        HOSTS_READY_TIMEOUT,
        ha_available(1),
    )
    .await?;
    ensure!(now.url == instance.url, "no failover: {}", describe(&now));
    ha_testing::stop(cluster).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_leader_killed_mid_failover_completes_it_exactly_once() -> Result<()> {
    let Some(cluster) = replicated().await? else {
        return Ok(());
    };
    let (before, primary) = ha_testing::premium(&cluster, "t92").await?;
    let vars_before = cluster.lock().await.config_vars("t92").await?;
    let writer = Writer::start(cluster.clone(), &before.name, "t92");
    writer
        .wait_acknowledged(
            ACKNOWLEDGED_BEFORE_FAULT_MIN,
            ACKNOWLEDGED_BEFORE_FAULT_TIMEOUT,
        )
        .await?;

    let standby = cluster
        .lock()
        .await
        .host_index_of_id(&before.standby_hosts[0])
        .await?;
    tracing::info!(host = primary, "--- cut the primary's host off");
    cluster.lock().await.cut_off(primary)?;
    let cut_at = Instant::now();
    // The promotion takes the standby's agent a few milliseconds, too short to kill the leader
    // in between. So the agent is frozen shortly before the window ends: its last report (link
    // down, in sync) stays fresh for the agent silence timeout (5 s), long enough for the leader
    // to commit the failover intent, which then waits for the frozen agent.
    tokio::time::sleep_until(cut_at + WINDOW - FREEZE_BEFORE_WINDOW_END).await;
    let frozen = cluster.lock().await.freeze_agent(standby)?;
    tracing::info!(
        host = standby,
        pid = frozen,
        "--- the standby's agent frozen (SIGSTOP)"
    );
    let caught =
        ha_testing::catch_failover_intent(&cluster, &before.name, FREEZE_BEFORE_WINDOW_END * 3)
            .await;
    let (leader, intent) = match caught {
        Ok(caught) => caught,
        Err(error) => {
            cluster.lock().await.thaw_agent(standby)?;
            return Err(error.context("the failover intent while the standby's agent was frozen"));
        }
    };
    cluster.lock().await.kill_coordinator_node(leader)?;
    let killed_at = Instant::now();
    tracing::info!(node = leader + 1, intent = %describe(&intent), "--- intent committed: the leader killed (-9)");
    cluster.lock().await.thaw_agent(standby)?;
    tracing::info!(host = standby, "--- the standby's agent thawed (SIGCONT)");

    let after = wait_instance(
        &cluster,
        &before.name,
        "the failover to complete",
        WINDOW * 2 + Duration::from_secs(30),
        |i| i.epoch >= 2 && i.failover.is_empty() && i.status == "available",
    )
    .await?;
    tracing::info!(
        ms = killed_at.elapsed().as_millis() as u64,
        "--- failover completed under the new leader"
    );
    // Give a second completion (or an abort burning an epoch) the time to happen if it would.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (now, events, vars) = {
        let c = cluster.lock().await;
        let now = c.instance(&before.name).await?;
        let reference = pb::InstanceRef {
            name: before.name.clone(),
        };
        let events = c
            .leader_admin()
            .await?
            .list_events(reference)
            .await?
            .into_inner()
            .events;
        (now, events, c.config_vars("t92").await?)
    };
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    tracing::info!(?messages, "events");
    let count = |f: &dyn Fn(&str) -> bool| messages.iter().filter(|m| f(m)).count();
    ensure!(
        now.epoch == 2,
        "final epoch exactly 2: {} (events {messages:?})",
        describe(&now)
    );
    ensure!(
        now.primary_host == before.standby_hosts[0] && now.url == after.url,
        "the standby was promoted, once: {}",
        describe(&now)
    );
    ensure!(
        count(&|m| m.starts_with("failover to") && m.contains(" begun")) == 1,
        "one failover begun: {messages:?}"
    );
    ensure!(
        count(&|m| m.starts_with("failover to") && m.contains("estimated data loss")) == 1,
        "one failover completed: {messages:?}"
    );
    ensure!(
        count(&|m| m.contains("aborted")) == 0,
        "no failover aborted: {messages:?}"
    );
    ensure!(
        vars.version == vars_before.version + 1,
        "the config vars version grew by one: {} → {}",
        vars_before.version,
        vars.version
    );
    ensure!(
        vars.vars.get("REDIS_URL") == Some(&now.url),
        "REDIS_URL is the new URL"
    );

    let log = writer.stop().await;
    let c = cluster.lock().await;
    let missing = missing_writes(&c, &now.url, "t92", &log).await?;
    tracing::info!(
        acknowledged = log.acknowledged.len(),
        errors = log.errors,
        "--- no acknowledged write is lost"
    );
    ensure!(
        log.first_write_on.contains_key(&now.url),
        "the writer wrote on the new primary"
    );
    ensure!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    drop(c);

    tracing::info!(
        node = leader + 1,
        "--- the killed node restarts and catches up"
    );
    let mut c = cluster.lock().await;
    c.start_coordinator_node(leader).await?;
    c.wait_coordinator_caught_up(leader, CATCH_UP).await?;
    c.heal(primary)?;
    drop(c);
    ha_testing::stop(cluster).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression test: a coordinator with open agent sessions used to hang on SIGTERM (its graceful
// server shutdown waited for the agents' streaming Session RPCs, which never ended).
async fn t93_sigterm_stops_the_leader_promptly() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let mut cluster = Cluster::start(ClusterOptions {
        agents: 1,
        coordinators: 3,
        ..ClusterOptions::default()
    })
    .await?;
    let leader = cluster.leader_index().await?;
    let grace = kvs_testbed::process::TERMINATE_GRACE;
    let exited = cluster.terminate_coordinator_node(leader, grace).await?;
    let next = cluster.leader_index().await?;
    ensure!(next != leader, "a new leader took over");
    cluster.wait_hosts_up(1, HOSTS_READY_TIMEOUT).await?;
    ensure!(
        exited,
        "node {} (the leader) did not exit within {grace:?} of SIGTERM",
        leader + 1
    );
    cluster.stop().await;
    Ok(())
}
