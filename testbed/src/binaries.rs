//! Finding the binaries a testbed cluster runs: the KVS binaries built by cargo and the engines
//! installed on the machine.
//!
//! KVS binaries are searched, in order, in `$KVS_BIN_DIR`, next to the current executable, in its
//! parent (integration tests run from `target/<profile>/deps/`), and in this workspace's
//! `target/debug`. Engines are searched in `$PATH` (what `scripts/install-engines` installs).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Environment variable naming the directory that holds kvs-coordinator, kvs-agent and kvs.
pub const BIN_DIR_ENV: &str = "KVS_BIN_DIR";

/// The binaries one cluster needs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `kvs-coordinator`.
    pub coordinator: PathBuf,
    /// `kvs-agent`.
    pub agent: PathBuf,
    /// `kvs` (the CLI); optional for the cluster itself, used by CLI checks when present.
    pub cli: Option<PathBuf>,
    /// `kvs-testbed` itself, for the tests of `kvs-testbed dev`.
    pub testbed: Option<PathBuf>,
    /// `valkey-server` from `$PATH`, handed to the agents' engine catalog.
    pub valkey_server: Option<PathBuf>,
    /// `redis-server` from `$PATH`, handed to the agents' engine catalog.
    pub redis_server: Option<PathBuf>,
}

impl Binaries {
    /// Locates every binary, or explains which is missing and how to build it.
    pub fn locate() -> Result<Binaries> {
        let dirs = search_dirs();
        let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p));
        let (Some(coordinator), Some(agent)) = (find("kvs-coordinator"), find("kvs-agent")) else {
            let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            bail!(
                "kvs-coordinator and kvs-agent must be built first: run `cargo build --workspace` \
                 (or `make test`), or point ${BIN_DIR_ENV} at them; searched: {}",
                searched.join(", ")
            );
        };
        let valkey_server = find_in_path("valkey-server");
        let redis_server = find_in_path("redis-server");
        if valkey_server.is_none() && redis_server.is_none() {
            bail!(
                "no engine found in $PATH (valkey-server or redis-server): run scripts/install-engines"
            );
        }
        Ok(Binaries {
            coordinator,
            agent,
            cli: find("kvs"),
            testbed: find("kvs-testbed"),
            valkey_server,
            redis_server,
        })
    }
}

/// Where KVS binaries may live, most specific first.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.to_path_buf());
        if dir.file_name().is_some_and(|n| n == "deps")
            && let Some(parent) = dir.parent()
        {
            dirs.push(parent.to_path_buf());
        }
    }
    // The workspace this crate was compiled in (testbed/../target/debug).
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    dirs.push(target.join("debug"));
    dirs.dedup();
    dirs
}

/// The first executable `name` in `$PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
