//! Bounded waiting: every wait in the testbed goes through [`wait_until`], so none can hang and every
//! timeout says what it waited for and what it saw last.
//!
//! ```text
//!   probe() ──Ready(v)────► Ok(v)
//!           ──Pending(why)─► sleep(poll_interval) ─► probe() …  until the deadline ─► Err("… last: why")
//!           ──Fatal(err)───► Err(err)   (e.g. the process we wait for has exited)
//! ```

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow};

/// How often a wait re-probes. Short enough that tests do not idle, long enough not to spin.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// One probe's answer.
pub enum Probe<T> {
    /// The condition holds; stop waiting.
    Ready(T),
    /// Not yet; the string says what was seen (reported if the wait times out).
    Pending(String),
    /// Waiting further is pointless.
    Fatal(anyhow::Error),
}

/// Calls `probe` every [`POLL_INTERVAL`] until it is ready, fails fatally, or `timeout` passes.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Probe<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last;
    loop {
        // A single probe must not outlive the deadline either (a hung RPC, a hung connect).
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining.max(POLL_INTERVAL), probe()).await {
            Ok(Probe::Ready(value)) => return Ok(value),
            Ok(Probe::Pending(why)) => last = why,
            Ok(Probe::Fatal(err)) => return Err(err.context(format!("while waiting for {what}"))),
            Err(_) => last = "the probe itself did not answer in time".into(),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow!(
                "timed out after {timeout:?} waiting for {what}; last seen: {last}"
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn times_out_with_the_last_observation() {
        let err = wait_until::<(), _, _>("nothing", Duration::from_millis(300), || async {
            Probe::Pending("still nothing".into())
        })
        .await
        .expect_err("must time out");
        let text = err.to_string();
        assert!(text.contains("waiting for nothing"), "{text}");
        assert!(text.contains("still nothing"), "{text}");
    }

    #[tokio::test]
    async fn returns_when_ready() {
        let mut calls = 0;
        let value = wait_until("three calls", Duration::from_secs(5), || {
            calls += 1;
            let n = calls;
            async move {
                if n >= 3 {
                    Probe::Ready(n)
                } else {
                    Probe::Pending(format!("{n}"))
                }
            }
        })
        .await
        .expect("ready");
        assert_eq!(value, 3);
    }
}
