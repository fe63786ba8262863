//! The engine catalog: which engine binaries this host offers and under which label.
//!
//! Binaries come from the config (`[engines]`) or else from `PATH`. Each is asked for its version
//! (`BINARY --version` prints e.g. `Valkey server v=9.0.1 sha=…`); the kind is taken from that
//! output, not the file name, so a `redis-server` that is really Valkey is labelled as Valkey.
//! Labels are `<kind>-<major>` (`valkey-9`, `redis-7`), the names plans and instances use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kvs_proto::model::Engine;
use tokio::process::Command;

use crate::config::EnginesConfig;

/// Longest a `--version` call may take before the binary is skipped.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// One usable engine binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub engine: Engine,
    pub path: PathBuf,
}

/// The engines of this host, first match per label wins (configured paths before `PATH`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
}

impl Catalog {
    /// Builds a catalog from known entries (tests, and callers that probed binaries themselves).
    pub fn from_entries(entries: Vec<CatalogEntry>) -> Self {
        let mut catalog = Catalog::default();
        for entry in entries {
            catalog.add(entry);
        }
        catalog
    }

    /// Finds and probes the engine binaries. Problems are logged, never fatal: a host without
    /// engines still registers (and reports every instance as failed).
    pub async fn discover(config: &EnginesConfig) -> Self {
        let mut candidates: Vec<PathBuf> = Vec::new();
        candidates.extend(config.valkey_server.iter().cloned());
        candidates.extend(config.redis_server.iter().cloned());
        for name in ["valkey-server", "redis-server"] {
            candidates.extend(search_path(name));
        }
        let mut catalog = Catalog::default();
        let mut seen = std::collections::BTreeSet::new();
        for path in candidates {
            // /bin and /usr/bin are often the same directory: probe each binary once.
            if !seen.insert(std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone())) {
                continue;
            }
            match probe(&path).await {
                Ok(entry) => {
                    tracing::info!(label = %entry.engine.label, version = %entry.engine.version, path = %path.display(), "engine found");
                    catalog.add(entry);
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "engine binary skipped")
                }
            }
        }
        catalog
    }

    fn add(&mut self, entry: CatalogEntry) {
        if !self
            .entries
            .iter()
            .any(|e| e.engine.label == entry.engine.label)
        {
            self.entries.push(entry);
        }
    }

    /// The binary for a catalog label.
    pub fn resolve(&self, label: &str) -> Option<&CatalogEntry> {
        self.entries.iter().find(|e| e.engine.label == label)
    }

    /// Every engine offered, for registration and reports.
    pub fn engines(&self) -> Vec<Engine> {
        self.entries.iter().map(|e| e.engine.clone()).collect()
    }
}

/// Executable files named `name` in `PATH`, in order.
fn search_path(name: &str) -> Vec<PathBuf> {
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .filter(|p| is_executable(p))
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `path --version` and parses the answer.
pub async fn probe(path: &Path) -> Result<CatalogEntry, String> {
    let mut command = Command::new(path);
    command.arg("--version").kill_on_drop(true);
    let output = tokio::time::timeout(VERSION_TIMEOUT, command.output())
        .await
        .map_err(|_| {
            format!(
                "`{} --version` took longer than {VERSION_TIMEOUT:?}",
                path.display()
            )
        })?
        .map_err(|e| format!("cannot run `{} --version`: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (kind, version) = parse_version(&text)
        .ok_or_else(|| format!("unrecognised `--version` output: {:?}", text.trim()))?;
    Ok(CatalogEntry {
        engine: Engine {
            label: label(kind, &version),
            kind: kind.to_string(),
            version,
        },
        path: path.to_path_buf(),
    })
}

/// Parses `Valkey server v=9.0.1 sha=…` / `Redis server v=7.0.15 …` into (kind, version).
pub fn parse_version(output: &str) -> Option<(&'static str, String)> {
    let line = output.lines().find(|l| l.contains(" v="))?;
    let lower = line.to_ascii_lowercase();
    let kind = if lower.starts_with("valkey") {
        "valkey"
    } else if lower.starts_with("redis") {
        "redis"
    } else {
        return None;
    };
    let version = line.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    let mut parts = version.split('.');
    let numeric = parts
        .next()
        .is_some_and(|major| !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()));
    numeric.then(|| (kind, version.to_string()))
}

/// The catalog label of a version: `<kind>-<major>`.
pub fn label(kind: &str, version: &str) -> String {
    let major = version.split('.').next().unwrap_or(version);
    format!("{kind}-{major}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        let table = [
            (
                "Valkey server v=9.0.1 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1",
                Some(("valkey", "9.0.1")),
            ),
            (
                "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d",
                Some(("redis", "7.0.15")),
            ),
            (
                "Valkey server v=9.1.2 sha=00000000:1 malloc=libc bits=64 build=1536df31c0395150\n",
                Some(("valkey", "9.1.2")),
            ),
            (
                "Redis server v=255.255.255 sha=…",
                Some(("redis", "255.255.255")),
            ),
            ("KeyDB server v=6.3.4", None),
            ("Valkey server v=", None),
            ("garbage", None),
            ("", None),
        ];
        for (output, expected) in table {
            let parsed = parse_version(output);
            assert_eq!(
                parsed.as_ref().map(|(k, v)| (*k, v.as_str())),
                expected,
                "{output:?}"
            );
        }
    }

    #[test]
    fn labels_use_the_major_version() {
        assert_eq!(label("valkey", "9.0.1"), "valkey-9");
        assert_eq!(label("redis", "7.0.15"), "redis-7");
    }

    #[test]
    fn first_binary_per_label_wins() {
        let entry = |path: &str, version: &str| CatalogEntry {
            engine: Engine {
                kind: "redis".into(),
                version: version.into(),
                label: label("redis", version),
            },
            path: path.into(),
        };
        let catalog = Catalog::from_entries(vec![
            entry("/opt/redis-server", "7.2.0"),
            entry("/usr/bin/redis-server", "7.0.15"),
        ]);
        assert_eq!(catalog.engines().len(), 1);
        assert_eq!(
            catalog.resolve("redis-7").map(|e| e.path.as_path()),
            Some(Path::new("/opt/redis-server"))
        );
        assert!(catalog.resolve("valkey-9").is_none());
    }

    #[tokio::test]
    async fn probes_installed_redis() {
        let path = Path::new("/usr/bin/redis-server");
        if !path.exists() {
            return;
        }
        let entry = probe(path).await.expect("redis-server --version");
        assert_eq!(entry.engine.kind, "redis");
        assert!(entry.engine.label.starts_with("redis-"));
    }
}
