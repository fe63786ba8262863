//! The derived "since" fields of agent reports and the probe bookkeeping.

use super::*;

fn report(at: u64, process: ProcessObservation) -> HostObservation {
    HostObservation {
        last_seen: Duration::from_secs(at),
        last_seen_ms: 0,
        memory_total_bytes: 0,
        memory_available_bytes: 0,
        load_avg_1m: 0.0,
        engines: vec![],
        processes: BTreeMap::from([("i".to_string(), process)]),
        desired_version: 0,
    }
}

fn replica(link: &str, last_io: i64) -> ProcessObservation {
    ProcessObservation {
        master_link_status: link.into(),
        master_last_io_seconds: last_io,
        ..ProcessObservation::new(1, ProcessStatus::Running, "slave")
    }
}

#[test]
fn link_down_since_starts_at_the_first_bad_report_and_resets_on_a_good_one() {
    let mut o = Observations::default();
    let since = |o: &Observations| o.process("h", "i").unwrap().link_down_since;
    o.record("h", report(10, replica("up", 1)));
    assert_eq!(since(&o), None);
    o.record("h", report(11, replica("down", 0)));
    o.record("h", report(12, replica("down", 0)));
    assert_eq!(
        since(&o),
        Some(Duration::from_secs(9)),
        "down since the standby last heard its primary: at 10 s it had been silent for 1 s"
    );
    let silent = STANDBY_PRIMARY_SILENCE_MAX_SECONDS;
    o.record("h", report(13, replica("up", silent + 1)));
    assert_eq!(
        since(&o),
        Some(Duration::from_secs(9)),
        "up but silent for longer than the limit counts as down"
    );
    o.record("h", report(14, replica("up", silent)));
    assert_eq!(since(&o), None);
    let restarting = ProcessObservation::new(1, ProcessStatus::Restarting, "unknown");
    o.record("h", report(15, restarting));
    assert_eq!(since(&o), None, "not a running replica: no evidence");
}

#[test]
fn master_offset_is_kept_while_the_engine_is_down() {
    let mut o = Observations::default();
    let master = ProcessObservation {
        replication_offset: 500,
        ..ProcessObservation::new(1, ProcessStatus::Running, "master")
    };
    o.record("h", report(10, master));
    o.record(
        "h",
        report(
            11,
            ProcessObservation::new(1, ProcessStatus::CrashLooping, "unknown"),
        ),
    );
    assert_eq!(o.process("h", "i").unwrap().master_offset_last, Some(500));
    o.record(
        "h",
        report(
            12,
            ProcessObservation::new(2, ProcessStatus::Running, "slave"),
        ),
    );
    assert_eq!(
        o.process("h", "i").unwrap().master_offset_last,
        None,
        "another epoch"
    );
}

#[test]
fn the_last_master_report_outlives_a_demotion_and_a_removal() {
    let mut o = Observations::default();
    let master = |epoch, offset| ProcessObservation {
        replication_offset: offset,
        ..ProcessObservation::new(epoch, ProcessStatus::Running, "master")
    };
    o.record("h", report(10, master(1, 500)));
    o.record("h", report(11, master(1, 800)));
    o.record("h", report(12, master(1, 600)));
    assert_eq!(
        o.master_offset_at("h", "i", 1),
        Some(800),
        "restarted short: the largest"
    );
    o.record("h", report(12, replica("up", 0)));
    assert_eq!(o.master_offset_at("h", "i", 1), Some(800), "demoted: kept");
    let mut gone = report(13, replica("up", 0));
    gone.processes.clear();
    o.record("h", gone);
    assert_eq!(o.master_offset_at("h", "i", 1), Some(800), "removed: kept");
    assert_eq!(o.master_offset_at("h", "i", 2), None, "another epoch");
    assert_eq!(o.master_offset_at("g", "i", 1), None, "another host");
    o.record("h", report(14, master(3, 100)));
    assert_eq!(
        o.master_offset_at("h", "i", 1),
        None,
        "a newer epoch replaces it"
    );
}

#[test]
fn probes_track_failing_since_and_ignore_late_results() {
    let mut p = ProbeObservations::default();
    let at = Duration::from_secs;
    p.record("h", 1, false, at(10));
    p.record("h", 1, false, at(15));
    assert_eq!(p.of("h", 1).unwrap().failing_since, Some(at(10)));
    p.record("h", 1, true, at(20));
    assert_eq!(p.of("h", 1).unwrap().failing_since, None);
    p.record("h", 1, false, at(25));
    p.record("h", 1, true, at(22)); // a late forward
    assert_eq!(
        p.of("h", 1).unwrap().failing_since,
        Some(at(20)),
        "failing since the last success: the window counts from the last sign of life"
    );
    assert_eq!(p.last_success_at("h"), Some(at(20)));
    p.forget_vantage(1);
    assert_eq!(p.of("h", 1), None);
}
