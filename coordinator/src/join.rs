//! Joining an existing cluster on first start (`join = "https://HOST:PORT"` in the config): get a
//! node certificate from the cluster, start serving Raft with it, then ask the leader to add this
//! node (learner, then voter). Redirects from followers (`kvs-leader`) are followed.
//!
//! ```text
//!   empty node ──IssueNodeCertificate(admin token)──► join target
//!              ── serve Raft with that certificate
//!              ──AddNode(id, raft_addr, api_addr)──► leader (following kvs-leader redirects)
//!              ◄═ log + snapshot replicated ═ (InitCluster: CA, tokens)
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use kvs_proto::metadata::LEADER_ENDPOINT;
use kvs_proto::pb;
use kvs_proto::pb::admin_client::AdminClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::config::Config;

/// How long to keep trying to reach the join target (its nodes may be booting too).
pub const JOIN_TARGET_WAIT_MAX: Duration = Duration::from_secs(300);
/// Pause between attempts to reach the join target.
const JOIN_RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Deadline of one join RPC (AddNode waits for the learner to catch up).
const JOIN_RPC_TIMEOUT: Duration = Duration::from_secs(90);
/// Redirects followed before giving up.
const REDIRECTS_MAX: usize = 5;

/// What a joining node needs to talk to the cluster.
pub struct JoinClient {
    ca_pem: String,
    admin_token: String,
    /// How channels are opened (`Net::connect`).
    connect: crate::raft::Connect,
}

impl JoinClient {
    pub fn new(
        ca_file: &Path,
        admin_token: String,
        connect: crate::raft::Connect,
    ) -> anyhow::Result<Self> {
        let ca_pem = std::fs::read_to_string(ca_file).with_context(|| {
            format!(
                "joining needs the cluster's CA bundle in {} (copy ca.pem from a running node)",
                ca_file.display()
            )
        })?;
        anyhow::ensure!(
            ca_pem.contains("BEGIN CERTIFICATE"),
            "{} holds no PEM certificate",
            ca_file.display()
        );
        Ok(Self {
            ca_pem,
            admin_token,
            connect,
        })
    }

    fn client(&self, url: &str) -> anyhow::Result<AdminClient<Channel>> {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        let endpoint = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("bad join URL {url:?}"))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(3))
            .timeout(JOIN_RPC_TIMEOUT);
        // Lazy: a target that does not answer fails the first call (retried by the caller).
        Ok(AdminClient::new((self.connect)(&endpoint)))
    }

    fn authed<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(value) = format!("Bearer {}", self.admin_token).parse() {
            request
                .metadata_mut()
                .insert(kvs_proto::metadata::AUTHORIZATION, value);
        }
        request
    }

    /// Asks the cluster for this node's certificate, retrying until the target answers.
    pub async fn node_certificate(
        &self,
        url: &str,
        config: &Config,
    ) -> anyhow::Result<pb::NodeCertificate> {
        let mut names = config.tls_names.clone();
        names.extend([
            config.api_addr().ip().to_string(),
            config.raft_addr().ip().to_string(),
            "localhost".into(),
        ]);
        let request = pb::IssueNodeCertificateRequest {
            node_id: config.node_id,
            names,
        };
        let deadline = tokio::time::Instant::now() + JOIN_TARGET_WAIT_MAX;
        loop {
            let attempt = async {
                let mut client = self.client(url)?;
                let reply = client
                    .issue_node_certificate(self.authed(request.clone()))
                    .await?;
                anyhow::Ok(reply.into_inner())
            };
            match attempt.await {
                Ok(cert) => {
                    anyhow::ensure!(
                        cert.cluster_id == config.cluster_id,
                        "{url} belongs to cluster {:?}, but this node's config says {:?}",
                        cert.cluster_id,
                        config.cluster_id
                    );
                    return Ok(cert);
                }
                Err(e) if tokio::time::Instant::now() < deadline && retryable(&e) => {
                    tracing::info!(target_url = %url, cause = %format!("{e:#}"), "join target not ready; retrying");
                    tokio::time::sleep(JOIN_RETRY_INTERVAL).await;
                }
                Err(e) => {
                    return Err(e.context(format!("cannot get a node certificate from {url}")));
                }
            }
        }
    }

    /// Asks the leader to add this node; follows redirects.
    pub async fn add_self(
        &self,
        url: &str,
        config: &Config,
    ) -> anyhow::Result<pb::ClusterStatusResponse> {
        let request = pb::AddNodeRequest {
            node_id: config.node_id,
            raft_addr: config.raft_addr().to_string(),
            api_addr: config.api_addr().to_string(),
        };
        let mut target = url.to_string();
        for _ in 0..=REDIRECTS_MAX {
            let mut client = self.client(&target)?;
            match client.add_node(self.authed(request.clone())).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) => match status
                    .metadata()
                    .get(LEADER_ENDPOINT)
                    .and_then(|v| v.to_str().ok())
                {
                    Some(leader) if status.code() == tonic::Code::Unavailable => {
                        tracing::info!(leader, "join target is not the leader; following");
                        target = leader.to_string();
                    }
                    _ => anyhow::bail!(
                        "the cluster refused to add node {}: {}",
                        config.node_id,
                        status.message()
                    ),
                },
            }
        }
        anyhow::bail!("too many leader redirects while joining through {url}")
    }
}

fn retryable(error: &anyhow::Error) -> bool {
    match error.downcast_ref::<tonic::Status>() {
        Some(status) => kvs_proto::error::is_retryable(status.code()),
        None => true, // transport errors: the target is not up yet
    }
}
