//! The client side of the peer-only Raft gRPC service: how this node's openraft reaches the others.
//!
//! ```text
//!   openraft ──new_client(target, BasicNode{addr})──► NetworkFactory (one cached Channel per peer)
//!            ──append_entries / vote / install_snapshot──► PeerNetwork
//!                 serde_json(request) ─► RaftPayload ─► tonic (deadline, size limit, TLS) ─► peer
//!                 peer replies RaftPayload = serde_json(Result<response, RaftError>)
//! ```
//!
//! Every call is bounded: a connect timeout, a per-RPC deadline derived from openraft's TTL, and an
//! explicit message size limit. Transport failures become openraft `Unreachable` (back off) or
//! `NetworkError` (retry now); an error returned by the peer's Raft becomes a `RemoteError`.
//! The channel constructor is a seam ([`NetworkFactory::with_connect`]) so the simulation can hand
//! in turmoil's connector (`Endpoint::connect_with_connector_lazy`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kvs_proto::pb::RaftPayload;
use kvs_proto::pb::raft_client::RaftClient;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::types::{NodeId, TypeConfig};

/// Largest Raft message in either direction. A snapshot chunk (see `SNAPSHOT_CHUNK_BYTES_MAX`) is a
/// JSON array of numbers, up to 4 bytes per data byte, plus a small envelope; append batches
/// (`max_payload_entries` commands of a few KiB) are far smaller.
pub const MESSAGE_SIZE_MAX: usize = 16 * 1024 * 1024;

/// Snapshot chunk size given to openraft (`Config::snapshot_max_chunk_size`).
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1024 * 1024;
const _: () = assert!(SNAPSHOT_CHUNK_BYTES_MAX * 4 + 64 * 1024 <= MESSAGE_SIZE_MAX);

/// TCP + TLS handshake budget. Peers are in the same region (a few ms RTT); a second means the
/// peer is down or partitioned, and openraft will back off and retry.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Upper bound of the deadline of an append-entries or vote RPC. openraft passes a shorter TTL
/// (the heartbeat interval for appends, the minimum election timeout for votes); this caps it.
pub const RPC_TIMEOUT_MAX: Duration = Duration::from_secs(1);

/// Upper bound of the deadline of one snapshot chunk (openraft passes `install_snapshot_timeout`).
pub const SNAPSHOT_RPC_TIMEOUT_MAX: Duration = Duration::from_secs(30);

/// HTTP/2 keep-alive, so a half-open connection to a dead peer is noticed between heartbeats.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Turns a configured endpoint into a channel. Production: `Endpoint::connect_lazy`.
pub type Connect = Arc<dyn Fn(&Endpoint) -> Channel + Send + Sync>;

/// The client TLS config of the peer channel, settable after the network is built: a node learns
/// its certificate from the replicated state (or from the node it joins) after Raft has opened.
/// `None` means plaintext `http://` (tests and the simulation).
pub type PeerTls = Arc<std::sync::RwLock<Option<ClientTlsConfig>>>;

/// Creates one [`PeerNetwork`] per peer for openraft, reusing one channel per peer.
pub struct NetworkFactory {
    /// TLS for the peer channel (mutual TLS with the cluster CA).
    tls: PeerTls,
    /// How a channel is opened (the seam for the simulation).
    connect: Connect,
    /// Open channels by peer id, with the address they were opened for and whether with TLS.
    channels: BTreeMap<NodeId, (String, bool, Channel)>,
}

impl NetworkFactory {
    /// A factory for real networks; `tls` is the client TLS config of the peer channel.
    pub fn new(tls: Option<ClientTlsConfig>) -> NetworkFactory {
        Self::with_tls_cell(Arc::new(std::sync::RwLock::new(tls)))
    }

    /// A factory whose TLS config the caller may set later through `tls`.
    pub fn with_tls_cell(tls: PeerTls) -> NetworkFactory {
        NetworkFactory {
            tls,
            connect: Arc::new(|endpoint: &Endpoint| endpoint.connect_lazy()),
            channels: BTreeMap::new(),
        }
    }

    /// Replaces how channels are opened (the simulation passes turmoil's connector here).
    pub fn with_connect(mut self, connect: Connect) -> NetworkFactory {
        self.connect = connect;
        self
    }

    fn channel(&mut self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let tls = self
            .tls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some((cached_addr, with_tls, channel)) = self.channels.get(&target)
            && cached_addr == addr
            && *with_tls == tls.is_some()
        {
            return Ok(channel.clone());
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("{scheme}://{addr}")
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| format!("bad address {uri:?} of node {target}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(SNAPSHOT_RPC_TIMEOUT_MAX)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
        if let Some(tls) = &tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| format!("TLS config for node {target}: {e}"))?;
        }
        let channel = (self.connect)(&endpoint);
        self.channels
            .insert(target, (addr.to_string(), tls.is_some(), channel.clone()));
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        let client = self.channel(target, &node.addr).map(|channel| {
            RaftClient::new(channel)
                .max_decoding_message_size(MESSAGE_SIZE_MAX)
                .max_encoding_message_size(MESSAGE_SIZE_MAX)
        });
        if let Err(reason) = &client {
            tracing::warn!(target, %reason, "cannot build a channel to a Raft peer");
        }
        PeerNetwork {
            target,
            target_node: node.clone(),
            client: client.map_err(Arc::from),
        }
    }
}

/// The connection to one peer, as openraft sees it.
pub struct PeerNetwork {
    target: NodeId,
    target_node: BasicNode,
    /// The client, or why none could be built (bad address or TLS config): every call is then
    /// `Unreachable`.
    client: Result<RaftClient<Channel>, Arc<str>>,
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerNetwork {
    async fn call<Resp, E>(
        &self,
        rpc: Rpc,
        request: &impl Serialize,
        deadline: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error,
        RaftError<NodeId, E>: DeserializeOwned,
    {
        let mut client = match &self.client {
            Ok(client) => client.clone(),
            Err(reason) => {
                return Err(RPCError::Unreachable(Unreachable::from(AnyError::error(
                    reason,
                ))));
            }
        };
        let data =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(deadline);
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        };
        let payload = reply
            .map_err(|status| status_to_rpc_error(rpc, &status))?
            .into_inner();
        let reply: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&payload.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        reply.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.target_node.clone(),
                e,
            ))
        })
    }
}

/// `Unavailable` is what tonic reports when it cannot connect: back off. Anything else (deadline,
/// reset stream, a server-side decoding error) is retried at once by openraft.
fn status_to_rpc_error<E: std::error::Error>(
    rpc: Rpc,
    status: &tonic::Status,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    tracing::debug!(?rpc, code = ?status.code(), message = status.message(), "Raft RPC failed");
    match status.code() {
        tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(status)),
        _ => RPCError::Network(NetworkError::new(status)),
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(
            Rpc::AppendEntries,
            &request,
            option.hard_ttl().min(RPC_TIMEOUT_MAX),
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(
            Rpc::InstallSnapshot,
            &request,
            option.hard_ttl().min(SNAPSHOT_RPC_TIMEOUT_MAX),
        )
        .await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &request, option.hard_ttl().min(RPC_TIMEOUT_MAX))
            .await
    }
}
