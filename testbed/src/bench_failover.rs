//! `kvs-testbed bench-failover`: how long clients wait in each failure scenario of DESIGN.md §4,
//! repeated N times on a network-namespace cluster (real sshd probes, a short confirmation
//! window), printed as median and p90:
//!
//! ```text
//!   cut-off   cut the primary's host off → first answered write on the rotated URL, minus the window
//!             (may be below zero: the window counts from the last sign of life, up to a probe
//!             interval before the cut)
//!   engine    kill -9 the primary's engine → first answered PING (restarted in place, no failover)
//!   planned   `kvs failover` (standby in sync: HA Available) → first write on the new primary;
//!             longest gap between two answered writes of a client that does not WAIT
//!   minority  writers INSIDE the primary's host (plain and `WAIT 1 1000`), the host cut off for
//!             `--minority-cut-seconds` (past the window: the standby is promoted), then healed:
//!             acknowledged writes lost (count and seconds of writes), WAIT-acknowledged lost,
//!             cut → first refused write (`minority.rs`, issue 11)
//! ```
//!
//! The writer is `workload::Writer` (SET + WAIT 1 1000, following URL rotations like `kvs run`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kvs_proto::pb;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::cluster::AVAILABLE_TIMEOUT;
use crate::config::HaSettings;
use crate::wait::{Probe, wait_until};
use crate::workload::Writer;
use crate::{Cluster, ClusterOptions, NetworkMode};

#[derive(Debug, clap::Args)]
pub struct BenchFailoverArgs {
    /// Repetitions of each scenario.
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Confirmation window of the bench cluster, in seconds (production default: 120; at least
    /// 7: the production fence_after, 2 s, + 5 s).
    #[arg(long, default_value_t = 12)]
    pub window_seconds: u64,
    /// How long the minority-side scenario cuts the primary's host off (Jepsen's Sentinel run:
    /// 40 s); 0 skips the scenario.
    #[arg(long, default_value_t = 40)]
    pub minority_cut_seconds: u64,
}

/// One line of plain figures (counts, seconds): median and p90.
fn print_value_row(label: &str, values: &[f64], unit: &str) {
    println!(
        "  {label:<58} median {:>7.1} {unit:<3} p90 {:>7.1} {unit:<3} (n={})",
        percentile(values, 50.0),
        percentile(values, 90.0),
        values.len()
    );
}

/// The minority-side figures of every round.
#[derive(Default)]
struct MinorityFigures {
    acked_after_cut: Vec<f64>,
    lost: Vec<f64>,
    lost_seconds: Vec<f64>,
    waited_lost: Vec<f64>,
    waited_before_cut: Vec<f64>,
    first_refused_ms: Vec<f64>,
}

impl MinorityFigures {
    fn add(&mut self, r: &crate::minority::RoundReport) {
        self.acked_after_cut.push(r.plain.acked_after_cut as f64);
        self.lost.push(r.plain.lost as f64);
        self.lost_seconds
            .push(r.plain.lost as f64 / r.plain.rate_before_cut.max(1.0));
        self.waited_lost.push(r.waited.lost as f64);
        self.waited_before_cut
            .push(r.waited.acked_before_cut as f64);
        // A round with no refusal at all (it never fenced) counts as an hour.
        let refused = r.plain.first_refused.unwrap_or(Duration::from_secs(3600));
        self.first_refused_ms.push(refused.as_secs_f64() * 1000.0);
    }

    fn print(&self, cut_seconds: u64) {
        if self.lost.is_empty() {
            return;
        }
        println!(
            "  minority side: writers inside the primary's host, cut off {cut_seconds} s, ~100 writes/s"
        );
        let rows: [(&str, &[f64], &str); 5] = [
            (
                "  plain writes acknowledged after the cut",
                &self.acked_after_cut,
                "",
            ),
            ("  plain acknowledged writes lost", &self.lost, ""),
            (
                "  plain writes lost, as seconds of writes",
                &self.lost_seconds,
                "s",
            ),
            ("  WAIT-acknowledged writes lost", &self.waited_lost, ""),
            (
                "  WAIT-acknowledged before the cut (lower bound)",
                &self.waited_before_cut,
                "",
            ),
        ];
        for (label, values, unit) in rows {
            print_value_row(label, values, unit);
        }
        print_ms_row("  cut → first refused write", &self.first_refused_ms);
    }
}

/// One minority-side round on a fresh instance, then the heal settles.
async fn minority_round(
    cluster: &Arc<Mutex<Cluster>>,
    round: usize,
    cut_seconds: u64,
) -> Result<crate::minority::RoundReport> {
    let (instance, primary) = fresh_instance(cluster, &format!("minority-{round}")).await?;
    let cut = crate::minority::Cut {
        length: Duration::from_secs(cut_seconds),
        after_heal: Duration::from_secs(8),
    };
    let tag = format!("minority-{round}");
    let report = crate::minority::round(cluster, &instance.name, primary, cut, &tag).await?;
    cluster
        .lock()
        .await
        .wait_hosts_up(3, Duration::from_secs(60))
        .await?;
    Ok(report)
}

/// The `p`th percentile (nearest rank) of `millis`, 0 when empty.
fn percentile(millis: &[f64], p: f64) -> f64 {
    let mut sorted = millis.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// One line of figures: median and p90 of `millis` (which may be negative).
fn print_ms_row(label: &str, millis: &[f64]) {
    println!(
        "  {label:<58} median {:>7.0} ms   p90 {:>7.0} ms   (n={})",
        percentile(millis, 50.0),
        percentile(millis, 90.0),
        millis.len()
    );
}

fn print_row(label: &str, values: &[Duration]) {
    let millis: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    print_ms_row(label, &millis);
}

async fn instance(cluster: &Arc<Mutex<Cluster>>, name: &str) -> Result<pb::Instance> {
    cluster.lock().await.instance(name).await
}

async fn wait_for(
    cluster: &Arc<Mutex<Cluster>>,
    name: &str,
    what: &str,
    condition: impl Fn(&pb::Instance) -> bool,
) -> Result<pb::Instance> {
    wait_until(what, Duration::from_secs(120), || async {
        match instance(cluster, name).await {
            Ok(i) if condition(&i) => Probe::Ready(i),
            Ok(i) => Probe::Pending(format!(
                "status {} HA {} epoch {}",
                i.status, i.ha_status, i.epoch
            )),
            Err(e) => Probe::Pending(e.to_string()),
        }
    })
    .await
}

fn settled(i: &pb::Instance) -> bool {
    i.status == "available" && i.ha_status == "Available" && i.failover.is_empty()
}

/// A fresh premium instance in sync; returns it and its primary's host index.
async fn fresh_instance(cluster: &Arc<Mutex<Cluster>>, app: &str) -> Result<(pb::Instance, usize)> {
    let name = {
        let mut c = cluster.lock().await;
        let name = c.create_instance("premium-0", app).await?;
        c.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        name
    };
    let ready = wait_for(cluster, &name, "HA Available", settled).await?;
    let host = ready
        .url
        .rsplit_once('@')
        .and_then(|(_, h)| h.rsplit_once(':'))
        .map(|(h, _)| h.to_string());
    let index = cluster
        .lock()
        .await
        .host_index(&host.context("URL host")?)
        .context("primary host")?;
    Ok((ready, index))
}

pub async fn run(args: BenchFailoverArgs) -> Result<()> {
    if let Err(why) = crate::netns::available().and_then(|()| crate::sshd::available()) {
        anyhow::bail!(
            "bench-failover needs network-namespace hosts (run as root with iproute2 and openssh-server): {why}"
        );
    }
    let window = Duration::from_secs(args.window_seconds);
    let ha = HaSettings {
        probe_interval: Some(Duration::from_secs(1)),
        probe_timeout: Some(Duration::from_millis(900)),
        confirmation_window: Some(window),
        fence_after: None,
        ..HaSettings::default()
    };
    let options = ClusterOptions {
        agents: 3,
        network: NetworkMode::Netns,
        ha,
        ..ClusterOptions::default()
    };
    let cluster = Arc::new(Mutex::new(Cluster::start(options).await?));
    let (mut cut_overhead, mut engine_restart, mut planned_first, mut planned_pause) =
        (vec![], vec![], vec![], vec![]);
    let mut minority = MinorityFigures::default();

    for round in 0..args.repeat {
        eprintln!("bench-failover: round {}/{}", round + 1, args.repeat);
        // Cut-off: failover after the window.
        let (before, primary) = fresh_instance(&cluster, &format!("cut-{round}")).await?;
        let writer = Writer::start(cluster.clone(), &before.name, "bench");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cut_at = Instant::now();
        cluster.lock().await.cut_off(primary)?;
        let after = wait_for(&cluster, &before.name, "failover", |i| {
            i.epoch >= 2 && i.status == "available"
        })
        .await?;
        wait_until(
            "a write on the new URL",
            Duration::from_secs(30),
            || async {
                if writer.log().await.first_write_on.contains_key(&after.url) {
                    Probe::Ready(())
                } else {
                    Probe::Pending("none yet".into())
                }
            },
        )
        .await?;
        let log = writer.stop().await;
        let first = log
            .first_write_on
            .get(&after.url)
            .copied()
            .context("write on the new URL")?;
        // Signed: the window counts from the last sign of life, which precedes the cut by up to
        // a probe interval, so a failover may come slightly before cut + window.
        let to_first_write = first.duration_since(cut_at).as_secs_f64() * 1000.0;
        cut_overhead.push(to_first_write - window.as_secs_f64() * 1000.0);
        cluster.lock().await.heal(primary)?;
        cluster
            .lock()
            .await
            .wait_hosts_up(3, Duration::from_secs(60))
            .await?;

        // Engine crash: restarted in place.
        let (engine, primary) = fresh_instance(&cluster, &format!("engine-{round}")).await?;
        let killed_at = Instant::now();
        cluster.lock().await.kill_engine_on(primary, &engine.name)?;
        let back = wait_until(
            "PING after the engine crash",
            Duration::from_secs(30),
            || async {
                let c = cluster.lock().await;
                let Ok(mut connection) = c.dialer().redis(&engine.url, c.ca_pem()).await else {
                    return Probe::Pending("no connection".into());
                };
                match redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                {
                    Ok(_) => Probe::Ready(Instant::now()),
                    Err(e) => Probe::Pending(e.to_string()),
                }
            },
        )
        .await?;
        engine_restart.push(back.duration_since(killed_at));

        // Planned switchover, seen by a client that does not WAIT (the pause itself), on a fresh
        // instance whose standby is in sync (after the engine restart above, that instance's
        // standby is still in a full resync: a switchover there waits for the resync).
        let (planned, _) = fresh_instance(&cluster, &format!("planned-{round}")).await?;
        let writer = Writer::start_plain(cluster.clone(), &planned.name, "planned");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let asked_at = Instant::now();
        let mut admin = cluster.lock().await.admin()?;
        admin
            .failover(pb::FailoverRequest {
                name: planned.name.clone(),
                allow_data_loss: false,
            })
            .await?;
        let switched = wait_for(&cluster, &planned.name, "switchover", |i| {
            i.epoch >= 2 && settled(i)
        })
        .await?;
        wait_until(
            "a write on the new primary",
            Duration::from_secs(30),
            || async {
                if writer
                    .log()
                    .await
                    .first_write_on
                    .contains_key(&switched.url)
                {
                    Probe::Ready(())
                } else {
                    Probe::Pending("none yet".into())
                }
            },
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let log = writer.stop().await;
        let first = log
            .first_write_on
            .get(&switched.url)
            .copied()
            .context("write on the new primary")?;
        planned_first.push(first.duration_since(asked_at));
        planned_pause.push(log.longest_pause);

        if args.minority_cut_seconds > 0 {
            minority.add(&minority_round(&cluster, round, args.minority_cut_seconds).await?);
        }
    }

    println!(
        "bench-failover: {} rounds on a netns cluster (3 hosts, sshd probes every 1 s, window {} s)",
        args.repeat, args.window_seconds
    );
    print_ms_row(
        "cut-off → first write on the rotated URL, minus the window",
        &cut_overhead,
    );
    print_row(
        "kill -9 engine → first answered PING (no failover)",
        &engine_restart,
    );
    print_row(
        "kvs failover → first write on the new primary",
        &planned_first,
    );
    print_row(
        "kvs failover → longest write pause a client saw",
        &planned_pause,
    );
    minority.print(args.minority_cut_seconds);
    let cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("cluster still shared"))?
        .into_inner();
    cluster.stop().await;
    Ok(())
}
