//! Operator views of the cluster: `kvs hosts`, `kvs plans` and `kvs ca`.

use kvs_proto::pb;
use serde_json::json;

use super::Context;
use crate::connect::request;
use crate::output;

/// `kvs hosts`: every host with an agent, its memory (total/available/reserved) and liveness.
pub async fn hosts(ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let response = client
        .call(client.admin().list_hosts(request(pb::ListHostsRequest {})))
        .await?;
    if ctx.json {
        let items: Vec<_> = response.hosts.iter().map(host_json).collect();
        return output::print_json(&serde_json::Value::Array(items));
    }
    if response.hosts.is_empty() {
        println!("No hosts. Start an agent with the coordinator's join token to add one.");
        return Ok(());
    }
    print!("{}", hosts_table(&response.hosts, output::wall_clock_ms()));
    Ok(())
}

fn host_json(host: &pb::Host) -> serde_json::Value {
    json!({
        "id": host.id,
        "zone": host.zone,
        "address": host.address,
        "hostname": host.hostname,
        "state": host.state,
        "memory_total_bytes": host.memory_total_bytes,
        "memory_available_bytes": host.memory_available_bytes,
        "memory_reserved_bytes": host.memory_reserved_bytes,
        "load_avg_1m": host.load_avg_1m,
        "instances": host.instances,
        "engines": host.engines,
        "last_seen_ms": host.last_seen_ms,
        "last_seen": (host.last_seen_ms > 0).then(|| output::rfc3339(host.last_seen_ms)),
    })
}

/// The `kvs hosts` table; `now_ms` renders LAST SEEN as an age.
pub fn hosts_table(hosts: &[pb::Host], now_ms: i64) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.id.clone(),
                h.zone.clone(),
                h.address.clone(),
                h.state.clone(),
                format!(
                    "{}/{}/{}",
                    output::human_bytes(h.memory_total_bytes),
                    output::human_bytes(h.memory_available_bytes),
                    output::human_bytes(h.memory_reserved_bytes)
                ),
                h.instances.to_string(),
                h.engines.join(","),
                output::ago(now_ms, h.last_seen_ms),
            ]
        })
        .collect();
    let headers = [
        "ID",
        "ZONE",
        "ADDRESS",
        "STATE",
        "MEMORY (TOTAL/AVAIL/RESERVED)",
        "INSTANCES",
        "ENGINES",
        "LAST SEEN",
    ];
    output::table(&headers, &rows)
}

/// `kvs plans`: the catalog the coordinator serves.
pub async fn plans(ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let response = client
        .call(client.admin().list_plans(request(pb::ListPlansRequest {})))
        .await?;
    if ctx.json {
        let items: Vec<_> = response
            .plans
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "maxmemory_bytes": p.maxmemory_bytes,
                    "max_connections": p.max_connections,
                    "persistence": p.persistence,
                    "standby": p.standby,
                })
            })
            .collect();
        return output::print_json(&serde_json::Value::Array(items));
    }
    print!("{}", plans_table(&response.plans));
    Ok(())
}

pub fn plans_table(plans: &[pb::Plan]) -> String {
    let rows: Vec<Vec<String>> = plans
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                kvs_proto::plan::format_bytes(p.maxmemory_bytes),
                p.max_connections.to_string(),
                if p.persistence { "AOF" } else { "None" }.to_string(),
                if p.standby { "Yes" } else { "No" }.to_string(),
            ]
        })
        .collect();
    output::table(
        &["NAME", "MEMORY", "CONNECTIONS", "PERSISTENCE", "HA"],
        &rows,
    )
}

/// `kvs ca`: the CA bundle PEM, as is.
pub async fn ca(ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let bundle = client
        .call(
            client
                .admin()
                .get_ca_bundle(request(pb::GetCaBundleRequest {})),
        )
        .await?;
    if ctx.json {
        return output::print_json(&json!({ "pem": bundle.pem }));
    }
    print!("{}", bundle.pem);
    if !bundle.pem.ends_with('\n') {
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_table_shows_memory_triplet_and_age() {
        let host = pb::Host {
            id: "h1".into(),
            zone: "z1".into(),
            address: "10.0.0.1".into(),
            state: "up".into(),
            memory_total_bytes: 8 << 30,
            memory_available_bytes: 6 << 30,
            memory_reserved_bytes: 50 << 20,
            engines: vec!["valkey-8".into(), "redis-7".into()],
            instances: 2,
            last_seen_ms: 1_000,
            ..Default::default()
        };
        let out = hosts_table(&[host], 4_000);
        let row = out.lines().nth(1).expect("one row");
        let cells: Vec<&str> = row
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cells,
            [
                "h1",
                "z1",
                "10.0.0.1",
                "up",
                "8 GB/6 GB/50 MB",
                "2",
                "valkey-8,redis-7",
                "3s ago"
            ]
        );
    }

    #[test]
    fn plans_table_uses_plan_sizes() {
        let plans: Vec<pb::Plan> = kvs_proto::plan::builtin_plans()
            .into_iter()
            .map(|p| pb::Plan {
                name: p.name,
                maxmemory_bytes: p.maxmemory_bytes,
                max_connections: p.max_connections,
                persistence: p.persistence,
                standby: p.standby,
            })
            .collect();
        let out = plans_table(&plans);
        assert!(
            out.contains("mini        25 MB   20           None         No"),
            "{out}"
        );
    }
}
