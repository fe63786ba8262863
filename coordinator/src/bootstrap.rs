//! First-start duties of a node: make sure the cluster exists in the replicated state (id and
//! CA), and that the files operators and agents need are on disk: the CA bundle, the admin token
//! and the join token (created random on first start, read afterwards).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

use crate::ca;
use crate::config::Config;
use crate::secrets::Secrets;
use crate::state::{ClusterInfo, Command};

/// Reads a token file, or creates it (mode 0600) with a fresh random token.
pub fn load_or_create_token(path: &Path, secrets: &Secrets) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            anyhow::ensure!(
                token.len() >= 16,
                "token file {} holds fewer than 16 characters",
                path.display()
            );
            anyhow::ensure!(
                token.chars().all(|c| c.is_ascii_graphic()),
                "token file {} holds characters other than printable ASCII",
                path.display()
            );
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = secrets.password();
            write_private(path, &token)
                .with_context(|| format!("cannot write token file {}", path.display()))?;
            tracing::info!(path = %path.display(), "created token file");
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read token file {}", path.display())),
    }
}

/// Creates a file readable only by its owner (fails if it exists).
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Commits `InitCluster` for a brand-new cluster (CA created here, tokens from the files or
/// fresh), or checks that the existing cluster is the configured one. Returns the cluster info.
pub async fn ensure_cluster(
    raft: &crate::raft::Raft,
    state: &crate::raft::StateHandle,
    config: &Config,
    secrets: &Secrets,
    now_ms: i64,
) -> anyhow::Result<ClusterInfo> {
    if let Some(info) = state.read(|s| s.cluster.clone()) {
        return check_cluster_id(info, &config.cluster_id);
    }
    let ca = ca::create_ca(&config.cluster_id)?;
    let info = ClusterInfo {
        cluster_id: config.cluster_id.clone(),
        ca_cert_pem: ca.cert_pem,
        ca_key_pem: ca.key_pem,
        created_at_ms: now_ms,
        admin_token: load_or_create_token(&config.admin_token_path(), secrets)?,
        join_token: load_or_create_token(&config.join_token_path(), secrets)?,
    };
    if let Err(e) = raft.client_write(Command::InitCluster(info)).await {
        anyhow::bail!("cannot commit the new cluster: {e}");
    }
    let info = state
        .read(|s| s.cluster.clone())
        .context("cluster missing right after InitCluster")?;
    tracing::info!(cluster = %info.cluster_id, "cluster initialized with a new CA");
    Ok(info)
}

/// Waits (bounded) until replication brought the cluster info to this node (a joining node).
pub async fn wait_for_cluster(
    state: &crate::raft::StateHandle,
    config: &Config,
    wait_max: std::time::Duration,
) -> anyhow::Result<ClusterInfo> {
    let mut changes = state.subscribe();
    let found = tokio::time::timeout(wait_max, async {
        loop {
            if let Some(info) = state.read(|s| s.cluster.clone()) {
                return Some(info);
            }
            if changes.changed().await.is_err() {
                return None;
            }
        }
    })
    .await;
    match found {
        Ok(Some(info)) => check_cluster_id(info, &config.cluster_id),
        _ => anyhow::bail!("the cluster state did not reach this node within {wait_max:?}"),
    }
}

fn check_cluster_id(info: ClusterInfo, cluster_id: &str) -> anyhow::Result<ClusterInfo> {
    anyhow::ensure!(
        info.cluster_id == cluster_id,
        "this data dir belongs to cluster {:?}, but the config says {:?}",
        info.cluster_id,
        cluster_id
    );
    Ok(info)
}

/// Writes a token file the operator expects next to the data (only when it is missing).
pub fn write_token_if_missing(path: &Path, token: &str) -> anyhow::Result<()> {
    if path.exists() || token.is_empty() {
        return Ok(());
    }
    write_private(path, token)
        .with_context(|| format!("cannot write token file {}", path.display()))
}

/// Writes a private file (0600), replacing an old one.
pub fn write_private_file(path: &Path, content: &str) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
    }
    write_private(path, content).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the CA bundle for operators and agents (replaced atomically).
pub fn write_ca_bundle(path: &Path, pem: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("pem.tmp");
    std::fs::write(&tmp, pem).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
