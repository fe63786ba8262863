//! kvs-agent: one per host. Registers the host, receives the desired engine processes for it,
//! converges (start, restart on crash, reconfigure, stop and clean up), terminates client TLS in
//! front of every engine, and reports observed state to the coordinator.
//!
//! ```text
//!   run(config, shutdown)
//!     ├─ engine::catalog      which valkey-server / redis-server binaries this host has
//!     ├─ report::register     host id + certificate (stored by identity.rs)
//!     ├─ runtime::spawn       the async shell ── supervisor (pure decisions)
//!     │     ├─ engine::process   engine processes (own process group, engine.log, pid file)
//!     │     ├─ engine::leftover  engines a killed agent left running: adopted at startup
//!     │     ├─ tls::front        client TLS ─► engine socket, one per instance (fenced: refuses
//!     │     │                    clients), on the `kvs-front` threads (tls::threads)
//!     │     ├─ tls::tunnel       standby engine ─► TLS ─► the primary host's front
//!     │     └─ fencing           pure: when to fence a primary, when to pause writes
//!     └─ report::session_loop Desired down ─► runtime; runtime's ObservedState ─► Observed up
//! ```
//!
//! Tests and the testbed can skip the coordinator: [`runtime::spawn`] returns a
//! [`runtime::RuntimeHandle`] that takes [`runtime::DesiredState`]s directly.

pub mod clock;
pub mod config;
pub mod engine;
pub mod fencing;
pub mod identity;
pub mod report;
pub mod runtime;
pub mod supervisor;
pub mod tls;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use runtime::{DesiredState, ObservedState, ProcessReport, RuntimeHandle, RuntimeOptions};

/// Registration retry bounds while no identity is stored yet.
const REGISTER_BACKOFF_MIN: Duration = Duration::from_millis(500);
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Runs the agent until `shutdown` resolves, then stops every engine gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = config.validate()?;
    let cancel = CancellationToken::new();
    let work = run_until(config, cancel.clone());
    tokio::pin!(work);
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut work => return result,
        _ = &mut shutdown => {
            tracing::info!("shutdown requested");
            cancel.cancel();
        }
    }
    work.await
}

async fn run_until(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    let instances = engine::render::instances_dir(&config.data_dir);
    tokio::fs::create_dir_all(&instances)
        .await
        .with_context(|| format!("cannot create the data directory {}", instances.display()))?;
    let catalog = engine::catalog::Catalog::discover(&config.engines).await;
    if catalog.engines().is_empty() {
        tracing::error!(
            "no valkey-server or redis-server found; every instance will fail to start"
        );
    }
    let dial = report::tcp_dial();
    let Some(identity) = obtain_identity(&config, &catalog, &cancel, &dial).await? else {
        return Ok(());
    };
    let tls = tls::server_config(&identity.cert_pem, &identity.key_pem, &identity.ca_pem)
        .context("the host certificate or the cluster CA is unusable")?;
    let tunnel_tls = tls::client_config(&identity.cert_pem, &identity.key_pem, &identity.ca_pem)
        .context("the host certificate or the cluster CA is unusable")?;
    let boot_id = match tokio::fs::read_to_string(&config.boot_id_file).await {
        Ok(id) if !id.trim().is_empty() => Some(id.trim().to_string()),
        Ok(_) | Err(_) => {
            tracing::warn!(file = %config.boot_id_file.display(), "cannot read the boot id; host reboots will not be detected");
            None
        }
    };
    let options = RuntimeOptions {
        data_dir: config.data_dir.clone(),
        engine_bind: config.engine_bind,
        front_address: config.address,
        tls,
        tunnel_tls,
        report_interval: config.report_interval,
        stop_timeout: config.stop_timeout,
        restart: config.restart_policy(),
        boot_id,
        engines_exit_with_agent: config.engines_exit_with_agent,
    };
    let handle = runtime::spawn(options, catalog.clone());
    if let Some(cached) = report::load_cached_desired(&config.data_dir).await {
        tracing::info!(
            version = cached.version,
            "applying the cached desired state until the coordinator answers"
        );
        handle.apply(cached);
    }
    report::session_loop(&config, &identity, &catalog, &handle, &cancel, &dial).await;
    handle.shutdown().await;
    Ok(())
}

/// Registers (refreshing the certificate and engine list), falling back to the stored identity
/// when the coordinator cannot be reached. `None`: cancelled before any identity was available.
async fn obtain_identity(
    config: &Config,
    catalog: &engine::catalog::Catalog,
    cancel: &CancellationToken,
    dial: &report::Dial,
) -> anyhow::Result<Option<identity::Identity>> {
    let stored = identity::load(&config.data_dir).await;
    let previous_id = match &stored {
        Some(identity) => Some(identity.host_id.clone()),
        None => identity::load_host_id(&config.data_dir).await,
    };
    let mut backoff = REGISTER_BACKOFF_MIN;
    loop {
        match report::register(config, catalog, previous_id.clone(), dial).await {
            Ok(identity) => {
                identity::store(&config.data_dir, &identity)
                    .await
                    .context("cannot store the host identity")?;
                tracing::info!(host_id = %identity.host_id, "registered");
                return Ok(Some(identity));
            }
            Err(error) => {
                if let Some(stored) = stored {
                    tracing::warn!(%error, host_id = %stored.host_id, "registration failed; using the stored identity");
                    return Ok(Some(stored));
                }
                tracing::error!(%error, retry_in = ?backoff, "registration failed");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(REGISTER_BACKOFF_MAX);
    }
}
