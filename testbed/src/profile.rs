//! The `kvs` CLI profile (docs/interfaces.md): endpoint, token and CA file, so `kvs` works against
//! a testbed cluster from another terminal.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::Serialize;

/// The profile file's content.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub endpoint: String,
    pub token: String,
    pub ca_file: PathBuf,
}

/// Where `kvs` looks by default: `$KVS_PROFILE`, else `$XDG_CONFIG_HOME/kvs/config.toml`, else
/// `~/.config/kvs/config.toml`.
pub fn default_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("KVS_PROFILE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(config).join("kvs").join("config.toml"));
    }
    let home = std::env::var_os("HOME")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| anyhow!("$HOME is not set"))?;
    Ok(PathBuf::from(home)
        .join(".config")
        .join("kvs")
        .join("config.toml"))
}

/// Writes the profile (mode 0600: it holds the admin token).
pub fn write(path: &Path, profile: &Profile) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    crate::config::write_toml(path, profile)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))
}
