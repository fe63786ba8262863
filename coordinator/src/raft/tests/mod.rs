//! Tests of the Raft glue: the storage conformance suite and on-disk failure cases
//! (`store_test`), crash and restart of a single node (`restart_test`), and a three-node cluster
//! over real localhost gRPC, including a snapshot sent to a late joiner (`cluster_test`).

mod cluster_test;
mod restart_test;
mod store_test;

use std::time::Duration;

use crate::state::{Command, Host};

/// Generous bound for anything a test waits for: elections take 1-2 s with the production config.
pub(super) const WAIT: Duration = Duration::from_secs(20);

/// A distinct, valid command: register host `n`.
pub(super) fn register_host(n: u32) -> Command {
    Command::RegisterHost(Host {
        id: format!("host-{n}"),
        zone: "zone-a".to_string(),
        address: std::net::IpAddr::from([10, 0, 0, 1]),
        hostname: format!("host-{n}.example"),
        memory_total_bytes: 1 << 30,
        engines: Vec::new(),
        registered_at_ms: i64::from(n),
        ssh_host_key: None,
    })
}

/// A multi-threaded runtime owned by the test, so dropping it kills every Raft task mid-flight
/// (the closest in-process approximation of `kill -9`).
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a test runtime builds")
}
