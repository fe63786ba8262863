//! The host's identity on disk: the host id (`host.json`) and the certificate, key and cluster CA
//! from Register (`tls/{cert.pem,key.pem,ca.pem}`), so a restarted agent keeps its id and can
//! open its mTLS session even while the coordinator refuses or cannot take a new registration.
//! Files holding the key are written 0600.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// What Register returned.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub host_id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("host_id", &self.host_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct HostFile {
    host_id: String,
}

/// Loads the stored identity; `None` if absent or incomplete (then the agent registers afresh).
pub async fn load(data_dir: &Path) -> Option<Identity> {
    let host = std::fs::read_to_string(data_dir.join("host.json")).ok()?;
    let host: HostFile = match serde_json::from_str(&host) {
        Ok(host) => host,
        Err(error) => {
            tracing::warn!(%error, "ignoring unreadable host.json");
            return None;
        }
    };
    let tls = data_dir.join("tls");
    Some(Identity {
        host_id: host.host_id,
        cert_pem: std::fs::read_to_string(tls.join("cert.pem")).ok()?,
        key_pem: std::fs::read_to_string(tls.join("key.pem")).ok()?,
        ca_pem: std::fs::read_to_string(tls.join("ca.pem")).ok()?,
    })
}

/// Only the host id, for re-registration under the same id when the certificates are gone.
pub async fn load_host_id(data_dir: &Path) -> Option<String> {
    let host = std::fs::read_to_string(data_dir.join("host.json")).ok()?;
    serde_json::from_str::<HostFile>(&host)
        .ok()
        .map(|h| h.host_id)
}

/// Writes `contents` to `path` with mode 0600, atomically (temp file + rename).
pub async fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(options.write(true).create(true).truncate(true), 0o600);
    let mut file = options.open(&tmp)?;
    std::io::Write::write_all(&mut file, contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Stores the identity.
pub async fn store(data_dir: &Path, identity: &Identity) -> std::io::Result<()> {
    let tls = data_dir.join("tls");
    std::fs::create_dir_all(&tls)?;
    write_private(&tls.join("cert.pem"), identity.cert_pem.as_bytes()).await?;
    write_private(&tls.join("key.pem"), identity.key_pem.as_bytes()).await?;
    write_private(&tls.join("ca.pem"), identity.ca_pem.as_bytes()).await?;
    let host = serde_json::to_vec_pretty(&HostFile {
        host_id: identity.host_id.clone(),
    })
    .map_err(std::io::Error::other)?;
    write_private(&data_dir.join("host.json"), &host).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path()).await.is_none());
        let identity = Identity {
            host_id: "h-1".into(),
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
            ca_pem: "CA".into(),
        };
        store(dir.path(), &identity).await.expect("store");
        assert_eq!(load(dir.path()).await, Some(identity));
        assert_eq!(load_host_id(dir.path()).await.as_deref(), Some("h-1"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls/key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
