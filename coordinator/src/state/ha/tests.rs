//! `apply` of the HA commands: effects, and refusals that leave the state exactly as it was.

use crate::control::ha_sim::{NAME, cluster, cluster_without_standby};
use crate::state::{ClusterState, Command, Placement, Refusal};

fn standby(host: &str, front_port: u16) -> Command {
    let placement = Placement {
        host_id: host.into(),
        front_port,
        engine_port: front_port + 10_000,
    };
    Command::PlaceStandby {
        name: NAME.into(),
        placement,
        at_ms: 1,
    }
}

fn begin(expected_epoch: u64, host: &str, planned: bool) -> Command {
    Command::BeginFailover {
        name: NAME.into(),
        expected_epoch,
        new_primary_host: host.into(),
        planned,
        allow_data_loss: false,
        primary_offset: Some(1_500),
        target_offset: Some(1_000),
        reason: "test".into(),
        at_ms: 2,
    }
}

fn complete(epoch: u64) -> Command {
    Command::CompleteFailover {
        name: NAME.into(),
        epoch,
        data_loss_bytes: Some(500),
        at_ms: 3,
    }
}

fn abort(epoch: u64) -> Command {
    Command::AbortFailover {
        name: NAME.into(),
        epoch,
        reason: "test".into(),
        at_ms: 4,
    }
}

/// Applies `command`, expecting `refusal` and an unchanged state.
fn refused(state: &mut ClusterState, command: Command, refusal: Refusal) {
    let before = state.clone();
    assert_eq!(state.apply(&command), Err(refusal), "{command:?}");
    assert_eq!(*state, before, "{command:?} changed the state");
}

#[test]
fn standby_placement_reserves_three_ports_and_refuses_conflicts() {
    let mut state = cluster_without_standby();
    refused(
        &mut state,
        standby("ha", 6390),
        Refusal::HostAlreadyServes {
            instance: NAME.into(),
            host: "ha".into(),
        },
    );
    refused(
        &mut state,
        standby("hz", 6390),
        Refusal::NoSuchHost("hz".into()),
    );
    state.apply(&standby("hb", 6380)).unwrap();
    assert_eq!(state.ports_in_use("hb"), [6380, 16380, 26380]);
    assert_eq!(state.memory_reserved("hb"), 50 << 20);
    refused(
        &mut state,
        standby("hb", 6381),
        Refusal::HostAlreadyServes {
            instance: NAME.into(),
            host: "hb".into(),
        },
    );
    let mut other = state.instances[NAME].clone();
    other.name = "redis-other-1000".into();
    other.primary.host_id = "hc".into();
    other.standbys.clear();
    state
        .apply(&Command::CreateInstance {
            instance: other,
            app: "web".into(),
        })
        .unwrap();
    let placement = Placement {
        host_id: "hc".into(),
        front_port: 6380,
        engine_port: 16380,
    };
    let clash = Command::PlaceStandby {
        name: NAME.into(),
        placement,
        at_ms: 1,
    };
    refused(
        &mut state,
        clash,
        Refusal::PortTaken {
            host: "hc".into(),
            port: 6380,
        },
    );
}

#[test]
fn failover_steps_and_refusals() {
    let mut state = cluster();
    refused(
        &mut state,
        begin(0, "hb", false),
        Refusal::StaleEpoch {
            instance: NAME.into(),
            expected: 0,
            actual: 1,
        },
    );
    refused(
        &mut state,
        begin(1, "hc", false),
        Refusal::NoSuchStandby {
            instance: NAME.into(),
            host: "hc".into(),
        },
    );
    refused(&mut state, complete(2), Refusal::NoFailover(NAME.into()));
    state.apply(&begin(1, "hb", true)).unwrap();
    refused(
        &mut state,
        begin(1, "hb", false),
        Refusal::FailoverInProgress(NAME.into()),
    );
    refused(
        &mut state,
        standby("hc", 6380),
        Refusal::FailoverInProgress(NAME.into()),
    );
    let remove = Command::RemoveStandby {
        name: NAME.into(),
        host_id: "hb".into(),
        at_ms: 1,
    };
    refused(&mut state, remove, Refusal::FailoverInProgress(NAME.into()));
    refused(
        &mut state,
        complete(3),
        Refusal::StaleEpoch {
            instance: NAME.into(),
            expected: 3,
            actual: 2,
        },
    );
    let early = Refusal::FailoverStep {
        instance: NAME.into(),
        reason: "promotion not ordered yet".into(),
    };
    refused(&mut state, complete(2), early);
    // A planned switchover aborted before promotion keeps its epoch.
    state.apply(&abort(2)).unwrap();
    assert_eq!(
        (
            state.instances[NAME].epoch,
            state.instances[NAME].failover.is_none()
        ),
        (1, true)
    );
}

#[test]
fn completion_swaps_roles_rotates_urls_and_records_the_loss() {
    let mut state = cluster();
    let url_before = state.url(&state.instances[NAME]).unwrap();
    let app_version = state.apps["web"].version;
    state.apply(&begin(1, "hb", false)).unwrap();
    assert_eq!(
        state.url(&state.instances[NAME]).unwrap(),
        url_before,
        "no rotation before completion"
    );
    state.apply(&complete(2)).unwrap();
    let instance = &state.instances[NAME];
    assert_eq!(
        (instance.primary.host_id.as_str(), instance.epoch),
        ("hb", 2)
    );
    assert_eq!(
        instance
            .standbys
            .iter()
            .map(|s| s.host_id.as_str())
            .collect::<Vec<_>>(),
        ["ha"]
    );
    assert_ne!(state.url(instance).unwrap(), url_before);
    assert_eq!(state.apps["web"].version, app_version + 1);
    let last = state.events[NAME].back().unwrap();
    assert_eq!(
        last.message,
        "failover to host hb (zone b), epoch 2, estimated data loss 500 bytes"
    );
    refused(&mut state, complete(2), Refusal::NoFailover(NAME.into()));
    refused(
        &mut state,
        begin(1, "ha", false),
        Refusal::StaleEpoch {
            instance: NAME.into(),
            expected: 1,
            actual: 2,
        },
    );
}

#[test]
fn a_completed_failover_s_loss_is_corrected_only_upwards_and_only_for_it() {
    let correct = |epoch, data_loss_bytes| Command::CorrectDataLoss {
        name: NAME.into(),
        epoch,
        data_loss_bytes,
        at_ms: 5,
    };
    let mut state = cluster();
    let none = Refusal::FailoverStep {
        instance: NAME.into(),
        reason: "no completed failover to correct".into(),
    };
    refused(&mut state, correct(2, 900), none);
    state.apply(&begin(1, "hb", false)).unwrap();
    state.apply(&complete(2)).unwrap();
    let last = state.instances[NAME].last_failover.clone().unwrap();
    assert_eq!(
        (
            last.old_primary_host_id.as_str(),
            last.old_epoch,
            last.target_offset,
            last.data_loss_bytes
        ),
        ("ha", 1, Some(1_000), Some(500))
    );
    refused(
        &mut state,
        correct(3, 900),
        Refusal::StaleEpoch {
            instance: NAME.into(),
            expected: 3,
            actual: 2,
        },
    );
    let not_more = Refusal::FailoverStep {
        instance: NAME.into(),
        reason: "the reported loss is already 500 bytes".into(),
    };
    refused(&mut state, correct(2, 500), not_more);
    let version = state.desired_version;
    state.apply(&correct(2, 900)).unwrap();
    assert_eq!(state.desired_version, version, "no agent is told anything");
    let last = state.instances[NAME].last_failover.as_ref().unwrap();
    assert_eq!(last.data_loss_bytes, Some(900));
    assert_eq!(
        state.events[NAME].back().unwrap().message,
        "failover at epoch 2: corrected estimate of data loss 900 bytes (the old primary on host \
         ha took writes after the last report of it)"
    );
}

#[test]
fn an_aborted_promotion_burns_its_epoch() {
    let mut state = cluster();
    state.apply(&begin(1, "hb", false)).unwrap();
    refused(
        &mut state,
        abort(3),
        Refusal::StaleEpoch {
            instance: NAME.into(),
            expected: 3,
            actual: 2,
        },
    );
    state.apply(&abort(2)).unwrap();
    assert_eq!(state.instances[NAME].epoch, 3);
    assert_eq!(state.instances[NAME].primary.host_id, "ha");
    state.apply(&begin(3, "hb", false)).unwrap();
    assert_eq!(
        state.instances[NAME].failover.as_ref().unwrap().new_epoch,
        4
    );
}

#[test]
fn remove_standby_and_record_event() {
    let mut state = cluster();
    let remove = |host: &str| Command::RemoveStandby {
        name: NAME.into(),
        host_id: host.into(),
        at_ms: 9,
    };
    refused(
        &mut state,
        remove("hc"),
        Refusal::NoSuchStandby {
            instance: NAME.into(),
            host: "hc".into(),
        },
    );
    state.apply(&remove("hb")).unwrap();
    assert!(state.instances[NAME].standbys.is_empty());
    assert!(state.ports_in_use("hb").is_empty());
    let note = Command::RecordEvent {
        name: "nope".into(),
        message: "x".into(),
        at_ms: 9,
    };
    refused(&mut state, note, Refusal::NoSuchInstance("nope".into()));
}

#[test]
fn resume_after_reboot_raises_the_epoch_and_refuses_stale_or_busy_instances() {
    let mut state = cluster();
    let resume = |expected_epoch| Command::ResumeAfterReboot {
        name: NAME.into(),
        expected_epoch,
        reason: "primary host ha rebooted".into(),
        at_ms: 5,
    };
    refused(
        &mut state,
        resume(7),
        Refusal::StaleEpoch {
            instance: NAME.into(),
            expected: 7,
            actual: 1,
        },
    );
    let version = state.desired_version;
    state.apply(&resume(1)).unwrap();
    let instance = &state.instances[NAME];
    assert_eq!(
        (instance.primary.host_id.as_str(), instance.epoch),
        ("ha", 2)
    );
    assert!(
        state.desired_version > version,
        "the agents hear the new epoch"
    );
    assert!(
        state.events[NAME]
            .iter()
            .any(|e| e.message.contains("resumes from its own data at epoch 2"))
    );
    state.apply(&begin(2, "hb", true)).unwrap();
    refused(
        &mut state,
        resume(2),
        Refusal::FailoverInProgress(NAME.into()),
    );
}
