//! The plan catalog (../shared/reference/heroku-kvs.md §2): memory and connection limits, whether
//! data persists (AOF, fsync every second) and whether the plan has a standby in another zone.
//!
//! Memory figures are binary megabytes (MiB): "25 MB" is 25 × 2^20 bytes of `maxmemory`.

use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// One plan: what a customer buys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// `mini`, `premium-0` … `premium-14`.
    pub name: String,
    /// The engine's `maxmemory`.
    pub maxmemory_bytes: u64,
    /// The engine's `maxclients`.
    pub max_connections: u32,
    /// AOF with `appendfsync everysec` when true; no persistence otherwise.
    pub persistence: bool,
    /// One standby in another zone when true (placed once high availability lands).
    pub standby: bool,
}

/// The built-in plans, in price order.
pub fn builtin_plans() -> Vec<Plan> {
    let premium = |n: u32, bytes: u64, conns: u32| Plan {
        name: format!("premium-{n}"),
        maxmemory_bytes: bytes,
        max_connections: conns,
        persistence: true,
        standby: true,
    };
    vec![
        Plan {
            name: "mini".into(),
            maxmemory_bytes: 25 * MIB,
            max_connections: 20,
            persistence: false,
            standby: false,
        },
        premium(0, 50 * MIB, 40),
        premium(1, 100 * MIB, 80),
        premium(2, 250 * MIB, 200),
        premium(3, 500 * MIB, 400),
        premium(4, 750 * MIB, 700),
        premium(5, GIB, 1000),
        premium(7, 7 * GIB, 10_000),
        premium(9, 10 * GIB, 25_000),
        premium(10, 25 * GIB, 40_000),
        premium(12, 50 * GIB, 65_000),
        premium(14, 100 * GIB, 65_000),
    ]
}

/// Looks a plan up by name; the error lists every valid plan.
pub fn find_plan<'a>(plans: &'a [Plan], name: &str) -> Result<&'a Plan, crate::ProtocolError> {
    plans.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        crate::ProtocolError::invalid(
            "plan",
            format!("unknown plan '{name}'; valid plans: {}", names.join(", ")),
        )
    })
}

/// "25 MB", "1 GB": the way plans are described to people.
pub fn format_bytes(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GB", bytes / GIB)
    } else {
        format!("{} MB", bytes / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_plan_lists_valid_plans() {
        let plans = builtin_plans();
        let err = find_plan(&plans, "nope").unwrap_err().to_string();
        assert!(err.contains("unknown plan 'nope'"), "{err}");
        assert!(err.contains("mini, premium-0, premium-1"), "{err}");
        assert!(err.contains("premium-14"), "{err}");
    }

    #[test]
    fn catalog_matches_reference_limits() {
        let plans = builtin_plans();
        let mini = find_plan(&plans, "mini").unwrap();
        assert_eq!(
            (mini.maxmemory_bytes, mini.max_connections, mini.persistence),
            (25 * MIB, 20, false)
        );
        let p5 = find_plan(&plans, "premium-5").unwrap();
        assert_eq!(
            (p5.maxmemory_bytes, p5.max_connections, p5.persistence),
            (GIB, 1000, true)
        );
        assert!(
            find_plan(&plans, "premium-6").is_err(),
            "plans 6, 8, 11, 13 do not exist"
        );
        assert_eq!(format_bytes(p5.maxmemory_bytes), "1 GB");
        assert_eq!(format_bytes(mini.maxmemory_bytes), "25 MB");
    }
}
