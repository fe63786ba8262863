//! Where the coordinator is and how to authenticate: the `kvs` profile and its precedence.
//!
//! ```text
//!   --endpoint / --token / --ca-file                     (flags)
//!   KVS_ENDPOINT / KVS_TOKEN / KVS_CA_FILE                (environment)
//!   profile TOML: --profile, KVS_PROFILE, $XDG_CONFIG_HOME/kvs/config.toml, ~/.config/kvs/config.toml
//!        └──────── merge: per key, the first layer that sets it wins ────────► Settings
//! ```
//!
//! [`merge`] is pure and unit-tested; [`resolve`] adds the file and environment reads.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use serde::Deserialize;

use crate::cli::ConnectFlags;

/// One layer of connection settings (the flags, the environment or the profile file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Coordinator URL; `https://` is assumed when there is no scheme.
    pub endpoint: Option<String>,
    /// Admin token.
    pub token: Option<String>,
    /// PEM file of the cluster CA; relative paths in a profile are relative to the profile.
    pub ca_file: Option<PathBuf>,
}

/// Resolved settings: everything needed to open a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Normalized URL, always with a scheme.
    pub endpoint: String,
    pub token: String,
    /// Required for `https://`, unused for `http://`.
    pub ca_file: Option<PathBuf>,
    /// Where the profile is (or would be), for hints in error messages.
    pub profile_path: Option<PathBuf>,
}

/// The profile file to read and whether the user named it (then it must exist).
pub fn profile_location(
    flags: &ConnectFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<PathBuf>, bool) {
    if let Some(path) = &flags.profile {
        return (Some(path.clone()), true);
    }
    if let Some(path) = env("KVS_PROFILE") {
        return (Some(PathBuf::from(path)), true);
    }
    let default = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".config")))
        .map(|dir| dir.join("kvs").join("config.toml"));
    (default, false)
}

/// Reads a profile file. A missing default profile is an empty layer; a named one is an error.
pub fn load_profile(path: &Path, required: bool) -> anyhow::Result<Layer> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(Layer::default());
        }
        Err(err) => bail!("cannot read profile {}: {err}", path.display()),
    };
    let mut layer: Layer = toml::from_str(&text)
        .map_err(|err| anyhow!("invalid profile {}: {}", path.display(), err.message()))?;
    if let (Some(ca), Some(dir)) = (&layer.ca_file, path.parent())
        && ca.is_relative()
    {
        layer.ca_file = Some(dir.join(ca));
    }
    Ok(layer)
}

/// Flags, then the environment, then the profile: the first layer that sets a key wins.
pub fn resolve(
    flags: &ConnectFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Settings> {
    let (path, required) = profile_location(flags, env);
    let profile = match &path {
        Some(path) => load_profile(path, required)?,
        None => Layer::default(),
    };
    let flag_layer = Layer {
        endpoint: flags.endpoint.clone(),
        token: flags.token.clone(),
        ca_file: flags.ca_file.clone(),
    };
    let env_layer = Layer {
        endpoint: env("KVS_ENDPOINT"),
        token: env("KVS_TOKEN"),
        ca_file: env("KVS_CA_FILE").map(PathBuf::from),
    };
    merge(&[flag_layer, env_layer, profile], path)
}

/// The pure part of [`resolve`]: precedence, normalization and the "not configured" errors.
pub fn merge(layers: &[Layer], profile_path: Option<PathBuf>) -> anyhow::Result<Settings> {
    let first = |get: &dyn Fn(&Layer) -> Option<String>| {
        layers
            .iter()
            .filter_map(get)
            .find(|value| !value.trim().is_empty())
    };
    let profile_display = profile_path
        .as_deref()
        .map_or("~/.config/kvs/config.toml".to_string(), |p| {
            p.display().to_string()
        });
    let how = |key: &str, flag: &str, var: &str, example: &str| {
        anyhow!(
            "no {key} is configured.\nPass {flag}, set {var}, or add `{example}` to the profile {profile_display}"
        )
    };
    let endpoint = first(&|l| l.endpoint.clone()).ok_or_else(|| {
        how(
            "coordinator endpoint",
            "--endpoint URL",
            "KVS_ENDPOINT",
            "endpoint = \"https://HOST:7400\"",
        )
    })?;
    let endpoint = normalize_endpoint(endpoint.trim())?;
    let token = first(&|l| l.token.clone()).ok_or_else(|| {
        how(
            "admin token",
            "--token TOKEN",
            "KVS_TOKEN",
            "token = \"...\"",
        )
    })?;
    let ca_file = layers
        .iter()
        .find_map(|l| l.ca_file.clone().filter(|p| !p.as_os_str().is_empty()));
    if endpoint.starts_with("https://") && ca_file.is_none() {
        return Err(how(
            "CA file for the https endpoint",
            "--ca-file PATH",
            "KVS_CA_FILE",
            "ca_file = \"/path/to/ca.pem\"",
        ));
    }
    Ok(Settings {
        endpoint,
        token: token.trim().to_string(),
        ca_file,
        profile_path,
    })
}

/// `host:port` → `https://host:port`; only http and https are accepted.
pub fn normalize_endpoint(endpoint: &str) -> anyhow::Result<String> {
    match endpoint.split_once("://") {
        None => Ok(format!("https://{endpoint}")),
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(endpoint.to_string()),
        Some(_) => bail!(
            "invalid endpoint '{endpoint}': use https://HOST:PORT (or http:// for a plaintext dev cluster)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn layer(endpoint: Option<&str>, token: Option<&str>, ca: Option<&str>) -> Layer {
        Layer {
            endpoint: endpoint.map(str::to_string),
            token: token.map(str::to_string),
            ca_file: ca.map(PathBuf::from),
        }
    }

    #[test]
    fn flag_beats_env_beats_profile_per_key() {
        let flags = layer(Some("https://flag:1"), None, None);
        let env = layer(Some("https://env:1"), Some("env-token"), None);
        let profile = layer(
            Some("https://profile:1"),
            Some("profile-token"),
            Some("/ca.pem"),
        );
        let settings = merge(&[flags, env, profile], None).expect("complete");
        assert_eq!(settings.endpoint, "https://flag:1");
        assert_eq!(settings.token, "env-token");
        assert_eq!(settings.ca_file, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn empty_values_do_not_count() {
        let env = layer(Some(""), Some("  "), None);
        let profile = layer(Some("http://p:1"), Some("t"), None);
        let settings = merge(&[Layer::default(), env, profile], None).expect("complete");
        assert_eq!(
            (settings.endpoint.as_str(), settings.token.as_str()),
            ("http://p:1", "t")
        );
    }

    #[test]
    fn nothing_configured_says_how() {
        let err = merge(&[], Some(PathBuf::from("/home/u/.config/kvs/config.toml")))
            .expect_err("nothing set")
            .to_string();
        assert!(err.contains("--endpoint URL"), "{err}");
        assert!(err.contains("KVS_ENDPOINT"), "{err}");
        assert!(err.contains("/home/u/.config/kvs/config.toml"), "{err}");
        let err = merge(&[layer(Some("h:1"), Some("t"), None)], None)
            .expect_err("no CA")
            .to_string();
        assert!(err.contains("--ca-file"), "{err}");
    }

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:7400").expect("ok"),
            "https://127.0.0.1:7400"
        );
        assert_eq!(normalize_endpoint("http://h:1").expect("ok"), "http://h:1");
        assert!(normalize_endpoint("ftp://h:1").is_err());
        assert!(normalize_endpoint("https://").is_err());
    }

    #[test]
    fn profile_location_follows_xdg_then_home() {
        let vars: HashMap<&str, &str> = [("HOME", "/home/u")].into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let (path, required) = profile_location(&ConnectFlags::default(), &env);
        assert_eq!(path, Some(PathBuf::from("/home/u/.config/kvs/config.toml")));
        assert!(!required);
        let vars: HashMap<&str, &str> = [("HOME", "/home/u"), ("XDG_CONFIG_HOME", "/xdg")].into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let (path, _) = profile_location(&ConnectFlags::default(), &env);
        assert_eq!(path, Some(PathBuf::from("/xdg/kvs/config.toml")));
        let flags = ConnectFlags {
            profile: Some("/p.toml".into()),
            ..Default::default()
        };
        assert_eq!(
            profile_location(&flags, &env),
            (Some(PathBuf::from("/p.toml")), true)
        );
    }

    #[test]
    fn profile_file_is_parsed_and_relative_ca_is_resolved() {
        let dir = std::env::temp_dir().join(format!("kvs-ctl-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            "endpoint = \"https://c:7400\"\ntoken = \"t\"\nca_file = \"ca.pem\"\n",
        )
        .expect("write");
        let layer = load_profile(&path, true).expect("parses");
        assert_eq!(layer.ca_file, Some(dir.join("ca.pem")));
        std::fs::write(&path, "endpont = \"typo\"\n").expect("write");
        let err = load_profile(&path, true)
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("invalid profile"), "{err}");
        assert_eq!(
            load_profile(&dir.join("missing.toml"), false).expect("ok"),
            Layer::default()
        );
        assert!(load_profile(&dir.join("missing.toml"), true).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
