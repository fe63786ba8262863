//! Text and JSON rendering shared by the commands: aligned tables, `Key: value` blocks, UTC
//! timestamps, byte sizes, plan display names and the JSON form of an instance.
//!
//! Everything here is pure (takes values, returns strings) except [`print_json`] and
//! [`wall_clock_ms`], so the formats are unit-tested without a coordinator.

use kvs_proto::pb;
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Columns separated by two spaces, each as wide as its widest cell; no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Heroku's styled object: `Key:` padded to the longest key, then the value.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count() + 1)
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(key, value)| format!("{:<width$} {value}\n", format!("{key}:")))
        .collect()
}

/// Prints pretty JSON and a newline to stdout.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Wall-clock time in Unix milliseconds.
// The CLI is an I/O shell, and "last seen 3s ago" needs the real time; pure code takes `now`.
#[allow(clippy::disallowed_methods)]
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// (year, month, day, hour, minute, second) of Unix milliseconds, in UTC.
fn utc_parts(ms: i64) -> (i64, i64, i64, i64, i64, i64) {
    let seconds = ms.div_euclid(1000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
    )
}

/// `2020-09-10 18:39 UTC`, as `kvs info` shows `Created`.
pub fn utc_minutes(ms: i64) -> String {
    let (y, mo, d, h, mi, _) = utc_parts(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC")
}

/// `2020-09-10 18:39:07 UTC`, for event lines.
pub fn utc_seconds(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `2020-09-10T18:39:07Z`, for JSON.
pub fn rfc3339(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `3s ago`, `5m ago`, `2h ago`, `4d ago`; `never` for 0.
pub fn ago(now_ms: i64, then_ms: i64) -> String {
    if then_ms <= 0 {
        return "never".into();
    }
    let seconds = (now_ms - then_ms).max(0) / 1000;
    match seconds {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// `premium-0` → `Premium 0`, `mini` → `Mini`, as Heroku prints `Plan:`.
pub fn plan_display_name(plan: &str) -> String {
    plan.split('-')
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `512 MB`, `3.8 GB`: host memory, where exact plan sizes do not apply.
pub fn human_bytes(bytes: u64) -> String {
    if bytes >= GIB {
        let tenths = bytes.saturating_mul(10) / GIB;
        if tenths.is_multiple_of(10) {
            format!("{} GB", tenths / 10)
        } else {
            format!("{}.{} GB", tenths / 10, tenths % 10)
        }
    } else if bytes >= MIB {
        format!("{} MB", bytes / MIB)
    } else {
        format!("{} KB", bytes / 1024)
    }
}

/// The config vars an instance is attached as, optionally only on one app.
pub fn config_vars(instance: &pb::Instance, app: Option<&str>) -> Vec<String> {
    let mut vars: Vec<String> = Vec::new();
    for attachment in &instance.attachments {
        if app.is_none_or(|a| a == attachment.app) && !vars.contains(&attachment.config_var) {
            vars.push(attachment.config_var.clone());
        }
    }
    vars
}

/// `redis-acute-6762 (REDIS_URL, HEROKU_REDIS_AMBER_URL)`: how settings commands name an instance.
pub fn name_with_vars(instance: &pb::Instance) -> String {
    let vars = config_vars(instance, None);
    if vars.is_empty() {
        instance.name.clone()
    } else {
        format!("{} ({})", instance.name, vars.join(", "))
    }
}

/// The JSON object of an instance: every field, the URL included (it holds the password).
pub fn instance_json(instance: &pb::Instance) -> Value {
    let attachments: Vec<Value> = instance
        .attachments
        .iter()
        .map(|a| json!({ "app": a.app, "config_var": a.config_var }))
        .collect();
    json!({
        "name": instance.name,
        "plan": instance.plan,
        "status": instance.status,
        "created_at": rfc3339(instance.created_at_ms),
        "created_at_ms": instance.created_at_ms,
        "version": instance.version,
        "engine_version": instance.engine_version,
        "timeout": instance.timeout_seconds,
        "maxmemory_policy": instance.maxmemory_policy,
        "notify_keyspace_events": instance.notify_keyspace_events,
        "persistence": instance.persistence,
        "ha_status": instance.ha_status,
        "requires_tls": instance.requires_tls,
        "maintenance_window": instance.maintenance_window,
        "attachments": attachments,
        "config_vars": config_vars(instance, None),
        "url": instance.url,
        "maxmemory_bytes": instance.maxmemory_bytes,
        "max_connections": instance.max_connections,
        "primary_host": instance.primary_host,
        "primary_zone": instance.primary_zone,
        "epoch": instance.epoch,
        "failover": instance.failover,
        "failover_epoch": instance.failover_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let out = table(
            &["NAME", "PLAN"],
            &[
                vec!["redis-a".into(), "mini".into()],
                vec!["r".into(), "premium-0".into()],
            ],
        );
        assert_eq!(out, "NAME     PLAN\nredis-a  mini\nr        premium-0\n");
    }

    #[test]
    fn key_values_pad_to_longest_key() {
        let out = key_values(&[("Plan", "Mini".into()), ("HA Status", "N/A".into())]);
        assert_eq!(out, "Plan:      Mini\nHA Status: N/A\n");
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(utc_minutes(0), "1970-01-01 00:00 UTC");
        // 2020-09-10 18:39:07 UTC
        assert_eq!(utc_seconds(1_599_763_147_000), "2020-09-10 18:39:07 UTC");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_minutes(-60_000), "1969-12-31 23:59 UTC");
    }

    #[test]
    fn plan_names_display_like_heroku() {
        assert_eq!(plan_display_name("premium-0"), "Premium 0");
        assert_eq!(plan_display_name("mini"), "Mini");
        assert_eq!(plan_display_name("private-14"), "Private 14");
        assert_eq!(plan_display_name(""), "");
    }

    #[test]
    fn sizes_and_ages() {
        assert_eq!(human_bytes(512 * MIB), "512 MB");
        assert_eq!(human_bytes(4 * GIB), "4 GB");
        assert_eq!(human_bytes(GIB + GIB / 2), "1.5 GB");
        assert_eq!(ago(10_000, 7_000), "3s ago");
        assert_eq!(ago(10_000, 0), "never");
        assert_eq!(ago(7_200_000 + 5, 5), "2h ago");
    }
}
