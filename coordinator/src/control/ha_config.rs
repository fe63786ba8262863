//! Knobs of the high-availability policy (DESIGN.md §4), defined once with their rationale.
//!
//! The coordinator's config file can embed it (`[ha]`, humantime strings); `validate` enforces
//! the one ordering the safety argument needs: a primary fences itself (`fence_after`) well
//! before its standby may be promoted (`confirmation_window`).

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaConfig {
    /// A host is confirmed down only after every vantage point's probes, its agent stream and
    /// its standbys' replication links all failed for this long. Transient failures restart it.
    #[serde(with = "humantime_serde")]
    pub confirmation_window: Duration,
    /// How often every coordinator node probes every host over SSH.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// A primary with a standby fences itself when it has heard neither the coordinator leader
    /// nor its standby for this long (at least 2 s; `confirmation_window` must exceed it by
    /// [`FENCE_DETECTION_SLACK`]). Decision 0007.
    #[serde(with = "humantime_serde")]
    pub fence_after: Duration,
    /// A standby lagging its primary by more than this is not promoted automatically (and HA
    /// status is not Available).
    pub max_lag_bytes: u64,
    /// No report from an agent for this long: its stream is silent (usually the node's
    /// `agent_silence_timeout`).
    #[serde(with = "humantime_serde")]
    pub agent_silence_timeout: Duration,
    /// At most one agent restart over SSH per host per this interval.
    #[serde(with = "humantime_serde")]
    pub agent_restart_interval_min: Duration,
    /// A planned switchover whose standby has not caught up within this is aborted (the
    /// primary's writes are paused meanwhile, so keep it short).
    #[serde(with = "humantime_serde")]
    pub switchover_timeout: Duration,
    /// A promotion not confirmed (target running as master at the new epoch) within this is
    /// aborted; the next tick may try again.
    #[serde(with = "humantime_serde")]
    pub promotion_timeout: Duration,
    /// A primary restarted after a host reboot (its AOF may miss acknowledged writes) whose
    /// standby is down waits this long for that standby, which may hold those writes, before it
    /// resumes from its own data (found by kvs-sim stack: double failures lost WAIT writes).
    pub reboot_standby_wait: Duration,
}

impl Default for HaConfig {
    fn default() -> Self {
        Self {
            confirmation_window: Duration::from_secs(120),
            probe_interval: Duration::from_secs(5),
            fence_after: Duration::from_secs(2),
            max_lag_bytes: 1 << 20,
            agent_silence_timeout: Duration::from_secs(5),
            agent_restart_interval_min: Duration::from_secs(60),
            switchover_timeout: Duration::from_secs(30),
            promotion_timeout: Duration::from_secs(60),
            reboot_standby_wait: Duration::from_secs(600),
        }
    }
}

/// How much later than `fence_after` after its last sign of life an isolated primary may still
/// take writes, as the coordinators count it; the fence must land this much before the earliest
/// promotion (decision 0007). The agent counts from the last word it heard, and the words can
/// outlive the coordinators' view of the host: a leader that lost its quorum keeps sending
/// heartbeats until its last quorum acknowledgement is `QUORUM_ACK_FRESH` (1 s) old as openraft's
/// metrics show it (refreshed every Raft tick, 375 ms), plus one heartbeat interval (0.5 s) in
/// flight: 1.9 s. The agent's fence timer and the front's refusal add milliseconds; the rest is
/// margin for report delays and rounding of the coordinators' own evidence. (Found by kvs-sim with
/// the earlier, timeout-based detection: a window only just above fence_after promoted the
/// standby while the old primary still took writes.)
pub const FENCE_DETECTION_SLACK: Duration = Duration::from_secs(5);

/// The smallest `fence_after`: above the agent's `SILENT_SESSION` (1.5 s), so a silent session
/// is dropped before its primary fences, and the fence is lifted only by a new session's first
/// message (decision 0003). It also bounds the blips a primary rides out: no write is refused for
/// a cut shorter than `fence_after` − 0.5 s (the heartbeat interval).
pub const FENCE_AFTER_MIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HA config: {0}")]
pub struct HaConfigError(pub String);

impl HaConfig {
    pub fn validate(self) -> Result<Self, HaConfigError> {
        let fail = |m: &str| Err(HaConfigError(m.to_string()));
        if self.probe_interval < Duration::from_secs(1) {
            return fail("probe_interval must be at least 1s");
        }
        if self.fence_after < FENCE_AFTER_MIN {
            return fail(
                "fence_after must be at least 2s (above the agent's 1.5 s silent-session cutoff)",
            );
        }
        let fence_after_agent = Duration::from_secs(self.fence_after_seconds().into());
        if fence_after_agent + FENCE_DETECTION_SLACK > self.confirmation_window {
            return Err(HaConfigError(format!(
                "confirmation_window must be at least fence_after + {FENCE_DETECTION_SLACK:?}: an isolated \
                 primary may hear a leader that already lost its quorum for up to 2 s after the \
                 coordinators last saw it, and must be fenced before its standby is promoted"
            )));
        }
        if self.confirmation_window < self.probe_interval * 3 {
            return fail("confirmation_window must span at least 3 probe intervals");
        }
        if self.agent_silence_timeout.is_zero()
            || self.agent_silence_timeout >= self.confirmation_window
        {
            return fail("agent_silence_timeout must be positive and below confirmation_window");
        }
        if self.switchover_timeout.is_zero() || self.promotion_timeout.is_zero() {
            return fail("switchover_timeout and promotion_timeout must be positive");
        }
        Ok(self)
    }

    /// `fence_after` in whole seconds for the agent (rounded up, at least 1).
    pub fn fence_after_seconds(&self) -> u32 {
        let seconds = self.fence_after.as_millis().div_ceil(1000).max(1);
        u32::try_from(seconds).unwrap_or(u32::MAX)
    }

    /// A probe result or success older than this says nothing about the host now.
    pub fn probe_freshness_max(&self) -> Duration {
        self.probe_interval * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fence_must_precede_promotion() {
        let ok = HaConfig::default().validate().unwrap();
        assert_eq!(ok.fence_after_seconds(), 2);
        let with = |fence_after: Duration| HaConfig {
            fence_after,
            ..HaConfig::default()
        };
        assert!(
            with(Duration::from_secs(120)).validate().is_err(),
            "fence_after == window"
        );
        assert!(with(Duration::from_secs(121)).validate().is_err());
        assert!(
            with(Duration::from_millis(115_500)).validate().is_err(),
            "the agent fences at 116 s, inside the slack"
        );
        assert!(
            with(Duration::from_secs(116)).validate().is_err(),
            "the fence must land FENCE_DETECTION_SLACK before the window ends"
        );
        assert_eq!(
            with(Duration::from_secs(115))
                .validate()
                .unwrap()
                .fence_after_seconds(),
            115
        );
    }

    #[test]
    fn fence_after_is_at_least_two_seconds() {
        let too_soon = HaConfig {
            fence_after: Duration::from_millis(1_900),
            ..HaConfig::default()
        };
        let err = too_soon.validate().unwrap_err().to_string();
        assert!(err.contains("at least 2s"), "{err}");
        let shortest = HaConfig {
            fence_after: FENCE_AFTER_MIN,
            confirmation_window: FENCE_AFTER_MIN + FENCE_DETECTION_SLACK,
            probe_interval: Duration::from_secs(1),
            agent_silence_timeout: Duration::from_secs(3),
            ..HaConfig::default()
        };
        assert!(shortest.validate().is_ok(), "a 7 s window with a 2 s fence");
    }

    #[test]
    fn parses_humantime() {
        let c: HaConfig =
            toml::from_str("confirmation_window = \"3m\"\nfence_after = \"45s\"").unwrap();
        assert_eq!(c.confirmation_window, Duration::from_secs(180));
        assert_eq!(c.fence_after, Duration::from_secs(45));
        assert_eq!(c.probe_interval, Duration::from_secs(5));
    }
}
