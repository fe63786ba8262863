//! The dev URL is printed only once it answers PING through the TLS front, as a customer's
//! client would see it. An engine restarted on existing data answers `LOADING` for a while: the
//! wait then says how far it got (`loading 12 MB of 40 MB`) instead of printing a URL that fails.

use std::time::Duration;

use anyhow::{Result, bail};
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::engine_client::info_field;
use crate::netns::dial::Dialer;

/// How often the URL is tried.
const PING_INTERVAL: Duration = Duration::from_millis(200);
/// How often progress is printed while the engine loads.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// Waits until `url` answers PING (bounded by `timeout`), printing loading progress.
pub async fn answering_ping(
    dialer: &Dialer,
    url: &str,
    ca_pem: &[u8],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut printed_at: Option<Instant> = None;
    loop {
        let last = match ping(dialer, url, ca_pem).await {
            Ok(()) => return Ok(()),
            Err(Answer::Loading(progress)) => {
                if printed_at.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL) {
                    super::say(&format!("waiting for the instance: {progress}"));
                    printed_at = Some(Instant::now());
                }
                progress
            }
            Err(Answer::Other(why)) => why,
        };
        if Instant::now() >= deadline {
            bail!(
                "the instance did not answer PING within {timeout:?}; last: {last} (see the logs)"
            );
        }
        tokio::time::sleep(PING_INTERVAL).await;
    }
}

enum Answer {
    /// The engine is loading its dataset: how far it got.
    Loading(String),
    Other(String),
}

async fn ping(dialer: &Dialer, url: &str, ca_pem: &[u8]) -> Result<(), Answer> {
    let mut connection = dialer
        .redis(url, ca_pem)
        .await
        .map_err(|e| Answer::Other(format!("{e:#}")))?;
    let reply: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut connection).await;
    match reply {
        Ok(pong) if pong == "PONG" => Ok(()),
        Ok(other) => Err(Answer::Other(format!("PING answered {other:?}"))),
        Err(err) if err.code() == Some("LOADING") => {
            Err(Answer::Loading(loading_progress(&mut connection).await))
        }
        Err(err) => Err(Answer::Other(format!("PING: {err}"))),
    }
}

/// `loading 12 MB of 40 MB` from INFO persistence (INFO is served while loading).
async fn loading_progress(connection: &mut MultiplexedConnection) -> String {
    let info: String = match redis::cmd("INFO")
        .arg("persistence")
        .query_async(connection)
        .await
    {
        Ok(info) => info,
        Err(_) => return "loading the dataset".into(),
    };
    let megabytes = |field| {
        info_field(&info, field)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|bytes| bytes.div_ceil(1 << 20))
    };
    match (
        megabytes("loading_loaded_bytes"),
        megabytes("loading_total_bytes"),
    ) {
        (Some(done), Some(total)) => format!("loading {done} MB of {total} MB"),
        _ => "loading the dataset".into(),
    }
}
