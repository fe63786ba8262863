//! The minority-side client (issue 11): the Sentinel failure Jepsen showed in 2013. A writer runs
//! INSIDE the primary's host (its network namespace) and talks to the primary's URL there; the
//! host is cut off from everything else; every write the isolated primary acknowledges after the
//! cut is discarded once the standby is promoted and the old primary rejoins behind it. KVS's
//! fence (`agent/src/fencing.rs`) bounds that: the primary refuses writes `fence_after` after the
//! last word from the leader or its standby. This module measures it.
//!
//! ```text
//!   MinorityWriter::start(host netns, url, wait?) ── SET PREFIX:N (every WRITE_INTERVAL) [WAIT 1 1000]
//!   round(cluster, name, primary, cut, heal_wait):
//!     writers (plain + WAIT) ─► ≥ ACKED_BEFORE_CUT each ─► cut_off(primary) ─► cut ─► heal
//!     ─► stop ─► read every acknowledged key back through the current URL ─► RoundReport
//! ```
//!
//! The writers never follow the URL: they are the application stuck on the wrong side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::ha_testing::SharedCluster;
use crate::netns::dial::Dialer;

/// One write every this long (100 writes/s, about Jepsen's Sentinel writer's rate).
pub const WRITE_INTERVAL: Duration = Duration::from_millis(10);
/// Writes each writer must have acknowledged before the cut (WAIT ones by a replica), so "none
/// lost" cannot hold vacuously.
pub const ACKED_BEFORE_CUT: usize = 100;
/// Bound on reaching [`ACKED_BEFORE_CUT`].
const ACKED_BEFORE_CUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Keys per MGET when reading back.
const CHECK_BATCH: usize = 500;

/// One acknowledged write.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    pub n: u64,
    pub at: Instant,
    /// `WAIT 1 1000` answered ≥ 1 (only with `wait`).
    pub by_replica: bool,
}

/// What one writer saw.
#[derive(Debug, Clone, Default)]
pub struct MinorityLog {
    pub acked: Vec<Acked>,
    /// When writes (or connects) failed: refused by the fence, or paused past the timeout.
    pub refused_at: Vec<Instant>,
    pub first_error: Option<String>,
}

impl MinorityLog {
    /// The first refusal at or after `at`.
    pub fn first_refused_after(&self, at: Instant) -> Option<Instant> {
        self.refused_at.iter().copied().find(|r| *r >= at)
    }

    fn confirmed(&self) -> usize {
        self.acked.iter().filter(|a| a.by_replica).count()
    }
}

/// A writer inside a host's namespace, on a fixed URL.
pub struct MinorityWriter {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<MinorityLog>>,
    task: tokio::task::JoinHandle<()>,
    pub prefix: String,
    pub wait: bool,
}

impl MinorityWriter {
    pub fn start(dialer: Dialer, url: String, ca: Vec<u8>, prefix: &str, wait: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(MinorityLog::default()));
        let task = tokio::spawn(write_loop(
            dialer,
            url,
            ca,
            prefix.to_string(),
            wait,
            stop.clone(),
            log.clone(),
        ));
        MinorityWriter {
            stop,
            log,
            task,
            prefix: prefix.to_string(),
            wait,
        }
    }

    pub async fn log(&self) -> MinorityLog {
        self.log.lock().await.clone()
    }

    /// Waits until [`ACKED_BEFORE_CUT`] writes are acknowledged (by a replica, with WAIT).
    pub async fn wait_warm(&self) -> Result<()> {
        let deadline = Instant::now() + ACKED_BEFORE_CUT_TIMEOUT;
        loop {
            let log = self.log().await;
            let count = if self.wait {
                log.confirmed()
            } else {
                log.acked.len()
            };
            if count >= ACKED_BEFORE_CUT {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "writer {}: only {count} of {ACKED_BEFORE_CUT} writes acknowledged before the \
                 cut (first error: {:?})",
                self.prefix,
                log.first_error
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) -> MinorityLog {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.log.lock().await.clone()
    }
}

async fn write_loop(
    dialer: Dialer,
    url: String,
    ca: Vec<u8>,
    prefix: String,
    wait: bool,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<MinorityLog>>,
) {
    let mut ticks = tokio::time::interval(WRITE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut connection = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        if connection.is_none() {
            match dialer.redis(&url, &ca).await {
                Ok(c) => connection = Some(c),
                Err(error) => {
                    note_refusal(&log, format!("{error:#}")).await;
                    continue;
                }
            }
        }
        let Some(c) = connection.as_mut() else {
            continue;
        };
        n += 1;
        match write_one(c, &prefix, n, wait).await {
            Ok(by_replica) => log.lock().await.acked.push(Acked {
                n,
                at: Instant::now(),
                by_replica,
            }),
            Err(error) => {
                note_refusal(&log, error.to_string()).await;
                connection = None;
            }
        }
    }
}

async fn note_refusal(log: &Mutex<MinorityLog>, error: String) {
    let mut log = log.lock().await;
    log.refused_at.push(Instant::now());
    log.first_error.get_or_insert(error);
}

/// SET, then (with `wait`) WAIT 1 1000; Ok(a replica confirmed it).
async fn write_one(
    c: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    n: u64,
    wait: bool,
) -> redis::RedisResult<bool> {
    redis::cmd("SET")
        .arg(format!("{prefix}:{n}"))
        .arg(n)
        .query_async::<()>(&mut *c)
        .await?;
    if !wait {
        return Ok(false);
    }
    let replicas: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(1000)
        .query_async(&mut *c)
        .await?;
    Ok(replicas >= 1)
}

/// The acknowledged writes of `log` missing from the instance behind `url` (read from where the
/// test's clients run).
pub async fn missing(
    dialer: &Dialer,
    url: &str,
    ca: &[u8],
    prefix: &str,
    log: &MinorityLog,
) -> Result<Vec<Acked>> {
    let mut connection = dialer.redis(url, ca).await?;
    let mut lost = Vec::new();
    for batch in log.acked.chunks(CHECK_BATCH) {
        let mut mget = redis::cmd("MGET");
        for a in batch {
            mget.arg(format!("{prefix}:{}", a.n));
        }
        let values: Vec<Option<u64>> = mget.query_async(&mut connection).await?;
        ensure!(
            values.len() == batch.len(),
            "MGET answered {} values",
            values.len()
        );
        lost.extend(
            batch
                .iter()
                .zip(values)
                .filter(|(a, v)| *v != Some(a.n))
                .map(|(a, _)| *a),
        );
    }
    Ok(lost)
}

/// One writer's figures for one cut.
#[derive(Debug, Clone)]
pub struct WriterReport {
    pub wait: bool,
    /// Acknowledged before the cut (WAIT: by a replica).
    pub acked_before_cut: usize,
    /// Acknowledged at or after the cut (WAIT: by a replica).
    pub acked_after_cut: usize,
    /// Acknowledged (WAIT: by a replica) and missing afterwards.
    pub lost: usize,
    /// The latest lost write's acknowledgement, after the cut.
    pub last_lost_after_cut: Option<Duration>,
    /// Cut → first refused write.
    pub first_refused: Option<Duration>,
    /// Writes per second before the cut.
    pub rate_before_cut: f64,
}

impl WriterReport {
    pub fn of(log: &MinorityLog, lost: &[Acked], cut_at: Instant, wait: bool) -> WriterReport {
        let counts = |a: &&Acked| !wait || a.by_replica;
        let before: Vec<&Acked> = log
            .acked
            .iter()
            .filter(counts)
            .filter(|a| a.at < cut_at)
            .collect();
        let span = before
            .first()
            .map_or(Duration::ZERO, |a| cut_at.duration_since(a.at));
        WriterReport {
            wait,
            acked_before_cut: before.len(),
            acked_after_cut: log
                .acked
                .iter()
                .filter(counts)
                .filter(|a| a.at >= cut_at)
                .count(),
            lost: lost.iter().filter(counts).count(),
            last_lost_after_cut: lost
                .iter()
                .filter(|a| a.at >= cut_at)
                .map(|a| a.at.duration_since(cut_at))
                .max(),
            first_refused: log
                .first_refused_after(cut_at)
                .map(|r| r.duration_since(cut_at)),
            rate_before_cut: before.len() as f64 / span.as_secs_f64().max(0.001),
        }
    }
}

/// How a round cuts the primary's host off.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    /// How long the host is cut off.
    pub length: Duration,
    /// After the heal, how long the writers keep going (the old primary rejoins).
    pub after_heal: Duration,
}

/// Both writers' figures, and when the heal happened relative to the cut.
#[derive(Debug, Clone)]
pub struct RoundReport {
    pub plain: WriterReport,
    pub waited: WriterReport,
    pub plain_log: MinorityLog,
    pub cut_at: Instant,
    pub healed_at: Instant,
}

/// One minority-side round on `name`, whose primary is on host `primary` (netns mode): a plain
/// and a WAIT writer inside that host, the cut, the heal, the read-back through the URL the
/// coordinator gives now.
pub async fn round(
    cluster: &SharedCluster,
    name: &str,
    primary: usize,
    cut: Cut,
    tag: &str,
) -> Result<RoundReport> {
    let (dialer, url, ca) = {
        let c = cluster.lock().await;
        let netns = c.host_netns(primary).context("netns mode only")?;
        (Dialer::from(netns), c.url(name).await?, c.ca_pem().to_vec())
    };
    let plain = MinorityWriter::start(
        dialer.clone(),
        url.clone(),
        ca.clone(),
        &format!("{tag}-plain"),
        false,
    );
    let waited = MinorityWriter::start(dialer, url, ca.clone(), &format!("{tag}-wait"), true);
    plain.wait_warm().await?;
    waited.wait_warm().await?;
    tracing::info!(
        host = primary,
        ?cut,
        "--- minority side: cut the primary's host off"
    );
    let cut_at = Instant::now();
    cluster.lock().await.cut_off(primary)?;
    tokio::time::sleep(cut.length).await;
    cluster.lock().await.heal(primary)?;
    let healed_at = Instant::now();
    tracing::info!(host = primary, "--- minority side: healed");
    tokio::time::sleep(cut.after_heal).await;
    let (plain_log, waited_log) = (plain.stop().await, waited.stop().await);
    let (client, now_url) = {
        let c = cluster.lock().await;
        (c.dialer().clone(), c.url(name).await?)
    };
    let lost_plain = missing(&client, &now_url, &ca, &format!("{tag}-plain"), &plain_log).await?;
    let lost_waited = missing(&client, &now_url, &ca, &format!("{tag}-wait"), &waited_log).await?;
    Ok(RoundReport {
        plain: WriterReport::of(&plain_log, &lost_plain, cut_at, false),
        waited: WriterReport::of(&waited_log, &lost_waited, cut_at, true),
        plain_log,
        cut_at,
        healed_at,
    })
}
