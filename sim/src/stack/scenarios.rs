//! The full stack's scenario library: the reference's cases as fault plans drawn from the seed,
//! with the same names as the fast layer's (`crate::scenario::Scenario`). Offsets count from the
//! end of the warm-up; `@primary` / `@standby` are resolved when each fault starts.
//!
//! ```text
//!   zone-outage          the primary's zone cut off (edge durations)
//!   engine-crash         the primary's engine crashes, up to three times, spaced out
//!   agent-crash          the primary's and the standby's agents crash
//!   flapping-network     the primary isolated 4-6 times, each shorter than the window
//!   primary-cut-from-coordinators-not-standby   coordinators lose the primary; its standby does not
//!   leader-lost-mid-failover   the primary cut off (not from the app) for over two windows; the
//!                        leader crashes around the end of the first
//!   double-failure       the primary's host crashes, then the standby's host or a zone goes too
//!   power-loss           the primary's host crashes for a few seconds (the reboot rule)
//!   random               any faults on any hosts, one after another
//! ```

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::coordinators::CONFIRMATION_WINDOW;
use super::faults::{self, Fault};
use crate::scenario::Scenario;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The plan of `scenario` for `seed` (`hosts`: name and zone of every agent host).
pub fn plan(
    scenario: Scenario,
    seed: u64,
    hosts: &[(String, String)],
    count: usize,
) -> Vec<(Duration, Fault)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let rng = &mut rng;
    let window = CONFIRMATION_WINDOW.as_secs();
    let primary = || "@primary".to_string();
    let start = secs(rng.gen_range(0..10));
    let mut plan = match scenario {
        Scenario::Random => faults::random(rng, hosts, count),
        Scenario::ZoneOutage => {
            let zone = ["a", "b", "c"][rng.gen_range(0..3)].to_string();
            vec![(
                start,
                Fault::ZoneCut {
                    zone,
                    down: faults::outage(rng),
                },
            )]
        }
        Scenario::EngineCrash => (0..rng.gen_range(1..=3))
            .map(|i| {
                (
                    start + secs(i * rng.gen_range(15..40)),
                    Fault::EngineCrash { host: primary() },
                )
            })
            .collect(),
        Scenario::AgentCrash => vec![
            (start, Fault::AgentCrash { host: primary() }),
            (
                start + secs(rng.gen_range(1..30)),
                Fault::AgentCrash {
                    host: "@standby".into(),
                },
            ),
        ],
        Scenario::FlappingNetwork => {
            let mut at = start;
            let mut plan = Vec::new();
            for _ in 0..rng.gen_range(4..=6) {
                let down = secs(rng.gen_range(3..window - 2));
                plan.push((
                    at,
                    Fault::Isolate {
                        host: primary(),
                        down,
                    },
                ));
                at += down + secs(rng.gen_range(2..8));
            }
            plan
        }
        Scenario::PrimaryCutFromCoordinatorsNotStandby => vec![(
            start,
            Fault::CoordinatorCut {
                host: primary(),
                down: faults::outage(rng),
            },
        )],
        Scenario::LeaderLostMidFailover => {
            // Long enough for the new leader to confirm the cut again from scratch (observations
            // are leader memory) after the crashed one comes back or is replaced.
            let down = secs(2 * window + rng.gen_range(20..50));
            let crash_at = start + secs(window) + secs(rng.gen_range(0..6)) - secs(3);
            vec![
                (
                    start,
                    Fault::CutOff {
                        host: primary(),
                        down,
                    },
                ),
                (
                    crash_at,
                    Fault::LeaderCrash {
                        down: secs(rng.gen_range(1..15)),
                    },
                ),
            ]
        }
        Scenario::DoubleFailure => {
            let down = secs(window + rng.gen_range(5..60));
            let second = if rng.gen_bool(0.5) {
                Fault::HostCrash {
                    host: "@standby".into(),
                    down: faults::outage(rng),
                }
            } else {
                Fault::ZoneCut {
                    zone: ["a", "b", "c"][rng.gen_range(0..3)].to_string(),
                    down: faults::outage(rng),
                }
            };
            vec![
                (
                    start,
                    Fault::HostCrash {
                        host: primary(),
                        down,
                    },
                ),
                (start + secs(rng.gen_range(5..window + 20)), second),
            ]
        }
        Scenario::PowerLoss => vec![(
            start,
            Fault::HostCrash {
                host: primary(),
                // Back well inside the window: the rebooted primary, not a failover, is under test.
                down: secs(rng.gen_range(2..CONFIRMATION_WINDOW.as_secs() - 10)),
            },
        )],
    };
    plan.sort_by_key(|(at, _)| *at);
    plan
}
