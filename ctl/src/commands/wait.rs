//! `kvs wait NAME`: poll GetInstance until the instance is `available`.
//!
//! ```text
//!   Waiting for redis-acute-6762... creating      (rewritten in place on a terminal,
//!   Waiting for redis-acute-6762... available      one line per change otherwise)
//! ```
//!
//! A coordinator that is briefly unreachable (failover, restart) does not end the wait; only the
//! timeout, a missing instance or an instance being destroyed do.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::bail;
use kvs_proto::pb;
use tonic::Code;

use super::Context;
use crate::cli::WaitArgs;
use crate::connect::{Client, request};
use crate::output;

/// Poll interval when none (or an invalid one) is given. Heroku uses 5 s; 1 s suits a dev cluster.
pub const WAIT_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// Longest accepted poll interval; anything longer is treated as a typo and gets the default.
pub const WAIT_INTERVAL_MAX: Duration = Duration::from_secs(3600);
/// How long `kvs wait` (and `kvs create --wait`) waits by default.
pub const WAIT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);

/// How often to poll and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitOptions {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self {
            interval: WAIT_INTERVAL_DEFAULT,
            timeout: WAIT_TIMEOUT_DEFAULT,
        }
    }
}

/// `--wait-interval`: positive seconds (fractions allowed); anything else means the default.
pub fn parse_interval(text: &str) -> Duration {
    match text.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => {
            let interval = Duration::from_secs_f64(seconds.min(WAIT_INTERVAL_MAX.as_secs_f64()));
            if interval.is_zero() {
                WAIT_INTERVAL_DEFAULT
            } else {
                interval
            }
        }
        _ => WAIT_INTERVAL_DEFAULT,
    }
}

pub async fn wait(ctx: &Context, args: WaitArgs) -> anyhow::Result<()> {
    let options = WaitOptions {
        interval: parse_interval(&args.wait_interval),
        timeout: Duration::from_secs(args.timeout),
    };
    let client = ctx.client().await?;
    let instance = wait_for(&client, &args.name, &options, ctx.json).await?;
    if ctx.json {
        output::print_json(&output::instance_json(&instance))?;
    }
    Ok(())
}

/// Polls until `available`; returns the instance as last seen.
pub async fn wait_for(
    client: &Client,
    name: &str,
    options: &WaitOptions,
    json: bool,
) -> anyhow::Result<pb::Instance> {
    let deadline = tokio::time::Instant::now() + options.timeout;
    let mut progress = Progress::new(json);
    let mut last_status = String::from("unknown");
    loop {
        let message = pb::InstanceRef {
            name: name.to_string(),
        };
        match client
            .call_status(client.admin().get_instance(request(message)))
            .await
        {
            Ok(instance) => {
                progress.show(&format!("Waiting for {name}... {}", instance.status));
                match instance.status.as_str() {
                    "available" => {
                        progress.finish();
                        return Ok(instance);
                    }
                    "destroying" => {
                        progress.finish();
                        bail!("{name} is being destroyed");
                    }
                    _ => last_status = instance.status,
                }
            }
            Err(status) if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) => {
                progress.show(&format!(
                    "Waiting for {name}... (coordinator unreachable, retrying)"
                ));
            }
            Err(status) => {
                progress.finish();
                return Err(client.status_error(&status));
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            progress.finish();
            bail!(
                "timed out after {} s waiting for {name} to become available (last status: {last_status})",
                options.timeout.as_secs()
            );
        }
        tokio::time::sleep(options.interval.min(deadline - now)).await;
    }
}

/// The progress line: rewritten in place on a terminal, printed once per change otherwise.
/// Goes to stdout, or to stderr under `--json` so stdout stays pure JSON.
struct Progress {
    to_stderr: bool,
    terminal: bool,
    /// The last text shown, to print only changes.
    last: Option<String>,
}

impl Progress {
    fn new(to_stderr: bool) -> Self {
        let terminal = if to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        Self {
            to_stderr,
            terminal,
            last: None,
        }
    }

    fn show(&mut self, text: &str) {
        if self.last.as_deref() == Some(text) {
            return;
        }
        let rendered = if self.terminal {
            format!("\r\x1b[2K{text}")
        } else {
            format!("{text}\n")
        };
        self.write(&rendered);
        self.last = Some(text.to_string());
    }

    /// Ends the in-place line so later output starts on a fresh line.
    fn finish(&mut self) {
        if self.terminal && self.last.take().is_some() {
            self.write("\n");
        }
    }

    fn write(&self, text: &str) {
        // Progress is best effort: a closed pipe must not fail the wait.
        if self.to_stderr {
            let mut err = std::io::stderr();
            let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
        } else {
            let mut out = std::io::stdout();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_intervals_fall_back_to_the_default() {
        assert_eq!(parse_interval("2"), Duration::from_secs(2));
        assert_eq!(parse_interval("0.5"), Duration::from_millis(500));
        for bad in ["", "0", "-3", "abc", "NaN", "inf"] {
            assert_eq!(parse_interval(bad), WAIT_INTERVAL_DEFAULT, "{bad}");
        }
        assert_eq!(parse_interval("1e9"), WAIT_INTERVAL_MAX);
    }
}
