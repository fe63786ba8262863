//! CPU time per process during one benchmark run, from `/proc/PID/stat` (utime + stime, every
//! thread) and, for redis-benchmark, `/proc/self/stat` cutime + cstime (waited-for children).
//!
//! On a small machine the front's throughput is bounded by CPU: redis-benchmark, the engine and
//! the front (the agent) share the cores. Printing microseconds of CPU per request for each
//! process makes a claim like "the front costs more CPU per request than the engine's native TLS"
//! checkable from the bench's own output.

use std::time::Duration;

/// Linux reports these times in USER_HZ, which is 100 on every architecture the agent runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// A process whose CPU time is sampled.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub label: &'static str,
    pub pid: u32,
}

/// CPU ticks of each tracked process, and of this process's reaped children.
#[derive(Debug, Clone)]
pub struct Sample {
    ticks: Vec<Option<u64>>,
    children: Option<u64>,
    at: tokio::time::Instant,
}

/// `utime + stime` (fields 14 and 15) or, with `children`, `cutime + cstime` (16 and 17).
fn stat_ticks(path: &str, children: bool) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces: parse after the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3: field N is fields[N - 3].
    let (a, b) = if children { (13, 14) } else { (11, 12) };
    Some(fields.get(a)?.parse::<u64>().ok()? + fields.get(b)?.parse::<u64>().ok()?)
}

pub fn sample(tracked: &[Tracked]) -> Sample {
    Sample {
        ticks: tracked
            .iter()
            .map(|t| stat_ticks(&format!("/proc/{}/stat", t.pid), false))
            .collect(),
        children: stat_ticks("/proc/self/stat", true),
        at: tokio::time::Instant::now(),
    }
}

/// CPU use between two samples: per process, microseconds per request and share of one core.
#[derive(Debug, Clone)]
pub struct Usage {
    /// (label, CPU time) for redis-benchmark and every tracked process that used CPU.
    pub per_process: Vec<(&'static str, Duration)>,
    pub wall: Duration,
}

pub fn usage(tracked: &[Tracked], before: &Sample, after: &Sample) -> Usage {
    let ticks = |t: u64| Duration::from_secs_f64(t as f64 / TICKS_PER_SECOND);
    let mut per_process = Vec::new();
    if let (Some(a), Some(b)) = (before.children, after.children) {
        per_process.push(("redis-benchmark", ticks(b.saturating_sub(a))));
    }
    for (i, t) in tracked.iter().enumerate() {
        if let (Some(Some(a)), Some(Some(b))) = (before.ticks.get(i), after.ticks.get(i))
            && b > a
        {
            per_process.push((t.label, ticks(b - a)));
        }
    }
    Usage {
        per_process,
        wall: after.at.saturating_duration_since(before.at),
    }
}

impl Usage {
    /// `cpu µs/req (share of a core): redis-benchmark 9.1 (91%), agent 6.0 (60%), engine 3.2
    /// (32%); total 18.3, ceiling on 2 cores 109290 ops/s`: the ceiling is the throughput at
    /// which this much CPU per request would use every core.
    pub fn line(&self, requests: u64, cores: usize) -> String {
        let requests = requests.max(1) as f64;
        let wall = self.wall.as_secs_f64().max(f64::MIN_POSITIVE);
        let parts: Vec<String> = self
            .per_process
            .iter()
            .map(|(label, cpu)| {
                format!(
                    "{label} {:.1} ({:.0}%)",
                    cpu.as_secs_f64() * 1e6 / requests,
                    cpu.as_secs_f64() * 100.0 / wall
                )
            })
            .collect();
        let total: f64 = self.per_process.iter().map(|(_, c)| c.as_secs_f64()).sum();
        let per_request = total / requests;
        format!(
            "cpu µs/req (share of a core): {}; total {:.1}, ceiling on {cores} cores {:.0} ops/s",
            parts.join(", "),
            per_request * 1e6,
            cores as f64 / per_request.max(f64::MIN_POSITIVE)
        )
    }
}

/// The parent PID of `pid` (field 4 of `/proc/PID/stat`).
pub fn parent_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_read() {
        let pid = std::process::id();
        assert!(stat_ticks(&format!("/proc/{pid}/stat"), false).is_some());
        assert!(stat_ticks("/proc/self/stat", true).is_some());
        assert!(parent_of(pid).is_some_and(|p| p > 0));
        let tracked = [Tracked {
            label: "self",
            pid: std::process::id(),
        }];
        let before = sample(&tracked);
        let after = sample(&tracked);
        let line = usage(&tracked, &before, &after).line(1000, 2);
        assert!(line.starts_with("cpu µs/req"), "{line}");
    }
}
