//! Runs one seed: draw the world and plan from the scenario, step until the heal bound after the
//! last fault (or `--steps`), check every invariant after every step, stop at the first
//! violation.
//!
//! ```text
//!   seed ─► StdRng ─► Scenario::generate ─► WorldSpec ─► World::new
//!   loop: world.step(); for each invariant: check(world)?   ─► Outcome { trace hash, violation }
//!   end:  invariants' at_end (complete runs only)
//! ```

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::breaks::Breaks;
use crate::invariants::{self, HEAL_BOUND, Heals, Invariant};
use crate::scenario::Scenario;
use crate::timeline::Timeline;
use crate::world::{TICK, World};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    pub scenario: Scenario,
    pub breaks: Breaks,
    /// Stop after this many ticks (the end-of-run checks then do not apply unless it is past
    /// the heal bound).
    pub steps: Option<u64>,
}

impl RunConfig {
    pub fn new(seed: u64, scenario: Scenario) -> Self {
        Self {
            seed,
            scenario,
            breaks: Breaks::none(),
            steps: None,
        }
    }

    /// The command that reproduces this run.
    pub fn command(&self) -> String {
        format!(
            "kvs-sim run --seed {} --scenario {}{}",
            self.seed,
            self.scenario.name(),
            self.breaks.flags()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub at: Duration,
    pub message: String,
}

/// Counters of one run, for the report and the benchmark.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub writes_acknowledged: u64,
    pub writes_refused: u64,
    pub wait_timeouts: u64,
    pub failovers_completed: u64,
    /// Runs where the reported loss estimates summed below the real loss.
    pub loss_underestimated: bool,
    pub lost_writes: u64,
    /// Agents restarted over SSH although alive and connected to the leader.
    pub spurious_agent_restarts: u64,
    /// From the last fault healing to the cluster being healthy for good.
    pub heal_time: Option<Duration>,
}

pub struct Outcome {
    pub config: RunConfig,
    pub trace_hash: u64,
    pub violation: Option<Violation>,
    pub simulated: Duration,
    pub timeline: Timeline,
    pub stats: Stats,
}

pub fn run(config: &RunConfig) -> Outcome {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let spec = config.scenario.generate(&mut rng);
    let mut world = World::new(config.seed, spec, config.breaks.clone());
    let full = world.plan.healed_at().max(crate::scenario::WARMUP) + HEAL_BOUND;
    let ticks = config
        .steps
        .unwrap_or(full.as_secs() / TICK.as_secs().max(1));
    let mut safety = invariants::all();
    let mut heals = Heals::default();
    let mut violation = None;
    for _ in 0..ticks {
        world.step();
        violation = first_violation(&mut safety, &mut heals, &world, false);
        if violation.is_some() {
            break;
        }
    }
    if violation.is_none() && world.now >= full {
        violation = first_violation(&mut safety, &mut heals, &world, true);
    }
    if let Some(v) = &violation {
        world.timeline.push(
            world.now,
            "VIOLATED",
            format!("[{}] {}", v.invariant, v.message),
        );
    }
    let stats = stats(&world, &heals);
    Outcome {
        config: config.clone(),
        trace_hash: world.timeline.hash(),
        violation,
        simulated: world.now,
        timeline: world.timeline,
        stats,
    }
}

fn first_violation(
    safety: &mut [Box<dyn Invariant>],
    heals: &mut Heals,
    world: &World,
    end: bool,
) -> Option<Violation> {
    let check = |invariant: &mut dyn Invariant| {
        let result = if end {
            invariant.at_end(world)
        } else {
            invariant.check(world)
        };
        result.err().map(|message| Violation {
            invariant: invariant.name(),
            at: world.now,
            message,
        })
    };
    for invariant in safety.iter_mut() {
        if let Some(violation) = check(invariant.as_mut()) {
            return Some(violation);
        }
    }
    check(heals)
}

fn stats(world: &World, heals: &Heals) -> Stats {
    let losses = invariants::loss_report(world);
    let lost: u64 = losses.iter().map(|(_, lost, _)| *lost).sum();
    let underestimated = losses
        .iter()
        .any(|(_, lost, estimated)| estimated.is_some_and(|e| e < *lost));
    Stats {
        writes_acknowledged: u64::try_from(world.ledger.acks.len()).unwrap_or(u64::MAX),
        writes_refused: world.ledger.refused,
        wait_timeouts: world.ledger.wait_timeouts,
        failovers_completed: u64::try_from(world.completions.len()).unwrap_or(u64::MAX),
        loss_underestimated: underestimated,
        lost_writes: lost / crate::engine::WRITE_BYTES,
        spurious_agent_restarts: world.spurious_agent_restarts,
        heal_time: heals
            .healthy_since
            .map(|at| at.saturating_sub(world.plan.healed_at())),
    }
}
