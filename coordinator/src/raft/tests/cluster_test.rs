//! Three nodes over real localhost gRPC: replication through `network.rs` and `service.rs`, and a
//! late joiner that can only catch up by receiving a snapshot (the leader purged its log).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{BasicNode, SnapshotPolicy};
use tokio_stream::wrappers::TcpListenerStream;

use super::super::{NetworkFactory, Raft, RaftService, StateHandle, config, open_with_config};
use super::{WAIT, register_host, runtime};
use crate::state::Applied;

const CLUSTER: &str = "cluster-test";

struct Node {
    raft: Raft,
    state: StateHandle,
    addr: String,
}

/// Opens a node in `dir` and serves its Raft service on a fresh localhost port.
async fn start_node(dir: &Path, id: u64) -> Node {
    let mut config = config(CLUSTER);
    config.snapshot_policy = SnapshotPolicy::LogsSinceLast(5);
    config.max_in_snapshot_log_to_keep = 0;
    config.purge_batch_size = 1;
    // Small chunks, so the snapshot travels in several InstallSnapshot calls.
    config.snapshot_max_chunk_size = 512;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a localhost port");
    let addr = listener.local_addr().expect("bound address").to_string();
    let (raft, state) = open_with_config(dir, id, CLUSTER, NetworkFactory::new(None), config)
        .await
        .expect("the node opens");
    let server = tonic::transport::Server::builder()
        .add_service(RaftService::new(raft.clone()).into_server())
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    Node { raft, state, addr }
}

#[test]
fn t40_three_nodes_replicate_and_a_late_joiner_gets_a_snapshot() {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("a temporary directory"))
        .collect();
    let rt = runtime();
    rt.block_on(async {
        tracing::info!("--- two voters elect a leader");
        let mut nodes = BTreeMap::new();
        for id in [1, 2] {
            nodes.insert(id, start_node(dirs[id as usize - 1].path(), id).await);
        }
        let members: BTreeMap<u64, BasicNode> = nodes
            .iter()
            .map(|(id, node)| (*id, BasicNode::new(&node.addr)))
            .collect();
        nodes[&1]
            .raft
            .initialize(members)
            .await
            .expect("initialize two voters");
        let metrics = nodes[&1]
            .raft
            .wait(Some(WAIT))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await
            .expect("an election");
        let leader_id = metrics.current_leader.expect("checked above");
        let leader = nodes[&leader_id].raft.clone();

        tracing::info!("--- writes on the leader reach the follower");
        let mut last_index = 0;
        for n in 0..20 {
            let response = leader
                .client_write(register_host(n))
                .await
                .expect("a write commits");
            assert_eq!(response.data, Ok(Applied::Done));
            last_index = response.log_id.index;
        }
        for node in nodes.values() {
            node.raft
                .wait(Some(WAIT))
                .applied_index_at_least(Some(last_index), "applied")
                .await
                .expect("applied");
            assert_eq!(node.state.read(|s| s.hosts.len()), 20);
        }
        leader
            .wait(Some(WAIT))
            .metrics(|m| m.purged.is_some(), "log purged")
            .await
            .expect("the leader purges");

        tracing::info!("--- a third node joins and catches up by snapshot");
        let third = start_node(dirs[2].path(), 3).await;
        leader
            .add_learner(3, BasicNode::new(&third.addr), true)
            .await
            .expect("the learner catches up");
        let metrics = third
            .raft
            .wait(Some(WAIT))
            .metrics(|m| m.snapshot.is_some(), "snapshot")
            .await
            .expect("snap");
        assert!(
            metrics.snapshot.is_some(),
            "the learner installed a snapshot"
        );
        leader
            .change_membership(BTreeSet::from([1, 2, 3]), false)
            .await
            .expect("three voters");
        nodes.insert(3, third);

        tracing::info!("--- one more write reaches all three");
        let response = leader
            .client_write(register_host(20))
            .await
            .expect("a write commits");
        for node in nodes.values() {
            let index = Some(response.log_id.index);
            node.raft
                .wait(Some(WAIT))
                .applied_index_at_least(index, "applied")
                .await
                .expect("applied");
            assert_eq!(node.state.read(|s| s.hosts.len()), 21);
        }
    });
}
