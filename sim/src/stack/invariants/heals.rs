//! After the faults heal, every instance is whole again within `HEAL_BOUND`: one writable
//! primary, a standby in sync, and its app's `REDIS_URL` at the primary.

use std::collections::BTreeMap;
use std::time::Duration;

use kvs_proto::model::Role;

use super::Finals;
use crate::run::Violation;
use crate::stack::clients::App;
use crate::stack::history::History;
use crate::stack::hosts::AgentHost;
use crate::stack::lock;

/// After the faults heal, every instance has one writable primary, a standby in sync, and its
/// app's `REDIS_URL` points at the primary's host, within `HEAL_BOUND`.
pub(super) fn heals(
    history: &History,
    agents: &BTreeMap<String, AgentHost>,
    app: &App,
    sim: &turmoil::Sim<'_>,
    healed_at: Duration,
    finals: &Finals,
    violations: &mut Vec<Violation>,
) {
    let at = healed_at + crate::stack::HEAL_BOUND;
    let urls = lock(&app.urls).clone();
    for (app_name, instance) in &history.apps {
        let (host, log) = match finals.get(instance) {
            Some(Ok(primary)) => primary.clone(),
            Some(Err(why)) => {
                violations.push(Violation {
                    invariant: "heals",
                    at,
                    message: format!("{instance} at the end: {why}"),
                });
                continue;
            }
            None => {
                violations.push(Violation {
                    invariant: "heals",
                    at,
                    message: format!("{instance} runs nowhere at the end"),
                });
                continue;
            }
        };
        let in_sync = agents.values().filter(|a| a.name != host).any(|agent| {
            agent.engines().is_some_and(|state| {
                lock(&state).engines.get(instance).is_some_and(|e| {
                    e.running
                        && e.role == Role::Standby
                        && e.link_up
                        && e.log.len() + 20 >= log.len()
                })
            })
        });
        if !in_sync {
            violations.push(Violation {
                invariant: "heals",
                at,
                message: format!("{instance}: no standby in sync with the primary on {host}"),
            });
        }
        let points_at = urls.get(app_name).map(|a| a.ip());
        if points_at != Some(sim.lookup(host.as_str())) {
            violations.push(Violation {
                invariant: "heals",
                at,
                message: format!(
                    "{app_name}'s REDIS_URL points at {points_at:?}, the primary of {instance} is on {host}"
                ),
            });
        }
    }
}
