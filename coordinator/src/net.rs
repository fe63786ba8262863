//! How a coordinator node reaches the network and its hosts, in one value handed to
//! `node::run_with_io`: TCP, SSH and the OS clock and entropy in production; turmoil's simulated
//! TCP, a simulated sshd, simulated time and a seed in the simulation (sim/, DESIGN §7-8).
//!
//! Everything that dials out goes through [`Net::connect`] (peer Raft channels, the probe reports
//! to the leader, joining a cluster) or [`Net::reach`] (the reachability check before a node is
//! added); the servers take their connections from the incoming streams of `node::NodeIo`.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use tonic::transport::{Channel, Endpoint};

use crate::clock::Clock;
use crate::probe::Prober;
use crate::raft::Connect;
use crate::secrets::Secrets;

/// Checks that something listens at an address (a TCP connect, then closed).
pub type Reach = Arc<dyn Fn(SocketAddr) -> BoxFuture<'static, std::io::Result<()>> + Send + Sync>;

/// The node's ways out.
#[derive(Clone)]
pub struct Net {
    /// Opens a (lazy) gRPC channel to an endpoint; TLS is configured on the endpoint.
    pub connect: Connect,
    /// The reachability check of `AddNode`.
    pub reach: Reach,
    /// Probes hosts and restarts silent agents; `None`: SSH with the node's probe key.
    pub probers: Option<Probers>,
    /// The node's clock.
    pub clock: Clock,
    /// Seed of the node's passwords, tokens and names; `None`: the OS's entropy.
    pub secrets_seed: Option<u64>,
    /// Told (term, leader this node knows of) on every change of its Raft metrics (the
    /// simulation checks "at most one leader per term" with it); `None` in production.
    pub raft_observer: Option<RaftObserver>,
}

/// See [`Net::raft_observer`].
pub type RaftObserver = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

/// The short-deadline prober (probes) and the long-deadline one (agent restarts).
#[derive(Clone)]
pub struct Probers {
    pub probe: Arc<dyn Prober>,
    pub restart: Arc<dyn Prober>,
}

impl Net {
    /// Real TCP, SSH, the OS clock and entropy.
    pub fn tcp() -> Net {
        Net {
            connect: Arc::new(|endpoint: &Endpoint| -> Channel { endpoint.connect_lazy() }),
            reach: Arc::new(|address| {
                Box::pin(async move { tokio::net::TcpStream::connect(address).await.map(drop) })
            }),
            probers: None,
            clock: Clock::new(),
            secrets_seed: None,
            raft_observer: None,
        }
    }

    pub(crate) fn secrets(&self) -> Secrets {
        match self.secrets_seed {
            Some(seed) => Secrets::from_seed(seed),
            None => Secrets::from_os(),
        }
    }
}
