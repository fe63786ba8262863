//! t10: the customer's first five minutes. Create an instance, connect over TLS verified against
//! the cluster CA, SET/GET, see the admin commands refused, use redis-cli, destroy, and find the URL
//! dead afterwards.

use std::time::Duration;

use anyhow::{Result, ensure};
use kvs_testbed::cluster::AVAILABLE_TIMEOUT;
use kvs_testbed::wait::{Probe, wait_until};
use kvs_testbed::{Cluster, binaries, engine_client, profile, testing};
use redis::AsyncCommands;

/// Bound on a destroyed instance's URL going dead.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_create_connect_destroy() -> Result<()> {
    kvs_testbed::init_test_tracing();
    let mut cluster = Cluster::start_default(3).await?;
    let app = "t10-app";

    let (name, url) = {
        tracing::info!("--- create a mini instance attached to {app}");
        let name = cluster.create_instance("mini", app).await?;
        let instance = cluster.wait_available(&name, AVAILABLE_TIMEOUT).await?;
        ensure!(
            instance.url.starts_with("rediss://default:"),
            "URL {}",
            engine_client::redact(&instance.url)
        );
        ensure!(instance.requires_tls, "instances require TLS");
        ensure!(
            instance.plan == "mini" && instance.persistence == "None",
            "plan/persistence: {instance:?}"
        );
        let host = engine_client::parse_url(&instance.url)?.host;
        ensure!(
            cluster
                .agent_configs()
                .iter()
                .any(|a| a.address.to_string() == host),
            "the URL names a host of the cluster: {host}"
        );
        let vars = cluster.config_vars(app).await?;
        ensure!(
            vars.vars.get("REDIS_URL") == Some(&instance.url),
            "REDIS_URL of {app}: {:?}",
            vars.vars.keys()
        );
        ensure!(
            cluster.url(&name).await? == instance.url,
            "GetCredentials gives the same URL"
        );
        (name, instance.url)
    };

    let mut connection = {
        tracing::info!("--- SET/GET over TLS, verifying the cluster CA");
        let mut connection = cluster.connect(&name).await?;
        let _: () = connection.set("t10:key", "hello").await?;
        let value: String = connection.get("t10:key").await?;
        ensure!(value == "hello", "GET returned {value}");
        connection
    };

    {
        tracing::info!("--- CONFIG GET maxmemory is refused to the customer");
        let reply: redis::RedisResult<redis::Value> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query_async(&mut connection)
            .await;
        let err = match reply {
            Ok(value) => anyhow::bail!("CONFIG GET must be refused, got {value:?}"),
            Err(err) => err,
        };
        ensure!(
            err.to_string().contains("NOPERM"),
            "expected a NOPERM error, got {err}"
        );
        let whoami: String = redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async(&mut connection)
            .await?;
        ensure!(
            whoami == "default",
            "ACL WHOAMI is allowed and says default: {whoami}"
        );
    }

    {
        tracing::info!("--- TLS without the cluster CA (system roots only) is refused");
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: None,
        };
        let client = redis::Client::build_with_tls(url.as_str(), certificates)?;
        let attempt = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new().set_connection_timeout(Duration::from_secs(5)),
            ),
        )
        .await;
        ensure!(
            !matches!(attempt, Ok(Ok(_))),
            "a client that does not trust the cluster CA must not connect"
        );
    }

    if let Some(cli) = binaries::find_in_path("redis-cli") {
        tracing::info!("--- redis-cli: PING with --cacert, and with --insecure");
        let ca = cluster.ca_path().display().to_string();
        let pong = testing::redis_cli(&cli, &url, &["--cacert", &ca], &["PING"]).await?;
        ensure!(pong == "PONG", "redis-cli --cacert PING: {pong}");
        let pong = testing::redis_cli(&cli, &url, &["--insecure"], &["PING"]).await?;
        ensure!(pong == "PONG", "redis-cli --insecure PING: {pong}");
        let value = testing::redis_cli(&cli, &url, &["--cacert", &ca], &["GET", "t10:key"]).await?;
        ensure!(value == "hello", "redis-cli GET: {value}");
    } else {
        kvs_test_support::skip(
            "redis-cli is not installed (scripts/install-engines): the redis-cli checks did not run",
        );
    }

    match binaries::Binaries::locate()?.cli {
        Some(cli) => {
            tracing::info!("--- the kvs CLI reads the profile the testbed writes");
            let path = cluster.dir().join("kvs-profile.toml");
            let profile = profile::Profile {
                endpoint: cluster.endpoint(),
                token: cluster.admin_token().into(),
                ca_file: cluster.ca_path(),
            };
            profile::write(&path, &profile)?;
            let path = path.display().to_string();
            let vars =
                testing::kvs_cli(&cli, &["--profile", &path, "config", "--app", app]).await?;
            ensure!(
                vars.contains(&format!("REDIS_URL={url}")),
                "kvs config: {vars}"
            );
            let info = testing::kvs_cli(&cli, &["--profile", &path, "info", &name]).await?;
            ensure!(
                info.contains(&name) && info.contains("available"),
                "kvs info: {info}"
            );
        }
        None => kvs_test_support::skip(
            "the kvs CLI is not built (cargo build --workspace): the CLI checks did not run",
        ),
    }

    {
        tracing::info!("--- destroy; the instance, its config var and its URL are gone");
        drop(connection);
        cluster.destroy_instance(&name).await?;
        let ca = cluster.ca_pem().to_vec();
        wait_until(
            "the destroyed instance's URL to stop accepting connections",
            DESTROY_TIMEOUT,
            || {
                let (url, ca) = (url.clone(), ca.clone());
                async move {
                    match engine_client::connect(&url, &ca).await {
                        Ok(mut c) => match redis::cmd("PING").query_async::<String>(&mut c).await {
                            Ok(_) => Probe::Pending("the URL still answers PING".into()),
                            Err(_) => Probe::Ready(()),
                        },
                        Err(_) => Probe::Ready(()),
                    }
                }
            },
        )
        .await?;
        let listed = cluster.list_instances("").await?;
        ensure!(
            listed.iter().all(|i| i.name != name),
            "{name} still listed: {listed:?}"
        );
        let vars = cluster
            .config_vars(app)
            .await
            .map(|v| v.vars)
            .unwrap_or_default();
        ensure!(
            !vars.contains_key("REDIS_URL"),
            "REDIS_URL of {app} must be gone after destroy: {vars:?}"
        );
    }

    cluster.stop().await;
    Ok(())
}

#[test]
fn missing_binaries_say_how_to_build() -> Result<()> {
    // Only meaningful when the binaries are absent; otherwise locate succeeds.
    match binaries::Binaries::locate() {
        Ok(found) => {
            let coordinator = found.coordinator.display().to_string();
            ensure!(coordinator.ends_with("kvs-coordinator"), "{coordinator}");
        }
        Err(err) => {
            let text = format!("{err:#}");
            ensure!(
                text.contains("cargo build --workspace") || text.contains("install-engines"),
                "{text}"
            );
        }
    }
    Ok(())
}
