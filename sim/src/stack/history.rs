//! What happened in one full-stack run, as the invariants need it: the timeline (simulated time,
//! who, what; its hash is the run's trace hash), every write an engine accepted and every write a
//! client saw acknowledged, promotions, the Raft leaders each node saw per term, the epochs the
//! coordinators committed, and the faults in force over time.
//!
//! Every simulated component writes here through `Arc<Mutex<History>>`; turmoil runs them all on
//! one thread in a seeded order, so the record is the same for the same seed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::timeline::Timeline;

/// A write an engine accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub at: Duration,
    pub instance: String,
    pub host: String,
    pub epoch: u64,
    pub id: u64,
}

/// A promotion of a standby engine.
#[derive(Debug, Clone)]
pub struct Promotion {
    pub at: Duration,
    pub instance: String,
    pub host: String,
    pub epoch: u64,
}

#[derive(Debug, Default)]
pub struct History {
    pub timeline: Timeline,
    pub accepted: Vec<Accepted>,
    /// Writes a client saw acknowledged: (instance, id, with `WAIT` acknowledged by a replica).
    pub acknowledged: Vec<(String, u64, bool)>,
    pub promotions: Vec<Promotion>,
    /// Raft term → the nodes that saw themselves leader in it.
    pub leaders: BTreeMap<u64, BTreeSet<u64>>,
    /// host name → intervals [from, to) during which the host could not reach any coordinator
    /// and no coordinator could probe it (crashed, isolated, or its zone cut off).
    pub unreachable: BTreeMap<String, Vec<(Duration, Option<Duration>)>>,
    /// host name → times its engine or agent was crashed by the plan.
    pub process_crashes: BTreeMap<String, Vec<Duration>>,
    /// app name → its instance.
    pub apps: BTreeMap<String, String>,
    /// instance → the events the Admin API listed for it (Unix ms, message).
    pub events: BTreeMap<String, BTreeSet<(i64, String)>>,
}

/// Simulated time, inside a host or in the driver (which sets it before each step).
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_else(|| DRIVER_NOW.with(std::cell::Cell::get))
}

thread_local! {
    static DRIVER_NOW: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// The driver's clock (outside the hosts, `turmoil::sim_elapsed` is `None`).
pub fn set_driver_now(now: Duration) {
    DRIVER_NOW.with(|cell| cell.set(now));
}

impl History {
    pub fn note(&mut self, who: &str, what: String) {
        self.timeline.push(now(), who, what);
    }

    pub fn accepted(&mut self, instance: &str, host: &str, epoch: u64, id: u64) {
        self.accepted.push(Accepted {
            at: now(),
            instance: instance.to_string(),
            host: host.to_string(),
            epoch,
            id,
        });
    }

    pub fn promoted(&mut self, instance: &str, host: &str, epoch: u64) {
        self.promotions.push(Promotion {
            at: now(),
            instance: instance.to_string(),
            host: host.to_string(),
            epoch,
        });
    }

    pub fn leader(&mut self, node: u64, term: u64) {
        if self.leaders.entry(term).or_default().insert(node) {
            self.timeline
                .push(now(), &format!("c{node}"), format!("leader in term {term}"));
        }
    }

    pub fn cut_off(&mut self, host: &str) {
        let intervals = self.unreachable.entry(host.to_string()).or_default();
        if intervals.last().is_none_or(|(_, to)| to.is_some()) {
            intervals.push((now(), None));
        }
    }

    pub fn reconnected(&mut self, host: &str) {
        if let Some((_, to)) = self
            .unreachable
            .get_mut(host)
            .and_then(|intervals| intervals.last_mut())
            && to.is_none()
        {
            *to = Some(now());
        }
    }

    /// Whether `host` was unreachable through the whole of [from, to].
    pub fn unreachable_throughout(&self, host: &str, from: Duration, to: Duration) -> bool {
        self.unreachable.get(host).is_some_and(|intervals| {
            intervals
                .iter()
                .any(|(start, end)| *start <= from && end.is_none_or(|end| end >= to))
        })
    }
}
