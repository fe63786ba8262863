//! The full-stack invariants, checked over a run's history and its final world (DESIGN §4 rules as
//! the issue states them), one rule per file; each file's header says what it guards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvs_proto::model::Role;

mod acked_writes;
mod epochs_grow;
mod failover_confirmed;
mod heals;
mod losses_reported;
mod one_leader_per_term;
mod single_writer;

use super::clients::App;
use super::history::History;
use super::hosts::AgentHost;
use super::lock;
use crate::run::Violation;

/// What the rules found: the violations (first in time first) and, for the report, the
/// acknowledged writes without a replica's `WAIT` that the final primary does not hold.
pub struct Checked {
    pub violations: Vec<Violation>,
    pub lost_unreplicated: usize,
}

/// Runs every rule.
pub fn check(
    history: &Arc<Mutex<History>>,
    agents: &BTreeMap<String, AgentHost>,
    app: &App,
    sim: &turmoil::Sim<'_>,
    healed_at: Duration,
) -> Checked {
    let history = lock(history);
    let mut violations = Vec::new();
    single_writer::single_writer(&history, &mut violations);
    one_leader_per_term::one_leader_per_term(&history, &mut violations);
    failover_confirmed::failover_confirmed(&history, &mut violations);
    epochs_grow::epochs_grow(&history, &mut violations);
    let finals = final_primaries(agents);
    acked_writes::acknowledged_writes_kept(&history, &finals, &mut violations);
    heals::heals(
        &history,
        agents,
        app,
        sim,
        healed_at,
        &finals,
        &mut violations,
    );
    let lost_unreplicated = missing_writes(&history, &finals, false)
        .iter()
        .map(|m| m.ids.len())
        .sum();
    losses_reported::losses_reported(&history, &finals, &mut violations);
    violations.sort_by_key(|v| v.at);
    Checked {
        violations,
        lost_unreplicated,
    }
}

/// instance → (host, log) of the one running, unfenced primary at the end (if exactly one).
pub(super) type Finals = BTreeMap<String, Result<(String, Vec<u64>), String>>;

fn final_primaries(agents: &BTreeMap<String, AgentHost>) -> Finals {
    let mut primaries: BTreeMap<String, Vec<(String, Vec<u64>)>> = BTreeMap::new();
    for agent in agents.values() {
        let Some(state) = agent.engines() else {
            continue;
        };
        for (name, engine) in &lock(&state).engines {
            primaries.entry(name.clone()).or_default();
            if engine.running
                && engine.role == Role::Primary
                && !engine.fenced
                && let Some(list) = primaries.get_mut(name)
            {
                list.push((agent.name.clone(), engine.log.clone()));
            }
        }
    }
    primaries
        .into_iter()
        .map(|(name, mut list)| {
            let result = if list.len() == 1 {
                Ok(list.remove(0))
            } else {
                Err(format!(
                    "{} writable primaries ({})",
                    list.len(),
                    list.iter()
                        .map(|(h, _)| h.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            };
            (name, result)
        })
        .collect()
}

/// Acknowledged writes of one app that its instance's final primary lacks.
pub(super) struct Missing {
    pub(super) instance: String,
    pub(super) host: String,
    pub(super) ids: Vec<u64>,
}

/// Per app with a final primary: the acknowledged writes (with a replica's `WAIT` when
/// `replicated`, else without) that primary lacks; apps missing none are left out.
pub(super) fn missing_writes(history: &History, finals: &Finals, replicated: bool) -> Vec<Missing> {
    history
        .apps
        .iter()
        .filter_map(|(app, instance)| {
            let Some(Ok((host, log))) = finals.get(instance) else {
                return None;
            };
            let kept: BTreeSet<u64> = log.iter().copied().collect();
            let ids: Vec<u64> = history
                .acknowledged
                .iter()
                .filter(|(a, id, r)| a == app && *r == replicated && !kept.contains(id))
                .map(|(_, id, _)| *id)
                .collect();
            (!ids.is_empty()).then(|| Missing {
                instance: instance.clone(),
                host: host.clone(),
                ids,
            })
        })
        .collect()
}

pub(super) fn end_of(history: &History) -> Duration {
    history
        .timeline
        .entries()
        .last()
        .map_or(Duration::ZERO, |e| e.at)
}
