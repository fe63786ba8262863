//! Corrects a completed failover's loss estimate once its old primary reports what it had.
//!
//! The estimate at completion is `primary_offset − target_offset`, the old primary's offset as
//! the deciding leader last saw it. A primary cut off from the coordinators and its standby but
//! not from its clients keeps taking writes until it fences itself (`fence_after`), after that
//! report: those writes are lost and were not counted (found by kvs-sim stack, `losses-reported`
//! with the figures checked). When its host returns, the first report of its session still shows
//! the process as master at the old epoch, with the offset it reached; `Observations` keeps that
//! (`master_reports`) after the agent demotes or removes the process, which may happen before
//! the leader's next tick:
//!
//! ```text
//!   last_failover { old host, old epoch, target offset T, reported R }
//!   old host's last report as master at the old epoch: offset O
//!   O − T > R (or R unknown)  → CorrectDataLoss(epoch, O − T)  ("corrected estimate of …")
//! ```
//!
//! The new primary's data is the old primary's up to T, so O − T is what the old primary had
//! and the instance lost. A real engine's offset also counts the pings it sent its replicas, so
//! the figure may exceed the writes by a few bytes a second; it never falls short of them.

use super::Tick;
use crate::state::{Command, Instance};

/// Commits a corrected estimate of `instance`'s last completed failover when its old primary
/// reported more than the estimate assumed.
pub(super) fn correct(tick: &mut Tick<'_>, instance: &Instance) {
    let Some(last) = &instance.last_failover else {
        return;
    };
    let Some(target) = last.target_offset else {
        return;
    };
    let host = &last.old_primary_host_id;
    let Some(had) = tick
        .observations
        .master_offset_at(host, &instance.name, last.old_epoch)
    else {
        return;
    };
    let lost = had.saturating_sub(target);
    if last.data_loss_bytes.is_none_or(|reported| lost > reported) {
        tick.commit(Command::CorrectDataLoss {
            name: instance.name.clone(),
            epoch: last.epoch,
            data_loss_bytes: lost,
            at_ms: tick.now_ms,
        });
    }
}
