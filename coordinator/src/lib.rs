//! KVS coordinator: the control plane. See ARCHITECTURE.md for the code map.
//!
//! ```text
//!   state/    ClusterState + Command + apply (pure, replicated)
//!   control/  placement, reconcile, desired state (pure policy)
//!   raft/     openraft glue: redb log + state machine, peer network
//!   service/  tonic adapters: Admin, Agent, Config
//!   node.rs   wiring and the leader's loops; net.rs: how a node reaches the network
//! ```

pub mod bootstrap;
pub mod ca;
pub mod clock;
pub mod config;
pub mod control;
pub mod join;
pub mod leader;
pub mod net;
pub mod node;
pub mod probe;
pub mod probing;
pub mod raft;
pub mod secrets;
pub mod service;
pub mod startup;
pub mod state;
