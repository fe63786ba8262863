//! KVS testbed: a real cluster on one machine (kvs-coordinator, kvs-agents in zones a/b/c, real
//! engines, real TLS) for end-to-end tests, the front benchmark and the dev cluster.
//!
//! ```text
//!   tests/t*.rs ─┐                        ┌─ kvs-coordinator  127.0.k.1  (data, CA, tokens)
//!   kvs-testbed ─┴─► Cluster::start ──────┼─ kvs-agent a      127.0.k.11 ─► engines + TLS fronts
//!     dev | bench-front                   ├─ kvs-agent b      127.0.k.12
//!                                         └─ kvs-agent c      127.0.k.13
//! ```
//!
//! As root, [`NetworkMode::Netns`] makes each host a network namespace with its own sshd
//! ([`netns`], [`sshd`]) so the fault injection (`cluster/faults.rs`) can also cut hosts off the network; loopback is the default.
//!
//! Every wait is bounded ([`wait`]); every process is killed by PID when the [`Cluster`] drops
//! ([`process`]); a failed test keeps the cluster directory and prints its logs.

pub mod admin;
pub mod bench;
pub mod bench_failover;
pub mod bench_raft;
pub mod binaries;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod engine_client;
pub mod ha_testing;
pub mod minority;
pub mod netns;
pub mod process;
pub mod profile;
pub mod raft_cluster;
pub mod slot;
pub mod sshd;
pub mod testing;
pub mod wait;
pub mod workload;

pub use cluster::{Cluster, ClusterOptions, NetworkMode};

/// Installs ring as the process's rustls crypto provider (idempotent). The redis client builds its
/// rustls config from the process default.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Installs a tracing subscriber for tests (once per process; `RUST_LOG` overrides `info`).
pub fn init_test_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}
