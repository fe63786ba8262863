//! The failure detector (DESIGN.md §4 "Evidence", rules 2 and 3): one verdict per host from three
//! independent kinds of evidence, all kept in leader memory.
//!
//! ```text
//!   agent stream (Observations.last_seen) ─┐
//!   SSH probes per vantage point ──────────┼──► assess() ──► Healthy
//!   (ProbeObservations)                    │               AgentSilentHostReachable  (rule 2)
//!   standbys' links to this host ──────────┘               Suspect { since }
//!   (ProcessObservation.link_down_since)                   ConfirmedDown { since }   (rule 3)
//! ```
//!
//! The confirmation clock starts at the *latest* of: every required vantage point's
//! `failing_since`, the latest probe success from any vantage point, the agent's last report and
//! every reporting standby's `link_down_since`. A host is confirmed down once that clock is a
//! whole `confirmation_window` old and no piece of evidence is missing. Missing evidence (a
//! vantage point with no fresh result, a standby still hearing its primary) never confirms. Since
//! every "since" is the leader's own observation, a new leader waits a whole window.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::ha_config::HaConfig;
use super::observation::{Observations, ProbeObservations};
use crate::state::ClusterState;

/// What the leader believes about one host right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostVerdict {
    /// The agent reports.
    Healthy,
    /// The agent is silent but a probe succeeded recently: restart the agent, never fail over.
    AgentSilentHostReachable,
    /// The agent is silent and no probe succeeds, but not (yet) for a whole window on every
    /// piece of evidence. `since`: when the evidence started (display only).
    Suspect { since: Duration },
    /// Every piece of evidence failed continuously since `since`, at least a whole window ago.
    ConfirmedDown { since: Duration },
}

impl HostVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            HostVerdict::Healthy => "healthy",
            HostVerdict::AgentSilentHostReachable => "agent silent, host reachable",
            HostVerdict::Suspect { .. } => "suspect",
            HostVerdict::ConfirmedDown { .. } => "down",
        }
    }
}

/// The evidence the detector reads; `vantage_points` are the coordinator node ids whose probes
/// are required (the caller passes the cluster's coordinator nodes; see the gaps in the report).
pub struct Evidence<'a> {
    pub state: &'a ClusterState,
    pub observations: &'a Observations,
    pub probes: &'a ProbeObservations,
    pub vantage_points: &'a BTreeSet<u64>,
}

/// A verdict for every registered host.
pub fn assess(
    evidence: &Evidence<'_>,
    now: Duration,
    config: &HaConfig,
) -> BTreeMap<String, HostVerdict> {
    evidence
        .state
        .hosts
        .keys()
        .map(|id| (id.clone(), assess_host(evidence, id, now, config)))
        .collect()
}

/// When the next suspect host's window ends after `now`, if nothing changes: the leader ticks
/// then, so a failover does not wait for its next periodic tick. Windows already over (a suspect
/// still missing some evidence) are left to the periodic tick.
pub fn next_window_end(
    verdicts: &BTreeMap<String, HostVerdict>,
    now: Duration,
    config: &HaConfig,
) -> Option<Duration> {
    verdicts
        .values()
        .filter_map(|v| match v {
            HostVerdict::Suspect { since } => Some(*since + config.confirmation_window),
            _ => None,
        })
        .filter(|end| *end > now)
        .min()
}

pub fn assess_host(
    evidence: &Evidence<'_>,
    host_id: &str,
    now: Duration,
    config: &HaConfig,
) -> HostVerdict {
    let Evidence {
        observations,
        probes,
        ..
    } = evidence;
    if observations.is_fresh(host_id, now, config.agent_silence_timeout) {
        return HostVerdict::Healthy;
    }
    let fresh_after = now.saturating_sub(config.probe_freshness_max());
    let last_success = probes.last_success_at(host_id);
    if last_success.is_some_and(|at| at >= fresh_after) {
        return HostVerdict::AgentSilentHostReachable;
    }
    let agent_last_seen = observations.hosts.get(host_id).map(|h| h.last_seen);
    let (clock_start, complete) = confirmation_clock(evidence, host_id, now, config);
    let start = clock_start
        .into_iter()
        .chain(last_success)
        .chain(agent_last_seen)
        .max();
    match start {
        Some(since) if complete && now.saturating_sub(since) >= config.confirmation_window => {
            HostVerdict::ConfirmedDown { since }
        }
        Some(since) => HostVerdict::Suspect { since },
        None => HostVerdict::Suspect { since: now },
    }
}

/// The latest "failing since" over the required vantage points and the reporting standbys of
/// this host's primaries, and whether every one of them is failing.
fn confirmation_clock(
    evidence: &Evidence<'_>,
    host_id: &str,
    now: Duration,
    config: &HaConfig,
) -> (Option<Duration>, bool) {
    let fresh_after = now.saturating_sub(config.probe_freshness_max());
    let mut latest: Option<Duration> = None;
    let mut complete = !evidence.vantage_points.is_empty();
    for vantage in evidence.vantage_points {
        match evidence.probes.of(host_id, *vantage) {
            Some(p) if p.last_result_at >= fresh_after && p.failing_since.is_some() => {
                latest = latest.max(p.failing_since);
            }
            _ => complete = false,
        }
    }
    for link_down_since in standby_links(evidence, host_id, now, config) {
        match link_down_since {
            Some(since) => latest = latest.max(Some(since)),
            None => complete = false,
        }
    }
    (latest, complete)
}

/// For every standby replicating from a primary on `host_id` whose own agent reports: since when
/// it cannot hear its primary (`None`: it hears it, or is not running as a replica). Standbys on
/// silent hosts give no evidence either way and are skipped.
fn standby_links<'a>(
    evidence: &'a Evidence<'_>,
    host_id: &'a str,
    now: Duration,
    config: &'a HaConfig,
) -> impl Iterator<Item = Option<Duration>> + 'a {
    let observations = evidence.observations;
    evidence
        .state
        .instances
        .values()
        .filter(move |i| i.primary.host_id == host_id)
        .flat_map(|i| i.standbys.iter().map(move |s| (i, s)))
        .filter(move |(_, s)| observations.is_fresh(&s.host_id, now, config.agent_silence_timeout))
        .map(move |(i, s)| {
            observations
                .process(&s.host_id, &i.name)
                .and_then(|p| p.link_down_since)
        })
}

/// Rule 2's rate limit: at most one agent restart over SSH per host per interval. The caller
/// keeps it between ticks (inside `HaMemory`); a new leader starts with a full budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentRestartBudget {
    last_restart_at: BTreeMap<String, Duration>,
}

impl AgentRestartBudget {
    /// True (and the restart is counted) when `host_id` may be restarted now.
    pub fn try_take(&mut self, host_id: &str, now: Duration, interval_min: Duration) -> bool {
        match self.last_restart_at.get(host_id) {
            Some(last) if now.saturating_sub(*last) < interval_min => false,
            _ => {
                self.last_restart_at.insert(host_id.to_string(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests;
