//! redis-benchmark targets, its `--csv` output, and the ratio table of the front benchmark.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where one benchmark run connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// `a front`, `b native-tls`, …
    pub label: &'static str,
    pub host: String,
    pub port: u16,
    /// `--tls --cacert` when set; plain TCP otherwise.
    pub ca: Option<PathBuf>,
}

impl Target {
    pub fn tls(label: &'static str, host: &str, port: u16, ca: &Path) -> Target {
        Target {
            label,
            host: host.into(),
            port,
            ca: Some(ca.to_path_buf()),
        }
    }
    pub fn plain(label: &'static str, host: &str, port: u16) -> Target {
        Target {
            label,
            host: host.into(),
            port,
            ca: None,
        }
    }
}

/// One line of redis-benchmark's CSV output.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub target: &'static str,
    pub pipeline: u32,
    /// `SET` or `GET`.
    pub test: String,
    pub rps: f64,
    pub p99_ms: f64,
}

/// Parses redis-benchmark 7 `--csv`: a header naming the columns, then one line per test.
pub fn parse_csv(text: &str, target: &'static str, pipeline: u32) -> Result<Vec<Measurement>> {
    let mut lines = text.lines().filter(|l| l.starts_with('"'));
    let header: Vec<String> = split(
        lines
            .next()
            .context("redis-benchmark printed no CSV header")?,
    );
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no CSV column {name}"))
    };
    let (test, rps, p99) = (column("test")?, column("rps")?, column("p99_latency_ms")?);
    let mut out = Vec::new();
    for line in lines {
        let fields = split(line);
        let get = |i: usize| fields.get(i).cloned().unwrap_or_default();
        out.push(Measurement {
            target,
            pipeline,
            test: get(test),
            rps: get(rps)
                .parse()
                .with_context(|| format!("bad rps in {line}"))?,
            p99_ms: get(p99)
                .parse()
                .with_context(|| format!("bad p99 in {line}"))?,
        });
    }
    if out.is_empty() {
        bail!("redis-benchmark printed no results");
    }
    Ok(out)
}

fn split(line: &str) -> Vec<String> {
    line.split(',')
        .map(|f| f.trim().trim_matches('"').to_string())
        .collect()
}

/// Prints, per test and pipeline, the front's throughput and p99 relative to each baseline.
pub fn print_ratios(results: &[Measurement]) {
    println!(
        "\nratios (front / baseline): ops/s ratio (higher is better), p99 ratio (lower is better)"
    );
    let mut keys: Vec<(u32, String)> = results
        .iter()
        .map(|m| (m.pipeline, m.test.clone()))
        .collect();
    keys.dedup();
    keys.sort();
    keys.dedup();
    for (pipeline, test) in keys {
        let find = |prefix: &str| {
            results
                .iter()
                .find(|m| m.pipeline == pipeline && m.test == test && m.target.starts_with(prefix))
        };
        let Some(front) = find("a ") else { continue };
        let mut line = format!("  P={pipeline:<3} {test:<4}");
        for (name, prefix) in [
            ("a/b native-tls", "b "),
            ("a/c plain", "c "),
            ("a/d engine-direct", "d "),
        ] {
            if let Some(base) = find(prefix) {
                line += &format!(
                    "  {name}: {:.2}x ops/s, {:.2}x p99",
                    front.rps / base.rps.max(f64::MIN_POSITIVE),
                    front.p99_ms / base.p99_ms.max(0.001)
                );
            }
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_7_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"SET\",\"81967.21\",\"0.343\",\"0.080\",\"0.327\",\"0.527\",\"0.671\",\"2.175\"\n\
                    \"GET\",\"90909.09\",\"0.300\",\"0.072\",\"0.295\",\"0.447\",\"0.583\",\"1.031\"\n";
        let runs = parse_csv(text, "a front", 16).expect("parse");
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].test, "SET");
        assert!((runs[1].rps - 90909.09).abs() < 0.01);
        assert!((runs[1].p99_ms - 0.583).abs() < 0.0001);
    }
}
