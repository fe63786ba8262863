//! How a node comes up, in two phases around starting its peer Raft service:
//!
//! ```text
//!   establish():  restart   → node certificate from <data_dir>/node.pem (or reissued from the CA)
//!                 join      → certificate from the join target (IssueNodeCertificate)
//!                 bootstrap → initialize a one-node Raft, InitCluster (new CA), issue own certificate
//!   ── serve Raft with that certificate ──
//!   complete():   join      → AddNode at the leader, then wait for the replicated cluster state
//!                 otherwise → the cluster state (already local, or arriving by replication)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::bootstrap;
use crate::ca::{ClusterCa, IssuedCert};
use crate::clock::Clock;
use crate::config::Config;
use crate::join::JoinClient;
use crate::raft::{self, Raft, StateHandle};
use crate::secrets::Secrets;
use crate::state::ClusterInfo;

/// How long a node waits for the cluster state to reach it by replication.
pub const CLUSTER_STATE_WAIT_MAX: Duration = Duration::from_secs(120);

/// This node's certificate and the CA that signed it.
pub struct NodeIdentity {
    pub cert: IssuedCert,
    pub ca_pem: String,
    /// Set when this start joins a cluster: the client and the URL to ask for membership.
    join: Option<(JoinClient, String)>,
}

fn cert_paths(config: &Config) -> (PathBuf, PathBuf) {
    (
        config.data_dir.join("node.pem"),
        config.data_dir.join("node.key"),
    )
}

fn certificate_names(config: &Config) -> Vec<String> {
    let mut names = config.tls_names.clone();
    names.extend([
        config.api_addr().ip().to_string(),
        config.raft_addr().ip().to_string(),
        "localhost".into(),
    ]);
    names
}

fn save_identity(config: &Config, cert: &IssuedCert, ca_pem: &str) -> anyhow::Result<()> {
    let (cert_path, key_path) = cert_paths(config);
    std::fs::write(&cert_path, &cert.cert_pem)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    bootstrap::write_private_file(&key_path, &cert.key_pem)?;
    bootstrap::write_ca_bundle(&config.ca_bundle_path(), ca_pem)
}

pub async fn establish(
    config: &Config,
    raft: &Raft,
    state: &StateHandle,
    secrets: &Secrets,
    clock: &Clock,
    net: &crate::net::Net,
) -> anyhow::Result<NodeIdentity> {
    let (cert_path, key_path) = cert_paths(config);
    if raft.is_initialized().await? {
        if let (Ok(cert_pem), Ok(key_pem), Ok(ca_pem)) = (
            std::fs::read_to_string(&cert_path),
            std::fs::read_to_string(&key_path),
            std::fs::read_to_string(config.ca_bundle_path()),
        ) {
            return Ok(NodeIdentity {
                cert: IssuedCert { cert_pem, key_pem },
                ca_pem,
                join: None,
            });
        }
        let info = state.read(|s| s.cluster.clone()).with_context(|| {
            format!(
                "this node's certificate ({}) is missing and its state holds no CA yet; \
                 wipe {} and join the cluster again",
                cert_path.display(),
                config.data_dir.display()
            )
        })?;
        return issue_own(config, &info);
    }
    if let Some(url) = &config.join {
        let token_path = config.admin_token_path();
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| {
                format!(
                    "joining needs the cluster's admin token in {}",
                    token_path.display()
                )
            })?
            .trim()
            .to_string();
        let ca_file = config
            .join_ca_file
            .clone()
            .unwrap_or_else(|| config.ca_bundle_path());
        let client = JoinClient::new(&ca_file, token, net.connect.clone())?;
        tracing::info!(join = %url, "joining an existing cluster");
        let issued = client.node_certificate(url, config).await?;
        let cert = IssuedCert {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        };
        save_identity(config, &cert, &issued.ca_pem)?;
        return Ok(NodeIdentity {
            cert,
            ca_pem: issued.ca_pem,
            join: Some((client, url.clone())),
        });
    }
    tracing::info!(node = config.node_id, "bootstrapping a new cluster");
    raft::initialize_single(raft, config.node_id, &config.raft_addr().to_string()).await?;
    crate::node::wait_for_leader(raft).await?;
    let info = bootstrap::ensure_cluster(raft, state, config, secrets, clock.now_ms()).await?;
    issue_own(config, &info)
}

fn issue_own(config: &Config, info: &ClusterInfo) -> anyhow::Result<NodeIdentity> {
    let ca = ClusterCa::load(&info.ca_cert_pem, &info.ca_key_pem)
        .context("the stored cluster CA is unusable")?;
    let cert = ca.issue_coordinator(config.node_id, certificate_names(config))?;
    save_identity(config, &cert, ca.ca_pem())?;
    Ok(NodeIdentity {
        cert,
        ca_pem: ca.ca_pem().to_string(),
        join: None,
    })
}

pub async fn complete(
    config: &Config,
    identity: &NodeIdentity,
    state: &StateHandle,
) -> anyhow::Result<ClusterInfo> {
    if let Some((client, url)) = &identity.join {
        let status = client.add_self(url, config).await?;
        tracing::info!(
            leader = status.leader_id,
            members = status.nodes.len(),
            "added to the cluster"
        );
    }
    bootstrap::wait_for_cluster(state, config, CLUSTER_STATE_WAIT_MAX).await
}
