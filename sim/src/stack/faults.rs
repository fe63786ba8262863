//! The fault plan of a full-stack run, drawn from its seed, and how each fault is applied to the
//! turmoil world. Durations are biased toward the edges that matter: just under and just over the
//! confirmation window, and around `fence_after`.
//!
//! ```text
//!   host-crash H for D     turmoil crash, restart after D (a new boot: the reboot rule applies)
//!   isolate H for D        H partitioned from every other host (both ways)
//!   one-way H for D        H's packets to the coordinators dropped (it still hears them)
//!   cut-off H for D        H partitioned from the coordinators and the other agent hosts, but
//!                          not from the app (the case fencing exists for)
//!   zone-cut Z for D       every host of zone Z partitioned from every host outside it
//!   leader-crash for D     the coordinator that leads now crashes, restarts after D
//!   engine-crash H         one engine on H killed (the agent restarts it in place)
//!   agent-crash H          H's agent killed (restarted by its host after 1 s; engines keep running)
//!   freeze H for D         every packet to and from H held, then delivered late (a paused VM as
//!                          the network sees it; H's own clock keeps running)
//!   coordinator-cut H for D  H partitioned from the coordinators only (its standby and the app
//!                          still reach it)
//! ```
//!
//! A host may be named by role: `@primary` and `@standby` are resolved when the fault starts
//! (the hosts of instance 0's writable primary and of its standby at that moment).

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

use super::coordinators::{CONFIRMATION_WINDOW, FENCE_AFTER};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    HostCrash { host: String, down: Duration },
    Isolate { host: String, down: Duration },
    OneWay { host: String, down: Duration },
    CutOff { host: String, down: Duration },
    ZoneCut { zone: String, down: Duration },
    LeaderCrash { down: Duration },
    EngineCrash { host: String },
    AgentCrash { host: String },
    Freeze { host: String, down: Duration },
    CoordinatorCut { host: String, down: Duration },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::HostCrash { host, down } => write!(f, "host-crash {host} for {down:?}"),
            Fault::Isolate { host, down } => write!(f, "isolate {host} for {down:?}"),
            Fault::OneWay { host, down } => write!(f, "one-way {host} for {down:?}"),
            Fault::CutOff { host, down } => write!(f, "cut-off {host} for {down:?}"),
            Fault::ZoneCut { zone, down } => write!(f, "zone-cut {zone} for {down:?}"),
            Fault::LeaderCrash { down } => write!(f, "leader-crash for {down:?}"),
            Fault::EngineCrash { host } => write!(f, "engine-crash {host}"),
            Fault::AgentCrash { host } => write!(f, "agent-crash {host}"),
            Fault::Freeze { host, down } => write!(f, "freeze {host} for {down:?}"),
            Fault::CoordinatorCut { host, down } => {
                write!(f, "coordinator-cut {host} for {down:?}")
            }
        }
    }
}

impl Fault {
    /// How long it lasts (zero for an instant crash).
    pub fn duration(&self) -> Duration {
        match self {
            Fault::HostCrash { down, .. }
            | Fault::Isolate { down, .. }
            | Fault::OneWay { down, .. }
            | Fault::CutOff { down, .. }
            | Fault::Freeze { down, .. }
            | Fault::CoordinatorCut { down, .. }
            | Fault::ZoneCut { down, .. }
            | Fault::LeaderCrash { down } => *down,
            Fault::EngineCrash { .. } | Fault::AgentCrash { .. } => Duration::ZERO,
        }
    }
}

impl Fault {
    /// The host it targets, if one.
    pub fn host(&self) -> Option<&str> {
        match self {
            Fault::HostCrash { host, .. }
            | Fault::Isolate { host, .. }
            | Fault::OneWay { host, .. }
            | Fault::CutOff { host, .. }
            | Fault::EngineCrash { host }
            | Fault::AgentCrash { host }
            | Fault::Freeze { host, .. }
            | Fault::CoordinatorCut { host, .. } => Some(host),
            Fault::ZoneCut { .. } | Fault::LeaderCrash { .. } => None,
        }
    }

    /// The same fault on another host.
    pub fn on(&self, target: &str) -> Fault {
        let mut fault = self.clone();
        match &mut fault {
            Fault::HostCrash { host, .. }
            | Fault::Isolate { host, .. }
            | Fault::OneWay { host, .. }
            | Fault::CutOff { host, .. }
            | Fault::EngineCrash { host }
            | Fault::AgentCrash { host }
            | Fault::Freeze { host, .. }
            | Fault::CoordinatorCut { host, .. } => *host = target.to_string(),
            Fault::ZoneCut { .. } | Fault::LeaderCrash { .. } => {}
        }
        fault
    }
}

/// An outage length at one of the edges (or a plain one).
pub fn outage(rng: &mut StdRng) -> Duration {
    let window = CONFIRMATION_WINDOW.as_secs();
    let fence = FENCE_AFTER.as_secs();
    let choices = [
        window - 3,
        window + 1,
        window + 10,
        fence.saturating_sub(1).max(1),
        fence + 2,
        5,
        60,
        90,
    ];
    Duration::from_secs(choices[rng.gen_range(0..choices.len())] + rng.gen_range(0..2))
}

/// The `random` plan: faults at offsets from the start of the fault phase, one after another
/// with a gap, on any host (`@primary` and `@standby` too).
pub fn random(
    rng: &mut StdRng,
    hosts: &[(String, String)],
    count: usize,
) -> Vec<(Duration, Fault)> {
    let mut hosts = hosts.to_vec();
    hosts.push(("@primary".into(), String::new()));
    hosts.push(("@standby".into(), String::new()));
    let mut at = Duration::from_secs(rng.gen_range(0..10));
    let mut plan = Vec::new();
    let zones: Vec<String> = {
        let mut zones: Vec<String> = hosts
            .iter()
            .map(|(_, z)| z.clone())
            .filter(|z| !z.is_empty())
            .collect();
        zones.sort();
        zones.dedup();
        zones
    };
    for _ in 0..count {
        let host = hosts[rng.gen_range(0..hosts.len())].0.clone();
        let fault = match rng.gen_range(0..13) {
            11 => Fault::Freeze {
                host,
                down: outage(rng),
            },
            12 => Fault::CoordinatorCut {
                host,
                down: outage(rng),
            },
            10 => Fault::CutOff {
                host,
                down: outage(rng),
            },
            0 | 1 => Fault::HostCrash {
                host,
                down: outage(rng),
            },
            2 | 3 => Fault::Isolate {
                host,
                down: outage(rng),
            },
            4 => Fault::OneWay {
                host,
                down: outage(rng),
            },
            5 => Fault::ZoneCut {
                zone: zones[rng.gen_range(0..zones.len())].clone(),
                down: outage(rng),
            },
            6 => Fault::LeaderCrash {
                down: Duration::from_secs(rng.gen_range(1..20)),
            },
            7 | 8 => Fault::EngineCrash { host },
            _ => Fault::AgentCrash { host },
        };
        let length = fault.duration();
        plan.push((at, fault));
        at += length + Duration::from_secs(rng.gen_range(20..60));
    }
    plan
}
