//! Table tests of `apply`: each command's effect and each refusal leaves the state unchanged.

use std::net::{IpAddr, Ipv4Addr};

use kvs_proto::model::SettingsChange;
use kvs_proto::settings::Settings;

use super::*;

fn host(id: &str) -> Host {
    Host {
        id: id.into(),
        zone: "a".into(),
        address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)),
        hostname: format!("{id}.local"),
        memory_total_bytes: 1 << 30,
        engines: vec![],
        registered_at_ms: 1,
        ssh_host_key: None,
    }
}

fn instance(name: &str, front_port: u16) -> Instance {
    Instance {
        name: name.into(),
        plan: "mini".into(),
        maxmemory_bytes: 25 << 20,
        max_connections: 20,
        persistence: false,
        engine: "valkey-9".into(),
        settings: Settings::default(),
        credentials: Credentials {
            default_password: "p".repeat(32),
            admin_password: "a".repeat(32),
            replication_password: "r".repeat(32),
        },
        epoch: 1,
        primary: Placement {
            host_id: "h1".into(),
            front_port,
            engine_port: front_port + 10_000,
        },
        status: InstanceStatus::Creating,
        created_at_ms: 10,
        maintenance_window: String::new(),
        standbys: Vec::new(),
        standby_required: false,
        failover: None,
        last_failover: None,
    }
}

fn state_with_host() -> ClusterState {
    let mut state = ClusterState::default();
    state.apply(&Command::RegisterHost(host("h1"))).unwrap();
    state
}

#[test]
fn first_attachment_is_redis_url_then_colors() {
    let mut state = state_with_host();
    let first = state.apply(&Command::CreateInstance {
        instance: instance("redis-a-1000", 6380),
        app: "web".into(),
    });
    assert_eq!(
        first,
        Ok(Applied::Attached {
            config_var: "REDIS_URL".into()
        })
    );
    let second = state.apply(&Command::CreateInstance {
        instance: instance("redis-b-1000", 6381),
        app: "web".into(),
    });
    assert_eq!(
        second,
        Ok(Applied::Attached {
            config_var: "HEROKU_REDIS_AMBER_URL".into()
        })
    );
    let (version, vars) = state.config_vars("web").unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        vars["REDIS_URL"],
        format!("rediss://default:{}@127.0.0.11:6380", "p".repeat(32))
    );
}

#[test]
fn refusals_change_nothing() {
    let mut state = state_with_host();
    state
        .apply(&Command::CreateInstance {
            instance: instance("redis-a-1000", 6380),
            app: "web".into(),
        })
        .unwrap();
    let before = state.clone();
    let cases = [
        (
            Command::CreateInstance {
                instance: instance("redis-a-1000", 6390),
                app: "web".into(),
            },
            Refusal::InstanceExists("redis-a-1000".into()),
        ),
        (
            Command::CreateInstance {
                instance: instance("redis-c-1000", 6380),
                app: "web".into(),
            },
            Refusal::PortTaken {
                host: "h1".into(),
                port: 6380,
            },
        ),
        (
            Command::DestroyInstance {
                name: "nope".into(),
                at_ms: 5,
            },
            Refusal::NoSuchInstance("nope".into()),
        ),
        (
            Command::UpdateSettings {
                name: "nope".into(),
                change: SettingsChange::default(),
                at_ms: 5,
            },
            Refusal::NoSuchInstance("nope".into()),
        ),
    ];
    for (command, refusal) in cases {
        assert_eq!(state.apply(&command), Err(refusal), "{command:?}");
        assert_eq!(
            state,
            before,
            "refused {} changed the state",
            command.kind()
        );
    }
    let mut unplaced = instance("redis-d-1000", 6400);
    unplaced.primary.host_id = "ghost".into();
    assert_eq!(
        state.apply(&Command::CreateInstance {
            instance: unplaced,
            app: "web".into()
        }),
        Err(Refusal::NoSuchHost("ghost".into()))
    );
    assert_eq!(state, before);
}

#[test]
fn destroy_removes_attachments_and_bumps_versions() {
    let mut state = state_with_host();
    state
        .apply(&Command::CreateInstance {
            instance: instance("redis-a-1000", 6380),
            app: "web".into(),
        })
        .unwrap();
    let desired_before = state.desired_version;
    state
        .apply(&Command::DestroyInstance {
            name: "redis-a-1000".into(),
            at_ms: 20,
        })
        .unwrap();
    assert!(state.instances.is_empty());
    assert!(
        state.config_vars("web").is_none(),
        "an app with no attachments is gone"
    );
    assert!(state.desired_version > desired_before);
    assert!(state.ports_in_use("h1").is_empty());
}

#[test]
fn status_changes_are_recorded_once() {
    let mut state = state_with_host();
    state
        .apply(&Command::CreateInstance {
            instance: instance("redis-a-1000", 6380),
            app: "web".into(),
        })
        .unwrap();
    let set = Command::SetInstanceStatus {
        name: "redis-a-1000".into(),
        status: InstanceStatus::Available,
        at_ms: 30,
        reason: "engine running".into(),
    };
    state.apply(&set).unwrap();
    state.apply(&set).unwrap();
    let events = &state.events["redis-a-1000"];
    assert_eq!(events.len(), 2, "creation + one status change: {events:?}");
    assert_eq!(events[1].message, "status available: engine running");
}

#[test]
fn settings_update_applies_only_given_fields() {
    let mut state = state_with_host();
    state
        .apply(&Command::CreateInstance {
            instance: instance("redis-a-1000", 6380),
            app: "web".into(),
        })
        .unwrap();
    let change = SettingsChange {
        timeout_seconds: Some(0),
        ..Default::default()
    };
    state
        .apply(&Command::UpdateSettings {
            name: "redis-a-1000".into(),
            change,
            at_ms: 40,
        })
        .unwrap();
    let settings = &state.instances["redis-a-1000"].settings;
    assert_eq!(settings.timeout_seconds, 0);
    assert_eq!(settings.maxmemory_policy, "noeviction");
}

#[test]
fn init_cluster_only_once() {
    let mut state = ClusterState::default();
    let info = ClusterInfo {
        cluster_id: "c".into(),
        ca_cert_pem: "x".into(),
        ca_key_pem: "y".into(),
        created_at_ms: 1,
        admin_token: String::new(),
        join_token: String::new(),
    };
    state.apply(&Command::InitCluster(info.clone())).unwrap();
    assert_eq!(
        state.apply(&Command::InitCluster(info)),
        Err(Refusal::AlreadyInitialized)
    );
}

#[test]
fn promote_moves_redis_url_and_keeps_a_color_for_the_old_one() {
    let mut state = state_with_host();
    state
        .apply(&Command::CreateInstance {
            instance: instance("redis-a-1000", 6380),
            app: "web".into(),
        })
        .unwrap();
    state
        .apply(&Command::CreateInstance {
            instance: instance("redis-b-1000", 6381),
            app: "web".into(),
        })
        .unwrap();
    let promote = Command::PromoteAttachment {
        app: "web".into(),
        instance: "redis-b-1000".into(),
        at_ms: 9,
    };
    assert_eq!(
        state.apply(&promote),
        Ok(Applied::Attached {
            config_var: "REDIS_URL".into()
        })
    );
    let attachments = &state.apps["web"].attachments;
    assert_eq!(attachments["REDIS_URL"], "redis-b-1000");
    assert_eq!(
        attachments["HEROKU_REDIS_AMBER_URL"], "redis-a-1000",
        "{attachments:?}"
    );
    assert_eq!(attachments.len(), 2);
    // Promoting again changes nothing.
    let before = state.clone();
    state.apply(&promote).unwrap();
    assert_eq!(state, before);
    // An instance attached to another app only is attached to this one as REDIS_URL.
    state
        .apply(&Command::CreateInstance {
            instance: instance("redis-c-1000", 6382),
            app: "other".into(),
        })
        .unwrap();
    let promote = Command::PromoteAttachment {
        app: "web".into(),
        instance: "redis-c-1000".into(),
        at_ms: 10,
    };
    state.apply(&promote).unwrap();
    assert_eq!(state.apps["web"].attachments["REDIS_URL"], "redis-c-1000");
    assert_eq!(state.apps["web"].attachments.len(), 3);
    assert_eq!(
        state.apply(&Command::PromoteAttachment {
            app: "web".into(),
            instance: "nope".into(),
            at_ms: 11
        }),
        Err(Refusal::NoSuchInstance("nope".into()))
    );
}
