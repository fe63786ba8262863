//! A single node: committed commands survive a crash, from the log alone and from a snapshot plus
//! the log after it. The crash is a dropped runtime: every Raft task dies mid-flight, nothing
//! runs a graceful shutdown.

use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{RaftLogReader, SnapshotPolicy};

use super::super::{
    LogStore, NetworkFactory, StateHandle, StateMachine, Store, config, initialize_single, open,
    open_with_config,
};
use super::{WAIT, register_host, runtime};
use crate::state::Applied;

const NODE: u64 = 1;
const CLUSTER: &str = "restart-test";
const ADDR: &str = "127.0.0.1:1";

/// Opens the node, initializes it (a no-op after the first time), waits until it leads, and
/// registers hosts `range`.
async fn start_and_write(
    dir: &Path,
    snapshot_every: Option<u64>,
    range: std::ops::Range<u32>,
) -> StateHandle {
    let mut config = config(CLUSTER);
    if let Some(n) = snapshot_every {
        config.snapshot_policy = SnapshotPolicy::LogsSinceLast(n);
        config.max_in_snapshot_log_to_keep = 0;
        config.purge_batch_size = 1;
    }
    let (raft, state) = open_with_config(dir, NODE, CLUSTER, NetworkFactory::new(None), config)
        .await
        .expect("the store opens");
    initialize_single(&raft, NODE, ADDR)
        .await
        .expect("initialize (idempotent)");
    raft.wait(Some(WAIT))
        .current_leader(NODE, "single node leads")
        .await
        .expect("becomes leader");
    for n in range {
        let response = raft
            .client_write(register_host(n))
            .await
            .expect("a write on the leader commits");
        assert_eq!(response.data, Ok(Applied::Done));
        assert_eq!(
            state.applied_index(),
            response.log_id.index,
            "applied before the reply"
        );
    }
    state
}

fn host_count(state: &StateHandle) -> usize {
    state.read(|s| s.hosts.len())
}

#[test]
fn t30_committed_commands_survive_a_crash() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        tracing::info!("--- first life: write five commands, then crash");
        let rt = runtime();
        let state = rt.block_on(start_and_write(dir.path(), None, 0..5));
        assert_eq!(host_count(&state), 5);
        drop(rt);
    }
    {
        tracing::info!("--- second life: the state is back before the node even leads");
        let rt = runtime();
        rt.block_on(async {
            let (raft, state) = open(dir.path(), NODE, CLUSTER, NetworkFactory::new(None))
                .await
                .expect("the store reopens");
            assert_eq!(host_count(&state), 5, "re-applied from the log on open");
            initialize_single(&raft, NODE, ADDR)
                .await
                .expect("initialize is idempotent");
            raft.wait(Some(WAIT))
                .current_leader(NODE, "leads again")
                .await
                .expect("becomes leader");
            let response = raft
                .client_write(register_host(5))
                .await
                .expect("writes again");
            assert_eq!(response.data, Ok(Applied::Done));
            assert_eq!(host_count(&state), 6);
        });
    }
}

#[test]
fn t31_snapshot_plus_log_survive_a_crash() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        tracing::info!("--- first life: enough writes for a few snapshots and purges, then crash");
        let rt = runtime();
        rt.block_on(async {
            let state = start_and_write(dir.path(), Some(5), 0..23).await;
            assert_eq!(host_count(&state), 23);
            // Let the snapshot and purge that the last writes triggered land (they are async).
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        });
        drop(rt);
    }
    {
        tracing::info!("--- the log was purged behind a durable snapshot");
        let rt = runtime();
        rt.block_on(async {
            let store = Store::open(dir.path(), NODE, CLUSTER).expect("the store reopens");
            let mut log = LogStore::new(store.clone());
            let log_state = log.get_log_state().await.expect("log state");
            let purged = log_state
                .last_purged_log_id
                .expect("some of the log was purged");
            let mut machine = StateMachine::open(store).expect("the state machine reopens");
            let snapshot = machine
                .get_current_snapshot()
                .await
                .expect("read")
                .expect("a snapshot");
            assert!(
                snapshot
                    .meta
                    .last_log_id
                    .is_some_and(|l| l.index >= purged.index)
            );
            let entries = log.try_get_log_entries(..).await.expect("read the log");
            assert!(
                entries
                    .first()
                    .is_none_or(|e| e.log_id.index == purged.index + 1),
                "no hole after the purge"
            );
        });
    }
    {
        tracing::info!("--- second life: snapshot + re-applied log = every command");
        let rt = runtime();
        rt.block_on(async {
            let state = start_and_write(dir.path(), Some(5), 23..25).await;
            assert_eq!(host_count(&state), 25);
        });
    }
}
