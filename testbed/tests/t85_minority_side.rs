//! t85–t86: the minority-side client (issue 11, decision 0007), on network-namespace hosts with
//! real sshd probes and the production `fence_after` (2 s). Writers run INSIDE the primary's host
//! and keep writing to its URL while the host is cut off from everything else. Needs root;
//! elsewhere it skips (fails under KVS_TEST_STRICT=1).
//!
//! - t85: cut off past the window → the standby is promoted; no write a replica acknowledged
//!   (`WAIT 1 1000`) is lost, at least [`ACKED_BEFORE_CUT`] of them before the cut; plain writes
//!   lost at most the writer's rate × the fence bound (3 s), all acknowledged within it; the
//!   first refused write within the bound.
//! - t86: a blip shorter than `fence_after` − 0.5 s refuses no write; a cut longer than the fence
//!   but shorter than the window fences, and writes resume within 1 s of the heal, no failover,
//!   nothing lost.

use std::time::Duration;

use anyhow::{Result, ensure};
use kvs_testbed::config::HaSettings;
use kvs_testbed::ha_testing::{self, SharedCluster, ha_available, wait_instance};
use kvs_testbed::minority::{ACKED_BEFORE_CUT, Cut, RoundReport, round};
use kvs_testbed::{ClusterOptions, NetworkMode};

/// The production default.
const FENCE_AFTER: Duration = Duration::from_secs(2);
/// The loss bound the issue asks for: the fence plus one second for its timer, the last word
/// before the cut and scheduling.
const FENCE_BOUND: Duration = Duration::from_secs(3);

fn options(window: Duration) -> ClusterOptions {
    ClusterOptions {
        agents: 3,
        network: NetworkMode::Netns,
        ha: HaSettings {
            fence_after: None, // the default, FENCE_AFTER
            ..ha_testing::short_window(window)
        },
        ..ClusterOptions::default()
    }
}

fn log_round(what: &str, r: &RoundReport) {
    tracing::info!(
        what,
        plain_after_cut = r.plain.acked_after_cut,
        plain_lost = r.plain.lost,
        plain_last_lost = ?r.plain.last_lost_after_cut,
        plain_first_refused = ?r.plain.first_refused,
        plain_rate = r.plain.rate_before_cut,
        waited_before_cut = r.waited.acked_before_cut,
        waited_lost = r.waited.lost,
        "minority-side round"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t85_minority_side_writer_loses_at_most_the_fence_bound() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let window = Duration::from_secs(8);
    let Some(cluster) = ha_testing::netns_or_skip(options(window)).await? else {
        return Ok(());
    };
    let (before, primary) = ha_testing::premium(&cluster, "t85").await?;
    let cut = Cut {
        length: window * 2,
        after_heal: Duration::from_secs(8),
    };
    let r = round(&cluster, &before.name, primary, cut, "t85").await?;
    log_round("cut past the window", &r);
    let after = cluster.lock().await.instance(&before.name).await?;
    ensure!(
        after.epoch > before.epoch && after.url != before.url,
        "the standby was promoted and the URL rotated: {}",
        ha_testing::describe(&after)
    );
    ensure!(
        r.waited.acked_before_cut >= ACKED_BEFORE_CUT,
        "{} WAIT-acknowledged writes before the cut",
        r.waited.acked_before_cut
    );
    ensure!(
        r.waited.lost == 0,
        "{} WAIT-acknowledged writes lost",
        r.waited.lost
    );
    ensure!(
        r.plain.acked_after_cut >= 1,
        "the plain writer was writing at the cut (none acknowledged after it)"
    );
    let allowed = (r.plain.rate_before_cut * FENCE_BOUND.as_secs_f64()).ceil() as usize;
    ensure!(
        r.plain.lost <= allowed,
        "{} plain writes lost, more than {allowed} (rate {:.0}/s × {FENCE_BOUND:?})",
        r.plain.lost,
        r.plain.rate_before_cut
    );
    ensure!(
        r.plain
            .last_lost_after_cut
            .is_none_or(|at| at <= FENCE_BOUND),
        "a write acknowledged {:?} after the cut was lost",
        r.plain.last_lost_after_cut
    );
    let refused = r.plain.first_refused;
    ensure!(
        refused.is_some_and(|at| at <= FENCE_BOUND),
        "cut → first refused write {refused:?}"
    );
    stop(cluster).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t86_blips_keep_writing_and_a_fence_lifts_within_a_second() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let window = Duration::from_secs(12);
    let Some(cluster) = ha_testing::netns_or_skip(options(window)).await? else {
        return Ok(());
    };
    let (before, primary) = ha_testing::premium(&cluster, "t86").await?;

    let blip = Cut {
        length: FENCE_AFTER - Duration::from_millis(1_000),
        after_heal: Duration::from_secs(2),
    };
    let r = round(&cluster, &before.name, primary, blip, "t86-blip").await?;
    log_round("blip", &r);
    ensure!(
        r.plain.first_refused.is_none(),
        "a {:?} blip refused a write {:?} after the cut",
        blip.length,
        r.plain.first_refused
    );
    let during = r
        .plain_log
        .acked
        .iter()
        .filter(|a| a.at >= r.cut_at && a.at < r.healed_at)
        .count();
    ensure!(during > 0, "no write acknowledged during the blip");
    ensure!(
        r.plain.lost == 0 && r.waited.lost == 0,
        "nothing lost in a blip"
    );

    let fence = Cut {
        length: FENCE_AFTER * 3,
        after_heal: Duration::from_secs(3),
    };
    let r = round(&cluster, &before.name, primary, fence, "t86-fence").await?;
    log_round("fence, no failover", &r);
    ensure!(
        r.plain.first_refused.is_some_and(|at| at <= FENCE_BOUND),
        "cut → first refused write {:?}",
        r.plain.first_refused
    );
    let resumed = r
        .plain_log
        .acked
        .iter()
        .find(|a| a.at >= r.healed_at)
        .map(|a| a.at.duration_since(r.healed_at));
    tracing::info!(?resumed, "heal → first acknowledged write");
    ensure!(
        resumed.is_some_and(|after| after <= Duration::from_secs(1)),
        "writes resumed {resumed:?} after the heal"
    );
    ensure!(
        r.plain.lost == 0 && r.waited.lost == 0,
        "no failover, nothing lost"
    );
    let now = cluster.lock().await.instance(&before.name).await?;
    ensure!(
        now.epoch == before.epoch && now.primary_host == before.primary_host,
        "no failover: {}",
        ha_testing::describe(&now)
    );
    wait_instance(
        &cluster,
        &before.name,
        "HA Available again",
        Duration::from_secs(60),
        ha_available(before.epoch),
    )
    .await?;
    stop(cluster).await
}

async fn stop(cluster: SharedCluster) -> Result<()> {
    ha_testing::stop(cluster).await
}
