//! Detector table: each row builds the evidence by hand (probe results per vantage point, the
//! agent's last report, the standby's link) and names the verdict expected at `now`.

use std::collections::BTreeMap;

use super::*;
use crate::control::ha_sim::{NAME, cluster, running};
use crate::control::observation::HostObservation;

const T0: Duration = Duration::from_secs(1_000);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Evidence about `ha` (primary) seen by a leader that observed it from T0 on.
struct Case {
    /// The agent's last report.
    agent_last_seen: Option<Duration>,
    /// Per vantage point: (failing since, last success), all results recorded up to `now`.
    vantages: Vec<(u64, Option<Duration>, Option<Duration>)>,
    /// The standby's link: Some(down since) or None (up); `standby_reports`: its agent reports.
    standby_link_down_since: Option<Duration>,
    standby_reports: bool,
}

impl Default for Case {
    fn default() -> Self {
        Self {
            agent_last_seen: Some(T0),
            vantages: (1..=3).map(|v| (v, Some(T0), None)).collect(),
            standby_link_down_since: Some(T0),
            standby_reports: true,
        }
    }
}

fn verdict(case: &Case, now: Duration) -> HostVerdict {
    let state = cluster();
    let mut observations = Observations::default();
    let host = |at: Duration, processes| HostObservation {
        last_seen: at,
        last_seen_ms: 0,
        memory_total_bytes: 0,
        memory_available_bytes: 0,
        load_avg_1m: 0.0,
        engines: vec![],
        processes,
        desired_version: 0,
    };
    if let Some(at) = case.agent_last_seen {
        observations
            .hosts
            .insert("ha".into(), host(at, BTreeMap::new()));
    }
    if case.standby_reports {
        let mut standby = running(1, "slave", 0, "up");
        if case.standby_link_down_since.is_some() {
            standby.master_link_status = "down".into();
        }
        standby.link_down_since = case.standby_link_down_since;
        let processes = BTreeMap::from([(NAME.to_string(), standby)]);
        observations.hosts.insert("hb".into(), host(now, processes));
    }
    let mut probes = ProbeObservations::default();
    for (vantage, failing_since, last_success) in &case.vantages {
        if let Some(success) = last_success {
            probes.record("ha", *vantage, true, *success);
        }
        if let Some(since) = failing_since {
            probes.record("ha", *vantage, false, *since);
            probes.record("ha", *vantage, false, now);
        }
    }
    let vantage_points = BTreeSet::from([1, 2, 3]);
    let evidence = Evidence {
        state: &state,
        observations: &observations,
        probes: &probes,
        vantage_points: &vantage_points,
    };
    assess_host(&evidence, "ha", now, &HaConfig::default())
}

#[test]
fn table() {
    use HostVerdict::*;
    let down = |s| ConfirmedDown { since: secs(s) };
    let suspect = |s| Suspect { since: secs(s) };
    let cases: Vec<(&str, Case, Duration, HostVerdict)> = vec![
        (
            "119 s of everything failing",
            Case::default(),
            T0 + secs(119),
            suspect(1_000),
        ),
        (
            "120 s: the whole window",
            Case::default(),
            T0 + secs(120),
            down(1_000),
        ),
        ("121 s", Case::default(), T0 + secs(121), down(1_000)),
        (
            "agent reports",
            Case {
                agent_last_seen: Some(T0 + secs(200)),
                ..Case::default()
            },
            T0 + secs(203),
            Healthy,
        ),
        (
            "agent silent, a probe succeeds now",
            Case {
                vantages: vec![(1, Some(T0), None), (2, None, Some(T0 + secs(200)))],
                ..Case::default()
            },
            T0 + secs(200),
            AgentSilentHostReachable,
        ),
        (
            "a success 60 s into the window restarts the clock",
            Case {
                vantages: vec![
                    (1, Some(T0), None),
                    (2, Some(T0 + secs(61)), Some(T0 + secs(60))),
                    (3, Some(T0), None),
                ],
                ..Case::default()
            },
            T0 + secs(179),
            // The clock restarts at the last success (the last sign of life), not the next failure.
            suspect(1_060),
        ),
        (
            "… and it confirms 120 s after the restarted clock",
            Case {
                vantages: vec![
                    (1, Some(T0), None),
                    (2, Some(T0 + secs(61)), Some(T0 + secs(60))),
                    (3, Some(T0), None),
                ],
                ..Case::default()
            },
            T0 + secs(181),
            down(1_060),
        ),
        (
            "a vantage point with no result does not confirm",
            Case {
                vantages: vec![(1, Some(T0), None), (2, Some(T0), None)],
                ..Case::default()
            },
            T0 + secs(500),
            suspect(1_000),
        ),
        (
            "standby link still up",
            Case {
                standby_link_down_since: None,
                ..Case::default()
            },
            T0 + secs(500),
            suspect(1_000),
        ),
        (
            "standby link down only for 100 s",
            Case {
                standby_link_down_since: Some(T0 + secs(20)),
                ..Case::default()
            },
            T0 + secs(120),
            suspect(1_020),
        ),
        (
            "a standby on a silent host gives no evidence (skipped)",
            Case {
                standby_reports: false,
                standby_link_down_since: None,
                ..Case::default()
            },
            T0 + secs(120),
            down(1_000),
        ),
        (
            "new leader: agent never seen, probes failing for 119 s",
            Case {
                agent_last_seen: None,
                ..Case::default()
            },
            T0 + secs(119),
            suspect(1_000),
        ),
    ];
    for (label, case, now, expected) in cases {
        assert_eq!(verdict(&case, now), expected, "{label}");
    }
}

#[test]
fn a_vantage_point_that_stopped_reporting_does_not_confirm() {
    let state = cluster();
    let mut probes = ProbeObservations::default();
    for vantage in 1..=3 {
        probes.record("ha", vantage, false, T0);
    }
    for vantage in 1..=2 {
        probes.record("ha", vantage, false, T0 + secs(200));
    }
    let vantage_points = BTreeSet::from([1, 2, 3]);
    let observations = Observations::default();
    let evidence = Evidence {
        state: &state,
        observations: &observations,
        probes: &probes,
        vantage_points: &vantage_points,
    };
    let verdict = assess_host(&evidence, "ha", T0 + secs(200), &HaConfig::default());
    assert!(
        matches!(verdict, HostVerdict::Suspect { .. }),
        "{verdict:?}"
    );
}

#[test]
fn agent_restarts_are_rate_limited_per_host() {
    let mut budget = AgentRestartBudget::default();
    let minute = secs(60);
    assert!(budget.try_take("ha", T0, minute));
    assert!(!budget.try_take("ha", T0 + secs(59), minute));
    assert!(budget.try_take("hb", T0 + secs(59), minute), "per host");
    assert!(budget.try_take("ha", T0 + secs(60), minute));
}

#[test]
fn the_leader_wakes_when_the_first_suspect_window_ends() {
    let config = HaConfig::default();
    let window = config.confirmation_window;
    let verdicts = BTreeMap::from([
        ("ha".to_string(), HostVerdict::Suspect { since: secs(30) }),
        ("hb".to_string(), HostVerdict::Suspect { since: secs(10) }),
        ("hc".to_string(), HostVerdict::Healthy),
        (
            "hd".to_string(),
            HostVerdict::ConfirmedDown { since: secs(1) },
        ),
    ]);
    assert_eq!(
        next_window_end(&verdicts, secs(0), &config),
        Some(secs(10) + window)
    );
    // A window already over (evidence still incomplete) does not make the leader spin on it.
    assert_eq!(
        next_window_end(&verdicts, secs(10) + window, &config),
        Some(secs(30) + window)
    );
    assert_eq!(next_window_end(&verdicts, secs(30) + window, &config), None);
    let calm = BTreeMap::from([("hc".to_string(), HostVerdict::Healthy)]);
    assert_eq!(next_window_end(&calm, secs(0), &config), None);
}
