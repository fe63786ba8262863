//! kvs-sim, the fast layer of the simulation (DESIGN.md §7): the REAL coordinator policy
//! (`ClusterState::apply`, `control::{detector, failover, desired, reconcile, ha_status}`) and
//! the REAL agent fencing decision (`kvs_agent::fencing::Fencing`) driven by a seeded, pure
//! world model of hosts, engines, agents, SSH probes, clients and a network with faults.
//! No threads, clocks or sockets in the model: one `u64` seed derives everything, every map is
//! a `BTreeMap`, and every run prints a trace hash.
//!
//! ```text
//!   seed ─► scenario ─► WorldSpec + FaultPlan
//!                          │
//!   World::step (1 s) ─────┼─► faults ─► network ─► agents (desired::for_host, Fencing)
//!                          │   ─► clients ─► replication ─► reports/probes ─► leader (real policy)
//!                          ▼
//!   invariants/* after every step ─► Outcome { trace hash, violation, timeline }
//! ```
//!
//! What is modelled and what is not: see README.md beside this crate.

pub mod agent;
pub mod breaks;
pub mod cli;
pub mod engine;
pub mod explore;
pub mod facts;
pub mod faults;
pub mod invariants;
pub mod network;
pub mod run;
pub mod scenario;
pub mod stack;
pub mod timeline;
pub mod world;

pub use breaks::{Break, Breaks};
pub use run::{Outcome, RunConfig, Stats, Violation, run};
pub use scenario::Scenario;
