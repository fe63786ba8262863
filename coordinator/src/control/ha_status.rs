//! `HA Status` as `kvs info` shows it, derived from the state and the leader's observations.
//!
//! ```text
//!   plan without standby, none placed  → N/A
//!   a standby in sync                  → Available   (running as replica at the current epoch,
//!                                                     link up, lag ≤ max_lag_bytes)
//!   a standby placed on a reporting host, not in sync → Syncing
//!   otherwise (none placed, or none alive)           → Unavailable
//! ```

use std::time::Duration;

use super::ha_config::HaConfig;
use super::observation::{Observations, STANDBY_PRIMARY_SILENCE_MAX_SECONDS};
use crate::state::{Instance, Placement};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaStatus {
    Available,
    Syncing,
    Unavailable,
    NotApplicable,
}

impl HaStatus {
    /// The strings admin.proto documents for `ha_status`.
    pub fn as_str(self) -> &'static str {
        match self {
            HaStatus::Available => "Available",
            HaStatus::Syncing => "Syncing",
            HaStatus::Unavailable => "Unavailable",
            HaStatus::NotApplicable => "N/A",
        }
    }
}

/// The HA status of `instance` as the leader sees it now.
pub fn of(
    instance: &Instance,
    observations: &Observations,
    now: Duration,
    config: &HaConfig,
) -> HaStatus {
    if !instance.standby_required && instance.standbys.is_empty() {
        return HaStatus::NotApplicable;
    }
    if instance
        .standbys
        .iter()
        .any(|s| standby_in_sync(instance, s, observations, now, config))
    {
        return HaStatus::Available;
    }
    let alive = instance
        .standbys
        .iter()
        .any(|s| observations.is_fresh(&s.host_id, now, config.agent_silence_timeout));
    if alive {
        HaStatus::Syncing
    } else {
        HaStatus::Unavailable
    }
}

/// The standby at `standby` runs as a replica of the current primary at the current epoch, hears
/// it, and lags its reported offset by at most `max_lag_bytes`. Both hosts must be reporting.
pub fn standby_in_sync(
    instance: &Instance,
    standby: &Placement,
    observations: &Observations,
    now: Duration,
    config: &HaConfig,
) -> bool {
    let fresh = |host: &str| observations.is_fresh(host, now, config.agent_silence_timeout);
    if !fresh(&standby.host_id) || !fresh(&instance.primary.host_id) {
        return false;
    }
    let current = |host: &str| {
        observations
            .process(host, &instance.name)
            .filter(|p| p.epoch == instance.epoch)
    };
    let (Some(replica), Some(primary)) = (
        current(&standby.host_id),
        current(&instance.primary.host_id),
    ) else {
        return false;
    };
    replica.is_running_replica()
        && replica.master_link_status == "up"
        && replica.master_last_io_seconds <= STANDBY_PRIMARY_SILENCE_MAX_SECONDS
        && primary.is_running_master()
        && primary
            .replication_offset
            .saturating_sub(replica.replication_offset)
            <= config.max_lag_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ha_sim::{NAME, Sim, cluster, cluster_without_standby};

    #[test]
    fn each_status() {
        let config = HaConfig::default();
        let mut mini = cluster_without_standby();
        mini.instances.get_mut(NAME).unwrap().standby_required = false;
        let none = Observations::default();
        let at = Duration::from_secs(1);
        assert_eq!(
            of(&mini.instances[NAME], &none, at, &config),
            HaStatus::NotApplicable
        );
        let premium = cluster_without_standby();
        assert_eq!(
            of(&premium.instances[NAME], &none, at, &config),
            HaStatus::Unavailable
        );
        let placed = cluster();
        assert_eq!(
            of(&placed.instances[NAME], &none, at, &config),
            HaStatus::Unavailable,
            "not alive"
        );
        let mut sim = Sim::new(cluster());
        sim.lag.insert("hb".into(), 2 << 20);
        sim.run(10);
        assert_eq!(
            of(sim.instance(), &sim.observations, sim.now, &config),
            HaStatus::Syncing,
            "lags"
        );
        sim.lag.clear();
        sim.run(5);
        assert_eq!(
            of(sim.instance(), &sim.observations, sim.now, &config),
            HaStatus::Available
        );
        sim.link_cut.insert("hb".into());
        sim.run(5);
        assert_eq!(
            of(sim.instance(), &sim.observations, sim.now, &config),
            HaStatus::Syncing,
            "link down"
        );
    }
}
