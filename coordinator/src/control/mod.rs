//! Sans-IO policy of the leader: `now`, the replicated state and the observations in; decisions
//! (commands to commit, desired processes to send, agents to restart) out. No clocks, sockets or
//! randomness here: the caller passes `now` as a monotonic `Duration` and any random numbers it
//! needs.
//!
//! ```text
//!   agent reports ──► Observations::record ─┐  (leader memory, not in the log)
//!   SSH probes    ──► ProbeObservations ────┤
//!                                           ├──► detector::assess(now) ──► verdict per host
//!   ClusterState ───────────────────────────┤
//!                                           ├──► reconcile::decide(now) ──► status commands ──► raft
//!                                           ├──► failover::plan(verdicts, HaMemory, now)
//!                                           │        ──► Commit(Command) / RestartAgent / Alert
//!                                           └──► desired::for_host(HaConfig) ──► Desired (agent stream)
//!   admin create   ──► placement::place() ──► Placement (host, ports)
//!   admin failover ──► failover::plan_switchover() ──► BeginFailover (planned)
//!   kvs info       ──► ha_status::of() ──► "Available" | "Syncing" | "Unavailable" | "N/A"
//! ```

pub mod desired;
pub mod detector;
pub mod failover;
pub mod ha_config;
pub mod ha_memory;
pub mod ha_status;
pub mod observation;
pub mod placement;
pub mod reconcile;
mod standby;

#[cfg(test)]
pub(crate) mod ha_sim;

pub use detector::{AgentRestartBudget, Evidence, HostVerdict};
pub use failover::HaAction;
pub use ha_config::HaConfig;
pub use ha_memory::HaMemory;
pub use ha_status::HaStatus;
pub use observation::{
    HostObservation, Observations, ProbeObservations, ProcessObservation, VantageProbes,
};
