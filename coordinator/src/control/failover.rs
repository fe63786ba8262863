//! The leader's HA policy (DESIGN.md §4 rules 1–6) as a pure function of the replicated state,
//! the observations and the detector's verdicts: actions out, the caller executes them.
//!
//! ```text
//!   detector::assess ──► verdicts ─┐
//!   ClusterState, Observations ────┼──► plan(now, now_ms) ──► HaAction::Commit(Command)  → raft
//!   HaMemory (kept by the caller) ─┘                          HaAction::RestartAgent      → SSH
//!                                                             HaAction::Alert             → log
//!   per instance:
//!     failover in flight      → progress::advance (order promotion / complete / abort)
//!     primary host confirmed down → BeginFailover to the best healthy standby (lag-gated)
//!     primary crash-looping on a healthy host, standby in sync → BeginFailover
//!     primary host healthy    → standby::maintain (place a missing standby, drop surplus ones)
//!     last failover's old primary reported more than its estimate → correction::correct
//! ```
//!
//! A crashed engine on a healthy host is left to its agent (rule 1); a silent agent on a
//! reachable host is restarted over SSH (rule 2), never failed over.

mod correction;
mod progress;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kvs_proto::model::ProcessStatus;

use super::detector::HostVerdict;
use super::ha_config::HaConfig;
use super::ha_memory::HaMemory;
use super::observation::{Observations, ProcessObservation};
use super::standby;
use crate::state::{ClusterState, Command, Instance, Placement};

/// One thing the leader should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a few actions per tick; boxing buys nothing"
)]
pub enum HaAction {
    /// Commit this command through Raft (it may still be refused if the state moved).
    Commit(Command),
    /// Restart the host's agent over SSH (`systemctl restart kvs-agent`).
    RestartAgent { host_id: String },
    /// Tell a human: logged at WARN/ERROR by the caller. Raised once per standing problem.
    Alert(String),
}

/// Everything one tick reads, and the actions it emits.
pub(super) struct Tick<'a> {
    pub state: &'a ClusterState,
    pub observations: &'a Observations,
    pub verdicts: &'a BTreeMap<String, HostVerdict>,
    pub memory: &'a mut HaMemory,
    pub now: Duration,
    pub now_ms: i64,
    pub config: &'a HaConfig,
    pub actions: Vec<HaAction>,
    alerts_raised: BTreeSet<String>,
}

impl Tick<'_> {
    /// A host without a verdict (unregistered) is treated as in doubt, never healthy or down.
    pub fn verdict(&self, host_id: &str) -> HostVerdict {
        self.verdicts
            .get(host_id)
            .copied()
            .unwrap_or(HostVerdict::Suspect { since: self.now })
    }

    pub fn commit(&mut self, command: Command) {
        self.actions.push(HaAction::Commit(command));
    }

    /// Raises `message` once while it stands; with `instance`, also records it as an event.
    pub fn alert(&mut self, key: String, instance: Option<&str>, message: String) {
        self.alerts_raised.insert(key.clone());
        if !self.memory.alert_is_new(&key, &message) {
            return;
        }
        if let Some(name) = instance {
            self.commit(Command::RecordEvent {
                name: name.to_string(),
                message: message.clone(),
                at_ms: self.now_ms,
            });
        }
        self.actions.push(HaAction::Alert(message));
    }

    /// The report of `instance`'s process on `host_id` at `epoch`.
    pub fn process_at(&self, host_id: &str, name: &str, epoch: u64) -> Option<&ProcessObservation> {
        self.observations
            .process(host_id, name)
            .filter(|p| p.epoch == epoch)
    }
}

/// The HA decisions of this tick. `memory` is the caller's, kept between ticks.
pub fn plan(
    state: &ClusterState,
    observations: &Observations,
    verdicts: &BTreeMap<String, HostVerdict>,
    memory: &mut HaMemory,
    now: Duration,
    now_ms: i64,
    config: &HaConfig,
) -> Vec<HaAction> {
    let mut tick = Tick {
        state,
        observations,
        verdicts,
        memory,
        now,
        now_ms,
        config,
        actions: Vec::new(),
        alerts_raised: BTreeSet::new(),
    };
    let leading_since = *tick.memory.first_tick_at.get_or_insert(now);
    // A new leader gives the agents time to find it before calling any of them silent (found by
    // kvs-sim: every leader change restarted every agent over SSH).
    let agents_had_time = now.saturating_sub(leading_since) >= config.agent_silence_timeout * 2;
    for (host_id, verdict) in verdicts {
        let interval = config.agent_restart_interval_min;
        if *verdict == HostVerdict::AgentSilentHostReachable
            && agents_had_time
            && tick.memory.agent_restarts.try_take(host_id, now, interval)
        {
            tick.actions.push(HaAction::RestartAgent {
                host_id: host_id.clone(),
            });
        }
    }
    for instance in state.instances.values() {
        correction::correct(&mut tick, instance);
        if let Some(intent) = &instance.failover {
            progress::advance(&mut tick, instance, intent);
        } else if !unplanned_failover(&mut tick, instance) {
            standby::maintain(&mut tick, instance);
        }
    }
    let raised = std::mem::take(&mut tick.alerts_raised);
    tick.memory.keep_only_alerts(&raised);
    tick.actions
}

/// The admin `kvs failover` request: a planned switchover to the instance's first standby.
pub fn plan_switchover(
    state: &ClusterState,
    name: &str,
    allow_data_loss: bool,
    now_ms: i64,
) -> Result<Command, String> {
    let instance = state
        .instances
        .get(name)
        .ok_or_else(|| format!("no instance named {name}"))?;
    if instance.failover.is_some() {
        return Err(format!("{name} already has a failover in progress"));
    }
    let target = instance
        .standbys
        .first()
        .ok_or_else(|| format!("{name} has no standby to fail over to"))?;
    Ok(Command::BeginFailover {
        name: name.to_string(),
        expected_epoch: instance.epoch,
        new_primary_host: target.host_id.clone(),
        planned: true,
        allow_data_loss,
        primary_offset: None,
        target_offset: None,
        reason: "planned switchover requested by an operator".into(),
        at_ms: now_ms,
    })
}

/// Rules 1, 3 and 4 for an instance without a failover in flight. True when the primary is not
/// healthy (so standby maintenance waits).
fn unplanned_failover(tick: &mut Tick<'_>, instance: &Instance) -> bool {
    let host = &instance.primary.host_id;
    match tick.verdict(host) {
        HostVerdict::ConfirmedDown { since } => {
            let seconds = tick.now.saturating_sub(since).as_secs();
            let reason = format!(
                "host {host} unreachable from every vantage point, agent silent and standby link \
                 down for {seconds} s"
            );
            fail_over(tick, instance, reason, false);
            true
        }
        HostVerdict::Healthy => {
            let rebooted = tick
                .process_at(host, &instance.name, instance.epoch)
                .is_some_and(|p| p.after_reboot && p.is_running_master());
            if rebooted {
                answer_reboot(tick, instance);
                return true;
            }
            let crash_looping = tick
                .process_at(host, &instance.name, instance.epoch)
                .is_some_and(|p| p.status == ProcessStatus::CrashLooping);
            if crash_looping {
                let reason = format!(
                    "primary engine crash-looping on reachable host {host}; standby in sync, \
                     failover allowed"
                );
                fail_over(tick, instance, reason, true);
            }
            false
        }
        HostVerdict::AgentSilentHostReachable | HostVerdict::Suspect { .. } => true,
    }
}

/// The primary restarted from disk after its host rebooted (power loss, VM stop): with
/// `appendfsync everysec` its AOF may miss the last second of writes its standby acknowledged,
/// and its agent keeps it fenced. Fail over to the standby when it is within the lag limit of the
/// primary's last offset before the reboot (or that offset is unknown); else the primary resumes
/// at a new epoch (it has the better copy, or the only one). Found by kvs-sim (bug C): the
/// standby resynced from the short AOF and lost WAIT-acknowledged writes.
fn answer_reboot(tick: &mut Tick<'_>, instance: &Instance) {
    let name = &instance.name;
    let host = &instance.primary.host_id;
    let reason = format!("primary host {host} rebooted; its AOF may miss acknowledged writes");
    let before_reboot = tick
        .process_at(host, name, instance.epoch)
        .and_then(|p| p.master_offset_last);
    let standby = best_standby(tick, instance).filter(|(_, offset)| {
        before_reboot.is_none_or(|p| p.saturating_sub(*offset) <= tick.config.max_lag_bytes)
    });
    if standby.is_none()
        && let Some(waiting_for) = standby_down_with_the_writes(tick, instance, before_reboot)
    {
        let since = *tick
            .memory
            .reboot_waits
            .entry(name.clone())
            .or_insert(tick.now);
        let waited = tick.now.saturating_sub(since);
        let limit = tick.config.reboot_standby_wait;
        if waited < limit {
            let message = format!(
                "{reason}; waiting up to {} s for its standby on host {waiting_for}, which is \
                 unreachable and may hold them (the instance stays unavailable meanwhile)",
                limit.as_secs()
            );
            tick.alert(format!("{name}/reboot-wait"), Some(name), message);
            return;
        }
    }
    tick.memory.reboot_waits.remove(name);
    let command = match standby {
        Some((target, offset)) => begin_unplanned(
            tick,
            instance,
            target,
            before_reboot,
            offset,
            format!("{reason}; its standby has them"),
        ),
        None => Command::ResumeAfterReboot {
            name: name.clone(),
            expected_epoch: instance.epoch,
            reason: format!(
                "{reason}; no standby in sync to take over: estimated data loss {}",
                resume_loss(tick, instance, before_reboot)
            ),
            at_ms: tick.now_ms,
        },
    };
    tick.commit(command);
}

/// What a rebooted primary that resumes from its own data loses: the most any copy was last
/// seen to hold at this epoch (the primary before the reboot, or a standby, which will resync
/// from the primary) minus what its AOF kept. Unknown when this leader never saw the primary's
/// offset before the reboot.
fn resume_loss(tick: &Tick<'_>, instance: &Instance, before_reboot: Option<u64>) -> String {
    let Some(before_reboot) = before_reboot else {
        return "unknown (the offset before the reboot was never observed)".into();
    };
    let name = &instance.name;
    let epoch = instance.epoch;
    let standbys = instance
        .standbys
        .iter()
        .filter_map(|s| tick.process_at(&s.host_id, name, epoch))
        .map(|p| p.replication_offset);
    let most = standbys.fold(before_reboot, u64::max);
    let kept = tick
        .process_at(&instance.primary.host_id, name, epoch)
        .map_or(0, |p| p.replication_offset);
    format!("{} bytes", most.saturating_sub(kept))
}

/// A standby that cannot take over now (its host is not healthy, or its engine is not running
/// as a replica yet, e.g. just restarted with its host) but which, by its last report, was within
/// the lag limit of the primary's last offset before the reboot (or whose offset this leader
/// never saw): it may hold acknowledged writes the rebooted primary's AOF lost. A standby on a
/// healthy host that reports it never completed a sync (offset 0) holds nothing: not waited for
/// (found by kvs-sim seed 313: a standby placed as the primary crashed kept the instance
/// unavailable for the whole `reboot_standby_wait`).
fn standby_down_with_the_writes(
    tick: &Tick<'_>,
    instance: &Instance,
    before_reboot: Option<u64>,
) -> Option<String> {
    instance
        .standbys
        .iter()
        .find(|s| {
            let process = tick.process_at(&s.host_id, &instance.name, instance.epoch);
            let usable = tick.verdict(&s.host_id) == HostVerdict::Healthy
                && process.is_some_and(|p| p.is_running_replica() && p.replication_offset > 0);
            if usable {
                return false;
            }
            let healthy = tick.verdict(&s.host_id) == HostVerdict::Healthy;
            match process {
                Some(p) if p.replication_offset > 0 => before_reboot.is_none_or(|b| {
                    b.saturating_sub(p.replication_offset) <= tick.config.max_lag_bytes
                }),
                Some(p) if healthy && p.is_running_replica() => false, // never synced
                _ => true,
            }
        })
        .map(|s| s.host_id.clone())
}

/// The healthy standby with the highest offset: its host healthy, running as a replica at the
/// current epoch. Ties go to the earlier placement.
pub(super) fn best_standby<'a>(
    tick: &Tick<'_>,
    instance: &'a Instance,
) -> Option<(&'a Placement, u64)> {
    instance
        .standbys
        .iter()
        .filter(|s| tick.verdict(&s.host_id) == HostVerdict::Healthy)
        .filter_map(|s| {
            let p = tick.process_at(&s.host_id, &instance.name, instance.epoch)?;
            // A replica that never completed a sync reports offset 0: promoting it would lose
            // everything (found by kvs-sim: a crash-loop failover to a freshly placed standby).
            // Synced replicas count the primary's pings, so their offset is never 0.
            (p.is_running_replica() && p.replication_offset > 0)
                .then_some((s, p.replication_offset))
        })
        .fold(
            None,
            |best: Option<(&Placement, u64)>, (s, offset)| match best {
                Some((_, top)) if top >= offset => best,
                _ => Some((s, offset)),
            },
        )
}

/// Begins a failover to the best standby, or alerts why not. `require_in_sync`: the primary's
/// last offset must be known and the standby within `max_lag_bytes` (crash-loop failover).
fn fail_over(tick: &mut Tick<'_>, instance: &Instance, reason: String, require_in_sync: bool) {
    let name = &instance.name;
    let key = format!("{name}/failover");
    let Some((target, standby_offset)) = best_standby(tick, instance) else {
        if instance.standby_required || !instance.standbys.is_empty() {
            let message = format!("{name}: {reason}; no healthy standby to fail over to");
            tick.alert(key, Some(name), message);
        }
        return;
    };
    let primary_offset = tick
        .process_at(&instance.primary.host_id, name, instance.epoch)
        .and_then(|p| p.master_offset_last);
    let lag = primary_offset.map(|p| p.saturating_sub(standby_offset));
    let max = tick.config.max_lag_bytes;
    let refusal = match lag {
        Some(lag) if lag > max => Some(format!(
            "standby on host {} lags the last known primary offset by {lag} bytes (limit {max}); \
             use `kvs failover --allow-data-loss` to promote it anyway",
            target.host_id
        )),
        None if require_in_sync => Some("the primary's offset is unknown".into()),
        _ => None,
    };
    if let Some(why) = refusal {
        tick.alert(
            key,
            Some(name),
            format!("{name}: failover refused: {reason}; {why}"),
        );
        return;
    }
    let command = begin_unplanned(
        tick,
        instance,
        target,
        primary_offset,
        standby_offset,
        reason,
    );
    tick.commit(command);
}

/// An unplanned failover of `instance` to the standby at `target`.
fn begin_unplanned(
    tick: &Tick<'_>,
    instance: &Instance,
    target: &Placement,
    primary_offset: Option<u64>,
    target_offset: u64,
    reason: String,
) -> Command {
    Command::BeginFailover {
        name: instance.name.clone(),
        expected_epoch: instance.epoch,
        new_primary_host: target.host_id.clone(),
        planned: false,
        allow_data_loss: false,
        primary_offset,
        target_offset: Some(target_offset),
        reason,
        at_ms: tick.now_ms,
    }
}

#[cfg(test)]
mod random_check;
#[cfg(test)]
mod tests;
