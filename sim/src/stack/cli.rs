//! `kvs-sim stack …`: the full-stack simulation's commands.
//!
//! ```text
//!   kvs-sim stack run --seed N [--scenario NAME] [--faults K] [--instances N]
//!                     [--break no-fencing|loss-zero] [--tail L]
//!   kvs-sim stack explore --seeds A..B [--jobs 2] [--scenario NAME|all] [--faults K]
//!                     [--break no-fencing|loss-zero]
//!
//! `explore` ends with the benchmark line: seeds per minute and simulated seconds per wall
//! second (3 coordinators, 6 hosts).
//! ```

use std::fmt::Write as _;
use std::ops::Range;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Subcommand;

use super::{StackConfig, StackOutcome, run};
use crate::breaks::Breaks;
use crate::scenario::Scenario;

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Run one seed of the full stack; print its timeline, verdict and trace hash.
    Run {
        #[arg(long)]
        seed: u64,
        /// A scenario of the library (`kvs-sim stack run --scenario x` lists them).
        #[arg(long, default_value = "random")]
        scenario: String,
        /// Faults in the plan, one after another.
        #[arg(long, default_value_t = 3)]
        faults: usize,
        #[arg(long, default_value_t = 1)]
        instances: usize,
        /// Deliberately break a rule: no-fencing, loss-zero.
        #[arg(long = "break")]
        breaks: Vec<String>,
        /// Print only the last LINES of the timeline.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Run many seeds on `jobs` threads; report violations with the command that reproduces each.
    Explore {
        /// A half-open range, e.g. `0..1000`.
        #[arg(long)]
        seeds: String,
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// A scenario name, or `all` to rotate through the library (seed mod its length).
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Faults of the `random` scenario.
        #[arg(long, default_value_t = 3)]
        faults: usize,
        #[arg(long = "break")]
        breaks: Vec<String>,
    },
}

/// What one seed runs: the shared flags plus the seed and its scenario.
#[derive(Clone)]
struct Flags {
    faults: usize,
    instances: usize,
    breaks: Breaks,
}

impl Flags {
    fn config(&self, seed: u64, scenario: Scenario) -> StackConfig {
        StackConfig {
            faults: self.faults,
            instances: self.instances,
            scenario,
            breaks: self.breaks.clone(),
            ..StackConfig::new(seed)
        }
    }

    fn command_line(&self, seed: u64, scenario: Scenario) -> String {
        format!(
            "kvs-sim stack run --seed {seed} --scenario {} --faults {} --instances {}{}",
            scenario.name(),
            self.faults,
            self.instances,
            self.breaks.flags()
        )
    }
}

/// Seed `s` of an `all` exploration runs `LIBRARY[s % len]`.
fn scenario_of(scenarios: &[Scenario], seed: u64) -> Scenario {
    let count = u64::try_from(scenarios.len()).unwrap_or(1).max(1);
    let index = usize::try_from(seed % count).unwrap_or(0);
    scenarios.get(index).copied().unwrap_or(Scenario::Random)
}

pub fn main(
    command: StackCommand,
    parse_breaks: impl Fn(&[String]) -> Result<Breaks, String>,
    parse_range: impl Fn(&str) -> Result<Range<u64>, String>,
) -> Result<ExitCode, String> {
    // The production code's logs, for debugging a seed: `KVS_SIM_LOG=info kvs-sim stack run …`.
    if let Ok(filter) = std::env::var("KVS_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .without_time()
            .try_init();
    }
    match command {
        StackCommand::Run {
            seed,
            scenario,
            faults,
            instances,
            breaks,
            tail,
        } => {
            let flags = Flags {
                faults,
                instances,
                breaks: parse_breaks(&breaks)?,
            };
            let scenario = Scenario::parse(&scenario)?;
            let outcome = run(&flags.config(seed, scenario)).map_err(|e| format!("{e:#}"))?;
            print!(
                "{}",
                outcome.history.timeline.tail(tail.unwrap_or(usize::MAX))
            );
            println!("{}", summary(&outcome, &flags.command_line(seed, scenario)));
            Ok(if outcome.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        StackCommand::Explore {
            seeds,
            jobs,
            scenario,
            faults,
            breaks,
        } => {
            let flags = Flags {
                faults,
                instances: 1,
                breaks: parse_breaks(&breaks)?,
            };
            let scenarios = if scenario == "all" {
                Scenario::LIBRARY.to_vec()
            } else {
                vec![Scenario::parse(&scenario)?]
            };
            let seeds = parse_range(&seeds)?;
            let report = explore(seeds, jobs.max(1), &scenarios, &flags);
            print!("{}", report.text);
            Ok(if report.violating.is_empty() && report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// The verdict, the trace hash and the counters of one run.
pub fn summary(outcome: &StackOutcome, command: &str) -> String {
    let mut text = String::new();
    let plan: Vec<String> = outcome
        .plan
        .iter()
        .map(|(at, fault)| format!("+{}s {fault}", at.as_secs()))
        .collect();
    let _ = writeln!(
        text,
        "seed {} scenario {} plan: {}",
        outcome.seed,
        outcome.scenario.name(),
        plan.join("; ")
    );
    if outcome.violations.is_empty() {
        let _ = writeln!(text, "ok");
    }
    for v in &outcome.violations {
        let _ = writeln!(
            text,
            "VIOLATION of {} at {:.1} s: {}\n  reproduce: {command}",
            v.invariant,
            v.at.as_secs_f64(),
            v.message
        );
    }
    let acked = outcome.history.acknowledged.len();
    let waited = outcome.history.acknowledged.iter().filter(|a| a.2).count();
    let _ = write!(
        text,
        "trace hash {:016x}, simulated {} s in {:.1} s wall ({:.0}x), promotions {}, writes \
         acknowledged {acked} ({waited} confirmed by a replica), lost without WAIT {}",
        outcome.hash,
        outcome.simulated.as_secs(),
        outcome.wall.as_secs_f64(),
        outcome.simulated.as_secs_f64() / outcome.wall.as_secs_f64().max(1e-9),
        outcome.promotions,
        outcome.lost_unreplicated,
    );
    text
}

pub struct ExploreReport {
    pub text: String,
    pub violating: Vec<u64>,
    pub errors: Vec<(u64, String)>,
}

/// Runs `seeds` on `jobs` threads (each seed alone in its thread, results sorted by seed).
fn explore(seeds: Range<u64>, jobs: usize, scenarios: &[Scenario], flags: &Flags) -> ExploreReport {
    // Wall time, for the benchmark line only (never inside the simulated world).
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let all: Vec<u64> = seeds.clone().collect();
    let mut results: Vec<(u64, Result<StackOutcome, String>)> = Vec::new();
    // Threads only here, outside the simulated world: each runs whole seeds one after another.
    #[allow(clippy::disallowed_methods)]
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs)
            .map(|job| {
                let mine: Vec<u64> = all.iter().copied().skip(job).step_by(jobs).collect();
                let flags = flags.clone();
                scope.spawn(move || {
                    mine.into_iter()
                        .map(|seed| {
                            let outcome = run(&flags.config(seed, scenario_of(scenarios, seed)))
                                .map_err(|e| format!("{e:#}"));
                            (seed, outcome)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            if let Ok(part) = handle.join() {
                results.extend(part);
            }
        }
    });
    results.sort_by_key(|(seed, _)| *seed);
    let wall = started.elapsed();
    let mut text = String::new();
    let mut violating = Vec::new();
    let mut errors = Vec::new();
    let mut simulated = Duration::ZERO;
    let mut promotions = 0;
    for (seed, result) in &results {
        match result {
            Ok(outcome) => {
                simulated += outcome.simulated;
                promotions += outcome.promotions;
                if !outcome.violations.is_empty() {
                    violating.push(*seed);
                    if violating.len() <= 5 {
                        let _ = writeln!(text, "--- seed {seed}: timeline tail");
                        text.push_str(&outcome.history.timeline.tail(30));
                        let _ = writeln!(
                            text,
                            "{}",
                            summary(outcome, &flags.command_line(*seed, outcome.scenario))
                        );
                    }
                }
            }
            Err(error) => {
                let _ = writeln!(text, "seed {seed}: the run failed: {error}");
                errors.push((*seed, error.clone()));
            }
        }
    }
    let count = results.len() as f64;
    let _ = writeln!(
        text,
        "full stack: {} seeds, {} violating, {} failed to run, {promotions} promotions; {:.1} \
         seeds/min, {:.0} simulated s per wall s ({jobs} jobs, {:.0} s wall)",
        results.len(),
        violating.len(),
        errors.len(),
        count / wall.as_secs_f64().max(1e-9) * 60.0,
        simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        wall.as_secs_f64(),
    );
    if !violating.is_empty() {
        let _ = writeln!(text, "violating seeds: {violating:?}");
    }
    ExploreReport {
        text,
        violating,
        errors,
    }
}
