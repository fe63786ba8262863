//! The three settings customers may change (reference §5.4): idle `timeout`, `maxmemory-policy`
//! and `notify-keyspace-events`. Everything else is the plan's or the operator's.

use serde::{Deserialize, Serialize};

use crate::ProtocolError;

/// Idle connection timeout when none is given (reference: 300 s; 0 = never).
pub const TIMEOUT_DEFAULT_SECONDS: u32 = 300;
/// Upper bound on `timeout`: one week. Larger values are almost certainly typos.
pub const TIMEOUT_MAX_SECONDS: u32 = 7 * 24 * 3600;

/// The eight eviction policies, with the engine's own descriptions.
pub const MAXMEMORY_POLICIES: [(&str, &str); 8] = [
    ("noeviction", "return errors when memory limit is reached."),
    (
        "allkeys-lfu",
        "evict any key using approximated LFU when memory limit is reached.",
    ),
    (
        "volatile-lfu",
        "evict keys with an expire set using approximated LFU when memory limit is reached.",
    ),
    (
        "allkeys-lru",
        "evict any key using approximated LRU when memory limit is reached.",
    ),
    (
        "volatile-lru",
        "evict keys with an expire set using approximated LRU when memory limit is reached.",
    ),
    (
        "allkeys-random",
        "evict random keys when memory limit is reached.",
    ),
    (
        "volatile-random",
        "evict random keys with an expire set when memory limit is reached.",
    ),
    (
        "volatile-ttl",
        "evict the key with the nearest expire time when memory limit is reached.",
    ),
];

/// The flags `notify-keyspace-events` accepts.
const KEYSPACE_EVENT_FLAGS: &str = "KEg$lshzxetmndA";

/// An instance's customer-tunable settings, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub timeout_seconds: u32,
    pub maxmemory_policy: String,
    /// Empty string: disabled.
    pub notify_keyspace_events: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeout_seconds: TIMEOUT_DEFAULT_SECONDS,
            maxmemory_policy: "noeviction".into(),
            notify_keyspace_events: String::new(),
        }
    }
}

pub fn validate_timeout(seconds: u32) -> Result<u32, ProtocolError> {
    if seconds > TIMEOUT_MAX_SECONDS {
        return Err(ProtocolError::invalid(
            "timeout",
            format!(
                "{seconds} seconds is more than the maximum of {TIMEOUT_MAX_SECONDS} (one week); 0 means never"
            ),
        ));
    }
    Ok(seconds)
}

pub fn validate_maxmemory_policy(policy: &str) -> Result<String, ProtocolError> {
    if MAXMEMORY_POLICIES.iter().any(|(name, _)| *name == policy) {
        return Ok(policy.to_string());
    }
    let names: Vec<&str> = MAXMEMORY_POLICIES.iter().map(|(n, _)| *n).collect();
    Err(ProtocolError::invalid(
        "maxmemory_policy",
        format!(
            "unknown policy '{policy}'; valid policies: {}",
            names.join(", ")
        ),
    ))
}

pub fn maxmemory_policy_description(policy: &str) -> Option<&'static str> {
    MAXMEMORY_POLICIES
        .iter()
        .find(|(n, _)| *n == policy)
        .map(|(_, d)| *d)
}

pub fn validate_keyspace_events(flags: &str) -> Result<String, ProtocolError> {
    if let Some(bad) = flags.chars().find(|c| !KEYSPACE_EVENT_FLAGS.contains(*c)) {
        return Err(ProtocolError::invalid(
            "notify_keyspace_events",
            format!("unknown flag '{bad}'; valid flags: {KEYSPACE_EVENT_FLAGS} ('' disables)"),
        ));
    }
    Ok(flags.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_checked() {
        assert!(validate_maxmemory_policy("allkeys-lru").is_ok());
        let err = validate_maxmemory_policy("lru").unwrap_err().to_string();
        assert!(err.contains("valid policies: noeviction"), "{err}");
    }

    #[test]
    fn timeout_bounds() {
        assert_eq!(validate_timeout(0).unwrap(), 0);
        assert!(validate_timeout(TIMEOUT_MAX_SECONDS).is_ok());
        assert!(validate_timeout(TIMEOUT_MAX_SECONDS + 1).is_err());
    }

    #[test]
    fn keyspace_flags() {
        assert!(validate_keyspace_events("").is_ok());
        assert!(validate_keyspace_events("AKE").is_ok());
        assert!(validate_keyspace_events("Q").is_err());
    }
}
