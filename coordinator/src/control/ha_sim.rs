//! Test-only: a tiny deterministic cluster that drives the HA policy end to end. Three hosts in
//! zones a, b, c; one premium instance with its primary on `ha` and its standby on `hb`; three
//! vantage points. Every step the live agents report what `desired::for_host` tells them (the
//! agent obeys at once), every vantage point probes every host, and `plan`'s commits are applied.
//! A step is `step_length` (5 s unless a test needs finer).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use kvs_proto::model::{Engine, ProcessStatus, Role};
use kvs_proto::settings::Settings;

use super::detector::{self, Evidence, HostVerdict};
use super::failover::{self, HaAction};
use super::{
    HaConfig, HaMemory, HostObservation, Observations, ProbeObservations, ProcessObservation,
    desired,
};
use crate::state::{ClusterState, Command, Credentials, Host, Instance, InstanceStatus, Placement};

pub const NAME: &str = "redis-acute-6762";
/// Bytes the primary takes per step while it serves (not paused).
pub const WRITES_PER_STEP: u64 = 1_000;
/// The primary's offset when the simulation starts (standbys start empty and sync at once).
pub const INITIAL_PRIMARY_OFFSET: u64 = 100 << 20;

pub fn host(id: &str, zone: &str, last_octet: u8) -> Host {
    Host {
        id: id.into(),
        zone: zone.into(),
        address: IpAddr::from([127, 0, 0, last_octet]),
        hostname: id.into(),
        memory_total_bytes: 1 << 30,
        engines: vec![Engine {
            kind: "valkey".into(),
            version: "9.0.0".into(),
            label: "valkey-9".into(),
        }],
        registered_at_ms: 0,
        ssh_host_key: Some("ssh-ed25519 AAAA".into()),
    }
}

pub fn instance(primary_host: &str) -> Instance {
    Instance {
        name: NAME.into(),
        plan: "premium-0".into(),
        maxmemory_bytes: 50 << 20,
        max_connections: 40,
        persistence: true,
        engine: "valkey-9".into(),
        settings: Settings::default(),
        credentials: Credentials {
            default_password: "p".repeat(32),
            admin_password: "a".repeat(32),
            replication_password: "r".repeat(32),
        },
        epoch: 1,
        primary: Placement {
            host_id: primary_host.into(),
            front_port: 6380,
            engine_port: 16380,
        },
        status: InstanceStatus::Available,
        created_at_ms: 0,
        maintenance_window: String::new(),
        standbys: Vec::new(),
        standby_required: true,
        failover: None,
        last_failover: None,
    }
}

/// Hosts ha/hb/hc in zones a/b/c; the instance's primary on ha, attached to app "web".
pub fn cluster_without_standby() -> ClusterState {
    let mut state = ClusterState::default();
    for (id, zone, octet) in [("ha", "a", 11), ("hb", "b", 12), ("hc", "c", 13)] {
        state
            .apply(&Command::RegisterHost(host(id, zone, octet)))
            .unwrap();
    }
    let create = Command::CreateInstance {
        instance: instance("ha"),
        app: "web".into(),
    };
    state.apply(&create).unwrap();
    state
}

/// As [`cluster_without_standby`], with the standby on hb.
pub fn cluster() -> ClusterState {
    let mut state = cluster_without_standby();
    let placement = Placement {
        host_id: "hb".into(),
        front_port: 6380,
        engine_port: 16380,
    };
    let place = Command::PlaceStandby {
        name: NAME.into(),
        placement,
        at_ms: 0,
    };
    state.apply(&place).unwrap();
    state
}

/// A report of a running engine.
pub fn running(epoch: u64, role: &str, offset: u64, link: &str) -> ProcessObservation {
    ProcessObservation {
        replication_offset: offset,
        master_link_status: link.into(),
        ..ProcessObservation::new(epoch, ProcessStatus::Running, role)
    }
}

pub struct Sim {
    pub state: ClusterState,
    pub observations: Observations,
    pub probes: ProbeObservations,
    pub vantage_points: BTreeSet<u64>,
    pub memory: HaMemory,
    pub config: HaConfig,
    pub now: Duration,
    /// Simulated time per step (5 s like the probe interval unless a test needs finer).
    pub step_length: Duration,
    /// Hosts that are off: no agent, no probes answered, engines not running.
    pub down: BTreeSet<String>,
    /// Hosts whose agent is silent while the host answers probes.
    pub agent_silent: BTreeSet<String>,
    /// (host, vantage) pairs whose probes fail although the host is up.
    pub probe_blocked: BTreeSet<(String, u64)>,
    /// Standby hosts whose replication link is cut although both hosts are up.
    pub link_cut: BTreeSet<String>,
    /// Hosts whose agent has not yet confirmed a switchover pause (CLIENT PAUSE still in flight).
    pub pause_unconfirmed: BTreeSet<String>,
    /// Hosts that rebooted, with the epoch their primary restarted at (reported `after_reboot`
    /// while the desired epoch has not moved past it).
    pub rebooted: BTreeMap<String, u64>,
    /// Hosts whose engine for the instance crash-loops.
    pub crash_looping: BTreeSet<String>,
    /// Hosts whose engine just crashed and is being restarted in place by its agent.
    pub restarting: BTreeSet<String>,
    /// Bytes each standby host trails its upstream by while the link is up.
    pub lag: BTreeMap<String, u64>,
    /// Replication offset of the instance's process per host.
    pub offsets: BTreeMap<String, u64>,
    /// Every action `plan` emitted, with the time.
    pub log: Vec<(Duration, HaAction)>,
}

impl Sim {
    pub fn new(state: ClusterState) -> Self {
        Self {
            state,
            observations: Observations::default(),
            probes: ProbeObservations::default(),
            vantage_points: BTreeSet::from([1, 2, 3]),
            memory: HaMemory::default(),
            config: HaConfig::default(),
            now: Duration::from_secs(1_000),
            step_length: Duration::from_secs(5),
            down: BTreeSet::new(),
            agent_silent: BTreeSet::new(),
            probe_blocked: BTreeSet::new(),
            link_cut: BTreeSet::new(),
            pause_unconfirmed: BTreeSet::new(),
            rebooted: BTreeMap::new(),
            crash_looping: BTreeSet::new(),
            restarting: BTreeSet::new(),
            lag: BTreeMap::new(),
            // A primary with some history, so lags in the MiB range are meaningful.
            offsets: BTreeMap::from([("ha".to_string(), INITIAL_PRIMARY_OFFSET)]),
            log: Vec::new(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        i64::try_from(self.now.as_millis()).unwrap()
    }

    pub fn verdicts(&self) -> BTreeMap<String, HostVerdict> {
        let evidence = Evidence {
            state: &self.state,
            observations: &self.observations,
            probes: &self.probes,
            vantage_points: &self.vantage_points,
        };
        detector::assess(&evidence, self.now, &self.config)
    }

    /// Runs `seconds` of simulated time in steps; returns the actions emitted meanwhile.
    pub fn run(&mut self, seconds: u64) -> Vec<HaAction> {
        let start = self.log.len();
        let steps = Duration::from_secs(seconds).as_millis() / self.step_length.as_millis();
        for _ in 0..steps {
            self.step();
        }
        self.log[start..].iter().map(|(_, a)| a.clone()).collect()
    }

    /// One step: time passes, engines replicate, agents report, vantage points probe, plan runs.
    pub fn step(&mut self) {
        self.now += self.step_length;
        self.replicate();
        let hosts: Vec<String> = self.state.hosts.keys().cloned().collect();
        for host in &hosts {
            if !self.down.contains(host) && !self.agent_silent.contains(host) {
                self.report(host);
            }
            for vantage in self.vantage_points.clone() {
                let blocked = self.probe_blocked.contains(&(host.clone(), vantage));
                let reachable = !self.down.contains(host) && !blocked;
                self.probes.record(host, vantage, reachable, self.now);
            }
        }
        let verdicts = self.verdicts();
        let (now, now_ms) = (self.now, self.now_ms());
        let actions = failover::plan(
            &self.state,
            &self.observations,
            &verdicts,
            &mut self.memory,
            now,
            now_ms,
            &self.config,
        );
        for action in actions {
            if let HaAction::Commit(command) = &action {
                let _refused_or_applied = self.state.apply(command);
            }
            self.log.push((now, action));
        }
    }

    /// The desired processes of a host, as its agent would run them.
    fn desired(&self, host: &str) -> Vec<kvs_proto::model::DesiredProcess> {
        desired::for_host(&self.state, host, &self.config)
    }

    fn serving(&self, host: &str) -> bool {
        !self.down.contains(host)
            && !self.crash_looping.contains(host)
            && !self.restarting.contains(host)
    }

    /// Primaries take writes (unless paused); replicas with a live link follow their upstream.
    fn replicate(&mut self) {
        let hosts: Vec<String> = self.state.hosts.keys().cloned().collect();
        let serving: Vec<String> = hosts.into_iter().filter(|h| self.serving(h)).collect();
        for host in &serving {
            for process in self.desired(host) {
                let offset = self.offsets.get(host).copied().unwrap_or(0);
                let next = match (process.role, &process.upstream) {
                    (Role::Primary, _) if process.pause_writes => offset,
                    (Role::Primary, _) => offset + WRITES_PER_STEP,
                    (Role::Standby, Some(up)) => match self.upstream_host(up.host) {
                        Some(up_host) if self.link_up(host, &up_host) => {
                            let lag = self.lag.get(host).copied().unwrap_or(0);
                            let upstream = self.offsets.get(&up_host).copied().unwrap_or(0);
                            // A resync may move it back (an old primary rejoining).
                            upstream.saturating_sub(lag)
                        }
                        _ => offset,
                    },
                    (Role::Standby, None) => offset,
                };
                self.offsets.insert(host.clone(), next);
            }
        }
    }

    fn upstream_host(&self, address: IpAddr) -> Option<String> {
        self.state
            .hosts
            .values()
            .find(|h| h.address == address)
            .map(|h| h.id.clone())
    }

    fn link_up(&self, host: &str, upstream: &str) -> bool {
        self.serving(upstream) && !self.link_cut.contains(host)
    }

    fn report(&mut self, host: &str) {
        let mut processes = BTreeMap::new();
        for process in self.desired(host) {
            let offset = self.offsets.get(host).copied().unwrap_or(0);
            let report = if self.crash_looping.contains(host) {
                ProcessObservation::new(process.epoch, ProcessStatus::CrashLooping, "unknown")
            } else if self.restarting.contains(host) {
                ProcessObservation::new(process.epoch, ProcessStatus::Restarting, "unknown")
            } else {
                match (process.role, &process.upstream) {
                    (Role::Primary, _) => ProcessObservation {
                        writes_paused: process.pause_writes
                            && !self.pause_unconfirmed.contains(host),
                        after_reboot: self
                            .rebooted
                            .get(host)
                            .is_some_and(|epoch| process.epoch <= *epoch),
                        ..running(process.epoch, "master", offset, "")
                    },
                    (Role::Standby, up) => {
                        let up = up.as_ref().and_then(|u| self.upstream_host(u.host));
                        let link = up.is_some_and(|u| self.link_up(host, &u));
                        running(
                            process.epoch,
                            "slave",
                            offset,
                            if link { "up" } else { "down" },
                        )
                    }
                }
            };
            processes.insert(process.instance.clone(), report);
        }
        let observation = HostObservation {
            last_seen: self.now,
            last_seen_ms: self.now_ms(),
            memory_total_bytes: 1 << 30,
            memory_available_bytes: 1 << 29,
            load_avg_1m: 0.0,
            engines: vec![],
            processes,
            desired_version: self.state.desired_version,
        };
        self.observations.record(host, observation);
    }

    pub fn instance(&self) -> &Instance {
        &self.state.instances[NAME]
    }

    pub fn events(&self) -> Vec<String> {
        self.state.events[NAME]
            .iter()
            .map(|e| e.message.clone())
            .collect()
    }
}

/// The kinds of the commit actions, for compact assertions.
pub fn commit_kinds(actions: &[HaAction]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            HaAction::Commit(c) => Some(c.kind()),
            _ => None,
        })
        .collect()
}
