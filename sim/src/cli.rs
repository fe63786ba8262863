//! The command line: `kvs-sim run` prints one seed's timeline and trace hash; `kvs-sim explore`
//! runs many seeds (see `explore.rs`).
//!
//! ```text
//!   kvs-sim run --seed N [--scenario NAME] [--steps K] [--break NAME]... [--tail LINES]
//!   kvs-sim explore --seeds A..B [--jobs 2] [--scenario NAME|all] [--break NAME]...
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::breaks::{Break, Breaks};
use crate::explore::{self, ExploreConfig};
use crate::run::{Outcome, RunConfig, run};
use crate::scenario::Scenario;

#[derive(Debug, Parser)]
#[command(name = "kvs-sim", about = "Seeded simulation of the KVS HA policy")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run one seed and print its timeline and trace hash.
    Run {
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value = "random")]
        scenario: String,
        /// Ticks (simulated seconds) to run; default: until the heal bound after the last fault.
        #[arg(long)]
        steps: Option<u64>,
        /// Deliberately break a rule: window-zero, no-fencing (loss-zero acts on the full stack only).
        #[arg(long = "break")]
        breaks: Vec<String>,
        /// Print only the last LINES of the timeline.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Run many seeds; report violations with the command that reproduces each.
    Explore {
        /// A half-open range, e.g. `0..1000`.
        #[arg(long)]
        seeds: String,
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// A scenario name, or `all` to rotate through the library.
        #[arg(long, default_value = "all")]
        scenario: String,
        #[arg(long = "break")]
        breaks: Vec<String>,
    },
    /// The full-stack simulation: the real coordinator and agent code on turmoil.
    Stack {
        #[command(subcommand)]
        command: crate::stack::cli::StackCommand,
    },
}

fn parse_breaks(names: &[String]) -> Result<Breaks, String> {
    let breaks: Result<Vec<Break>, String> = names.iter().map(|n| Break::parse(n)).collect();
    Ok(Breaks::of(&breaks?))
}

fn parse_range(text: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("--seeds {text:?}: expected A..B"))?;
    let a = a
        .trim()
        .parse()
        .map_err(|e| format!("--seeds start: {e}"))?;
    let b = b.trim().parse().map_err(|e| format!("--seeds end: {e}"))?;
    if a >= b {
        return Err(format!("--seeds {text:?} is empty"));
    }
    Ok(a..b)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Run {
            seed,
            scenario,
            steps,
            breaks,
            tail,
        } => run_one(seed, &scenario, steps, &breaks, tail),
        Commands::Explore {
            seeds,
            jobs,
            scenario,
            breaks,
        } => explore_many(&seeds, jobs, &scenario, &breaks),
        Commands::Stack { command } => crate::stack::cli::main(command, parse_breaks, parse_range),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("kvs-sim: {message}");
            ExitCode::from(2)
        }
    }
}

fn run_one(
    seed: u64,
    scenario: &str,
    steps: Option<u64>,
    breaks: &[String],
    tail: Option<usize>,
) -> Result<ExitCode, String> {
    let config = RunConfig {
        seed,
        scenario: Scenario::parse(scenario)?,
        breaks: parse_breaks(breaks)?,
        steps,
    };
    let outcome = run(&config);
    let lines = tail.unwrap_or(usize::MAX);
    print!("{}", outcome.timeline.tail(lines));
    println!("{}", summary(&outcome));
    Ok(if outcome.violation.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One line: verdict, trace hash, simulated time, counters.
pub fn summary(outcome: &Outcome) -> String {
    let verdict = match &outcome.violation {
        Some(v) => format!(
            "VIOLATION of {} at {} s: {}",
            v.invariant,
            v.at.as_secs(),
            v.message
        ),
        None => "ok".into(),
    };
    let s = &outcome.stats;
    format!(
        "seed {} scenario {}: {verdict}\ntrace hash {:016x}, simulated {} s, writes acked {} \
         refused {} wait-timeouts {}, failovers {}, lost writes {}{}, healed after {}, agents \
         restarted while connected {}",
        outcome.config.seed,
        outcome.config.scenario.name(),
        outcome.trace_hash,
        outcome.simulated.as_secs(),
        s.writes_acknowledged,
        s.writes_refused,
        s.wait_timeouts,
        s.failovers_completed,
        s.lost_writes,
        if s.loss_underestimated {
            " (estimate below the real loss)"
        } else {
            ""
        },
        s.heal_time
            .map_or("-".into(), |t| format!("{} s", t.as_secs())),
        s.spurious_agent_restarts,
    )
}

fn explore_many(
    seeds: &str,
    jobs: usize,
    scenario: &str,
    breaks: &[String],
) -> Result<ExitCode, String> {
    let scenarios = if scenario == "all" {
        Scenario::LIBRARY.to_vec()
    } else {
        vec![Scenario::parse(scenario)?]
    };
    let config = ExploreConfig {
        seeds: parse_range(seeds)?,
        jobs: jobs.max(1),
        scenarios,
        breaks: parse_breaks(breaks)?,
    };
    let report = explore::explore(&config);
    print!("{}", report.render());
    Ok(if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
