//! Every coordinator node is a vantage point: it probes every registered host over SSH each
//! `probe_interval` (connect, pinned host key, probe key, `true`). The leader records its own
//! results; a follower sends its results to the leader over the peer Raft service (never through
//! the Raft log). The leader stamps every result with its own clock when it arrives.
//!
//! ```text
//!   each node: tick ─► probe all hosts (bounded concurrency, each bounded by probe_timeout)
//!     leader   ─► shared.probes.record(host, self, reachable, now)
//!     follower ─► ReportProbes(node, results) ─► leader's sink ─► shared.probes.record(...)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kvs_proto::pb;
use kvs_proto::pb::raft_client::RaftClient;
use tonic::transport::{Channel, Endpoint};

use crate::probe::{ProbeTarget, Prober};
use crate::service::{Shared, SharedRef};

/// Probes in flight at once from one node.
pub const PROBES_IN_FLIGHT_MAX: usize = 64;
/// Deadline of forwarding one report to the leader.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Every registered host as a probe target (hosts without a pinned SSH key cannot be probed: a
/// probe that accepts any key proves nothing about the host).
pub fn targets(shared: &Shared) -> Vec<ProbeTarget> {
    shared.read(|s| {
        s.hosts
            .values()
            .filter_map(|h| {
                Some(ProbeTarget {
                    host_id: h.id.clone(),
                    address: h.address,
                    port: shared.config.probe_port,
                    user: shared.config.probe_user.clone(),
                    pinned_host_key: Some(h.ssh_host_key.clone()?),
                })
            })
            .collect()
    })
}

/// Probes every host once; returns (host id, reachable, detail).
pub async fn probe_all(prober: Arc<dyn Prober>, targets: Vec<ProbeTarget>) -> Vec<pb::ProbeResult> {
    futures::stream::iter(targets)
        .map(|target| {
            let prober = prober.clone();
            async move {
                let outcome = prober.probe(&target).await;
                pb::ProbeResult {
                    host_id: target.host_id.clone(),
                    reachable: outcome.is_reachable(),
                    detail: if outcome.is_reachable() {
                        String::new()
                    } else {
                        outcome.to_string()
                    },
                }
            }
        })
        .buffer_unordered(PROBES_IN_FLIGHT_MAX)
        .collect()
        .await
}

/// Records results on the leader (own or forwarded), stamped with the leader's clock.
pub fn record(shared: &Shared, vantage: u64, results: &[pb::ProbeResult]) {
    let now = shared.clock.now();
    let mut probes = shared
        .probes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for result in results {
        probes.record(&result.host_id, vantage, result.reachable, now);
    }
}

/// The probe loop of one node, until `stop`.
pub async fn run(shared: SharedRef, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(shared.config.probe_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut channels: BTreeMap<String, Channel> = BTreeMap::new();
    let mut last_details: BTreeMap<String, String> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let targets = targets(&shared);
        if targets.is_empty() {
            continue;
        }
        let results = probe_all(shared.prober.clone(), targets).await;
        for result in &results {
            let previous = last_details.insert(result.host_id.clone(), result.detail.clone());
            if previous.as_deref() != Some(result.detail.as_str()) {
                if result.reachable {
                    tracing::info!(host = %result.host_id, "SSH probe succeeds");
                } else {
                    tracing::warn!(host = %result.host_id, cause = %result.detail, "SSH probe fails");
                }
            }
        }
        let me = shared.config.node_id;
        match shared.raft.current_leader().await {
            Some(leader) if leader == me => record(&shared, me, &results),
            Some(leader) => forward(&shared, &mut channels, leader, results).await,
            None => {}
        }
    }
}

async fn forward(
    shared: &Shared,
    channels: &mut BTreeMap<String, Channel>,
    leader: u64,
    results: Vec<pb::ProbeResult>,
) {
    let address = {
        let metrics = shared.raft.metrics();
        let membership = metrics.borrow().membership_config.clone();
        membership
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    };
    let Some(address) = address else { return };
    let channel = match channels.get(&address) {
        Some(channel) => channel.clone(),
        None => {
            let endpoint = match Endpoint::from_shared(format!("https://{address}")) {
                Ok(e) => e.connect_timeout(REPORT_TIMEOUT).timeout(REPORT_TIMEOUT),
                Err(_) => return,
            };
            let endpoint = match endpoint.tls_config(shared.peer_tls.clone()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot configure TLS to the leader for probe reports");
                    return;
                }
            };
            let channel = (shared.net.connect)(&endpoint);
            channels.insert(address.clone(), channel.clone());
            channel
        }
    };
    let report = pb::ProbeReport {
        node_id: shared.config.node_id,
        results,
    };
    match RaftClient::new(channel).report_probes(report).await {
        Ok(ack) if ack.get_ref().accepted => {}
        Ok(_) => tracing::debug!(
            leader,
            "the leader did not accept probe results (leadership moving)"
        ),
        Err(status) => {
            tracing::debug!(leader, cause = %status.message(), "probe report not delivered")
        }
    }
}
