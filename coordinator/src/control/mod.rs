//! Sans-IO policy of the leader: `now`, the replicated state and the observations in; decisions
//! (commands to commit, desired processes to send) out. No clocks, sockets or randomness here:
//! the caller passes `now` as a monotonic `Duration` and any random numbers it needs.
//!
//! ```text
//!   agent reports ──► Observations (leader memory, not in the log)
//!                          │
//!   ClusterState ──────────┼──► reconcile::decide(now) ──► Vec<Command> (status changes) ──► raft
//!                          └──► desired::for_host()    ──► Desired (agent stream)
//!   admin create ──► placement::place() ──► Placement (host, ports)
//! ```

pub mod desired;
pub mod observation;
pub mod placement;
pub mod reconcile;

pub use observation::{HostObservation, Observations, ProcessObservation};
