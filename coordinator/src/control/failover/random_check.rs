//! A seeded, deterministic randomized check of the HA policy: random histories of host crashes,
//! silent agents, blocked probes, cut replication links, crash loops and operator switchovers
//! drive the simulated cluster for thousands of steps, and after every step:
//!
//! 1. an automatic failover for an unreachable host (not planned, not a crash loop) begins only if
//!    during the whole window before it no vantage point reached the primary's host, its agent
//!    did not report, and no standby reported its link up;
//! 2. the instance's epoch never decreases, and the epoch desired for each host never does;
//! 3. at most one host is ever told "primary" at a given epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kvs_proto::model::Role;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::control::desired;
use crate::control::ha_sim::{NAME, Sim, cluster};

const SEEDS: [u64; 3] = [7, 1_234, 98_765];
const STEPS: usize = 3_000;
const HOSTS: [&str; 3] = ["ha", "hb", "hc"];

/// What really happened in one step, from the simulation's own knobs and reports.
struct StepFacts {
    at: Duration,
    reached: BTreeSet<String>,
    reported: BTreeSet<String>,
    link_up_reported: BTreeSet<String>,
}

fn toggle(set: &mut BTreeSet<String>, host: &str) {
    if !set.remove(host) {
        set.insert(host.to_string());
    }
}

fn perturb(sim: &mut Sim, rng: &mut StdRng) {
    for host in HOSTS {
        if rng.gen_bool(0.01) {
            toggle(&mut sim.down, host);
        }
        if rng.gen_bool(0.01) {
            toggle(&mut sim.agent_silent, host);
        }
        if rng.gen_bool(0.01) {
            toggle(&mut sim.link_cut, host);
        }
        if rng.gen_bool(0.003) {
            toggle(&mut sim.crash_looping, host);
        }
        for vantage in 1..=3 {
            if rng.gen_bool(0.005) {
                let key = (host.to_string(), vantage);
                if !sim.probe_blocked.remove(&key) {
                    sim.probe_blocked.insert(key);
                }
            }
        }
    }
    if rng.gen_bool(0.003)
        && let Ok(command) = plan_switchover(&sim.state, NAME, rng.gen_bool(0.3), sim.now_ms())
    {
        let _refused_or_applied = sim.state.apply(&command);
    }
}

fn facts(sim: &Sim) -> StepFacts {
    let now = sim.now;
    let reported: BTreeSet<String> = sim
        .observations
        .hosts
        .iter()
        .filter(|(_, h)| h.last_seen == now)
        .map(|(id, _)| id.clone())
        .collect();
    let link_up_reported = reported
        .iter()
        .filter(|h| {
            sim.observations
                .process(h, NAME)
                .is_some_and(|p| p.is_running_replica() && !p.reports_link_down())
        })
        .cloned()
        .collect();
    let reached = HOSTS
        .iter()
        .filter(|h| sim.probes.last_success_at(h) == Some(now))
        .map(|h| h.to_string())
        .collect();
    StepFacts {
        at: now,
        reached,
        reported,
        link_up_reported,
    }
}

fn check_seed(seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = Sim::new(cluster());
    let window = sim.config.confirmation_window;
    let mut history: Vec<StepFacts> = Vec::new();
    let mut epoch_before = sim.instance().epoch;
    let mut desired_epoch: BTreeMap<String, u64> = BTreeMap::new();
    let mut primary_at_epoch: BTreeMap<u64, String> = BTreeMap::new();
    let mut automatic_failovers = 0;
    for step in 0..STEPS {
        perturb(&mut sim, &mut rng);
        let primary_host = sim.instance().primary.host_id.clone();
        let logged = sim.log.len();
        sim.step();
        history.push(facts(&sim));
        for (at, action) in &sim.log[logged..] {
            let HaAction::Commit(Command::BeginFailover {
                planned: false,
                reason,
                ..
            }) = action
            else {
                continue;
            };
            if reason.contains("crash-looping") {
                continue;
            }
            automatic_failovers += 1;
            let recent = history.iter().filter(|f| f.at + window > *at);
            for f in recent {
                let context = format!(
                    "seed {seed} step {step}: failover at {at:?}, evidence at {:?}",
                    f.at
                );
                assert!(
                    !f.reached.contains(&primary_host),
                    "{context}: {primary_host} was reachable"
                );
                assert!(
                    !f.reported.contains(&primary_host),
                    "{context}: {primary_host}'s agent reported"
                );
                assert!(
                    f.link_up_reported.is_empty(),
                    "{context}: a standby's link was up"
                );
            }
        }
        let epoch = sim.instance().epoch;
        assert!(
            epoch >= epoch_before,
            "seed {seed} step {step}: epoch {epoch_before} → {epoch}"
        );
        epoch_before = epoch;
        for host in HOSTS {
            for process in desired::for_host(&sim.state, host, &sim.config) {
                let previous = desired_epoch
                    .insert(host.to_string(), process.epoch)
                    .unwrap_or(0);
                assert!(
                    process.epoch >= previous,
                    "seed {seed} step {step}: {host} told epoch {} after {previous}",
                    process.epoch
                );
                if process.role == Role::Primary {
                    let first = primary_at_epoch
                        .entry(process.epoch)
                        .or_insert_with(|| host.to_string());
                    assert_eq!(
                        first, host,
                        "seed {seed} step {step}: two primaries at epoch {}",
                        process.epoch
                    );
                }
            }
        }
    }
    automatic_failovers
}

#[test]
fn t90_random_histories_respect_the_confirmation_rule_and_epochs() {
    let failovers: usize = SEEDS.iter().map(|seed| check_seed(*seed)).sum();
    assert!(
        failovers > 0,
        "the histories must exercise at least one automatic failover"
    );
}
