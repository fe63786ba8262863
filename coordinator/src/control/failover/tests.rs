//! Rule-by-rule scenarios of the HA policy on the simulated cluster (`control::ha_sim`): three
//! zones, the primary on `ha` (zone a), its standby on `hb` (zone b), `hc` (zone c) spare.

use std::time::Duration;

use kvs_proto::model::Role;

use super::*;
use crate::control::ha_sim::{NAME, Sim, cluster, cluster_without_standby, commit_kinds, running};
use crate::control::{HostObservation, desired, ha_status};

/// The simulated cluster after 30 s of normal operation (standby in sync).
fn warm(step_seconds: u64) -> Sim {
    let mut sim = Sim::new(cluster());
    sim.step_length = Duration::from_secs(step_seconds);
    let actions = sim.run(30);
    assert!(
        commit_kinds(&actions).is_empty(),
        "steady state: {actions:?}"
    );
    sim
}

fn count(actions: &[HaAction], kind: &str) -> usize {
    commit_kinds(actions).iter().filter(|k| **k == kind).count()
}

#[test]
fn t10_unreachable_119_s_no_failover_121_s_failover() {
    let mut sim = warm(1);
    sim.down.insert("ha".into());
    // The last sign of life (probe success, agent report, standby hearing its primary) is the step
    // before the crash; the window counts from there. 119 s after it: no failover.
    let first = sim.run(1);
    let until_119 = sim.run(118);
    assert_eq!(count(&[first, until_119].concat(), "begin_failover"), 0);
    let at_121 = sim.run(2);
    assert_eq!(commit_kinds(&at_121)[0], "begin_failover", "{at_121:?}");
}

#[test]
fn t11_probe_success_mid_window_restarts_the_clock() {
    let mut sim = warm(1);
    // A partition: every vantage point fails, the agent is silent, the standby's link is cut,
    // but the primary keeps running.
    for vantage in 1..=3 {
        sim.probe_blocked.insert(("ha".into(), vantage));
    }
    sim.agent_silent.insert("ha".into());
    sim.link_cut.insert("hb".into());
    let first_half = sim.run(60);
    sim.probe_blocked.remove(&("ha".to_string(), 2));
    let success = sim.run(1);
    sim.probe_blocked.insert(("ha".into(), 2));
    let before_window = sim.run(119);
    let all = [first_half, success, before_window].concat();
    assert_eq!(count(&all, "begin_failover"), 0, "{all:?}");
    let after_window = sim.run(3);
    assert_eq!(
        count(&after_window, "begin_failover"),
        1,
        "{after_window:?}"
    );
}

#[test]
fn t12_agent_silent_host_reachable_restarts_agent_never_fails_over() {
    let mut sim = warm(5);
    sim.agent_silent.insert("ha".into());
    sim.link_cut.insert("hb".into()); // even with the standby's link down
    let actions = sim.run(300);
    assert_eq!(count(&actions, "begin_failover"), 0);
    let restarts: Vec<Duration> = sim
        .log
        .iter()
        .filter(|(_, a)| matches!(a, HaAction::RestartAgent { host_id } if host_id == "ha"))
        .map(|(at, _)| *at)
        .collect();
    assert!((4..=6).contains(&restarts.len()), "{restarts:?}");
    assert!(
        restarts
            .windows(2)
            .all(|w| w[1] - w[0] >= Duration::from_secs(60))
    );
}

#[test]
fn t13_standby_link_still_up_no_failover() {
    let mut sim = warm(5);
    for vantage in 1..=3 {
        sim.probe_blocked.insert(("ha".into(), vantage));
    }
    sim.agent_silent.insert("ha".into());
    let actions = sim.run(600);
    assert_eq!(count(&actions, "begin_failover"), 0, "{actions:?}");
    assert!(matches!(sim.verdicts()["ha"], HostVerdict::Suspect { .. }));
}

#[test]
fn t14_engine_crash_on_healthy_host_is_left_to_the_agent() {
    let mut sim = warm(5);
    sim.restarting.insert("ha".into());
    let actions = sim.run(300);
    assert!(commit_kinds(&actions).is_empty(), "{actions:?}");
}

#[test]
fn t15_crash_looping_primary_with_in_sync_standby_fails_over() {
    let mut sim = warm(5);
    sim.crash_looping.insert("ha".into());
    let actions = sim.run(30);
    assert_eq!(
        commit_kinds(&actions)[..2],
        ["begin_failover", "complete_failover"]
    );
    assert!(sim.events().iter().any(|e| e.contains("crash-looping")));
    assert_eq!(sim.instance().primary.host_id, "hb");
}

#[test]
fn t16_crash_looping_primary_with_lagging_standby_stays() {
    let mut sim = warm(5);
    sim.lag.insert("hb".into(), 2 << 20);
    sim.run(10);
    sim.crash_looping.insert("ha".into());
    let actions = sim.run(60);
    assert_eq!(count(&actions, "begin_failover"), 0);
    assert_eq!(count(&actions, "record_event"), 1, "refusal recorded once");
}

#[test]
fn t20_lag_over_limit_refused_unless_allow_data_loss() {
    let mut sim = warm(5);
    sim.lag.insert("hb".into(), 2 << 20);
    sim.run(10);
    sim.down.insert("ha".into());
    let actions = sim.run(300);
    assert_eq!(count(&actions, "begin_failover"), 0);
    let alerts: Vec<_> = actions
        .iter()
        .filter(|a| matches!(a, HaAction::Alert(_)))
        .collect();
    assert_eq!(alerts.len(), 1, "alerted once: {alerts:?}");
    assert!(sim.events().iter().any(|e| e.contains("failover refused")));
    // The operator accepts the loss: a switchover with allow_data_loss promotes at once.
    let command = plan_switchover(&sim.state, NAME, true, sim.now_ms()).unwrap();
    sim.state.apply(&command).unwrap();
    let actions = sim.run(15);
    assert_eq!(
        commit_kinds(&actions)[..2],
        ["order_promotion", "complete_failover"]
    );
    let events = sim.events();
    let done = events
        .iter()
        .find(|e| e.starts_with("failover to host hb"))
        .unwrap();
    assert!(
        done.contains(&format!("estimated data loss {} bytes", 2 << 20)),
        "{done}"
    );
}

#[test]
fn t21_unplanned_failover_rotates_url_and_places_a_standby_in_the_third_zone() {
    let mut sim = warm(5);
    sim.lag.insert("hb".into(), 500);
    sim.run(10);
    let url_before = sim.state.url(sim.instance()).unwrap();
    let app_version = sim.state.apps["web"].version;
    sim.down.insert("ha".into());
    let actions = sim.run(200);
    assert_eq!(
        commit_kinds(&actions),
        [
            "begin_failover",
            "complete_failover",
            "place_standby",
            "remove_standby"
        ]
    );
    let instance = sim.instance();
    assert_eq!(
        (instance.primary.host_id.as_str(), instance.epoch),
        ("hb", 2)
    );
    let standbys: Vec<&str> = instance
        .standbys
        .iter()
        .map(|s| s.host_id.as_str())
        .collect();
    assert_eq!(
        standbys,
        ["hc"],
        "third zone; the dead old primary dropped once hc synced"
    );
    assert_ne!(sim.state.url(instance).unwrap(), url_before);
    assert_eq!(sim.state.apps["web"].version, app_version + 1);
    let events = sim.events();
    assert!(
        events.contains(
            &"failover to host hb (zone b), epoch 2, estimated data loss 500 bytes".into()
        ),
        "{events:?}"
    );
    let status = ha_status::of(instance, &sim.observations, sim.now, &sim.config);
    assert_eq!(status, ha_status::HaStatus::Available);
}

#[test]
fn t22_returning_host_rejoins_as_standby_at_the_new_epoch() {
    let mut sim = warm(5);
    sim.down.insert("ha".into());
    sim.down.insert("hc".into()); // no third zone: the dead old primary stays the standby
    sim.run(200);
    assert_eq!(sim.instance().primary.host_id, "hb");
    assert!(
        sim.events()
            .iter()
            .any(|e| e.contains("cannot place a standby"))
    );
    let rejoin = desired::for_host(&sim.state, "ha", &sim.config);
    assert_eq!(rejoin.len(), 1);
    assert_eq!((rejoin[0].role, rejoin[0].epoch), (Role::Standby, 2));
    assert_eq!(
        rejoin[0].upstream.as_ref().unwrap().host.to_string(),
        "127.0.0.12"
    );
    sim.down.remove("ha");
    sim.run(30);
    let report = sim.observations.process("ha", NAME).unwrap();
    assert_eq!((report.role.as_str(), report.epoch), ("slave", 2));
    let status = ha_status::of(sim.instance(), &sim.observations, sim.now, &sim.config);
    assert_eq!(status, ha_status::HaStatus::Available);
}

/// A host's report of one process of the instance, as its agent's session sends it.
fn report_of(sim: &Sim, process: ProcessObservation) -> HostObservation {
    HostObservation {
        last_seen: sim.now,
        last_seen_ms: sim.now_ms(),
        memory_total_bytes: 1 << 30,
        memory_available_bytes: 1 << 29,
        load_avg_1m: 0.0,
        engines: vec![],
        processes: BTreeMap::from([(NAME.to_string(), process)]),
        desired_version: 0,
    }
}

#[test]
fn t26_an_old_primary_that_took_writes_after_its_last_report_corrects_the_loss_estimate() {
    // Found by kvs-sim stack (`losses-reported` checking the figures): a primary cut off from
    // the coordinators and its standby, not from its clients, takes writes until it fences
    // itself, after the leader's last report of it; the estimate counted only up to that report.
    let mut sim = warm(5);
    sim.lag.insert("hb".into(), 500);
    sim.run(10);
    sim.down.insert("ha".into());
    sim.down.insert("hc".into()); // ha stays the standby placement, as in t22
    sim.run(200);
    assert_eq!(sim.instance().epoch, 2);
    assert!(
        sim.events().contains(
            &"failover to host hb (zone b), epoch 2, estimated data loss 500 bytes".into()
        )
    );
    // The host returns. Its session's first report still shows the old process as master at
    // epoch 1, 3,000 bytes past the last report; the very next one (this step's) shows it
    // demoted before the leader ticks.
    let had = sim.offsets["ha"] + 3_000;
    let first = report_of(&sim, running(1, "master", had, ""));
    sim.observations.record("ha", first);
    sim.down.remove("ha");
    let actions = sim.run(5);
    assert_eq!(commit_kinds(&actions), ["correct_data_loss"], "{actions:?}");
    let report = sim.observations.process("ha", NAME).unwrap();
    assert_eq!((report.role.as_str(), report.epoch), ("slave", 2));
    assert_eq!(
        sim.events().last().unwrap(),
        "failover at epoch 2: corrected estimate of data loss 3500 bytes (the old primary on \
         host ha took writes after the last report of it)"
    );
    let later = sim.run(60);
    assert_eq!(count(&later, "correct_data_loss"), 0, "corrected once");
}

#[test]
fn t27_an_unknown_estimate_is_corrected_once_the_old_primary_reports() {
    // As t41: this leader never saw the primary, so the loss was "unknown". The old primary
    // returns after its placement was replaced (removed): its first report is all it says.
    let mut sim = Sim::new(cluster());
    let standby = sim.instance().standbys[0].host_id.clone();
    let synced = crate::control::ha_sim::INITIAL_PRIMARY_OFFSET;
    sim.offsets.insert(standby, synced);
    sim.down.insert("ha".into());
    sim.run(300);
    assert!(sim.instance().standbys.iter().all(|s| s.host_id != "ha"));
    let first = report_of(&sim, running(1, "master", synced + 700, ""));
    sim.observations.record("ha", first);
    sim.down.remove("ha");
    let actions = sim.run(5);
    assert_eq!(count(&actions, "correct_data_loss"), 1, "{actions:?}");
    assert!(sim.observations.process("ha", NAME).is_none(), "removed");
    assert!(sim.events().last().unwrap().starts_with(
        "failover at epoch 2: corrected estimate of data loss 700 bytes (the old primary on \
             host ha reported the offset it had)"
    ));
}

#[test]
fn t30_planned_switchover_pauses_waits_promotes() {
    let mut sim = warm(5);
    let command = plan_switchover(&sim.state, NAME, false, sim.now_ms()).unwrap();
    sim.state.apply(&command).unwrap();
    let paused = desired::for_host(&sim.state, "ha", &sim.config);
    assert!(paused[0].pause_writes && paused[0].role == Role::Primary && paused[0].epoch == 1);
    let actions = sim.run(20);
    assert_eq!(
        commit_kinds(&actions),
        ["order_promotion", "complete_failover"]
    );
    let instance = sim.instance();
    assert_eq!(
        (instance.primary.host_id.as_str(), instance.epoch),
        ("hb", 2)
    );
    assert!(
        sim.events()
            .iter()
            .any(|e| e.ends_with("estimated data loss 0 bytes"))
    );
    // The old primary is now the standby (healthy): nothing to place.
    let later = sim.run(60);
    assert!(commit_kinds(&later).is_empty(), "{later:?}");
}

#[test]
fn t30b_planned_switchover_waits_for_the_pause_to_be_in_force() {
    // The agent applied the desired state (its version) but CLIENT PAUSE has not answered yet:
    // the offset it reports may still grow, so no promotion is ordered on it.
    let mut sim = warm(1);
    sim.pause_unconfirmed.insert("ha".into());
    let command = plan_switchover(&sim.state, NAME, false, sim.now_ms()).unwrap();
    sim.state.apply(&command).unwrap();
    let target = desired::for_host(&sim.state, "hb", &sim.config);
    assert!(target[0].catch_up && target[0].role == Role::Standby);
    let waiting = sim.run(5);
    assert!(commit_kinds(&waiting).is_empty(), "{waiting:?}");
    sim.pause_unconfirmed.clear();
    let actions = sim.run(5);
    assert_eq!(
        commit_kinds(&actions),
        ["order_promotion", "complete_failover"]
    );
    let promoted = desired::for_host(&sim.state, "hb", &sim.config);
    assert!(!promoted[0].catch_up && promoted[0].role == Role::Primary);
}

#[test]
fn t30c_an_abort_waits_until_a_silent_target_has_fenced_itself() {
    // Bug D (kvs-sim seed 630): the target goes silent right after the promotion is ordered; it
    // may have promoted. The abort (which gives the instance back to the old primary) waits until
    // it would have fenced itself: fence_after + detection slack after it was last heard.
    let mut sim = warm(1);
    // A fence slower than the promotion timeout (the default fence, 2 s, is far quicker).
    sim.config.fence_after = Duration::from_secs(60);
    let command = plan_switchover(&sim.state, NAME, false, sim.now_ms()).unwrap();
    sim.state.apply(&command).unwrap();
    while !sim.instance().failover.as_ref().unwrap().promotion_ordered {
        sim.step();
    }
    sim.down.insert("hb".into());
    let last_heard = sim.now;
    let fenced_by = sim.config.fence_after + crate::control::ha_config::FENCE_DETECTION_SLACK;
    assert!(
        sim.config.promotion_timeout < fenced_by,
        "the case under test"
    );
    let early = sim.run((fenced_by - Duration::from_secs(2)).as_secs());
    assert!(
        commit_kinds(&early).is_empty(),
        "no abort while the target may be an unfenced master: {early:?}"
    );
    let later = sim.run(5);
    assert_eq!(commit_kinds(&later)[..1], ["abort_failover"]);
    assert!(sim.now.saturating_sub(last_heard) >= fenced_by);
}

#[test]
fn t23_primary_restarted_after_a_reboot_fails_over_to_its_standby() {
    // Bug C (kvs-sim seed 0, power-loss): the rebooted primary's AOF may miss the last second of
    // writes its standby acknowledged; its agent keeps it fenced and reports `after_reboot`.
    let mut sim = warm(1);
    sim.rebooted.insert("ha".into(), 1);
    let actions = sim.run(10);
    assert_eq!(
        commit_kinds(&actions)[..2],
        ["begin_failover", "complete_failover"]
    );
    let instance = sim.instance();
    assert_eq!(
        (instance.primary.host_id.as_str(), instance.epoch),
        ("hb", 2)
    );
    assert!(sim.events().iter().any(|e| e.contains("rebooted")));
}

#[test]
fn t24_rebooted_primary_without_a_standby_in_sync_resumes_at_a_new_epoch() {
    let mut sim = warm(1);
    sim.down.insert("hb".into());
    sim.down.insert("hc".into());
    sim.run(10); // the standby host is silent now
    sim.rebooted.insert("ha".into(), 1);
    // The standby was in sync when it went silent: it may hold the writes the primary's AOF
    // lost, so the primary waits for it (alerted) up to `reboot_standby_wait` before resuming.
    let waiting = sim.run(sim.config.reboot_standby_wait.as_secs() - 10);
    assert_eq!(
        commit_kinds(&waiting),
        ["record_event"],
        "waits for the standby, with one event saying so: {waiting:?}"
    );
    assert_eq!(sim.instance().epoch, 1);
    let actions = sim.run(15);
    assert_eq!(
        commit_kinds(&actions)
            .into_iter()
            .filter(|k| *k != "record_event")
            .collect::<Vec<_>>(),
        ["resume_after_reboot"]
    );
    let instance = sim.instance();
    assert_eq!(
        (instance.primary.host_id.as_str(), instance.epoch),
        ("ha", 2),
        "same primary, new epoch (which lifts the agent's fence)"
    );
    let later = sim.run(10);
    assert!(
        !commit_kinds(&later).contains(&"resume_after_reboot"),
        "answered once: {later:?}"
    );
}

#[test]
fn t25_rebooted_primary_fails_over_to_its_standby_when_it_returns_within_the_wait() {
    let mut sim = warm(1);
    sim.down.insert("hb".into());
    sim.down.insert("hc".into());
    sim.run(10);
    sim.rebooted.insert("ha".into(), 1);
    let waiting = sim.run(60);
    assert!(
        !commit_kinds(&waiting).contains(&"resume_after_reboot"),
        "{waiting:?}"
    );
    sim.down.remove("hb");
    sim.down.remove("hc");
    let actions = sim.run(30);
    assert!(
        commit_kinds(&actions).contains(&"begin_failover"),
        "the returned standby takes over: {actions:?}"
    );
}

#[test]
fn t31_planned_switchover_aborts_when_the_standby_does_not_catch_up() {
    let mut sim = warm(5);
    sim.lag.insert("hb".into(), 500);
    sim.run(10);
    let command = plan_switchover(&sim.state, NAME, false, sim.now_ms()).unwrap();
    sim.state.apply(&command).unwrap();
    let actions = sim.run(40);
    assert_eq!(commit_kinds(&actions), ["abort_failover"]);
    let instance = sim.instance();
    assert_eq!(
        (instance.primary.host_id.as_str(), instance.epoch),
        ("ha", 1)
    );
    assert!(!desired::for_host(&sim.state, "ha", &sim.config)[0].pause_writes);
}

#[test]
fn t32_planned_switchover_aborts_when_the_standby_goes_away() {
    let mut sim = warm(5);
    sim.down.insert("hb".into());
    sim.run(10); // its agent is silent now
    let command = plan_switchover(&sim.state, NAME, false, sim.now_ms()).unwrap();
    sim.state.apply(&command).unwrap();
    let actions = sim.run(15);
    assert_eq!(commit_kinds(&actions)[..1], ["abort_failover"]);
    assert!(sim.events().iter().any(|e| e.contains("went away")));
    assert_eq!(
        plan_switchover(&ClusterState::default(), NAME, false, 0),
        Err(format!("no instance named {NAME}"))
    );
}

#[test]
fn t40_a_required_standby_is_placed_in_another_zone() {
    let mut sim = Sim::new(cluster_without_standby());
    let actions = sim.run(10);
    assert_eq!(commit_kinds(&actions), ["place_standby"]);
    let standby = &sim.instance().standbys[0];
    assert_ne!(sim.state.hosts[&standby.host_id].zone, "a");
    assert_eq!(
        ha_status::of(sim.instance(), &sim.observations, sim.now, &sim.config),
        ha_status::HaStatus::Available,
        "synced by the next report"
    );
}

#[test]
fn t41_a_new_leader_waits_a_whole_window() {
    // The primary host died before this leader took over: nothing observed of it at all. Its
    // standby had synced under the previous leader.
    let mut sim = Sim::new(cluster());
    let standby = sim.instance().standbys[0].host_id.clone();
    sim.offsets
        .insert(standby, crate::control::ha_sim::INITIAL_PRIMARY_OFFSET);
    sim.down.insert("ha".into());
    let actions = sim.run(115);
    assert_eq!(count(&actions, "begin_failover"), 0);
    let actions = sim.run(20);
    assert_eq!(count(&actions, "begin_failover"), 1);
    let events = sim.events();
    assert!(
        events
            .iter()
            .any(|e| e.contains("estimated data loss unknown")),
        "{events:?}"
    );
}

#[test]
fn t42_stale_commands_are_refused_and_epochs_only_grow() {
    let mut sim = warm(5);
    sim.lag.insert("hb".into(), 500);
    sim.run(10);
    let command = plan_switchover(&sim.state, NAME, false, sim.now_ms()).unwrap();
    sim.state.apply(&command).unwrap();
    let again = plan_switchover(&sim.state, NAME, false, sim.now_ms());
    assert!(again.is_err(), "one failover at a time");
    sim.run(40); // aborted
    let before = sim.state.clone();
    let Command::BeginFailover {
        new_primary_host,
        reason,
        ..
    } = command
    else {
        panic!("{command:?}");
    };
    let stale = [
        Command::BeginFailover {
            name: NAME.into(),
            expected_epoch: 0,
            new_primary_host,
            planned: false,
            allow_data_loss: false,
            primary_offset: None,
            target_offset: None,
            reason,
            at_ms: 0,
        },
        Command::CompleteFailover {
            name: NAME.into(),
            epoch: 2,
            data_loss_bytes: None,
            at_ms: 0,
        },
        Command::AbortFailover {
            name: NAME.into(),
            epoch: 2,
            reason: String::new(),
            at_ms: 0,
        },
    ];
    for command in stale {
        assert!(sim.state.apply(&command).is_err(), "{command:?}");
    }
    assert_eq!(sim.state, before);
}
