//! Helpers shared by the end-to-end tests in `tests/`: gRPC error assertions and redis-cli runs.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tonic::Code;

/// Bound on one redis-cli invocation.
const REDIS_CLI_TIMEOUT: Duration = Duration::from_secs(15);

/// Asserts that `result` failed with one of `codes` and that its message contains every `needle`.
pub fn expect_status<T: std::fmt::Debug>(
    what: &str,
    result: std::result::Result<T, tonic::Status>,
    codes: &[Code],
    needles: &[&str],
) -> Result<tonic::Status> {
    let status = match result {
        Ok(value) => bail!("{what}: expected {codes:?}, but the call succeeded: {value:?}"),
        Err(status) => status,
    };
    if !codes.contains(&status.code()) {
        bail!(
            "{what}: expected {codes:?}, got {:?}: {}",
            status.code(),
            status.message()
        );
    }
    for needle in needles {
        if !status.message().contains(needle) {
            bail!(
                "{what}: the message should mention '{needle}': {}",
                status.message()
            );
        }
    }
    tracing::info!(what, code = ?status.code(), message = status.message(), "refused as expected");
    Ok(status)
}

/// Runs `redis-cli --tls <tls_args…> -u URL <command…>`; Ok(stdout) if it exited 0.
pub async fn redis_cli(
    cli: &Path,
    url: &str,
    tls_args: &[&str],
    command: &[&str],
) -> Result<String> {
    let output = tokio::process::Command::new(cli)
        .arg("--tls")
        .args(tls_args)
        .args(["-u", url])
        .args(command)
        .env("REDISCLI_HISTFILE", "/dev/null")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(REDIS_CLI_TIMEOUT, output)
        .await
        .context("redis-cli timed out")?
        .context("running redis-cli")?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() {
        bail!(
            "redis-cli exited {}: {stdout} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// Runs the `kvs` CLI with `args`; Ok(stdout) if it exited 0.
pub async fn kvs_cli(cli: &Path, args: &[&str]) -> Result<String> {
    let output = tokio::process::Command::new(cli)
        .args(args)
        .env_remove("KVS_ENDPOINT")
        .env_remove("KVS_TOKEN")
        .env_remove("KVS_CA_FILE")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(REDIS_CLI_TIMEOUT, output)
        .await
        .context("kvs timed out")?
        .context("running kvs")?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() {
        bail!(
            "kvs {} exited {}: {stdout} {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}
