//! Parses the engine's `INFO` text into the metrics the agent reports.
//!
//! INFO is `field:value` lines grouped under `# Section` headers. Unknown or malformed lines are
//! ignored (engines add fields between versions); missing numbers read as 0.

use std::collections::HashMap;

/// The INFO fields the agent reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineInfo {
    /// `master` or `slave` (the engines' words).
    pub role: String,
    pub used_memory_bytes: u64,
    pub connected_clients: u32,
    pub ops_per_sec: u64,
    /// In the primary's offset space, so primary and standby compare directly: a primary's
    /// `master_repl_offset`; a replica's `slave_repl_offset` (the primary's stream it has
    /// applied; kept while the link is down), else its `master_repl_offset`.
    pub replication_offset: u64,
    /// `up`/`down` for a replica; empty for a primary.
    pub master_link_status: String,
    /// Replica: seconds since the last I/O with its primary (-1: no link); 0 for a primary.
    pub master_last_io_seconds: i64,
    /// Primary: replicas attached (`connected_slaves`, any sync state).
    pub connected_replicas: u32,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub evicted_keys: u64,
    /// True while the dataset (AOF) is being loaded: not ready for clients yet.
    pub loading: bool,
    /// `redis_version` (Valkey reports a compatibility value there too).
    pub version: String,
}

/// Parses INFO text.
pub fn parse(text: &str) -> EngineInfo {
    let fields: HashMap<&str, &str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .collect();
    let number = |name: &str| {
        fields
            .get(name)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let text = |name: &str| {
        fields
            .get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let role = text("role");
    let replica = role == "slave";
    let replication_offset = match fields.get("slave_repl_offset") {
        Some(_) if replica => number("slave_repl_offset"),
        _ => number("master_repl_offset"),
    };
    let master_last_io_seconds = if replica {
        fields
            .get("master_last_io_seconds_ago")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(-1)
    } else {
        0
    };
    EngineInfo {
        used_memory_bytes: number("used_memory"),
        connected_clients: u32::try_from(number("connected_clients")).unwrap_or(u32::MAX),
        ops_per_sec: number("instantaneous_ops_per_sec"),
        replication_offset,
        master_link_status: if replica {
            text("master_link_status")
        } else {
            String::new()
        },
        master_last_io_seconds,
        connected_replicas: u32::try_from(number("connected_slaves")).unwrap_or(u32::MAX),
        keyspace_hits: number("keyspace_hits"),
        keyspace_misses: number("keyspace_misses"),
        evicted_keys: number("evicted_keys"),
        loading: number("loading") != 0 || number("async_loading") != 0,
        version: text("redis_version"),
        role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = "# Server\r\nredis_version:7.0.15\r\nvalkey_version:9.0.1\r\n\r\n# Clients\r\n\
        connected_clients:3\r\n\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\r\n\
        # Persistence\r\nloading:0\r\nasync_loading:0\r\n\r\n# Stats\r\ninstantaneous_ops_per_sec:12\r\n\
        keyspace_hits:10\r\nkeyspace_misses:2\r\nevicted_keys:5\r\n\r\n# Replication\r\nrole:master\r\n\
        connected_slaves:1\r\nmaster_repl_offset:4242\r\n";

    const REPLICA: &str = "# Replication\nrole:slave\nmaster_host:127.0.0.1\nmaster_link_status:down\n\
        slave_repl_offset:100\nmaster_repl_offset:90\n# Persistence\nloading:1\n";

    #[test]
    fn primary_fields() {
        let info = parse(PRIMARY);
        assert_eq!(
            info,
            EngineInfo {
                role: "master".into(),
                used_memory_bytes: 1_048_576,
                connected_clients: 3,
                ops_per_sec: 12,
                replication_offset: 4242,
                master_link_status: String::new(),
                master_last_io_seconds: 0,
                connected_replicas: 1,
                keyspace_hits: 10,
                keyspace_misses: 2,
                evicted_keys: 5,
                loading: false,
                version: "7.0.15".into(),
            }
        );
    }

    #[test]
    fn replica_fields() {
        let info = parse(REPLICA);
        assert_eq!(info.role, "slave");
        assert_eq!(info.master_link_status, "down");
        assert_eq!(info.replication_offset, 100, "slave_repl_offset");
        assert_eq!(info.master_last_io_seconds, -1, "no link");
        assert!(info.loading);
        let up = parse(
            "role:slave\nmaster_link_status:up\nmaster_last_io_seconds_ago:3\n\
            slave_repl_offset:70\nmaster_repl_offset:90\n",
        );
        assert_eq!((up.master_last_io_seconds, up.replication_offset), (3, 70));
        let old = parse("role:slave\nmaster_repl_offset:90\n");
        assert_eq!(
            old.replication_offset, 90,
            "no slave_repl_offset: master_repl_offset"
        );
    }

    #[test]
    fn garbage_is_tolerated() {
        let info = parse("no colon here\n:\nused_memory:lots\nconnected_clients:99999999999\n#\n");
        assert_eq!(info.used_memory_bytes, 0);
        assert_eq!(info.connected_clients, u32::MAX);
        assert_eq!(parse(""), EngineInfo::default());
    }
}
