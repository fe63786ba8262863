//! Reaching the coordinator leader from the test: one lazily connecting admin channel per
//! coordinator node, and the leader found through `ClusterStatus` on any node that answers (the
//! way the CLI follows the leader, see `ctl/src/commands/mod.rs`).
//!
//! ```text
//!   leader_client() ── one node: that node, no lookup
//!                   └─ several:  ClusterStatus(cached leader) says "I lead" ──► it
//!                                else ClusterStatus(every node, at once, bounded)
//!                                  ─► the node named by the answer with the highest term, if that
//!                                     node itself answers "I lead" in that term ──► cached, it
//! ```
//!
//! Every status call is bounded by [`STATUS_TIMEOUT`] (a cut-off node never answers), and the
//! lookup by [`LEADER_WAIT`] (an election takes 1-2 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use kvs_proto::pb;
use tonic::transport::Channel;

use crate::admin::{self, AdminClient};
use crate::wait::{Probe, wait_until};

/// Bound on one ClusterStatus call while looking for the leader.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on finding a leader (an election, a restarted node).
pub const LEADER_WAIT: Duration = Duration::from_secs(20);

/// The admin channels of every coordinator node and the last leader seen. Cheap to clone.
#[derive(Clone)]
pub struct Coordinators {
    /// Channel i reaches node i (node id `ids[i]`).
    channels: Arc<Vec<Channel>>,
    ids: Arc<Vec<u64>>,
    token: String,
    /// Index of the last node found leading.
    cached: Arc<AtomicUsize>,
}

impl Coordinators {
    pub fn new(channels: Vec<Channel>, ids: Vec<u64>, token: String) -> Coordinators {
        Coordinators {
            channels: Arc::new(channels),
            ids: Arc::new(ids),
            token,
            cached: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// An admin client for node `index` with any token (None: no authorization header).
    pub fn client_with_token(&self, index: usize, token: Option<&str>) -> Result<AdminClient> {
        let channel = self
            .channels
            .get(index)
            .with_context(|| format!("no coordinator node {index}"))?;
        admin::client(channel.clone(), token)
    }

    /// An admin client for node `index` with the admin token.
    pub fn client(&self, index: usize) -> Result<AdminClient> {
        self.client_with_token(index, Some(&self.token))
    }

    /// The index of the node last found leading (0 until a lookup says otherwise).
    pub fn cached(&self) -> usize {
        self.cached.load(Ordering::Relaxed)
    }

    /// The index of node id `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.ids.iter().position(|&i| i == id)
    }

    /// ClusterStatus as node `index` sees it, bounded by [`STATUS_TIMEOUT`].
    pub async fn status(&self, index: usize) -> Result<pb::ClusterStatusResponse> {
        let mut client = self.client(index)?;
        let call = client.cluster_status(pb::ClusterStatusRequest {});
        match tokio::time::timeout(STATUS_TIMEOUT, call).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(anyhow!("node {index}: ClusterStatus: {status}")),
            Err(_) => Err(anyhow!("node {index}: ClusterStatus timed out")),
        }
    }

    /// One lookup round: the leading node's index, or why none was found.
    pub async fn find_leader(&self) -> std::result::Result<usize, String> {
        let cached = self.cached();
        if let Ok(status) = self.status(cached).await
            && status.leader_id != 0
            && Some(status.leader_id) == self.ids.get(cached).copied()
            && status.leader_id == status.answered_by
        {
            return Ok(cached);
        }
        let mut asks = tokio::task::JoinSet::new();
        for index in 0..self.len() {
            let this = self.clone();
            asks.spawn(async move { (index, this.status(index).await) });
        }
        let mut answers = Vec::new();
        let mut errors = Vec::new();
        while let Some(joined) = asks.join_next().await {
            match joined {
                Ok((index, Ok(status))) => answers.push((index, status)),
                Ok((_, Err(err))) => errors.push(format!("{err:#}")),
                Err(err) => errors.push(format!("status task: {err}")),
            }
        }
        let best = answers
            .iter()
            .filter(|(_, s)| s.leader_id != 0)
            .max_by_key(|(_, s)| s.term);
        let Some((_, named)) = best else {
            return Err(format!("no node names a leader; errors: {errors:?}"));
        };
        let claims = answers.iter().find(|(_, s)| {
            s.answered_by == named.leader_id
                && s.leader_id == named.leader_id
                && s.term >= named.term
        });
        match claims.and_then(|(_, s)| self.index_of(s.answered_by)) {
            Some(index) => {
                self.cached.store(index, Ordering::Relaxed);
                Ok(index)
            }
            None => Err(format!(
                "node {} is named leader (term {}) but does not answer as one; errors: {errors:?}",
                named.leader_id, named.term
            )),
        }
    }

    /// The leading node's index, waiting for an election if needed (bounded by [`LEADER_WAIT`]).
    pub async fn leader(&self) -> Result<usize> {
        if self.len() == 1 {
            return Ok(0);
        }
        wait_until("a coordinator leader", LEADER_WAIT, || async {
            match self.find_leader().await {
                Ok(index) => Probe::Ready(index),
                Err(why) => Probe::Pending(why),
            }
        })
        .await
    }

    /// An admin client for the current leader (one node: that node, without a lookup).
    pub async fn leader_client(&self) -> Result<AdminClient> {
        let index = self.leader().await?;
        self.client(index)
    }
}
