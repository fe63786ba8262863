//! A customer-like writer for the failover tests and benchmarks: writes `PREFIX:N` and waits for
//! one replica (`WAIT 1 1000`), following URL rotations the way an app restarted by `kvs run`
//! would: it watches the URL (polling the coordinator every 20 ms) and reconnects when it
//! changes or when a command fails. It records
//! which writes were acknowledged, the longest gap between two acknowledged writes, and when the
//! first acknowledged write landed on each URL.
//!
//! ```text
//!   loop: URL (GetCredentials) → connect (through the cluster's dialer) → SET k N; WAIT 1 1000
//!         acknowledged (≥ 1 replica) → recorded · error → reconnect
//! ```
//!
//! The URL is asked of the coordinator leader (several coordinators: found again after a leader
//! change) without holding the cluster's lock; [`missing_writes`] reads the writes back with MGET.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use anyhow::Context;
use kvs_proto::pb;

use crate::Cluster;
use crate::cluster::Coordinators;

/// Pause between reconnect attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);
/// How many error messages the log keeps.
pub const ERRORS_KEPT: usize = 10;
/// How often the writer asks for the current URL, like `kvs run` watching the config vars.
const URL_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Writes a test wants acknowledged by a replica before it injects its fault (a writer that is
/// stuck would otherwise make "no acknowledged write lost" hold vacuously).
pub const ACKNOWLEDGED_BEFORE_FAULT_MIN: usize = 20;
/// Bound on reaching [`ACKNOWLEDGED_BEFORE_FAULT_MIN`] (a write and its WAIT take milliseconds).
pub const ACKNOWLEDGED_BEFORE_FAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the writer saw.
#[derive(Debug, Default, Clone)]
pub struct WriterLog {
    /// Writes acknowledged by at least one replica.
    pub acknowledged: BTreeSet<u64>,
    /// Writes that succeeded on the primary without a replica acknowledgement (may be lost).
    pub unacknowledged: u64,
    /// The longest time between two successful writes.
    pub longest_pause: Duration,
    /// Errors (each followed by a reconnect).
    pub errors: u64,
    /// The first [`ERRORS_KEPT`] errors: write number and message.
    pub error_messages: Vec<(u64, String)>,
    /// When the first successful write landed on each URL (the URL rotates on failover).
    pub first_write_on: BTreeMap<String, Instant>,
    /// When the first replica-acknowledged write landed on each URL (after a failover this waits
    /// for the new standby).
    pub first_ack_on: BTreeMap<String, Instant>,
}

/// A running writer; `stop` returns its log.
pub struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Starts writing `PREFIX:N` to `name`, each write followed by `WAIT 1 1000`.
    pub fn start(cluster: Arc<Mutex<Cluster>>, name: &str, prefix: &str) -> Writer {
        Self::spawn(cluster, name, prefix, true)
    }

    /// Starts writing without `WAIT`, as most applications do: the gaps it sees are the write
    /// pauses themselves, not a replica acknowledgement's timeout. Nothing counts as acknowledged.
    pub fn start_plain(cluster: Arc<Mutex<Cluster>>, name: &str, prefix: &str) -> Writer {
        Self::spawn(cluster, name, prefix, false)
    }

    fn spawn(cluster: Arc<Mutex<Cluster>>, name: &str, prefix: &str, wait: bool) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let task = tokio::spawn(write_loop(
            cluster,
            name.to_string(),
            prefix.to_string(),
            wait,
            stop.clone(),
            log.clone(),
        ));
        Writer { stop, log, task }
    }

    /// Waits until at least `count` writes are acknowledged by a replica, and returns how many
    /// are. A test calls this before its fault, so "no acknowledged write lost" cannot pass with
    /// a writer that never got an acknowledgement.
    pub async fn wait_acknowledged(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log().await;
            if log.acknowledged.len() >= count {
                return Ok(log.acknowledged.len());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "only {} of {count} writes acknowledged by a replica within {timeout:?} \
                     ({} errors, first: {:?})",
                    log.acknowledged.len(),
                    log.errors,
                    log.error_messages.first()
                );
            }
            tokio::time::sleep(RECONNECT_PAUSE * 5).await;
        }
    }

    /// The log so far.
    pub async fn log(&self) -> WriterLog {
        self.log.lock().await.clone()
    }

    pub async fn stop(self) -> WriterLog {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.log.lock().await.clone()
    }
}

async fn write_loop(
    cluster: Arc<Mutex<Cluster>>,
    name: String,
    prefix: String,
    wait: bool,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
) {
    let mut n = 0u64;
    let mut connection = None;
    let mut url = String::new();
    let mut last_success = Instant::now();
    // Looked up once: the URL is asked of the leader without holding the cluster's lock (a leader
    // lookup may wait out an election, and the test needs the cluster meanwhile).
    let (coordinators, dialer, ca) = {
        let c = cluster.lock().await;
        let handle = c.coordinators_handle().ok().cloned();
        (handle, c.dialer().clone(), c.ca_pem().to_vec())
    };
    drop(cluster);
    let (url_tx, url_rx) = tokio::sync::watch::channel(String::new());
    let watcher = tokio::spawn({
        let coordinators = coordinators.clone();
        let name = name.clone();
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::Relaxed) {
                let current = current_url(coordinators.as_ref(), &name).await;
                if let Ok(current) = current {
                    url_tx.send_if_modified(|u| {
                        if *u != current {
                            *u = current;
                            true
                        } else {
                            false
                        }
                    });
                }
                tokio::time::sleep(URL_POLL_INTERVAL).await;
            }
        }
    });
    while !stop.load(Ordering::Relaxed) {
        if connection.is_some() && !url_rx.borrow().is_empty() && *url_rx.borrow() != url {
            connection = None; // the URL rotated: follow it, as an app restarted by `kvs run` would
        }
        if connection.is_none() {
            // The watcher's URL when it has one (a rotation seen there is current), else ask.
            let watched = url_rx.borrow().clone();
            let attempt = if watched.is_empty() {
                current_url(coordinators.as_ref(), &name).await
            } else {
                Ok(watched)
            };
            if let Ok(current) = attempt {
                url = current;
                // A connect to a dead primary is abandoned as soon as the URL rotates.
                connection = tokio::select! {
                    c = dialer.redis(&url, &ca) => c.ok(),
                    () = rotated_away(url_rx.clone(), &url) => None,
                };
            }
            if connection.is_none() {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        }
        let Some(c) = connection.as_mut() else {
            continue;
        };
        n += 1;
        let op = async {
            redis::cmd("SET")
                .arg(format!("{prefix}:{n}"))
                .arg(n)
                .query_async::<()>(&mut *c)
                .await?;
            let written_at = Instant::now();
            if !wait {
                return Ok::<_, redis::RedisError>((written_at, 0));
            }
            let replicas = redis::cmd("WAIT")
                .arg(1)
                .arg(1000)
                .query_async::<i64>(&mut *c)
                .await?;
            Ok::<_, redis::RedisError>((written_at, replicas))
        };
        // A write stuck on a dead primary is abandoned as soon as the URL rotates.
        let outcome = tokio::select! {
            result = op => result,
            () = rotated_away(url_rx.clone(), &url) => Err(redis::RedisError::from((redis::ErrorKind::IoError, "the URL rotated"))),
        };
        let mut log = log.lock().await;
        match outcome {
            Ok((written_at, replicas)) => {
                log.longest_pause = log
                    .longest_pause
                    .max(written_at.duration_since(last_success));
                last_success = written_at;
                log.first_write_on.entry(url.clone()).or_insert(written_at);
                if replicas >= 1 {
                    log.acknowledged.insert(n);
                    log.first_ack_on
                        .entry(url.clone())
                        .or_insert(Instant::now());
                } else {
                    log.unacknowledged += 1;
                }
            }
            Err(err) => {
                log.errors += 1;
                if log.error_messages.len() < ERRORS_KEPT {
                    log.error_messages.push((n, err.to_string()));
                }
                connection = None;
            }
        }
    }
    let _ = watcher.await;
}

/// Resolves once the watched URL changes to one other than `from` (the watcher's first answer, the
/// same URL, is no rotation; neither is the watcher ending at stop).
async fn rotated_away(mut watched: tokio::sync::watch::Receiver<String>, from: &str) {
    watched.borrow_and_update();
    loop {
        if watched.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let now = watched.borrow_and_update();
        if !now.is_empty() && *now != from {
            return;
        }
    }
}

/// The instance's URL, asked of the current coordinator leader (GetCredentials).
async fn current_url(coordinators: Option<&Coordinators>, name: &str) -> anyhow::Result<String> {
    let coordinators = coordinators.context("the coordinator has not started")?;
    let reference = pb::InstanceRef { name: name.into() };
    let mut admin = coordinators.leader_client().await?;
    Ok(admin.get_credentials(reference).await?.into_inner().url)
}

/// Keys per MGET when checking writes.
const CHECK_BATCH: usize = 500;

/// Checks every acknowledged write of `log` is readable through `url`; returns the missing ones.
pub async fn missing_writes(
    cluster: &Cluster,
    url: &str,
    prefix: &str,
    log: &WriterLog,
) -> anyhow::Result<Vec<u64>> {
    let mut connection = cluster.dialer().redis(url, cluster.ca_pem()).await?;
    let mut missing = Vec::new();
    let written: Vec<u64> = log.acknowledged.iter().copied().collect();
    for batch in written.chunks(CHECK_BATCH) {
        let mut mget = redis::cmd("MGET");
        for n in batch {
            mget.arg(format!("{prefix}:{n}"));
        }
        let values: Vec<Option<u64>> = mget.query_async(&mut connection).await?;
        anyhow::ensure!(
            values.len() == batch.len(),
            "MGET answered {} values for {} keys",
            values.len(),
            batch.len()
        );
        missing.extend(
            batch
                .iter()
                .zip(values)
                .filter(|(n, v)| *v != Some(**n))
                .map(|(n, _)| *n),
        );
    }
    Ok(missing)
}
