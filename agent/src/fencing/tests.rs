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

fn input(instance: &str, fence_after: Option<u64>, replica_heard: Option<u64>) -> FenceInput {
    FenceInput {
        instance: instance.into(),
        fence_after: fence_after.map(secs),
        replica_heard: replica_heard.map(ms),
        from_cache: false,
        after_reboot: false,
    }
}

/// Each row: (now, coordinator last heard, replica last heard, fenced afterwards), in ms.
/// fence_after = 2 s.
#[test]
fn fences_when_neither_side_was_heard_for_fence_after_and_only_the_coordinator_lifts_it() {
    type Row = (u64, Option<u64>, Option<u64>, bool);
    let table: &[Row] = &[
        (0, Some(0), Some(0), false),
        (1_000, Some(500), Some(1_000), false), // both heard lately
        (2_400, Some(500), Some(1_000), false), // coordinator silent 1.9 s, replica 1.4 s
        (2_500, Some(500), Some(1_000), false), // coordinator silent 2 s; the replica keeps it up
        (2_999, Some(500), Some(1_000), false), // replica silent 1.999 s
        (3_000, Some(500), Some(1_000), true),  // both silent 2 s: fenced
        (3_500, Some(500), Some(3_400), true),  // the replica is back: still fenced
        (3_600, Some(3_550), Some(3_400), false), // the coordinator is heard again: lifted
        (5_500, Some(3_550), Some(3_400), false), // silent again but not yet for 2 s
        (5_550, Some(3_550), Some(4_400), false), // coordinator 2 s, but the replica 1.15 s
        (60_000, Some(3_550), Some(59_500), false), // a replica that stays keeps it serving
        (61_500, Some(3_550), Some(59_500), true), // the replica goes quiet (promoted?): fenced
        (62_000, Some(61_000), Some(61_900), true), // a word from before the fence does not lift it
    ];
    let mut fencing = Fencing::new();
    for (row, &(now, coordinator, replica, fenced)) in table.iter().enumerate() {
        let set = fencing.update(
            ms(now),
            coordinator.map(ms),
            [input("redis-a-1", Some(2), replica)],
        );
        assert_eq!(set.contains("redis-a-1"), fenced, "row {row} at {now} ms");
    }
}

#[test]
fn the_deadline_is_fence_after_past_the_later_of_the_two() {
    let mut fencing = Fencing::new();
    fencing.update(
        ms(1_000),
        Some(ms(900)),
        [input("redis-a-1", Some(2), Some(400))],
    );
    assert_eq!(
        fencing.next_deadline(),
        Some(ms(2_900)),
        "coordinator heard last"
    );
    fencing.update(
        ms(1_000),
        Some(ms(300)),
        [input("redis-a-1", Some(2), Some(700))],
    );
    assert_eq!(
        fencing.next_deadline(),
        Some(ms(2_700)),
        "replica heard last"
    );
    fencing.update(ms(1_000), None, [input("redis-a-1", Some(2), Some(700))]);
    assert_eq!(
        fencing.next_deadline(),
        Some(ms(2_700)),
        "no coordinator yet"
    );
    let set = fencing.update(ms(2_700), None, [input("redis-a-1", Some(2), Some(700))]);
    assert!(set.contains("redis-a-1"), "at the deadline");
    assert_eq!(fencing.next_deadline(), None, "nothing left to fence");
}

#[test]
fn boundary_s_minus_one_and_s_plus_one() {
    for (elapsed, fenced) in [(1, false), (2, true), (3, true)] {
        let mut fencing = Fencing::new();
        fencing.update(secs(5), Some(secs(5)), [input("redis-a-1", Some(2), None)]);
        assert_eq!(fencing.next_deadline(), Some(secs(7)));
        let set = fencing.update(
            secs(5 + elapsed),
            Some(secs(5)),
            [input("redis-a-1", Some(2), None)],
        );
        assert_eq!(set.contains("redis-a-1"), fenced, "after {elapsed} s");
    }
}

#[test]
fn never_fence_without_fence_after() {
    let mut fencing = Fencing::new();
    for t in 0..1_000 {
        let set = fencing.update(secs(t), None, [input("redis-solo-1", None, None)]);
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
            input("redis-b-2", Some(5), None),
        ]
    };
    fencing.update(secs(0), Some(secs(0)), both(None));
    let set = fencing
        .update(secs(5), Some(secs(0)), both(Some(4_900)))
        .clone();
    assert_eq!(set.into_iter().collect::<Vec<_>>(), ["redis-b-2"]);
    // b is no longer desired (or no longer a primary with a standby): forgotten. a has had no
    // coordinator for 10 s and its replica went quiet 5 s ago: fenced.
    let set = fencing
        .update(
            secs(10),
            Some(secs(0)),
            [input("redis-a-1", Some(5), Some(4_900))],
        )
        .clone();
    assert_eq!(set.into_iter().collect::<Vec<_>>(), ["redis-a-1"]);
    let set = fencing.update(
        secs(11),
        Some(secs(11)),
        [input("redis-a-1", Some(5), Some(4_900))],
    );
    assert!(set.is_empty(), "the coordinator is back");
    assert_eq!(fencing.next_deadline(), Some(secs(16)));
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
            .update(secs(0), None, [cached(None)])
            .contains("redis-a-1")
    );
    assert!(
        fencing
            .update(secs(1), None, [cached(Some(1_000))])
            .contains("redis-a-1"),
        "a reconnecting standby does not lift the fence"
    );
    let heard = fencing.update(secs(2), Some(secs(2)), [input("redis-a-1", Some(60), None)]);
    assert!(heard.is_empty(), "the coordinator answered");
    let mut never = cached(None);
    never.fence_after = None;
    assert!(fencing.update(secs(3), None, [never]).is_empty());
    // A cached spec whose replica is heard serves: the replica still follows it.
    let mut fresh = Fencing::new();
    assert!(
        fresh
            .update(secs(9), None, [cached(Some(8_500))])
            .is_empty()
    );
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
    for (at, heard, replica) in [
        (0, None, None),
        (1, Some(1), None),
        (2, Some(2), Some(2_000)),
    ] {
        assert!(
            fencing
                .update(secs(at), heard.map(secs), [rebooted(replica)])
                .contains("redis-a-1"),
            "fenced at {at} s whatever the coordinator and replicas"
        );
    }
    // The coordinator raised the epoch (the shell clears after_reboot): the fence is lifted by
    // the next word from it.
    assert!(
        fencing
            .update(secs(3), Some(secs(3)), [input("redis-a-1", Some(60), None)])
            .is_empty()
    );
    // Without a standby (never fenced) a rebooted primary serves at once: it holds the only copy.
    let mut alone = rebooted(None);
    alone.fence_after = None;
    assert!(fencing.update(secs(4), Some(secs(4)), [alone]).is_empty());
}

#[test]
fn never_heard_counts_from_the_agents_start() {
    // An authoritative spec applied before the session's first message is counted as heard:
    // nothing was heard yet, but the agent has not been silent for fence_after either.
    let mut fencing = Fencing::new();
    let spec = || [input("redis-a-1", Some(2), None)];
    assert!(fencing.update(ms(100), None, spec()).is_empty());
    assert_eq!(fencing.next_deadline(), Some(secs(2)));
    assert!(fencing.update(ms(1_999), None, spec()).is_empty());
    assert!(fencing.update(secs(2), None, spec()).contains("redis-a-1"));
}
