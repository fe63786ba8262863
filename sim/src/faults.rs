//! Fault plans: what goes wrong, when, and for how long. A plan is data generated from the seed
//! (`scenario.rs`); the world activates each fault at its start, resolving role-relative targets
//! ("the primary of instance 0") against the replicated state *at that moment*, and heals it at
//! its end.
//!
//! ```text
//!   FaultPlan { faults: [Fault { start, duration, kind }], actions: [(at, Action)] }
//!        │ start: resolve Target ─► ActiveFault { resolved, until }
//!        ▼
//!   network.rs derives, every tick, who can reach whom and which hosts are off
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

/// A host named relative to the roles at activation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The host of instance `n`'s primary (instances in name order).
    PrimaryOf(usize),
    /// The host of instance `n`'s first standby (its primary's if it has none).
    StandbyOf(usize),
    /// A host by id.
    Host(String),
}

/// Which zone a zone outage takes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneTarget {
    /// The zone of instance `n`'s primary at activation.
    OfPrimary(usize),
    Named(String),
}

/// What a partition of one host cuts it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Every coordinator node (probes fail, the agent stream breaks).
    pub coordinators: bool,
    /// Every other host (replication links break).
    pub all_hosts: bool,
    /// Only the standby hosts of this instance (when `all_hosts` is false).
    pub standbys_of: Option<usize>,
    /// The application clients.
    pub clients: bool,
    /// Only packets *from* the host are dropped (TCP, SSH and replication still fail both ways).
    pub one_way: bool,
}

impl Cut {
    pub fn full() -> Self {
        Self {
            coordinators: true,
            all_hosts: true,
            standbys_of: None,
            clients: true,
            one_way: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The host (VM) stops; at the end it boots again: the agent starts from its cached desired
    /// state and restarts the engines from their AOF. `lose_unsynced`: power loss, the writes of
    /// the last fsync interval (`appendfsync everysec`) are gone.
    HostCrash { target: Target, lose_unsynced: bool },
    /// The engine of instance `instance` on the host dies. Not a crash loop: the agent restarts
    /// it in place when the fault ends (at once, a tick or two). Crash loop: it keeps dying; the
    /// agent reports it crash-looping and retries every `crash_loop_retry_interval`.
    EngineCrash {
        target: Target,
        instance: usize,
        crash_loop: bool,
    },
    /// The agent process hangs or dies and is not restarted by systemd: its fronts and tunnels
    /// go with it (the engines keep running). Ends early when the leader restarts it over SSH.
    AgentHang { target: Target },
    /// The host is cut off; `flap`: (cut seconds, healed seconds) repeated over the duration.
    Partition {
        target: Target,
        cut: Cut,
        flap: Option<(u64, u64)>,
    },
    /// Every host and coordinator in the zone is cut from everything outside it (clients too).
    ZoneCut { zone: ZoneTarget },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Since the world started.
    pub start: Duration,
    pub duration: Duration,
    pub kind: FaultKind,
}

impl Fault {
    pub fn end(&self) -> Duration {
        self.start + self.duration
    }
}

/// Instantaneous things the plan does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The Raft leader moves to another coordinator node: its memory (observations, probes,
    /// HA memory) starts from scratch; the replicated state persists.
    LeaderChange,
    /// An operator asks for a planned switchover of instance `n` (`kvs failover`).
    Switchover {
        instance: usize,
        allow_data_loss: bool,
    },
}

/// A fault with its targets resolved, while it is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    HostCrash {
        host: String,
        lose_unsynced: bool,
    },
    EngineCrash {
        host: String,
        instance: String,
        crash_loop: bool,
    },
    AgentHang {
        host: String,
    },
    Partition {
        host: String,
        coordinators: bool,
        /// Hosts it is cut from.
        peers: BTreeSet<String>,
        clients: bool,
        one_way: bool,
        flap: Option<(u64, u64)>,
        started: Duration,
    },
    ZoneCut {
        zone: String,
    },
}

impl Resolved {
    /// The host this fault is about (none for a zone).
    pub fn host(&self) -> Option<&str> {
        match self {
            Resolved::HostCrash { host, .. }
            | Resolved::EngineCrash { host, .. }
            | Resolved::AgentHang { host }
            | Resolved::Partition { host, .. } => Some(host),
            Resolved::ZoneCut { .. } => None,
        }
    }

    /// A flapping partition in its healed phase at `now` counts as inactive.
    pub fn cutting_at(&self, now: Duration) -> bool {
        match self {
            Resolved::Partition {
                flap: Some((on, off)),
                started,
                ..
            } => {
                let period = (on + off).max(1);
                now.saturating_sub(*started).as_secs() % period < *on
            }
            _ => true,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Resolved::HostCrash {
                host,
                lose_unsynced,
            } => {
                let power = if *lose_unsynced { " (power loss)" } else { "" };
                format!("host {host} crashed{power}")
            }
            Resolved::EngineCrash {
                host,
                instance,
                crash_loop,
            } => {
                let how = if *crash_loop {
                    "crash-loops"
                } else {
                    "crashed"
                };
                format!("engine of {instance} on {host} {how}")
            }
            Resolved::AgentHang { host } => format!("agent on {host} hung"),
            Resolved::Partition {
                host,
                coordinators,
                peers,
                clients,
                one_way,
                flap,
                ..
            } => {
                let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
                format!(
                    "{host} cut from coordinators={coordinators} hosts=[{}] clients={clients}{}{}",
                    peers.join(","),
                    if *one_way { " one-way" } else { "" },
                    flap.map_or(String::new(), |(on, off)| format!(
                        " flapping {on}s cut/{off}s up"
                    ))
                )
            }
            Resolved::ZoneCut { zone } => format!("zone {zone} cut off"),
        }
    }
}

/// One fault while active.
#[derive(Debug, Clone)]
pub struct ActiveFault {
    pub resolved: Resolved,
    pub until: Duration,
}

/// Everything a run injects.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    pub faults: Vec<Fault>,
    pub actions: Vec<(Duration, Action)>,
}

impl FaultPlan {
    /// When the last fault heals (or the last action happens).
    pub fn healed_at(&self) -> Duration {
        let faults = self.faults.iter().map(Fault::end);
        let actions = self.actions.iter().map(|(at, _)| *at);
        faults.chain(actions).max().unwrap_or_default()
    }
}
