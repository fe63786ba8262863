//! The full-stack simulation (DESIGN §7): the production coordinator and agent code on turmoil.
//!
//! ```text
//!   c1 c2 c3   kvs_coordinator::node::run_with_io  (real openraft + redb + tonic/TLS + leader loop)
//!   h1 … h6    kvs_agent register / identity / session_loop + Supervisor + Fencing
//!              over modelled engines (engines.rs, fronts.rs) and a simulated sshd (hosts.rs)
//!   app        creates instances over the Admin API, follows REDIS_URL, writes (with WAIT)
//!   driver     seeded fault plan (faults.rs) ─► turmoil crash / bounce / partition
//!   end        invariants over the history (invariants/, one per file) + trace hash of the timeline
//! ```
//!
//! Same seed, same history: turmoil orders every host's tasks from the seed, tokio's own RNG is
//! seeded (`--cfg tokio_unstable`, set for the workspace in `.cargo/config.toml`), openraft's
//! election timeouts come from `KvsRuntime`'s seeded generator, secrets from the seed. TLS key
//! material still comes from the OS; it changes bytes on the wire, not their number or timing.

pub mod cli;
mod clients;
mod coordinators;
mod engines;
mod faults;
mod fronts;
mod history;
mod hosts;
mod invariants;
mod loss_reports;
mod net;
mod probe;
mod scenarios;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use faults::Fault;
pub use history::History;

use crate::breaks::{Break, Breaks};
use crate::run::Violation;
use crate::scenario::Scenario;
use coordinators::CoordinatorHost;
use hosts::AgentHost;
use kvs_proto::model::Role;

/// Zones of the simulated region, one coordinator in each.
const ZONES: [&str; 3] = ["a", "b", "c"];
/// Time from the start to the first fault: the cluster forms, the instances and their standbys
/// come up and sync.
const WARM_UP: Duration = Duration::from_secs(90);
/// After the last fault heals, the world has this long to be whole again (HEALS invariant).
pub const HEAL_BOUND: Duration = Duration::from_secs(150);

/// One full-stack run's settings.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub seed: u64,
    /// Agent hosts (two per zone by default).
    pub hosts: usize,
    pub instances: usize,
    /// Faults in the `random` scenario's plan (the other scenarios have their own).
    pub faults: usize,
    pub scenario: Scenario,
    pub breaks: Breaks,
}

impl StackConfig {
    pub fn new(seed: u64) -> Self {
        StackConfig {
            seed,
            hosts: 6,
            instances: 1,
            faults: 3,
            scenario: Scenario::Random,
            breaks: Breaks::default(),
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct StackOutcome {
    pub seed: u64,
    pub scenario: Scenario,
    pub hash: u64,
    pub violations: Vec<Violation>,
    /// Acknowledged writes without a replica's ack that the final primary lacks (allowed).
    pub lost_unreplicated: usize,
    pub simulated: Duration,
    pub wall: Duration,
    pub promotions: usize,
    pub plan: Vec<(Duration, Fault)>,
    pub history: History,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A scratch directory for the run's disks: tmpfs if there is one (redb fsyncs every commit).
fn scratch() -> std::io::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::Builder::new().prefix("kvs-sim-").tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("kvs-sim-").tempdir()
    }
}

/// Runs one seed of the full stack.
pub fn run(config: &StackConfig) -> anyhow::Result<StackOutcome> {
    anyhow::ensure!(
        cfg!(tokio_unstable),
        "the full-stack simulation needs --cfg tokio_unstable (set in .cargo/config.toml) to be deterministic"
    );
    // Wall time, for the speed figure only (never inside the simulated world).
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    kvs_coordinator::raft::seed_rng(config.seed);
    let dir = scratch()?;
    let history = Arc::new(Mutex::new(History::default()));
    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .simulation_duration(Duration::from_secs(24 * 3600))
        .tick_duration(Duration::from_millis(5))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        // Segments a socket may hold unread (turmoil panics beyond it; gRPC writes many small ones).
        .tcp_capacity(1 << 16)
        .build();

    // The coordinators: node 1 bootstraps, 2 and 3 join through it.
    let coordinator =
        |node_id: u64, join: Option<(String, std::path::PathBuf, std::path::PathBuf)>| {
            CoordinatorHost {
                node_id,
                name: format!("c{node_id}"),
                data_dir: dir.path().join(format!("c{node_id}")),
                join,
                seed: config.seed,
                history: history.clone(),
            }
        };
    let first = coordinator(1, None);
    {
        let host = first.clone();
        sim.host("c1", move || coordinators::main(host.clone()));
    }
    let ready = |h: &CoordinatorHost| {
        h.admin_token_path().exists() && h.ca_bundle_path().exists() && h.join_token_path().exists()
    };
    while !ready(&first) {
        anyhow::ensure!(
            sim.elapsed() < Duration::from_secs(60),
            "coordinator 1 did not bootstrap within 60 s (seed {})",
            config.seed
        );
        step(&mut sim)?;
    }
    let join_url = sim_url(&sim, "c1");
    let join = Some((join_url, first.ca_bundle_path(), first.admin_token_path()));
    for node_id in 2..=3 {
        let host = coordinator(node_id, join.clone());
        sim.host(host.name.clone().as_str(), move || {
            coordinators::main(host.clone())
        });
    }
    let coordinator_urls: Vec<String> = (1..=3).map(|n| sim_url(&sim, &format!("c{n}"))).collect();
    let join_token = std::fs::read_to_string(first.join_token_path())?
        .trim()
        .to_string();

    // The agent hosts, two per zone.
    let mut agents: BTreeMap<String, AgentHost> = BTreeMap::new();
    for index in 0..config.hosts {
        let name = format!("h{}", index + 1);
        let host = AgentHost {
            name: name.clone(),
            zone: ZONES[index % ZONES.len()].to_string(),
            data_dir: dir.path().join(&name),
            coordinators: coordinator_urls.clone(),
            join_token: join_token.clone(),
            ca_file: first.ca_bundle_path(),
            history: history.clone(),
            disk: Default::default(),
            boots: Arc::new(AtomicU64::new(0)),
            current: Default::default(),
            agent_kill: Arc::new(Mutex::new(CancellationToken::new())),
            no_fencing: config.breaks.has(Break::NoFencing),
        };
        let boot = host.clone();
        sim.host(name.as_str(), move || hosts::main(boot.clone()));
        agents.insert(name, host);
    }
    let app = clients::App {
        coordinators: coordinator_urls.clone(),
        ca_file: first.ca_bundle_path(),
        admin_token_file: first.admin_token_path(),
        instances: config.instances,
        history: history.clone(),
        urls: Default::default(),
        loss_zero: config.breaks.has(Break::LossZero),
    };
    {
        let app = app.clone();
        sim.host("app", move || clients::main(app.clone()));
    }

    // The fault phase.
    let zone_of: Vec<(String, String)> = agents
        .values()
        .map(|h| (h.name.clone(), h.zone.clone()))
        .collect();
    let plan = scenarios::plan(config.scenario, config.seed, &zone_of, config.faults);
    let mut world = Driver {
        agents: &agents,
        history: history.clone(),
        down: BTreeMap::new(),
        pairs: BTreeMap::new(),
        one_way: BTreeMap::new(),
        held: BTreeMap::new(),
    };
    let fault_start = sim.elapsed().max(WARM_UP);
    let mut pending: Vec<(Duration, Action)> = Vec::new();
    for (offset, fault) in &plan {
        pending.push((fault_start + *offset, Action::Start(fault.clone())));
    }
    let last_end = plan
        .iter()
        .map(|(offset, fault)| fault_start + *offset + fault.duration())
        .max()
        .unwrap_or(fault_start);
    let end = last_end + HEAL_BOUND;
    while sim.elapsed() < end {
        let now = sim.elapsed();
        history::set_driver_now(now);
        let due: Vec<Action> = {
            let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(at, _)| *at <= now);
            pending = later;
            due.into_iter().map(|(_, action)| action).collect()
        };
        for action in due {
            if let Some(undo) = world.apply(&mut sim, action) {
                pending.push((now + undo.0, undo.1));
            }
        }
        step(&mut sim)?;
    }
    let simulated = sim.elapsed();
    let checked = invariants::check(&history, &agents, &app, &sim, last_end);
    drop(sim);
    let history = std::mem::take(&mut *lock(&history));
    kvs_coordinator::raft::unseed_rng();
    Ok(StackOutcome {
        seed: config.seed,
        scenario: config.scenario,
        hash: history.timeline.hash(),
        violations: checked.violations,
        lost_unreplicated: checked.lost_unreplicated,
        simulated,
        wall: started.elapsed(),
        promotions: history.promotions.len(),
        plan,
        history,
    })
}

fn sim_url(sim: &turmoil::Sim<'_>, name: &str) -> String {
    format!("https://{}:{}", sim.lookup(name), coordinators::API_PORT)
}

fn step(sim: &mut turmoil::Sim<'_>) -> anyhow::Result<()> {
    sim.step()
        .map(drop)
        .map_err(|error| anyhow::anyhow!("a simulated host failed: {error}"))
}

/// A fault's start, or the end that undoes it.
#[derive(Debug, Clone)]
enum Action {
    Start(Fault),
    RestartHost(String),
    Heal(Fault),
}

/// A network fault's effect: partitioned pairs (both ways), one-way partitions (from, to), held
/// pairs, and the hosts it cuts off from every vantage point.
#[derive(Default)]
struct Links {
    both: Vec<(String, String)>,
    one_way: Vec<(String, String)>,
    held: Vec<(String, String)>,
    cut: Vec<String>,
}

struct Driver<'a> {
    agents: &'a BTreeMap<String, AgentHost>,
    history: Arc<Mutex<History>>,
    /// Hosts cut off from every vantage point now, by how many faults.
    down: BTreeMap<String, usize>,
    /// Partitioned pairs (both ways), by how many faults: overlapping faults heal independently.
    pairs: BTreeMap<(String, String), usize>,
    /// One-way partitions (from, to), by how many faults.
    one_way: BTreeMap<(String, String), usize>,
    /// Held pairs (freeze), by how many faults.
    held: BTreeMap<(String, String), usize>,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// Adds one to a link's count; true when it went from 0 to 1 (apply the fault).
fn count_up(counts: &mut BTreeMap<(String, String), usize>, key: (String, String)) -> bool {
    let count = counts.entry(key).or_default();
    *count += 1;
    *count == 1
}

/// Takes one from a link's count; true when it reached 0 (undo the fault).
fn count_down(counts: &mut BTreeMap<(String, String), usize>, key: (String, String)) -> bool {
    match counts.get_mut(&key) {
        Some(count) if *count > 1 => {
            *count -= 1;
            false
        }
        Some(_) => {
            counts.remove(&key);
            true
        }
        None => false,
    }
}

impl Driver<'_> {
    fn note(&self, what: String) {
        lock(&self.history).note("faults", what);
    }

    fn coordinators() -> Vec<String> {
        (1..=3).map(|n| format!("c{n}")).collect()
    }

    fn others(&self, name: &str) -> Vec<String> {
        let mut all = Self::coordinators();
        all.extend(self.agents.keys().cloned());
        all.push("app".into());
        all.retain(|n| n != name);
        all
    }

    fn zone_hosts(&self, zone: &str) -> Vec<String> {
        let index = ZONES.iter().position(|z| *z == zone).unwrap_or(0);
        let mut hosts = vec![format!("c{}", index + 1)];
        hosts.extend(
            self.agents
                .values()
                .filter(|h| h.zone == zone)
                .map(|h| h.name.clone()),
        );
        hosts
    }

    /// What a network fault does to the links (nothing for the other faults).
    fn links(&self, fault: &Fault) -> Links {
        let mut links = Links::default();
        let with = |host: &str, others: Vec<String>| -> Vec<(String, String)> {
            others.into_iter().map(|o| (host.to_string(), o)).collect()
        };
        match fault {
            Fault::Isolate { host, .. } => {
                links.both = with(host, self.others(host));
                links.cut = vec![host.clone()];
            }
            Fault::CutOff { host, .. } => {
                let mut others = self.others(host);
                others.retain(|o| o != "app");
                links.both = with(host, others);
                links.cut = vec![host.clone()];
            }
            // The standby still hears the primary: not cut off from every vantage point.
            Fault::CoordinatorCut { host, .. } => links.both = with(host, Self::coordinators()),
            Fault::OneWay { host, .. } => links.one_way = with(host, Self::coordinators()),
            Fault::Freeze { host, .. } => {
                links.held = with(host, self.others(host));
                links.cut = vec![host.clone()];
            }
            Fault::ZoneCut { zone, .. } => {
                let inside = self.zone_hosts(zone);
                for a in &inside {
                    let mut outside = self.others(a);
                    outside.retain(|b| !inside.contains(b));
                    links.both.extend(with(a, outside));
                }
                links.cut = inside;
            }
            _ => {}
        }
        links
    }

    /// Applies `links`; a link already cut by another fault stays as it is.
    fn cut_links(&mut self, sim: &turmoil::Sim<'_>, links: &Links) {
        for (a, b) in &links.both {
            if count_up(&mut self.pairs, pair(a, b)) {
                sim.partition(a.as_str(), b.as_str());
            }
        }
        for (from, to) in &links.one_way {
            if count_up(&mut self.one_way, (from.clone(), to.clone())) {
                sim.partition_oneway(from.as_str(), to.as_str());
            }
        }
        for (a, b) in &links.held {
            if count_up(&mut self.held, pair(a, b)) {
                sim.hold(a.as_str(), b.as_str());
            }
        }
        self.cut(&links.cut);
    }

    /// Undoes `links`; a link another fault still cuts stays cut.
    fn heal_links(&mut self, sim: &turmoil::Sim<'_>, links: &Links) {
        for (a, b) in &links.both {
            if count_down(&mut self.pairs, pair(a, b)) {
                sim.repair(a.as_str(), b.as_str());
            }
        }
        for (from, to) in &links.one_way {
            if count_down(&mut self.one_way, (from.clone(), to.clone())) {
                sim.repair_oneway(from.as_str(), to.as_str());
            }
        }
        for (a, b) in &links.held {
            if count_down(&mut self.held, pair(a, b)) {
                sim.release(a.as_str(), b.as_str());
            }
        }
        self.reconnect(&links.cut);
    }

    fn cut(&mut self, hosts: &[String]) {
        for host in hosts {
            let count = self.down.entry(host.clone()).or_default();
            *count += 1;
            if *count == 1 {
                lock(&self.history).cut_off(host);
            }
        }
    }

    fn reconnect(&mut self, hosts: &[String]) {
        for host in hosts {
            if let Some(count) = self.down.get_mut(host) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.down.remove(host);
                    lock(&self.history).reconnected(host);
                }
            }
        }
    }

    /// The host of instance 0's writable primary (or, if none, of its last writer), or of a
    /// running standby.
    fn resolve(&self, role: &str) -> Option<String> {
        let instance = lock(&self.history).apps.values().next().cloned()?;
        let wanted = if role == "@primary" {
            Role::Primary
        } else {
            Role::Standby
        };
        let found = self.agents.values().find(|agent| {
            agent.engines().is_some_and(|state| {
                lock(&state)
                    .engines
                    .get(&instance)
                    .is_some_and(|e| e.running && e.role == wanted && !e.fenced)
            })
        });
        if let Some(agent) = found {
            return Some(agent.name.clone());
        }
        if wanted == Role::Primary {
            let history = lock(&self.history);
            return history
                .accepted
                .iter()
                .rev()
                .find(|w| w.instance == instance)
                .map(|w| w.host.clone());
        }
        None
    }

    /// Applies an action; returns the follow-up (delay, action) that undoes it.
    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, action: Action) -> Option<(Duration, Action)> {
        match action {
            Action::Start(fault) => {
                let fault = match fault.host() {
                    Some(role) if role.starts_with('@') => match self.resolve(role) {
                        Some(host) => fault.on(&host),
                        None => {
                            self.note(format!("skip {fault}: no {role} now"));
                            return None;
                        }
                    },
                    _ => fault,
                };
                self.note(format!("start {fault}"));
                let undo = Some((fault.duration(), Action::Heal(fault.clone())));
                match &fault {
                    Fault::HostCrash { host, down } => {
                        sim.crash(host.as_str());
                        if let Some(agent) = self.agents.get(host) {
                            *lock(&agent.current) = None;
                        }
                        self.cut(std::slice::from_ref(host));
                        return Some((*down, Action::RestartHost(host.clone())));
                    }
                    Fault::Isolate { .. }
                    | Fault::CutOff { .. }
                    | Fault::CoordinatorCut { .. }
                    | Fault::OneWay { .. }
                    | Fault::Freeze { .. }
                    | Fault::ZoneCut { .. } => {
                        let links = self.links(&fault);
                        self.cut_links(sim, &links);
                    }
                    Fault::LeaderCrash { down } => {
                        let leader = {
                            let history = lock(&self.history);
                            history
                                .leaders
                                .iter()
                                .next_back()
                                .and_then(|(_, nodes)| nodes.iter().next().copied())
                        };
                        let leader = leader?;
                        let name = format!("c{leader}");
                        self.note(format!("the leader is {name}"));
                        sim.crash(name.as_str());
                        return Some((*down, Action::RestartHost(name)));
                    }
                    Fault::EngineCrash { host } => {
                        let crashed = self.agents.get(host).is_some_and(|agent| {
                            let instances: Vec<String> = agent
                                .engines()
                                .map(|state| lock(&state).engines.keys().cloned().collect())
                                .unwrap_or_default();
                            instances.iter().any(|name| agent.crash_engine(name))
                        });
                        if !crashed {
                            self.note(format!("no engine runs on {host}"));
                        }
                        return None;
                    }
                    Fault::AgentCrash { host } => {
                        if let Some(agent) = self.agents.get(host) {
                            agent.kill_agent();
                        }
                        return None;
                    }
                }
                undo
            }
            Action::RestartHost(host) => {
                self.note(format!("restart {host}"));
                sim.bounce(host.as_str());
                self.reconnect(std::slice::from_ref(&host));
                None
            }
            Action::Heal(fault) => {
                self.note(format!("heal {fault}"));
                let links = self.links(&fault);
                self.heal_links(sim, &links);
                None
            }
        }
    }
}
