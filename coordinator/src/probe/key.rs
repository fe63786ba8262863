//! The coordinator's probe key: an ed25519 SSH key in OpenSSH format, generated on first start.
//!
//! ```text
//!   <path>      private key, mode 0600, unencrypted (the coordinator starts unattended)
//!   <path>.pub  public key line, for deploy to put in each host's authorized_keys
//! ```
//!
//! The private key is written to `<path>.tmp` and renamed into place, so a crash mid-write never
//! leaves a truncated key behind: the private key's presence means "generated". A missing `.pub`
//! is rewritten from the private key on every load.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::{self, Algorithm, LineEnding, PrivateKey};

/// The comment written into a generated key (shows up in the host's authorized_keys).
const PROBE_KEY_COMMENT: &str = "kvs-coordinator-probe";

/// Why the probe key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum ProbeKeyError {
    #[error("probe key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("probe key {path} is not a readable OpenSSH private key: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ssh_key::Error,
    },
    #[error("probe key {path} is passphrase-protected; the coordinator needs an unencrypted key")]
    Encrypted { path: PathBuf },
    #[error("probe key {path} is {algorithm}; the probe key must be ed25519")]
    WrongAlgorithm { path: PathBuf, algorithm: String },
    #[error("cannot encode the probe key: {0}")]
    Encode(#[source] ssh_key::Error),
}

/// Reads the ed25519 probe key at `path`, or generates one there (mode 0600, with `<path>.pub`)
/// if no file exists. Blocking file I/O: call it at startup, before serving.
pub fn load_or_create_probe_key(path: &Path) -> Result<PrivateKey, ProbeKeyError> {
    let key = match fs::read_to_string(path) {
        Ok(text) => parse_probe_key(path, &text)?,
        Err(source) if source.kind() == io::ErrorKind::NotFound => create_probe_key(path)?,
        Err(source) => return Err(io_error(path, source)),
    };
    let public_path = public_key_path(path);
    if !public_path.exists() {
        write_public_key(&public_path, &key)?;
    }
    Ok(key)
}

/// `<path>.pub`, next to the private key.
pub(crate) fn public_key_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn parse_probe_key(path: &Path, text: &str) -> Result<PrivateKey, ProbeKeyError> {
    let key = PrivateKey::from_openssh(text).map_err(|source| ProbeKeyError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if key.is_encrypted() {
        return Err(ProbeKeyError::Encrypted {
            path: path.to_owned(),
        });
    }
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(ProbeKeyError::WrongAlgorithm {
            path: path.to_owned(),
            algorithm: key.algorithm().to_string(),
        });
    }
    Ok(key)
}

fn create_probe_key(path: &Path) -> Result<PrivateKey, ProbeKeyError> {
    // Key material comes from the OS CSPRNG, not a seeded RNG: the seeded-RNG rule is for
    // decisions the simulation must replay, and a replayable private key would be a weak one.
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let keypair = Ed25519Keypair::from_seed(&seed);
    seed.fill(0);
    let key = PrivateKey::new(KeypairData::Ed25519(keypair), PROBE_KEY_COMMENT)
        .map_err(ProbeKeyError::Encode)?;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(ProbeKeyError::Encode)?;

    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    write_file(&temporary, text.as_bytes(), 0o600)?;
    write_public_key(&public_key_path(path), &key)?;
    fs::rename(&temporary, path).map_err(|source| io_error(path, source))?;
    tracing::info!(path = %path.display(), "generated a new SSH probe key");
    Ok(key)
}

fn write_public_key(path: &Path, key: &PrivateKey) -> Result<(), ProbeKeyError> {
    let line = key
        .public_key()
        .to_openssh()
        .map_err(ProbeKeyError::Encode)?;
    write_file(path, format!("{line}\n").as_bytes(), 0o644)
}

/// Writes `contents` to `path` (created with `mode`, or truncated) and syncs it to disk.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), ProbeKeyError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|source| io_error(path, source))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: io::Error) -> ProbeKeyError {
    ProbeKeyError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn probe_key_is_created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/probe_ed25519");

        let created = load_or_create_probe_key(&path).unwrap();
        assert_eq!(created.algorithm(), Algorithm::Ed25519);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "private key must be owner-only");
        let public = fs::read_to_string(public_key_path(&path)).unwrap();
        assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");

        let loaded = load_or_create_probe_key(&path).unwrap();
        assert_eq!(
            loaded.public_key().key_data(),
            created.public_key().key_data()
        );

        fs::remove_file(public_key_path(&path)).unwrap();
        load_or_create_probe_key(&path).unwrap();
        assert_eq!(fs::read_to_string(public_key_path(&path)).unwrap(), public);
    }

    #[test]
    fn garbage_probe_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe");
        fs::write(&path, "not a key").unwrap();
        let err = load_or_create_probe_key(&path).unwrap_err();
        assert!(matches!(err, ProbeKeyError::Parse { .. }), "{err}");
    }
}
