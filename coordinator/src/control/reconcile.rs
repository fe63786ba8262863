//! Closes the gap between what the state says about an instance's status and what the agents
//! report: `creating`/`unavailable` becomes `available` once the primary process runs as master
//! at the current epoch; `available` becomes `unavailable` when the process is crash-looping,
//! failed or fenced after a host reboot, or when its host goes silent. Failover is not decided
//! here (it needs the standby and
//! the multi-vantage confirmation of DESIGN.md §4).

use std::time::Duration;

use kvs_proto::model::ProcessStatus;

use super::observation::{HostLiveness, Observations};
use crate::state::{ClusterState, Command, InstanceStatus};

/// Status changes to commit now. `now_ms` stamps the commands; `now` is monotonic.
pub fn decide(
    state: &ClusterState,
    observations: &Observations,
    now: Duration,
    now_ms: i64,
    silence_timeout: Duration,
) -> Vec<Command> {
    let mut commands = Vec::new();
    for instance in state.instances.values() {
        let host_id = &instance.primary.host_id;
        let liveness = observations.liveness(host_id, now, silence_timeout);
        let process = observations
            .hosts
            .get(host_id)
            .and_then(|h| h.processes.get(&instance.name));
        let target = match (liveness, process) {
            (HostLiveness::Unknown, _) => None,
            (HostLiveness::Silent, _) => Some((
                InstanceStatus::Unavailable,
                format!("host {host_id} stopped reporting"),
            )),
            (HostLiveness::Up, None) => None,
            (HostLiveness::Up, Some(p)) if p.epoch != instance.epoch => None,
            (HostLiveness::Up, Some(p)) => match p.status {
                // Restarted after a host reboot: fenced by its agent (clients refused) until the
                // coordinator fails over or raises the epoch.
                ProcessStatus::Running if p.role == "master" && p.after_reboot => Some((
                    InstanceStatus::Unavailable,
                    "primary engine fenced by its agent (restarted after a host reboot)"
                        .to_string(),
                )),
                ProcessStatus::Running if p.role == "master" => Some((
                    InstanceStatus::Available,
                    "primary engine running".to_string(),
                )),
                ProcessStatus::CrashLooping | ProcessStatus::Failed => Some((
                    InstanceStatus::Unavailable,
                    format!("primary engine {}: {}", p.status.as_str(), p.last_error),
                )),
                _ => None,
            },
        };
        if let Some((status, reason)) = target
            && status != instance.status
            && !(instance.status == InstanceStatus::Creating
                && status == InstanceStatus::Unavailable
                && liveness == HostLiveness::Silent)
        {
            commands.push(Command::SetInstanceStatus {
                name: instance.name.clone(),
                status,
                at_ms: now_ms,
                reason,
            });
        }
    }
    commands
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use kvs_proto::settings::Settings;

    use super::*;
    use crate::control::observation::{HostObservation, ProcessObservation};
    use crate::state::{Credentials, Host, Instance, Placement};

    const SILENCE: Duration = Duration::from_secs(5);

    fn state(status: InstanceStatus) -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(&Command::RegisterHost(Host {
            id: "h1".into(),
            zone: "a".into(),
            address: IpAddr::from([127, 0, 0, 11]),
            hostname: "h1".into(),
            memory_total_bytes: 1 << 30,
            engines: vec![],
            registered_at_ms: 0,
            ssh_host_key: None,
        }))
        .unwrap();
        let instance = Instance {
            name: "redis-a-1000".into(),
            plan: "mini".into(),
            maxmemory_bytes: 1,
            max_connections: 1,
            persistence: false,
            engine: "valkey-9".into(),
            settings: Settings::default(),
            credentials: Credentials {
                default_password: String::new(),
                admin_password: String::new(),
                replication_password: String::new(),
            },
            epoch: 1,
            primary: Placement {
                host_id: "h1".into(),
                front_port: 6380,
                engine_port: 16380,
            },
            status,
            created_at_ms: 0,
            maintenance_window: String::new(),
            standbys: Vec::new(),
            standby_required: false,
            failover: None,
            last_failover: None,
        };
        s.apply(&Command::CreateInstance {
            instance,
            app: "a".into(),
        })
        .unwrap();
        s
    }

    fn seen(at: Duration, status: ProcessStatus, role: &str, epoch: u64) -> Observations {
        let process = ProcessObservation {
            last_error: "boom".into(),
            ..ProcessObservation::new(epoch, status, role)
        };
        let host = HostObservation {
            last_seen: at,
            last_seen_ms: 0,
            memory_total_bytes: 0,
            memory_available_bytes: 0,
            load_avg_1m: 0.0,
            engines: vec![],
            processes: BTreeMap::from([("redis-a-1000".to_string(), process)]),
            desired_version: 0,
        };
        Observations {
            hosts: BTreeMap::from([("h1".to_string(), host)]),
            ..Observations::default()
        }
    }

    fn statuses(commands: &[Command]) -> Vec<InstanceStatus> {
        commands
            .iter()
            .map(|c| match c {
                Command::SetInstanceStatus { status, .. } => *status,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn table() {
        use InstanceStatus::*;
        use ProcessStatus as P;
        let t = Duration::from_secs(100);
        // (current status, observation time, process status, role, epoch, now) → expected
        type Case = (
            InstanceStatus,
            Option<(P, &'static str, u64)>,
            Duration,
            Vec<InstanceStatus>,
        );
        let cases: Vec<Case> = vec![
            (
                Creating,
                Some((P::Running, "master", 1)),
                t,
                vec![Available],
            ),
            (Creating, Some((P::Starting, "unknown", 1)), t, vec![]),
            (Creating, Some((P::Running, "master", 0)), t, vec![]), // stale epoch
            (Available, Some((P::Running, "master", 1)), t, vec![]),
            (
                Available,
                Some((P::CrashLooping, "unknown", 1)),
                t,
                vec![Unavailable],
            ),
            (
                Available,
                Some((P::Failed, "unknown", 1)),
                t,
                vec![Unavailable],
            ),
            (Available, Some((P::Restarting, "unknown", 1)), t, vec![]), // restart in place: no change
            (
                Unavailable,
                Some((P::Running, "master", 1)),
                t,
                vec![Available],
            ),
            (
                Available,
                Some((P::Running, "master", 1)),
                t + SILENCE,
                vec![],
            ), // exactly at the limit: up
            (
                Available,
                Some((P::Running, "master", 1)),
                t + SILENCE + Duration::from_millis(1),
                vec![Unavailable],
            ),
            (
                Creating,
                Some((P::Starting, "unknown", 1)),
                t + SILENCE * 2,
                vec![],
            ), // creating stays creating
            (Available, None, t, vec![]), // no report since leadership: unknown, no change
        ];
        let mut fenced = seen(t, P::Running, "master", 1);
        if let Some(p) = fenced
            .hosts
            .get_mut("h1")
            .and_then(|h| h.processes.get_mut("redis-a-1000"))
        {
            p.fenced = true;
            p.after_reboot = true;
        }
        assert_eq!(
            statuses(&decide(&state(Available), &fenced, t, 0, SILENCE)),
            [Unavailable],
            "a primary fenced after a reboot refuses clients"
        );
        for (i, (current, observed, now, expected)) in cases.into_iter().enumerate() {
            let s = state(current);
            let obs = match observed {
                Some((status, role, epoch)) => seen(t, status, role, epoch),
                None => Observations::default(),
            };
            let got = statuses(&decide(&s, &obs, now, 0, SILENCE));
            assert_eq!(
                got, expected,
                "case {i}: {current:?} {observed:?} at {now:?}"
            );
        }
    }
}
