//! Drives a committed failover intent to its end (DESIGN.md §4 rules 4 and 6).
//!
//! ```text
//!   planned, promotion not ordered:
//!     switchover_timeout passed           → AbortFailover
//!     target not a healthy replica        → AbortFailover ("the standby went away")
//!     primary paused (applied the pause's desired version, reports its writes paused with the
//!       offset read after the pause) and
//!       target offset ≥ primary offset, both at the current epoch → OrderPromotion
//!     allow_data_loss and the primary host not healthy            → OrderPromotion
//!   promotion ordered:
//!     target running as master at new_epoch → CompleteFailover (loss = primary − target offset,
//!       the primary's offset the larger of the intent's and its last report as master since)
//!     promotion_timeout passed and the target cannot take writes (reports not master, or silent
//!       for fence_after + slack: fenced had it promoted) → AbortFailover (the epoch is burnt),
//!       unless the old primary came back short of what it had acknowledged (a reboot) and the
//!       target may hold the rest: then wait up to reboot_standby_wait more (alerted), and an
//!       abort after that reports the estimated loss
//! ```

use std::time::Duration;

use super::{HaAction, Tick};
use crate::control::detector::HostVerdict;
use crate::control::ha_config::FENCE_DETECTION_SLACK;
use crate::state::{Command, FailoverIntent, Instance};

pub(super) fn advance(tick: &mut Tick<'_>, instance: &Instance, intent: &FailoverIntent) {
    if intent.promotion_ordered {
        await_promotion(tick, instance, intent);
    } else {
        await_catch_up(tick, instance, intent);
    }
}

fn elapsed_since(tick: &Tick<'_>, at_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(tick.now_ms.saturating_sub(at_ms)).unwrap_or(0))
}

fn abort(tick: &mut Tick<'_>, instance: &Instance, intent: &FailoverIntent, reason: String) {
    tick.commit(Command::AbortFailover {
        name: instance.name.clone(),
        epoch: intent.new_epoch,
        reason,
        at_ms: tick.now_ms,
    });
}

fn await_promotion(tick: &mut Tick<'_>, instance: &Instance, intent: &FailoverIntent) {
    let target = &intent.target_host_id;
    let promoted = tick
        .process_at(target, &instance.name, intent.new_epoch)
        .filter(|p| p.is_running_master());
    if promoted.is_some() {
        // The old primary may have reported a larger offset since the intent began (its host
        // returned mid-failover): the estimate uses the larger one.
        let reported_since = tick.observations.master_offset_at(
            &instance.primary.host_id,
            &instance.name,
            instance.epoch,
        );
        let primary_offset = intent.primary_offset.max(reported_since);
        let data_loss_bytes = match (primary_offset, intent.target_offset) {
            (Some(primary), Some(target)) => Some(primary.saturating_sub(target)),
            _ => None,
        };
        tick.commit(Command::CompleteFailover {
            name: instance.name.clone(),
            epoch: intent.new_epoch,
            data_loss_bytes,
            at_ms: tick.now_ms,
        });
        return;
    }
    let ordered_at = intent
        .promotion_ordered_at_ms
        .unwrap_or(intent.started_at_ms);
    let timeout = tick.config.promotion_timeout;
    if elapsed_since(tick, ordered_at) < timeout
        || !target_cannot_take_writes(tick, instance, intent)
    {
        return;
    }
    let mut reason = format!(
        "host {target} did not report the engine running as master at epoch {} within {} s",
        intent.new_epoch,
        timeout.as_secs()
    );
    if let Some(lost) = old_primary_lost(tick, instance, intent) {
        // The old primary came back with less than it had acknowledged (a host reboot: its AOF
        // missed the last writes), and the target may hold them: wait for the target rather
        // than give the instance back to the short copy (found by kvs-sim stack, seed 618).
        let wait = tick.config.reboot_standby_wait;
        if elapsed_since(tick, ordered_at) < timeout + wait {
            let message = format!(
                "{}: {reason}; the old primary restarted {lost} bytes short of what it had \
                 acknowledged, so the failover waits up to {} s more for host {target}, which may \
                 hold them (the instance stays unavailable meanwhile)",
                instance.name,
                wait.as_secs()
            );
            tick.alert(
                format!("{}/abort-wait", instance.name),
                Some(&instance.name),
                message,
            );
            return;
        }
        reason.push_str(&format!(
            "; the old primary restarted short of what it had acknowledged: estimated data loss \
             {lost} bytes"
        ));
    }
    abort(tick, instance, intent, reason);
}

/// Bytes the old primary lacks of what it had when the failover began (it restarted after a
/// reboot with a shorter AOF), when the target may hold them; `None` when nothing is missing or
/// the target is no better.
fn old_primary_lost(tick: &Tick<'_>, instance: &Instance, intent: &FailoverIntent) -> Option<u64> {
    let had = intent.primary_offset?;
    let now = tick
        .observations
        .process(&instance.primary.host_id, &instance.name)?
        .replication_offset;
    let lost = had.saturating_sub(now);
    let target_has = intent.target_offset.is_none_or(|t| t > now);
    (lost > 0 && target_has).then_some(lost)
}

/// An aborted promotion gives the instance back to its old primary, so the target must not be a
/// writable master by then: it reports (fresh) that it is not one, or it has been silent long
/// enough to have fenced itself had it promoted (fence_after + detection slack; a new leader
/// counts from its first tick). Found by kvs-sim (bug D): a target cut off right after promoting
/// stayed a master at the burnt epoch next to the re-promoted old primary until its own fence.
fn target_cannot_take_writes(
    tick: &Tick<'_>,
    instance: &Instance,
    intent: &FailoverIntent,
) -> bool {
    let target = &intent.target_host_id;
    let silence = tick.config.agent_silence_timeout;
    if tick.observations.is_fresh(target, tick.now, silence) {
        let master = tick
            .observations
            .process(target, &instance.name)
            .is_some_and(|p| p.is_running_master() && !p.fenced);
        return !master;
    }
    let last_heard = tick
        .observations
        .hosts
        .get(target)
        .map(|h| h.last_seen)
        .into_iter()
        .chain(tick.memory.first_tick_at)
        .max()
        .unwrap_or(tick.now);
    tick.now.saturating_sub(last_heard) >= tick.config.fence_after + FENCE_DETECTION_SLACK
}

fn await_catch_up(tick: &mut Tick<'_>, instance: &Instance, intent: &FailoverIntent) {
    let name = &instance.name;
    let timeout = tick.config.switchover_timeout;
    if elapsed_since(tick, intent.started_at_ms) >= timeout {
        let reason = format!(
            "the standby did not catch up within {} s",
            timeout.as_secs()
        );
        abort(tick, instance, intent, reason);
        return;
    }
    let target = &intent.target_host_id;
    let standby = tick
        .process_at(target, name, instance.epoch)
        .filter(|p| p.is_running_replica());
    let standby_offset = match standby {
        Some(p) if tick.verdict(target) == HostVerdict::Healthy => p.replication_offset,
        _ => {
            let reason = format!("the standby on host {target} went away");
            abort(tick, instance, intent, reason);
            return;
        }
    };
    let primary_host = &instance.primary.host_id;
    let pause_applied = tick
        .observations
        .hosts
        .get(primary_host)
        .is_some_and(|h| h.desired_version >= intent.pause_desired_version);
    let primary = tick
        .process_at(primary_host, name, instance.epoch)
        .filter(|p| p.is_running_master());
    // The offset is final only once the pause is in force and the offset was read after it.
    let paused = pause_applied && primary.is_some_and(|p| p.writes_paused);
    let order = |primary_offset| Command::OrderPromotion {
        name: name.clone(),
        epoch: intent.new_epoch,
        primary_offset,
        target_offset: Some(standby_offset),
        at_ms: tick.now_ms,
    };
    match primary {
        Some(p) if tick.verdict(primary_host) == HostVerdict::Healthy && paused => {
            let caught_up = standby_offset >= p.replication_offset;
            let command = caught_up.then(|| order(Some(p.replication_offset)));
            tick.actions.extend(command.map(HaAction::Commit));
        }
        _ if intent.allow_data_loss && tick.verdict(primary_host) != HostVerdict::Healthy => {
            let last_known = tick
                .process_at(primary_host, name, instance.epoch)
                .and_then(|p| p.master_offset_last);
            let command = order(last_known);
            tick.commit(command);
        }
        _ => {} // wait for the pause to apply, or for the timeout
    }
}
