//! Table tests for fencing and paused writes: evidence in, fenced sets and commands out, time as
//! plain numbers.

use std::time::Duration;

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn input(instance: &str, fence_after: Option<u64>, replica_connected: bool) -> FenceInput {
    FenceInput {
        instance: instance.into(),
        fence_after: fence_after.map(secs),
        replica_connected,
        from_cache: false,
        after_reboot: false,
    }
}

/// Each row: (now in ms, coordinator connected, replica connected, fenced afterwards).
/// fence_after = 10 s; the coordinator is lost at 1 s.
#[test]
fn fences_after_the_window_and_only_the_coordinator_resets_the_clock() {
    let table: &[(u64, bool, bool, bool)] = &[
        (0, true, true, false),
        (1_000, false, false, false),  // coordinator lost from here
        (10_000, false, false, false), // s - 1
        (10_999, false, false, false),
        (11_000, false, false, true),  // exactly s: fenced
        (12_000, false, false, true),  // s + 1
        (12_500, true, false, false),  // the coordinator comes back: unfenced at once
        (13_000, false, false, false), // lost again, clock restarted at 13 s
        (22_000, false, false, false), // s - 1 after the coordinator blip
        (22_100, false, true, false),  // a replica connects: serving, the clock runs on
        (22_200, false, false, false), // the replica leaves before s
        (23_000, false, false, true),  // s after the coordinator loss: fenced
        (24_000, false, true, true),   // a replica reconnects: still fenced (it may be promoted)
        (25_000, true, true, false),   // only the coordinator lifts the fence
        (26_000, false, true, false),  // lost again, but the replica keeps the primary serving
        (60_000, false, true, false),  // for as long as the replica stays
        (60_001, false, false, true),  // the replica leaves (promoted elsewhere?): fenced at once
    ];
    let mut fencing = Fencing::new();
    for (row, &(now, coordinator, replica, fenced)) in table.iter().enumerate() {
        let set = fencing.update(
            ms(now),
            coordinator,
            [input("redis-a-1", Some(10), replica)],
        );
        assert_eq!(set.contains("redis-a-1"), fenced, "row {row} at {now} ms");
    }
}

#[test]
fn boundary_s_minus_one_and_s_plus_one() {
    for (elapsed, fenced) in [(1, false), (2, true), (3, true)] {
        let mut fencing = Fencing::new();
        fencing.update(secs(5), false, [input("redis-a-1", Some(2), false)]);
        assert_eq!(fencing.next_deadline(), Some(secs(7)));
        let set = fencing.update(
            secs(5 + elapsed),
            false,
            [input("redis-a-1", Some(2), false)],
        );
        assert_eq!(set.contains("redis-a-1"), fenced, "after {elapsed} s");
    }
}

#[test]
fn never_fence_without_fence_after() {
    let mut fencing = Fencing::new();
    for t in 0..1_000 {
        let set = fencing.update(secs(t), false, [input("redis-solo-1", None, false)]);
        assert!(set.is_empty());
    }
    assert_eq!(fencing.next_deadline(), None);
}

#[test]
fn instances_are_independent_and_forgotten_when_gone() {
    let mut fencing = Fencing::new();
    let both = |a_replica| {
        [
            input("redis-a-1", Some(5), a_replica),
            input("redis-b-2", Some(5), false),
        ]
    };
    fencing.update(secs(0), false, both(false));
    let set = fencing.update(secs(5), false, both(true)).clone();
    assert_eq!(set.into_iter().collect::<Vec<_>>(), ["redis-b-2"]);
    // b is no longer desired (or no longer a primary with a standby): forgotten. a has had no
    // coordinator for 6 s and lost its replica: fenced at once.
    let set = fencing
        .update(secs(6), false, [input("redis-a-1", Some(5), false)])
        .clone();
    assert_eq!(set.into_iter().collect::<Vec<_>>(), ["redis-a-1"]);
    let set = fencing.update(secs(7), true, [input("redis-a-1", Some(5), false)]);
    assert!(set.is_empty(), "the coordinator is back");
    assert_eq!(fencing.next_deadline(), None);
}

#[test]
fn cached_specs_fence_at_once_until_the_coordinator_confirms() {
    let cached = |replica| FenceInput {
        from_cache: true,
        ..input("redis-a-1", Some(60), replica)
    };
    let mut fencing = Fencing::new();
    assert!(
        fencing
            .update(secs(0), false, [cached(false)])
            .contains("redis-a-1")
    );
    assert!(
        fencing
            .update(secs(1), false, [cached(true)])
            .contains("redis-a-1"),
        "a reconnecting standby does not lift the fence"
    );
    assert!(fencing.update(secs(2), true, [cached(false)]).is_empty());
    let mut never = cached(false);
    never.fence_after = None;
    assert!(fencing.update(secs(3), false, [never]).is_empty());
}

fn want(generation: u64, want: Option<PauseReason>) -> [PauseInput; 1] {
    [PauseInput {
        instance: "redis-a-1".into(),
        generation,
        want,
    }]
}

fn commands(orders: &[PauseOrder]) -> Vec<String> {
    orders
        .iter()
        .map(|o| match o.command {
            PauseCommand::Pause {
                millis,
                unpause_first,
                ..
            } => format!(
                "pause:{millis}{}",
                if unpause_first { ":unpause" } else { "" }
            ),
            PauseCommand::Unpause => "unpause".into(),
        })
        .collect()
}

#[test]
fn switchover_pauses_are_renewed_and_lifted() {
    let mut pauses = WritePauses::new();
    let switchover = Some(PauseReason::Switchover);
    // A new engine: its pause state is unknown, so a stray fence pause is lifted first.
    assert_eq!(
        commands(&pauses.poll(secs(0), want(1, switchover))),
        ["pause:10000:unpause"]
    );
    assert!(
        pauses.poll(secs(1), want(1, switchover)).is_empty(),
        "in flight"
    );
    pauses.on_done("redis-a-1", 1, Ok(()), secs(1));
    assert!(pauses.is_paused("redis-a-1"));
    assert!(
        pauses.poll(secs(3), want(1, switchover)).is_empty(),
        "renewed after 3 s"
    );
    let orders = pauses.poll(secs(4), want(1, switchover));
    assert_eq!(commands(&orders), ["pause:10000"]);
    pauses.on_done("redis-a-1", 1, Ok(()), secs(4));
    assert_eq!(commands(&pauses.poll(secs(5), want(1, None))), ["unpause"]);
    pauses.on_done("redis-a-1", 1, Ok(()), secs(5));
    assert!(!pauses.is_paused("redis-a-1"));
    assert!(
        pauses.poll(secs(60), want(1, None)).is_empty(),
        "unpaused once"
    );
}

#[test]
fn fence_pauses_are_long_and_a_new_process_starts_unknown() {
    let mut pauses = WritePauses::new();
    assert_eq!(commands(&pauses.poll(secs(0), want(1, None))), ["unpause"]);
    pauses.on_done("redis-a-1", 1, Ok(()), secs(0));
    let orders = pauses.poll(secs(1), want(1, Some(PauseReason::Fenced)));
    assert_eq!(commands(&orders), ["pause:86400000"]);
    pauses.on_done("redis-a-1", 1, Ok(()), secs(1));
    // Unfenced while a switchover pause is wanted: the long pause must be lifted first.
    let orders = pauses.poll(secs(2), want(1, Some(PauseReason::Switchover)));
    assert_eq!(commands(&orders), ["pause:10000:unpause"]);
    // The engine restarted (generation 2): state unknown, the in-flight command is stale.
    pauses.on_done("redis-a-1", 1, Ok(()), secs(2));
    assert_eq!(commands(&pauses.poll(secs(3), want(2, None))), ["unpause"]);
    pauses.on_done("redis-a-1", 1, Ok(()), secs(3));
    assert!(
        pauses.poll(secs(3), want(2, None)).is_empty(),
        "still in flight"
    );
}

#[test]
fn failed_commands_are_retried_after_a_pause() {
    let mut pauses = WritePauses::new();
    pauses.poll(secs(0), want(1, Some(PauseReason::Fenced)));
    pauses.on_done("redis-a-1", 1, Err("connection refused".into()), secs(0));
    assert!(
        pauses
            .poll(ms(500), want(1, Some(PauseReason::Fenced)))
            .is_empty()
    );
    assert_eq!(
        commands(&pauses.poll(secs(1), want(1, Some(PauseReason::Fenced)))),
        ["pause:86400000"]
    );
    // Gone from the inputs (engine stopped): forgotten.
    assert!(pauses.poll(secs(2), []).is_empty());
    assert!(!pauses.is_paused("redis-a-1"));
}

#[test]
fn a_primary_started_after_a_reboot_stays_fenced_until_the_coordinator_acts() {
    let rebooted = |replica| FenceInput {
        after_reboot: true,
        ..input("redis-a-1", Some(60), replica)
    };
    let mut fencing = Fencing::new();
    for (at, connected, replica) in [(0, false, false), (1, true, false), (2, true, true)] {
        assert!(
            fencing
                .update(secs(at), connected, [rebooted(replica)])
                .contains("redis-a-1"),
            "fenced at {at} s whatever the coordinator and replicas"
        );
    }
    // The coordinator raised the epoch (the shell clears after_reboot): the fence is lifted.
    assert!(
        fencing
            .update(secs(3), true, [input("redis-a-1", Some(60), false)])
            .is_empty()
    );
    // Without a standby (never fenced) a rebooted primary serves at once: it holds the only copy.
    let mut alone = rebooted(false);
    alone.fence_after = None;
    assert!(fencing.update(secs(4), true, [alone]).is_empty());
}
