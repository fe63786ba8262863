//! The full-stack invariants, checked over a run's history and its final world (DESIGN §4 rules as
//! the issue states them). Each `fn` below is one rule; its comment says what it guards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvs_proto::model::Role;

use super::clients::App;
use super::coordinators::{CONFIRMATION_WINDOW, PROBE_INTERVAL};
use super::engines;
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
    single_writer(&history, &mut violations);
    one_leader_per_term(&history, &mut violations);
    failover_confirmed(&history, &mut violations);
    epochs_grow(&history, &mut violations);
    let finals = final_primaries(agents);
    acknowledged_writes_kept(&history, &finals, &mut violations);
    heals(
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
    losses_reported(&history, &finals, &mut violations);
    violations.sort_by_key(|v| v.at);
    Checked {
        violations,
        lost_unreplicated,
    }
}

/// Every loss of acknowledged writes (without a replica's `WAIT`) is reported as an instance
/// event: a failover's estimated data loss, or a rebooted primary that may miss writes.
fn losses_reported(history: &History, finals: &Finals, violations: &mut Vec<Violation>) {
    for missing in missing_writes(history, finals, false) {
        let reported = history.events.get(&missing.instance).is_some_and(|events| {
            events
                .iter()
                .any(|(_, m)| m.contains("data loss") || m.contains("may miss"))
        });
        if !reported {
            violations.push(Violation {
                invariant: "losses-reported",
                at: end_of(history),
                message: format!(
                    "{}: {} acknowledged writes are not on the final primary {}, and no instance \
                     event reports a loss",
                    missing.instance,
                    missing.ids.len(),
                    missing.host
                ),
            });
        }
    }
}

/// Acknowledged writes of one app that its instance's final primary lacks.
struct Missing {
    instance: String,
    host: String,
    ids: Vec<u64>,
}

/// Per app with a final primary: the acknowledged writes (with a replica's `WAIT` when
/// `replicated`, else without) that primary lacks; apps missing none are left out.
fn missing_writes(history: &History, finals: &Finals, replicated: bool) -> Vec<Missing> {
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

fn end_of(history: &History) -> Duration {
    history
        .timeline
        .entries()
        .last()
        .map_or(Duration::ZERO, |e| e.at)
}

/// At most one primary accepts client writes per instance at any instant: a write on another
/// host than the current writer must come at a higher epoch (a failover); a write at the same or
/// a lower epoch than the current writer's, on another host, is a second writer (split brain).
/// Reported once per instance, with the number of such writes.
fn single_writer(history: &History, violations: &mut Vec<Violation>) {
    let mut writer: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
    // instance → (first offending write, count).
    let mut offending: BTreeMap<&str, (&super::history::Accepted, (&str, u64), usize)> =
        BTreeMap::new();
    for write in &history.accepted {
        match writer.get(write.instance.as_str()).copied() {
            Some((host, epoch)) if host != write.host && write.epoch <= epoch => {
                offending
                    .entry(&write.instance)
                    .or_insert((write, (host, epoch), 0))
                    .2 += 1;
                continue;
            }
            _ => {}
        }
        writer.insert(&write.instance, (&write.host, write.epoch));
    }
    for (instance, (first, (host, epoch), count)) in offending {
        violations.push(Violation {
            invariant: "single-writer",
            at: first.at,
            message: format!(
                "{instance}: {count} writes taken on {} at epoch {} while {host} took writes at \
                 epoch {epoch} (split brain); first: write {}",
                first.host, first.epoch, first.id
            ),
        });
    }
}

/// Raft: at most one leader per term.
fn one_leader_per_term(history: &History, violations: &mut Vec<Violation>) {
    for (term, nodes) in &history.leaders {
        if nodes.len() > 1 {
            violations.push(Violation {
                invariant: "one-leader-per-term",
                at: Duration::ZERO,
                message: format!("term {term} had leaders {nodes:?}"),
            });
        }
    }
}

/// No failover unless the primary's host was unreachable from every vantage point for the whole
/// window (counted from its last sign of life, up to one probe interval before the cut), or it
/// restarted after a host crash (the reboot rule). An engine or agent crash alone never fails over.
fn failover_confirmed(history: &History, violations: &mut Vec<Violation>) {
    let required = CONFIRMATION_WINDOW.saturating_sub(PROBE_INTERVAL + Duration::from_secs(1));
    for promotion in &history.promotions {
        // The writer before the promotion.
        let previous = history
            .accepted
            .iter()
            .rfind(|w| w.instance == promotion.instance && w.at <= promotion.at)
            .filter(|w| w.host != promotion.host);
        let Some(previous) = previous else { continue };
        let from = promotion.at.saturating_sub(required);
        let cut_off = history.unreachable_throughout(&previous.host, from, promotion.at);
        let rebooted = history
            .unreachable
            .get(&previous.host)
            .is_some_and(|intervals| {
                intervals.iter().any(|(start, end)| {
                    *start < promotion.at && end.is_some_and(|e| e <= promotion.at)
                })
            });
        if !cut_off && !rebooted {
            violations.push(Violation {
                invariant: "failover-confirmed",
                at: promotion.at,
                message: format!(
                    "{} promoted on {} at epoch {}, but its primary's host {} was not cut off \
                     from every vantage point for {required:?} before",
                    promotion.instance, promotion.host, promotion.epoch, previous.host
                ),
            });
        }
    }
}

/// Epochs only grow: each promotion of an instance is at a higher epoch than the one before.
fn epochs_grow(history: &History, violations: &mut Vec<Violation>) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for promotion in &history.promotions {
        if let Some(previous) = last.get(promotion.instance.as_str())
            && promotion.epoch <= *previous
        {
            violations.push(Violation {
                invariant: "epochs-grow",
                at: promotion.at,
                message: format!(
                    "{} promoted at epoch {} after epoch {previous}",
                    promotion.instance, promotion.epoch
                ),
            });
        }
        last.insert(&promotion.instance, promotion.epoch);
    }
}

/// instance → (host, log) of the one running, unfenced primary at the end (if exactly one).
type Finals = BTreeMap<String, Result<(String, Vec<u64>), String>>;

fn final_primaries(agents: &BTreeMap<String, AgentHost>) -> Finals {
    let mut primaries: BTreeMap<String, Vec<(String, Vec<u64>)>> = BTreeMap::new();
    for agent in agents.values() {
        let Some(state) = agent.engines() else {
            continue;
        };
        for (name, engine) in &engines::lock(&state).engines {
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

/// No write a client saw acknowledged by `WAIT` (a replica had it) is lost.
fn acknowledged_writes_kept(history: &History, finals: &Finals, violations: &mut Vec<Violation>) {
    for missing in missing_writes(history, finals, true) {
        violations.push(Violation {
            invariant: "acked-writes",
            at: end_of(history),
            message: format!(
                "{}: {} WAIT-acknowledged writes missing on the final primary {} (first {:?})",
                missing.instance,
                missing.ids.len(),
                missing.host,
                &missing.ids[..missing.ids.len().min(5)]
            ),
        });
    }
}

/// After the faults heal, every instance has one writable primary, a standby in sync, and its
/// app's `REDIS_URL` points at the primary's host, within `HEAL_BOUND`.
fn heals(
    history: &History,
    agents: &BTreeMap<String, AgentHost>,
    app: &App,
    sim: &turmoil::Sim<'_>,
    healed_at: Duration,
    finals: &Finals,
    violations: &mut Vec<Violation>,
) {
    let at = healed_at + super::HEAL_BOUND;
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
                engines::lock(&state)
                    .engines
                    .get(instance)
                    .is_some_and(|e| {
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
