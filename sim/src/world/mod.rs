//! The simulated world: topology, the replicated state, the coordinator leader (real policy),
//! agents, engines, clients, the network and the faults. One [`World::step`] is one tick of
//! simulated time; everything in it is a pure function of the seed.
//!
//! ```text
//!   step(): now += TICK
//!     faults      activate / heal the plan's faults, run planned actions (leader change, switchover)
//!     leader      elections (quorum of coordinators), memory reset on a new leader
//!     network     derive reachability from the active faults
//!     agents      session, desired (desired::for_host, stale epochs refused), converge engines,
//!                 fencing (kvs_agent::fencing::Fencing, real)
//!     clients     write to the URL they follow; WAIT writes need a replica to hold them
//!     replication links establish / time out, replicas copy (or fully resync) their upstream
//!     reports     agents report (with a delay) to the leader; vantage points probe every host
//!     leader      reconcile::decide, detector::assess, failover::plan ─► ClusterState::apply
//!     clients     follow config-var rotations (after a watch delay)
//! ```

mod agents;
pub mod clients;
mod faults;
mod leader;
mod replication;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use kvs_coordinator::control::{HaConfig, HaMemory, Observations, ProbeObservations, placement};
use kvs_coordinator::state::{ClusterState, Command, Credentials, Host, Instance, InstanceStatus};
use kvs_proto::model::Engine as EngineLabel;
use kvs_proto::settings::Settings;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::agent::Agent;
use crate::breaks::Breaks;
use crate::engine::Engine;
use crate::facts::{Ledger, StepFacts};
use crate::faults::{ActiveFault, FaultPlan};
use crate::network::{Network, Topology};
use crate::timeline::Timeline;

pub use clients::Client;

/// Simulated time per step.
pub const TICK: Duration = Duration::from_secs(1);
/// Zones of the cluster, one coordinator node in each.
pub const ZONES: [&str; 3] = ["a", "b", "c"];
const ENGINE_LABEL: &str = "valkey-9";
const INSTANCE_MEMORY_BYTES: u64 = 50 << 20;

/// The shape of a world, drawn from the seed by the scenario.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    pub hosts: usize,
    pub instances: usize,
    /// The HA config the coordinator and the invariants use (the invariants keep it even when a
    /// `--break` changes what the coordinator runs with).
    pub config: HaConfig,
    pub plan: FaultPlan,
    /// Agent report → leader delivery delay.
    pub report_delay: Duration,
    /// Config var change → client follows it.
    pub watch_delay: Duration,
    /// Every client write asks `WAIT 1` with this probability (per mille).
    pub wait_per_mille: u32,
}

/// The coordinator leader: which node, and its memory (never in the Raft log).
#[derive(Debug, Clone, Default)]
pub struct Leader {
    pub node: Option<u64>,
    pub term: u64,
    /// No leader until this (an election is running).
    pub electing_until: Duration,
    pub observations: Observations,
    pub probes: ProbeObservations,
    pub memory: HaMemory,
}

/// A failover that completed, as the state recorded it.
#[derive(Debug, Clone)]
pub struct Completion {
    pub instance: String,
    pub at: Duration,
    pub data_loss_bytes: Option<u64>,
}

pub struct World {
    pub seed: u64,
    pub now: Duration,
    rng: StdRng,
    pub topology: Topology,
    pub state: ClusterState,
    /// What the coordinator and agents run with (a `--break` may change it).
    pub config: HaConfig,
    /// The rules as designed; the invariants judge by these.
    pub nominal: HaConfig,
    pub breaks: Breaks,
    pub leader: Leader,
    pub agents: BTreeMap<String, Agent>,
    /// (host, instance) → engine.
    pub engines: BTreeMap<(String, String), Engine>,
    pub clients: Vec<Client>,
    pub plan: FaultPlan,
    next_fault: usize,
    next_action: usize,
    pub active: Vec<ActiveFault>,
    pub network: Network,
    pub timeline: Timeline,
    /// What happened in the last step (for the invariants).
    pub facts: StepFacts,
    pub ledger: Ledger,
    pub completions: Vec<Completion>,
    /// Agent report → leader delivery delay (evidence younger than this cannot have reached
    /// the leader).
    pub report_delay: Duration,
    watch_delay: Duration,
    wait_per_mille: u32,
    next_write_id: u64,
    /// The node that just stepped down (not re-elected by the next election).
    leader_excluded: Option<u64>,
    /// A leader that lost its quorum at this time: it keeps sending heartbeats to the agents it
    /// reaches until its last quorum acknowledgement is stale (`HEARTBEATS_OUTLIVE_QUORUM`).
    deposed: Option<(u64, Duration)>,
    /// host → when the leader (holding its quorum, or deposed a moment ago) last reached it:
    /// ground truth for the fence-bound invariant.
    pub leader_heard: BTreeMap<String, Duration>,
    /// Agents restarted over SSH while alive and connected to the leader (rule 2 misfiring).
    pub spurious_agent_restarts: u64,
    /// Indexes into the ledger of this tick's WAIT writes.
    wait_pending: Vec<usize>,
}

impl World {
    pub fn new(seed: u64, spec: WorldSpec, breaks: Breaks) -> Self {
        let topology = topology(spec.hosts);
        let mut config = spec.config.clone();
        breaks.apply_to_coordinator(&mut config);
        let mut world = World {
            seed,
            now: Duration::ZERO,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_0f51_1100),
            state: ClusterState::default(),
            config,
            nominal: spec.config,
            breaks,
            leader: Leader::default(),
            agents: topology
                .hosts
                .keys()
                .map(|h| (h.clone(), Agent::new()))
                .collect(),
            engines: BTreeMap::new(),
            clients: Vec::new(),
            plan: spec.plan,
            next_fault: 0,
            next_action: 0,
            active: Vec::new(),
            network: Network::default(),
            timeline: Timeline::default(),
            facts: StepFacts::default(),
            ledger: Ledger::default(),
            completions: Vec::new(),
            report_delay: spec.report_delay,
            watch_delay: spec.watch_delay,
            wait_per_mille: spec.wait_per_mille,
            next_write_id: 1,
            leader_excluded: None,
            deposed: None,
            leader_heard: BTreeMap::new(),
            spurious_agent_restarts: 0,
            wait_pending: Vec::new(),
            topology,
        };
        world.bootstrap(spec.instances);
        world
    }

    /// Hosts registered, instances created (primary placed by `placement::place`, standby left
    /// to the HA policy), one client per app, coordinator node 1 leading.
    fn bootstrap(&mut self, instances: usize) {
        for (id, (zone, address)) in self.topology.hosts.clone() {
            let host = Host {
                id: id.clone(),
                zone,
                address,
                hostname: id.clone(),
                memory_total_bytes: 1 << 30,
                engines: vec![EngineLabel {
                    kind: "valkey".into(),
                    version: "9.0.0".into(),
                    label: ENGINE_LABEL.into(),
                }],
                registered_at_ms: 0,
                ssh_host_key: Some("ssh-ed25519 AAAA-sim".into()),
            };
            self.apply(Command::RegisterHost(host), "world");
        }
        let live: Vec<String> = self.topology.hosts.keys().cloned().collect();
        for index in 0..instances {
            let Ok(choice) =
                placement::place(&self.state, &live, ENGINE_LABEL, INSTANCE_MEMORY_BYTES)
            else {
                continue;
            };
            let name = format!("redis-sim-{}", 1000 + index);
            let app = format!("app-{index}");
            let instance = premium_instance(&name, choice);
            self.apply(
                Command::CreateInstance {
                    instance,
                    app: app.clone(),
                },
                "world",
            );
            self.clients.push(Client::new(&app));
        }
        let c = &self.config;
        let text = format!(
            "HA config: confirmation_window {} s, fence_after {} s, probe_interval {} s; \
             report delay {} s{}",
            c.confirmation_window.as_secs(),
            c.fence_after.as_secs(),
            c.probe_interval.as_secs(),
            self.report_delay.as_secs(),
            self.breaks.flags()
        );
        self.timeline.push(self.now, "world", text);
        self.leader.node = Some(1);
        self.leader.term = 1;
        self.timeline
            .push(self.now, "leader", "c1 leads (term 1)".into());
    }

    /// Applies a command to the replicated state, records it, returns whether it applied.
    fn apply(&mut self, command: Command, who: &str) -> bool {
        let outcome = self.state.apply(&command);
        let applied = outcome.is_ok();
        if applied {
            if let Command::CompleteFailover {
                name,
                data_loss_bytes,
                ..
            } = &command
            {
                self.completions.push(Completion {
                    instance: name.clone(),
                    at: self.now,
                    data_loss_bytes: *data_loss_bytes,
                });
            }
            if let Some(text) = describe(&command) {
                self.timeline.push(self.now, who, text);
            }
            self.facts.applied.push(command);
        }
        applied
    }

    pub fn now_ms(&self) -> i64 {
        i64::try_from(self.now.as_millis()).unwrap_or(i64::MAX)
    }

    /// Instance names in order (fault targets index into this).
    pub fn instance_names(&self) -> Vec<String> {
        self.state.instances.keys().cloned().collect()
    }

    /// One tick.
    pub fn step(&mut self) {
        self.now += TICK;
        self.facts = StepFacts {
            at: self.now,
            ..StepFacts::default()
        };
        self.run_faults();
        self.run_elections();
        self.network = crate::network::Network::derive(&self.active, self.now, &self.topology);
        self.record_leader_words();
        self.run_agents();
        self.run_client_writes();
        self.run_replication();
        self.settle_waits();
        self.send_reports();
        self.run_probes();
        self.deliver_reports();
        self.run_leader();
        self.run_client_watch();
        for engine in self.engines.values_mut() {
            engine.fsync();
        }
        self.record_facts();
    }

    /// Ground truth for the invariants, gathered after the step.
    fn record_facts(&mut self) {
        let mut disturbed = BTreeSet::new();
        for host in self.topology.hosts.keys() {
            if self.network.host_disturbed(host, &self.topology) {
                disturbed.insert(host.clone());
            }
        }
        self.facts.disturbed_hosts = disturbed;
        let now = self.now;
        self.facts.crash_looping = self
            .engines
            .iter()
            .filter(|(_, e)| e.status(now) == kvs_proto::model::ProcessStatus::CrashLooping)
            .map(|(key, _)| key.clone())
            .collect();
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

fn topology(hosts: usize) -> Topology {
    let mut topology = Topology::default();
    for (index, zone) in ZONES.iter().enumerate() {
        let id = u64::try_from(index + 1).unwrap_or(u64::MAX);
        topology.coordinators.insert(id, zone.to_string());
    }
    for index in 0..hosts {
        let zone = ZONES[index % ZONES.len()];
        let octet = u8::try_from(index + 11).unwrap_or(u8::MAX);
        let zone_octet = u8::try_from(index % ZONES.len()).unwrap_or(0);
        let address = IpAddr::from([10, 0, zone_octet, octet]);
        topology
            .hosts
            .insert(format!("h{}", index + 1), (zone.to_string(), address));
    }
    topology
}

fn premium_instance(name: &str, choice: placement::Choice) -> Instance {
    Instance {
        name: name.into(),
        plan: "premium-0".into(),
        maxmemory_bytes: INSTANCE_MEMORY_BYTES,
        max_connections: 40,
        persistence: true,
        engine: ENGINE_LABEL.into(),
        settings: Settings::default(),
        credentials: Credentials {
            default_password: "p".repeat(32),
            admin_password: "a".repeat(32),
            replication_password: "r".repeat(32),
        },
        epoch: 1,
        primary: kvs_coordinator::state::Placement {
            host_id: choice.host_id,
            front_port: choice.front_port,
            engine_port: choice.engine_port,
        },
        status: InstanceStatus::Creating,
        created_at_ms: 0,
        maintenance_window: String::new(),
        standbys: Vec::new(),
        standby_required: true,
        failover: None,
        last_failover: None,
    }
}

/// A timeline line for an applied command (none for the bookkeeping ones).
fn describe(command: &Command) -> Option<String> {
    Some(match command {
        Command::RegisterHost(host) => format!("host {} registered in zone {}", host.id, host.zone),
        Command::CreateInstance { instance, app } => format!(
            "{} created on {} for {app}",
            instance.name, instance.primary.host_id
        ),
        Command::SetInstanceStatus {
            name,
            status,
            reason,
            ..
        } => format!("{name} {}: {reason}", status.as_str()),
        Command::PlaceStandby {
            name, placement, ..
        } => format!("{name} standby placed on {}", placement.host_id),
        Command::BeginFailover {
            name,
            expected_epoch,
            new_primary_host,
            planned,
            reason,
            ..
        } => format!(
            "{name} {} to {new_primary_host} at epoch {}: {reason}",
            if *planned { "switchover" } else { "FAILOVER" },
            expected_epoch + 1
        ),
        Command::OrderPromotion { name, epoch, .. } => {
            format!("{name} promotion ordered at epoch {epoch}")
        }
        Command::CompleteFailover {
            name,
            epoch,
            data_loss_bytes,
            ..
        } => format!(
            "{name} failover complete at epoch {epoch}, estimated loss {}",
            data_loss_bytes.map_or("unknown".into(), |b| format!("{b} B"))
        ),
        Command::CorrectDataLoss {
            name,
            epoch,
            data_loss_bytes,
            ..
        } => format!(
            "{name} failover at epoch {epoch}: estimated loss corrected to {data_loss_bytes} B"
        ),
        Command::AbortFailover {
            name,
            epoch,
            reason,
            ..
        } => format!("{name} failover at epoch {epoch} aborted: {reason}"),
        Command::RemoveStandby { name, host_id, .. } => {
            format!("{name} standby on {host_id} removed")
        }
        Command::RecordEvent { name, message, .. } => format!("{name} event: {message}"),
        _ => return None,
    })
}
