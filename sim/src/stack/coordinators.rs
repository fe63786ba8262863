//! A coordinator host of the full-stack simulation: the REAL node (`node::run_with_io`: openraft
//! with the seeded `KvsRuntime`, the redb store on this run's disk, the Admin, Agent and Config
//! services and the peer Raft service over real TLS on simulated TCP, the leader's loop, probing)
//! with turmoil's connectors, the simulated sshd prober, a simulated wall clock and seeded
//! secrets. turmoil re-runs [`main`] when the host restarts after a crash: same data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvs_coordinator::clock::Clock;
use kvs_coordinator::net::{Net, Probers};
use kvs_coordinator::node::{NodeIo, run_with_io};

use super::history::{History, now};
use super::lock;
use super::probe::SimProber;

pub const API_PORT: u16 = 7400;
pub const RAFT_PORT: u16 = 7500;
/// Wall clock of the simulation's start (2026-01-01T00:00:00Z), in Unix milliseconds.
const EPOCH_MS: i64 = 1_767_225_600_000;

/// The HA settings of the simulated cluster: a short window keeps runs short; the rules between
/// them are the production ones (`HaConfig::validate`).
pub const CONFIRMATION_WINDOW: Duration = Duration::from_secs(30);
pub const FENCE_AFTER: Duration = Duration::from_secs(2);
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct CoordinatorHost {
    pub node_id: u64,
    pub name: String,
    pub data_dir: PathBuf,
    /// For nodes 2 and 3: node 1's API URL, its CA bundle and admin token files.
    pub join: Option<(String, PathBuf, PathBuf)>,
    pub seed: u64,
    pub history: Arc<Mutex<History>>,
}

impl CoordinatorHost {
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin-token")
    }

    pub fn ca_bundle_path(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }

    pub fn join_token_path(&self) -> PathBuf {
        self.data_dir.join("join-token")
    }
}

fn config(host: &CoordinatorHost, me: std::net::IpAddr) -> kvs_coordinator::config::Config {
    kvs_coordinator::config::Config {
        node_id: host.node_id,
        cluster_id: "sim".into(),
        data_dir: host.data_dir.clone(),
        listen: SocketAddr::new(me, API_PORT),
        raft_listen: SocketAddr::new(me, RAFT_PORT),
        tls_names: vec![host.name.clone()],
        admin_token_file: host.join.as_ref().map(|(_, _, token)| token.clone()),
        advertise_api: Some(SocketAddr::new(me, API_PORT)),
        advertise_raft: Some(SocketAddr::new(me, RAFT_PORT)),
        join: host.join.as_ref().map(|(url, _, _)| url.clone()),
        join_ca_file: host.join.as_ref().map(|(_, ca, _)| ca.clone()),
        probe_interval: PROBE_INTERVAL,
        probe_timeout: Duration::from_secs(1),
        confirmation_window: CONFIRMATION_WINDOW,
        fence_after: FENCE_AFTER,
        ..kvs_coordinator::config::Config::default()
    }
}

/// One life of the node, until turmoil crashes it.
pub async fn main(host: CoordinatorHost) -> turmoil::Result {
    let me = turmoil::lookup(host.name.as_str());
    let api = super::net::listen(API_PORT).await?;
    let raft = super::net::listen(RAFT_PORT).await?;
    let history = host.history.clone();
    let node_id = host.node_id;
    let observer: kvs_coordinator::net::RaftObserver =
        Arc::new(move |term: u64, leader: Option<u64>| {
            if leader == Some(node_id) {
                lock(&history).leader(node_id, term);
            }
        });
    let net = Net {
        connect: super::net::coordinator_connect(),
        reach: super::net::coordinator_reach(),
        probers: Some(Probers {
            probe: Arc::new(SimProber {
                timeout: Duration::from_secs(1),
            }),
            restart: Arc::new(SimProber {
                timeout: Duration::from_secs(5),
            }),
        }),
        clock: Clock::simulated(EPOCH_MS + i64::try_from(now().as_millis()).unwrap_or(0)),
        secrets_seed: Some(host.seed ^ (host.node_id << 48)),
        raft_observer: Some(observer),
    };
    let io = NodeIo {
        api: super::net::incoming(api),
        raft: super::net::incoming(raft),
        api_addr: SocketAddr::new(me, API_PORT),
        raft_addr: SocketAddr::new(me, RAFT_PORT),
    };
    let config = config(&host, me);
    if let Err(error) = run_with_io(config, io, net, std::future::pending()).await {
        lock(&host.history).note(&host.name, format!("node stopped: {error:#}"));
        return Err(error.into());
    }
    Ok(())
}
