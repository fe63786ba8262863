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

/// The tonic Raft service of one coordinator node.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    pub fn new(raft: Raft) -> RaftService {
        RaftService { raft }
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
}
