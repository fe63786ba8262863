//! The explore driver: many seeds, on `jobs` OS threads. Threads live here only, outside the
//! deterministic model: each seed runs alone in one thread from its own seed, and results are
//! sorted by seed before printing, so the report does not depend on scheduling (except for the
//! wall-clock benchmark line).
//!
//! ```text
//!   seeds A..B ─► thread k runs seeds A+k, A+k+jobs, … ─► [SeedResult] ─► sort ─► report
//! ```

use std::fmt::Write as _;
use std::ops::Range;
use std::time::Duration;

use crate::breaks::Breaks;
use crate::run::{RunConfig, Violation, run};
use crate::scenario::Scenario;

/// Timeline lines printed before a violation.
const TAIL_LINES: usize = 30;
/// Violations printed in full; the rest are listed by command only.
const VIOLATIONS_PRINTED_MAX: usize = 5;

#[derive(Debug, Clone)]
pub struct ExploreConfig {
    pub seeds: Range<u64>,
    pub jobs: usize,
    /// Seed `s` runs `scenarios[s % len]`.
    pub scenarios: Vec<Scenario>,
    pub breaks: Breaks,
}

impl ExploreConfig {
    fn run_config(&self, seed: u64) -> RunConfig {
        let count = u64::try_from(self.scenarios.len()).unwrap_or(1).max(1);
        let index = usize::try_from(seed % count).unwrap_or(0);
        RunConfig {
            seed,
            scenario: self
                .scenarios
                .get(index)
                .copied()
                .unwrap_or(Scenario::Random),
            breaks: self.breaks.clone(),
            steps: None,
        }
    }
}

/// A violating seed.
#[derive(Debug, Clone)]
pub struct Found {
    pub command: String,
    pub violation: Violation,
    pub tail: String,
}

#[derive(Debug, Default)]
pub struct ExploreReport {
    pub seeds: u64,
    pub violations: Vec<(u64, Found)>,
    pub simulated: Duration,
    pub wall: Duration,
    pub failovers: u64,
    pub underestimated_runs: u64,
    pub heal_time_max: Duration,
}

struct SeedResult {
    seed: u64,
    found: Option<Found>,
    simulated: Duration,
    failovers: u64,
    underestimated: bool,
    heal_time: Option<Duration>,
}

fn run_seed(config: &ExploreConfig, seed: u64) -> SeedResult {
    let run_config = config.run_config(seed);
    let outcome = run(&run_config);
    SeedResult {
        seed,
        found: outcome.violation.clone().map(|violation| Found {
            command: run_config.command(),
            violation,
            tail: outcome.timeline.tail(TAIL_LINES),
        }),
        simulated: outcome.simulated,
        failovers: outcome.stats.failovers_completed,
        underestimated: outcome.stats.loss_underestimated,
        heal_time: outcome.stats.heal_time,
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "the explore driver, outside the deterministic model: OS threads run whole seeds \
              in parallel and the wall clock only times the benchmark"
)]
pub fn explore(config: &ExploreConfig) -> ExploreReport {
    let started = std::time::Instant::now();
    let jobs = u64::try_from(config.jobs.max(1)).unwrap_or(1);
    let mut results: Vec<SeedResult> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|k| {
                scope.spawn(move || {
                    let seeds = config.seeds.clone().skip(usize::try_from(k).unwrap_or(0));
                    seeds
                        .step_by(usize::try_from(jobs).unwrap_or(1))
                        .map(|seed| run_seed(config, seed))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|r| r.seed);
    let mut report = ExploreReport {
        seeds: u64::try_from(results.len()).unwrap_or(u64::MAX),
        wall: started.elapsed(),
        ..ExploreReport::default()
    };
    for result in results {
        report.simulated += result.simulated;
        report.failovers += result.failovers;
        report.underestimated_runs += u64::from(result.underestimated);
        report.heal_time_max = report
            .heal_time_max
            .max(result.heal_time.unwrap_or_default());
        if let Some(found) = result.found {
            report.violations.push((result.seed, found));
        }
    }
    report
}

impl ExploreReport {
    pub fn render(&self) -> String {
        let mut text = String::new();
        for (index, (_, found)) in self.violations.iter().enumerate() {
            let v = &found.violation;
            if index < VIOLATIONS_PRINTED_MAX {
                let _ = writeln!(
                    text,
                    "=== VIOLATION of {} at {} s: {}\n--- timeline tail:\n{}--- reproduce: {}\n",
                    v.invariant,
                    v.at.as_secs(),
                    v.message,
                    found.tail,
                    found.command
                );
            } else {
                let _ = writeln!(text, "VIOLATION of {}: {}", v.invariant, found.command);
            }
        }
        let wall = self.wall.as_secs_f64().max(1e-9);
        let _ = writeln!(
            text,
            "explored {} seeds: {} violations, {} failovers completed, {} runs whose loss \
             estimate was below the real loss, longest heal {} s",
            self.seeds,
            self.violations.len(),
            self.failovers,
            self.underestimated_runs,
            self.heal_time_max.as_secs()
        );
        let _ = writeln!(
            text,
            "benchmark: {:.1} s wall, {:.0} seeds/min, {:.0} simulated s per wall s",
            wall,
            self.seeds as f64 * 60.0 / wall,
            self.simulated.as_secs_f64() / wall
        );
        text
    }
}
