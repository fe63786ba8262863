//! Keeps one standby per instance that requires one (DESIGN.md §4 rule 4, "then place a new
//! standby in another zone"), for instances whose primary host is healthy and that have no
//! failover in flight.
//!
//! ```text
//!   required, no standby on a host that is not confirmed down
//!       → PlaceStandby (never the primary's zone; a zone without any process of the instance
//!         first, so after a failover the third zone rather than the old primary's)
//!   more than one standby and one of them in sync
//!       → RemoveStandby of the first other one (dead ones included): one per tick
//! ```
//!
//! The second rule is how a dead old primary (kept as a standby by CompleteFailover) is dropped
//! once its replacement is in sync; if its host returns first it simply rejoins as a standby.

use super::detector::HostVerdict;
use super::failover::Tick;
use super::{ha_status, placement};
use crate::state::{Command, Instance, Placement};

pub(super) fn maintain(tick: &mut Tick<'_>, instance: &Instance) {
    if !instance.standby_required {
        return;
    }
    let live = instance
        .standbys
        .iter()
        .any(|s| !matches!(tick.verdict(&s.host_id), HostVerdict::ConfirmedDown { .. }));
    if !live {
        place(tick, instance);
        return;
    }
    if instance.standbys.len() > 1
        && let Some(surplus) = surplus_standby(tick, instance)
    {
        tick.commit(Command::RemoveStandby {
            name: instance.name.clone(),
            host_id: surplus.host_id.clone(),
            at_ms: tick.now_ms,
        });
    }
}

fn place(tick: &mut Tick<'_>, instance: &Instance) {
    let healthy: Vec<String> = tick
        .verdicts
        .iter()
        .filter(|(_, v)| **v == HostVerdict::Healthy)
        .map(|(id, _)| id.clone())
        .collect();
    match placement::place_standby(tick.state, &healthy, instance) {
        Ok(choice) => tick.commit(Command::PlaceStandby {
            name: instance.name.clone(),
            placement: Placement {
                host_id: choice.host_id,
                front_port: choice.front_port,
                engine_port: choice.engine_port,
            },
            at_ms: tick.now_ms,
        }),
        Err(error) => {
            let key = format!("{}/standby", instance.name);
            let message = format!("{}: cannot place a standby: {error}", instance.name);
            tick.alert(key, Some(&instance.name), message);
        }
    }
}

/// The first standby other than the last one in sync, if any is in sync.
fn surplus_standby<'a>(tick: &Tick<'_>, instance: &'a Instance) -> Option<&'a Placement> {
    let keeper = instance.standbys.iter().rev().find(|s| {
        ha_status::standby_in_sync(instance, s, tick.observations, tick.now, tick.config)
    })?;
    instance
        .standbys
        .iter()
        .find(|s| s.host_id != keeper.host_id)
}
