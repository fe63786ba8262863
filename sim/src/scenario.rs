//! The scenario library: each scenario draws a world (3–6 hosts, 1–2 premium instances) and a
//! fault plan from the seed. Durations are biased toward the edges of the rules: just under and
//! just over the confirmation window, the window plus the standby's silence allowance (the
//! earliest a failover can begin), and `fence_after` (when a cut primary is fenced: that long
//! after the last word from the leader or its standby).

use std::time::Duration;

use kvs_coordinator::control::HaConfig;
use rand::Rng;
use rand::rngs::StdRng;

mod plans;

use crate::faults::FaultPlan;
use crate::world::WorldSpec;
use plans::Gen;

/// Faults start after this: the instances are placed, standbys synced, clients writing.
pub const WARMUP: Duration = Duration::from_secs(90);
/// Faults start before this.
const CHAOS_END_SECONDS: u64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    ZoneOutage,
    EngineCrash,
    AgentCrash,
    FlappingNetwork,
    PrimaryCutFromCoordinatorsNotStandby,
    LeaderLostMidFailover,
    DoubleFailure,
    Random,
    /// A primary's host loses power: the writes of the last fsync interval are gone.
    PowerLoss,
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Scenario::ZoneOutage,
        Scenario::EngineCrash,
        Scenario::AgentCrash,
        Scenario::FlappingNetwork,
        Scenario::PrimaryCutFromCoordinatorsNotStandby,
        Scenario::LeaderLostMidFailover,
        Scenario::DoubleFailure,
        Scenario::Random,
        Scenario::PowerLoss,
    ];

    /// The library `explore --scenario all` rotates through.
    pub const LIBRARY: [Scenario; 9] = [
        Scenario::ZoneOutage,
        Scenario::EngineCrash,
        Scenario::AgentCrash,
        Scenario::FlappingNetwork,
        Scenario::PrimaryCutFromCoordinatorsNotStandby,
        Scenario::LeaderLostMidFailover,
        Scenario::DoubleFailure,
        Scenario::Random,
        Scenario::PowerLoss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::ZoneOutage => "zone-outage",
            Scenario::EngineCrash => "engine-crash",
            Scenario::AgentCrash => "agent-crash",
            Scenario::FlappingNetwork => "flapping-network",
            Scenario::PrimaryCutFromCoordinatorsNotStandby => {
                "primary-cut-from-coordinators-not-standby"
            }
            Scenario::LeaderLostMidFailover => "leader-lost-mid-failover",
            Scenario::DoubleFailure => "double-failure",
            Scenario::Random => "random",
            Scenario::PowerLoss => "power-loss",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {name:?}; known: {}", known.join(", "))
            })
    }

    /// The world and plan of this scenario for one seed's RNG.
    pub fn generate(self, rng: &mut StdRng) -> WorldSpec {
        let mut config = HaConfig::default();
        if self == Scenario::Random && rng.gen_bool(0.25) {
            config = varied_config(rng);
        }
        let mut g = Gen {
            rng,
            config: config.clone(),
            plan: FaultPlan::default(),
        };
        match self {
            Scenario::ZoneOutage => g.zone_outage(),
            Scenario::EngineCrash => g.engine_crash(),
            Scenario::AgentCrash => g.agent_crash(),
            Scenario::FlappingNetwork => g.flapping(),
            Scenario::PrimaryCutFromCoordinatorsNotStandby => g.primary_cut(),
            Scenario::LeaderLostMidFailover => g.leader_lost(),
            Scenario::DoubleFailure => g.double_failure(),
            Scenario::Random => g.random(),
            Scenario::PowerLoss => g.power_loss(),
        }
        let mut plan = g.plan;
        plan.faults.sort_by_key(|f| f.start);
        plan.actions.sort_by_key(|(at, _)| *at);
        let rng = g.rng;
        WorldSpec {
            hosts: rng.gen_range(3..=6),
            instances: rng.gen_range(1..=2),
            config,
            plan,
            report_delay: Duration::from_secs(rng.gen_range(0..=2)),
            watch_delay: Duration::from_secs(rng.gen_range(1..=3)),
            wait_per_mille: 500,
        }
    }
}

/// A config inside what `HaConfig::validate` accepts, near its boundaries.
fn varied_config(rng: &mut StdRng) -> HaConfig {
    let fence_after = rng.gen_range(2..=30);
    let slack = kvs_coordinator::control::ha_config::FENCE_DETECTION_SLACK.as_secs();
    let window = fence_after + slack + rng.gen_range(0..=60);
    let config = HaConfig {
        fence_after: Duration::from_secs(fence_after),
        confirmation_window: Duration::from_secs(window),
        ..HaConfig::default()
    };
    config.validate().unwrap_or_default()
}
