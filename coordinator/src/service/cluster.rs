//! Coordinator membership for operators (`kvs cluster status|add|remove`) and for nodes joining on
//! their own (`join` in the config): status from Raft metrics, safe changes (a new node is a
//! learner first and becomes a voter only once it caught up), and node certificates.
//!
//! ```text
//!   new node ──IssueNodeCertificate──► any node (CA in the replicated state)
//!   new node ──AddNode──► leader: reachability check → add_learner (catch up, bounded)
//!                                → change_membership(+voter) → SetCoordinator (addresses)
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use kvs_proto::{ApiError, ProtocolError, pb};
use openraft::{BasicNode, ChangeMembers};

use super::Shared;
use crate::state::{Command, CoordinatorNode};

/// How long a new node may take to catch up as a learner before the add is abandoned.
pub const LEARNER_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP reachability check of a new node's Raft address, before membership is touched.
pub const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(3);

pub fn status(shared: &Shared) -> pb::ClusterStatusResponse {
    let metrics = shared.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let last_log_index = metrics.last_log_index.unwrap_or(0);
    let replication = metrics.replication.clone().unwrap_or_default();
    let directory = shared.read(|s| s.coordinators.clone());
    let nodes = membership
        .nodes()
        .map(|(id, node)| {
            let matched_index = if *id == metrics.id {
                last_log_index
            } else {
                replication
                    .get(id)
                    .cloned()
                    .flatten()
                    .map(|l| l.index)
                    .unwrap_or(0)
            };
            pb::ClusterNode {
                id: *id,
                raft_addr: node.addr.clone(),
                api_addr: directory
                    .get(id)
                    .map(|n| n.api_addr.clone())
                    .unwrap_or_default(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .into(),
                leader: metrics.current_leader == Some(*id),
                matched_index,
                lag: last_log_index.saturating_sub(matched_index),
            }
        })
        .collect();
    pb::ClusterStatusResponse {
        cluster_id: shared.config.cluster_id.clone(),
        leader_id: metrics.current_leader.unwrap_or(0),
        term: metrics.current_term,
        last_log_index,
        last_applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
        nodes,
        answered_by: metrics.id,
    }
}

pub async fn add_node(
    shared: &Shared,
    request: pb::AddNodeRequest,
) -> Result<pb::ClusterStatusResponse, ApiError> {
    shared.ensure_leader().await?;
    let _one_change_at_a_time = shared.membership_lock.lock().await;
    if request.node_id == 0 {
        return Err(ProtocolError::invalid("node_id", "must be 1 or more").into());
    }
    let raft_addr: SocketAddr = request.raft_addr.parse().map_err(|_| {
        ProtocolError::invalid(
            "raft_addr",
            format!("{:?} is not HOST:PORT", request.raft_addr),
        )
    })?;
    let api_addr: SocketAddr = request.api_addr.parse().map_err(|_| {
        ProtocolError::invalid(
            "api_addr",
            format!("{:?} is not HOST:PORT", request.api_addr),
        )
    })?;
    let id = request.node_id;
    let membership = shared
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    if let Some(existing) = membership.get_node(&id) {
        let voter = membership.voter_ids().any(|v| v == id);
        if existing.addr == raft_addr.to_string() && voter {
            // Idempotent: a node that restarts during its own join asks again.
            return Ok(status(shared));
        }
        return Err(ApiError::AlreadyExists(format!(
            "node {id} is already a {} at {}; remove it first to re-add it",
            if voter { "voter" } else { "learner" },
            existing.addr
        )));
    }
    match tokio::time::timeout(REACHABILITY_TIMEOUT, (shared.net.reach)(raft_addr)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(ApiError::FailedPrecondition(format!(
                "cannot reach node {id} at {raft_addr}: {e}; nothing changed"
            )));
        }
        Err(_) => {
            return Err(ApiError::FailedPrecondition(format!(
                "node {id} at {raft_addr} did not answer within {REACHABILITY_TIMEOUT:?}; nothing changed"
            )));
        }
    }
    tracing::info!(node = id, %raft_addr, "adding node as a learner");
    let node = BasicNode::new(raft_addr.to_string());
    let added = tokio::time::timeout(
        LEARNER_CATCH_UP_TIMEOUT,
        shared.raft.add_learner(id, node, true),
    )
    .await;
    let failure = match added {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!(
            "it did not catch up within {LEARNER_CATCH_UP_TIMEOUT:?}"
        )),
    };
    if let Some(failure) = failure {
        let removed = shared
            .raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await;
        if let Err(e) = removed {
            tracing::warn!(node = id, cause = %e, "could not remove the half-added learner");
        }
        return Err(ApiError::FailedPrecondition(format!(
            "cannot add node {id}: {failure}; it was removed again"
        )));
    }
    tracing::info!(node = id, "learner caught up; making it a voter");
    shared
        .raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(|e| ApiError::FailedPrecondition(format!("cannot make node {id} a voter: {e}")))?;
    let directory = CoordinatorNode {
        id,
        raft_addr: raft_addr.to_string(),
        api_addr: api_addr.to_string(),
    };
    shared.submit(Command::SetCoordinator(directory)).await?;
    tracing::info!(node = id, "node added as a voter");
    Ok(status(shared))
}

pub async fn remove_node(shared: &Shared, id: u64) -> Result<pb::ClusterStatusResponse, ApiError> {
    shared.ensure_leader().await?;
    let _one_change_at_a_time = shared.membership_lock.lock().await;
    let membership = shared
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    if membership.get_node(&id).is_none() {
        return Err(ApiError::NotFound(format!(
            "node {id} is not a member; see `kvs cluster status`"
        )));
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(ApiError::FailedPrecondition(format!(
                "node {id} is the last voter; removing it would leave the cluster without a quorum"
            )));
        }
        shared
            .raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(|e| ApiError::FailedPrecondition(format!("cannot remove voter {id}: {e}")))?;
    }
    // The leader may have been the one removed: the rest continue under a new leader.
    if shared.raft.current_leader().await == Some(shared.config.node_id) {
        shared
            .raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(|e| ApiError::FailedPrecondition(format!("cannot remove node {id}: {e}")))?;
        shared.submit(Command::RemoveCoordinator { id }).await?;
    }
    tracing::info!(node = id, "node removed");
    Ok(status(shared))
}

pub fn issue_node_certificate(
    shared: &Shared,
    request: pb::IssueNodeCertificateRequest,
) -> Result<pb::NodeCertificate, ApiError> {
    if request.node_id == 0 {
        return Err(ProtocolError::invalid("node_id", "must be 1 or more").into());
    }
    if request.names.is_empty() || request.names.len() > 16 {
        return Err(ProtocolError::invalid("names", "give 1 to 16 addresses or DNS names").into());
    }
    let cert = shared
        .ca
        .issue_coordinator(request.node_id, request.names)
        .map_err(|e| ApiError::Protocol(ProtocolError::invalid("names", e.to_string())))?;
    Ok(pb::NodeCertificate {
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
        ca_pem: shared.ca.ca_pem().to_string(),
        cluster_id: shared.config.cluster_id.clone(),
    })
}
