//! What the HA policy remembers between ticks, in leader memory only: the agent-restart budget and
//! which alerts were already raised (so a standing problem alerts once, not every tick). A new
//! leader starts with an empty one; losing it costs at most one repeated alert or restart.

use std::collections::{BTreeMap, BTreeSet};

use super::detector::AgentRestartBudget;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaMemory {
    /// Rule 2's rate limit on agent restarts over SSH.
    pub agent_restarts: AgentRestartBudget,
    /// Alert key → the message last raised under it.
    alerts_raised: BTreeMap<String, String>,
    /// When this memory's first tick ran (when this node began leading). Agents reconnect to a
    /// new leader over a few seconds; until they had the time to, silence proves nothing.
    pub first_tick_at: Option<std::time::Duration>,
    /// Instance → when this leader first saw its primary restarted after a reboot with its
    /// standby down (the wait for that standby counts from here).
    pub reboot_waits: BTreeMap<String, std::time::Duration>,
}

impl HaMemory {
    /// True when no alert under `key` was raised by the previous tick (the message may carry
    /// changing details such as durations; the key names the problem).
    pub(super) fn alert_is_new(&mut self, key: &str, message: &str) -> bool {
        self.alerts_raised
            .insert(key.to_string(), message.to_string())
            .is_none()
    }

    /// Forgets alerts not raised this tick, so a problem that clears and recurs alerts again.
    pub(super) fn keep_only_alerts(&mut self, raised: &BTreeSet<String>) {
        self.alerts_raised.retain(|key, _| raised.contains(key));
    }
}
