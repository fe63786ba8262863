//! The desired processes of one host, derived from the replicated state. The agent converges to
//! exactly this list; anything it runs that is not on it is stopped and cleaned up.
//!
//! Roles follow the instance's failover state (DESIGN.md §4 rules 4–6):
//!
//! ```text
//!                          no failover      planned, not yet ordered    promotion ordered
//!   primary placement      primary@e        primary@e, pause_writes     standby of target@e+1
//!   target standby         standby@e        standby@e, catch_up         primary@e+1
//!   other standbys         standby@e        standby@e                   standby of target@e+1
//! ```
//!
//! A primary is never told to be primary at an older epoch than any order already sent: once a
//! promotion is ordered its host only ever hears "standby at the new epoch". Primaries with a
//! standby carry `fence_after_seconds`; instances without one never fence.

use kvs_proto::model::{DesiredProcess, Role, Upstream};

use super::ha_config::HaConfig;
use crate::state::{ClusterState, Instance, Placement};

/// What one placement should run as.
struct Order<'a> {
    role: Role,
    epoch: u64,
    /// Standby only: the placement it replicates from.
    upstream: Option<&'a Placement>,
    pause_writes: bool,
    /// Standby only: the target of a planned switchover (reports its offset as it moves).
    catch_up: bool,
}

pub fn for_host(state: &ClusterState, host_id: &str, config: &HaConfig) -> Vec<DesiredProcess> {
    state
        .placements_on(host_id)
        .filter_map(|(instance, placement)| {
            let order = order_for(instance, placement);
            process(state, instance, placement, &order, config)
        })
        .collect()
}

fn order_for<'a>(instance: &'a Instance, placement: &Placement) -> Order<'a> {
    let is_primary = placement.host_id == instance.primary.host_id;
    let standby_of = |upstream: &'a Placement, epoch: u64| Order {
        role: Role::Standby,
        epoch,
        upstream: Some(upstream),
        pause_writes: false,
        catch_up: false,
    };
    match &instance.failover {
        Some(intent) if intent.promotion_ordered => {
            let target = instance
                .standbys
                .iter()
                .find(|s| s.host_id == intent.target_host_id);
            match target {
                Some(_) if placement.host_id == intent.target_host_id => Order {
                    role: Role::Primary,
                    epoch: intent.new_epoch,
                    upstream: None,
                    pause_writes: false,
                    catch_up: false,
                },
                Some(target) => standby_of(target, intent.new_epoch),
                // Apply refuses intents without a target; stay put rather than guess.
                None if is_primary => primary(instance.epoch, false),
                None => standby_of(&instance.primary, instance.epoch),
            }
        }
        Some(intent) if is_primary => primary(instance.epoch, intent.planned),
        Some(intent) if intent.planned && placement.host_id == intent.target_host_id => Order {
            catch_up: true,
            ..standby_of(&instance.primary, instance.epoch)
        },
        _ if is_primary => primary(instance.epoch, false),
        _ => standby_of(&instance.primary, instance.epoch),
    }
}

fn primary<'a>(epoch: u64, pause_writes: bool) -> Order<'a> {
    Order {
        role: Role::Primary,
        epoch,
        upstream: None,
        pause_writes,
        catch_up: false,
    }
}

fn process(
    state: &ClusterState,
    instance: &Instance,
    placement: &Placement,
    order: &Order<'_>,
    config: &HaConfig,
) -> Option<DesiredProcess> {
    let upstream = match order.upstream {
        Some(from) => Some(Upstream {
            host: state.hosts.get(&from.host_id)?.address,
            port: from.front_port,
            tunnel_port: placement.tunnel_port(),
        }),
        None => None,
    };
    // Every placement other than the one told to be primary is a standby of it.
    let has_standby = !instance.standbys.is_empty();
    let fence_after_seconds =
        (order.role == Role::Primary && has_standby).then(|| config.fence_after_seconds());
    Some(DesiredProcess {
        instance: instance.name.clone(),
        epoch: order.epoch,
        role: order.role,
        engine_port: placement.engine_port,
        front_port: placement.front_port,
        engine: instance.engine.clone(),
        maxmemory_bytes: instance.maxmemory_bytes,
        maxclients: instance.max_connections,
        settings: instance.settings.clone(),
        appendonly: instance.persistence,
        default_password: instance.credentials.default_password.clone(),
        admin_password: instance.credentials.admin_password.clone(),
        replication_password: instance.credentials.replication_password.clone(),
        upstream,
        fence_after_seconds,
        pause_writes: order.pause_writes,
        catch_up: order.catch_up,
    })
}

#[cfg(test)]
mod tests;
