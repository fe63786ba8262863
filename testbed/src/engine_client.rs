//! Talking to an instance the way a customer does: a `rediss://` URL, TLS verified against the
//! cluster CA, through the agent's TLS front.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, TlsCertificates};

/// Bound on a TLS connect plus AUTH.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on any one command.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `url` (rediss://default:PASSWORD@HOST:PORT), trusting only `ca_pem`.
pub async fn connect(url: &str, ca_pem: &[u8]) -> Result<MultiplexedConnection> {
    crate::install_crypto_provider();
    let certificates = TlsCertificates {
        client_tls: None,
        root_cert: Some(ca_pem.to_vec()),
    };
    let client =
        redis::Client::build_with_tls(url, certificates).context("building the redis client")?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    let connect = client.get_multiplexed_async_connection_with_config(&config);
    tokio::time::timeout(CONNECT_TIMEOUT * 2, connect)
        .await
        .map_err(|_| anyhow!("connecting to {} timed out", redact(url)))?
        .with_context(|| format!("connecting to {}", redact(url)))
}

/// `INFO server`'s `process_id`: the PID of the engine behind the connection.
pub async fn engine_pid(connection: &mut MultiplexedConnection) -> Result<u32> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(connection)
        .await
        .context("INFO server")?;
    info_field(&info, "process_id")
        .ok_or_else(|| anyhow!("INFO server has no process_id"))?
        .parse()
        .context("process_id is not a number")
}

/// One `name:value` field of an INFO reply.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The parts of a `rediss://user:password@host:port` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
}

/// Splits a `rediss://` URL (no percent-decoding: KVS passwords are URL-safe).
pub fn parse_url(url: &str) -> Result<UrlParts> {
    let rest = url.strip_prefix("rediss://").ok_or_else(|| {
        anyhow!(
            "not a rediss:// URL (scheme {:?})",
            url.split("://").next().unwrap_or("")
        )
    })?;
    let (credentials, address) = rest
        .rsplit_once('@')
        .ok_or_else(|| anyhow!("URL has no credentials"))?;
    let (user, password) = credentials
        .split_once(':')
        .ok_or_else(|| anyhow!("URL has no password"))?;
    let address = address.trim_end_matches('/');
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("URL has no port"))?;
    Ok(UrlParts {
        user: user.to_string(),
        password: password.to_string(),
        host: host.to_string(),
        port: port.parse().context("URL port")?,
    })
}

/// The URL with its password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match parse_url(url) {
        Ok(p) => format!("rediss://{}:***@{}:{}", p.user, p.host, p.port),
        Err(_) => "(unparsable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_redact() {
        let parts = parse_url("rediss://default:s3cr3t@127.0.0.11:6380").expect("parse");
        assert_eq!(parts.password, "s3cr3t");
        assert_eq!((parts.host.as_str(), parts.port), ("127.0.0.11", 6380));
        assert_eq!(
            redact("rediss://default:s3cr3t@127.0.0.11:6380"),
            "rediss://default:***@127.0.0.11:6380"
        );
        assert!(parse_url("redis://x").is_err());
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\n";
        assert_eq!(info_field(info, "process_id"), Some("4242"));
        assert_eq!(info_field(info, "process"), None);
    }
}
