//! The openraft glue of the coordinator: type config, the redb log store and state machine, the
//! tonic network, and `open` which puts them together.
//!
//! ```text
//!   service ── raft.client_write(Command) ──► openraft ──► LogStore (redb, fsync) ──► peers (network.rs)
//!                                                │ committed
//!                                                ▼
//!   service ◄── response.data: CommandOutcome ── StateMachine::apply ──► StateHandle (reads, watch)
//! ```
//!
//! A service submits a decision with `raft.client_write(command).await`; on success,
//! `response.data` is the `CommandOutcome` that `ClusterState::apply` returned, and
//! `response.log_id` is where it sits in the log. On a follower the call fails with
//! `ClientWriteError::ForwardToLeader`, which the service layer maps to "not leader".

mod holder;
mod log_store;
mod network;
mod runtime;
mod service;
mod state_machine;
mod store;
mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Config, SnapshotPolicy};

pub use log_store::LogStore;
pub use network::{
    CONNECT_TIMEOUT, Connect, MESSAGE_SIZE_MAX, NetworkFactory, PeerNetwork, PeerTls,
    RPC_TIMEOUT_MAX, SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_RPC_TIMEOUT_MAX,
};
pub use runtime::{KvsRuntime, seed_rng, unseed_rng};
pub use service::{ProbeSink, RaftService};
pub use state_machine::{SnapshotBuilder, StateHandle, StateMachine};
pub use store::{DATABASE_FILE_NAME, Store, StoreError, StoreIoError};
pub use types::{
    ClientWriteError, ClientWriteResponse, Entry, LogId, NodeId, Raft, Snapshot, SnapshotMeta,
    StoredMembership, TypeConfig, Vote,
};

/// Leader heartbeat, in milliseconds. Coordinators run on real networks across zones of one
/// region (RTT of a few ms), so 250 ms is many round trips of slack while still detecting a
/// dead leader quickly; it is also the deadline openraft gives each append-entries RPC.
pub const HEARTBEAT_INTERVAL_MS: u64 = 250;
/// Election timeout range, in milliseconds: four to eight heartbeats without news from the leader
/// before a follower stands for election. The wide random range keeps split votes rare; a leader
/// failover costs 1-2 s, well inside the failure-handling budgets of DESIGN §4.
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 1000;
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 2000;
/// Take a snapshot after this many applied entries since the last one.
pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 1000;
/// Entries kept in the log behind the last snapshot, so a briefly lagging follower catches up from
/// the log instead of receiving a whole snapshot. The log stays under about 2,000 entries.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1000;
/// Entries per append-entries RPC; commands are a few KiB, so a batch stays far below
/// `MESSAGE_SIZE_MAX`.
pub const APPEND_ENTRIES_MAX: u64 = 64;
/// Deadline of one snapshot chunk, in milliseconds (1 MiB over a regional link is fast).
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 10_000;

/// The openraft config of a coordinator, every option set explicitly. Call `.validate()`.
pub fn config(cluster_id: &str) -> Config {
    Config {
        cluster_name: cluster_id.to_string(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
        max_payload_entries: APPEND_ENTRIES_MAX,
        // `add_learner(blocking)` returns once the learner is within one batch of the leader.
        replication_lag_threshold: APPEND_ENTRIES_MAX,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_LOGS_SINCE_LAST),
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES_MAX as u64,
        max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT,
        purge_batch_size: 64,
        enable_tick: true,
        enable_heartbeat: true,
        enable_elect: true,
        ..Config::default()
    }
}

/// Opens (or creates) the store in `dir` and starts this node's Raft with [`config`].
///
/// Fails with a [`StoreError`] naming the file if the store is corrupt, foreign, belongs to another
/// cluster or node, or is held by another process. Committed commands found in the log are
/// re-applied before this returns, so the [`StateHandle`] is current from the start.
pub async fn open(
    dir: &Path,
    node_id: NodeId,
    cluster_id: &str,
    network: NetworkFactory,
) -> Result<(Raft, StateHandle), StoreError> {
    open_with_config(dir, node_id, cluster_id, network, config(cluster_id)).await
}

/// [`open`] with an explicit openraft config (tests use small snapshot thresholds).
pub async fn open_with_config(
    dir: &Path,
    node_id: NodeId,
    cluster_id: &str,
    network: NetworkFactory,
    config: Config,
) -> Result<(Raft, StateHandle), StoreError> {
    let config = Arc::new(
        config
            .validate()
            .map_err(|e| StoreError::Config(Box::new(e)))?,
    );
    let store = Store::open(dir, node_id, cluster_id)?;
    let path = store.path.to_path_buf();
    let state_machine = StateMachine::open(store.clone())?;
    let handle = state_machine.handle();
    let raft = Raft::new(
        node_id,
        config,
        network,
        LogStore::new(store),
        state_machine,
    )
    .await
    .map_err(|source| StoreError::Start {
        path,
        source: Box::new(source),
    })?;
    Ok((raft, handle))
}

/// Makes a fresh node the single voter of a new cluster, reachable at `addr` (`host:port` of the
/// peer listener). Does nothing if the node is already initialized (a restart), so it is safe to
/// call on every start of a single-node cluster.
pub async fn initialize_single(
    raft: &Raft,
    node_id: NodeId,
    addr: &str,
) -> Result<(), RaftError<NodeId, InitializeError<NodeId, BasicNode>>> {
    if raft.is_initialized().await? {
        return Ok(());
    }
    let members = BTreeMap::from([(node_id, BasicNode::new(addr))]);
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        // Lost a race with a log entry that arrived meanwhile: already initialized.
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(e),
    }
}
