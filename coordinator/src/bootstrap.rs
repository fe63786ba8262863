//! First-start duties of a node: make sure the cluster exists in the replicated state (id and
//! CA), and that the files operators and agents need are on disk: the CA bundle, the admin token
//! and the join token (created random on first start, read afterwards).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

use crate::ca;
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

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
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

/// Makes sure the replicated state has a cluster (id + CA), committing `InitCluster` if not.
/// Returns the cluster info.
pub async fn ensure_cluster(
    raft: &crate::raft::Raft,
    state: &crate::raft::StateHandle,
    cluster_id: &str,
    now_ms: i64,
) -> anyhow::Result<ClusterInfo> {
    if let Some(info) = state.read(|s| s.cluster.clone()) {
        anyhow::ensure!(
            info.cluster_id == cluster_id,
            "this data dir belongs to cluster {:?}, but the config says {:?}",
            info.cluster_id,
            cluster_id
        );
        return Ok(info);
    }
    let ca = ca::create_ca(cluster_id)?;
    let info = ClusterInfo {
        cluster_id: cluster_id.to_string(),
        ca_cert_pem: ca.cert_pem,
        ca_key_pem: ca.key_pem,
        created_at_ms: now_ms,
    };
    match raft.client_write(Command::InitCluster(info)).await {
        Ok(_) => {}
        Err(e) => anyhow::bail!("cannot commit the new cluster: {e}"),
    }
    let info = state
        .read(|s| s.cluster.clone())
        .context("cluster missing right after InitCluster")?;
    tracing::info!(cluster = %info.cluster_id, "cluster initialized with a new CA");
    Ok(info)
}

/// Writes the CA bundle for operators and agents (replaced atomically).
pub fn write_ca_bundle(path: &Path, pem: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("pem.tmp");
    std::fs::write(&tmp, pem).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
