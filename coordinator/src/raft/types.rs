//! The openraft type configuration of the coordinator, and short aliases for the generic openraft
//! types, so the rest of the crate writes `Raft` instead of `openraft::Raft<TypeConfig>`.
//!
//! The application data is [`Command`] (one log entry per decision) and the response is
//! [`CommandOutcome`] (what `ClusterState::apply` returned on the node that applied it). Snapshot
//! data is an in-memory `Cursor<Vec<u8>>`: the whole `ClusterState` serialized as JSON, which is
//! small for a control plane (hosts and instances, not customer data).

use std::io::Cursor;

use crate::state::{Command, CommandOutcome};

openraft::declare_raft_types!(
    /// The coordinator's Raft types: `Command` in, `CommandOutcome` out, `u64` node ids.
    pub TypeConfig:
        D = Command,
        R = CommandOutcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = super::runtime::KvsRuntime,
);

/// A coordinator node id, unique and stable within one cluster.
pub type NodeId = u64;
/// The handle to a running Raft node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log position: leader term + index.
pub type LogId = openraft::LogId<NodeId>;
/// The persisted vote (term, candidate, committed flag).
pub type Vote = openraft::Vote<NodeId>;
/// The membership config together with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// The metadata of a snapshot (last included log id, membership, id).
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// A snapshot: metadata plus data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// openraft's storage error type.
pub type StorageError = openraft::StorageError<NodeId>;
/// openraft's storage error with I/O context.
pub type StorageIoError = openraft::StorageIOError<NodeId>;
/// The response to a successful `Raft::client_write`: `.data` is the `CommandOutcome`.
pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;
/// The error of `Raft::client_write` (not leader, fatal, ...).
pub type ClientWriteError = openraft::error::RaftError<
    NodeId,
    openraft::error::ClientWriteError<NodeId, openraft::BasicNode>,
>;
