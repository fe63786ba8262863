//! The server side of the peer-only Raft gRPC service: decodes a peer's openraft request, hands it
//! to the local `Raft`, and sends back its reply.
//!
//! ```text
//!   peer ── RaftPayload(serde_json(request)) ──► RaftService ──► Raft::append_entries / vote / install_snapshot
//!   peer ◄─ RaftPayload(serde_json(Result<response, RaftError>)) ◄──┘
//! ```
//!
//! Wire contract (mirrors `network.rs`): the reply payload carries openraft's `Result`, so a Raft
//! error (including `Fatal`, when this node is shutting down) reaches the peer's openraft as a
//! `RemoteError`. A gRPC error status means the request itself was bad (`INVALID_ARGUMENT`) or
//! the reply could not be encoded (`INTERNAL`). This service is internal: the lead mounts it on
//! the peer listener, behind mutual TLS that only admits coordinator certificates.

use kvs_proto::pb::RaftPayload;
use kvs_proto::pb::raft_server::{Raft as RaftRpc, RaftServer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::network::MESSAGE_SIZE_MAX;
use super::types::Raft;

/// Where a follower's probe report goes on this node; returns whether it was accepted (only the
/// leader accepts).
pub type ProbeSink = std::sync::Arc<dyn Fn(kvs_proto::pb::ProbeReport) -> bool + Send + Sync>;

/// The tonic Raft service of one coordinator node.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    probe_sink: Option<ProbeSink>,
}

impl RaftService {
    pub fn new(raft: Raft) -> RaftService {
        RaftService {
            raft,
            probe_sink: None,
        }
    }

    /// Accept followers' probe reports into `sink`.
    pub fn with_probe_sink(mut self, sink: ProbeSink) -> RaftService {
        self.probe_sink = Some(sink);
        self
    }

    /// The service wrapped in its tonic server, with the same message size limit as the client.
    pub fn into_server(self) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(MESSAGE_SIZE_MAX)
            .max_encoding_message_size(MESSAGE_SIZE_MAX)
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft request: {e}")))
}

fn encode<T: Serialize>(reply: &T) -> Result<Response<RaftPayload>, Status> {
    let data = serde_json::to_vec(reply)
        .map_err(|e| Status::internal(format!("unencodable Raft reply: {e}")))?;
    Ok(Response::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let reply = self.raft.append_entries(decode(request)?).await;
        encode(&reply)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let reply = self.raft.vote(decode(request)?).await;
        encode(&reply)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let reply = self.raft.install_snapshot(decode(request)?).await;
        encode(&reply)
    }

    async fn report_probes(
        &self,
        request: Request<kvs_proto::pb::ProbeReport>,
    ) -> Result<Response<kvs_proto::pb::ProbeAck>, Status> {
        let report = request.into_inner();
        if report.results.len() > PROBE_RESULTS_PER_REPORT_MAX {
            return Err(Status::invalid_argument(
                "too many probe results in one report",
            ));
        }
        let accepted = self.probe_sink.as_ref().is_some_and(|sink| sink(report));
        Ok(Response::new(kvs_proto::pb::ProbeAck { accepted }))
    }
}

/// Hosts one probe report may cover.
const PROBE_RESULTS_PER_REPORT_MAX: usize = 100_000;
