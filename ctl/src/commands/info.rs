//! `kvs info [NAME] [--app APP]`: Heroku's `redis:info` block for every matching instance.
//!
//! ```text
//!   === redis-acute-6762 (REDIS_URL)
//!   Plan:                   Premium 0
//!   Status:                 available
//!   ...
//!   Keyspace Notifications: Disabled
//! ```
//!
//! NAME selects like Heroku's `[DATABASE]`: an exact instance name, else a case-insensitive
//! substring of an instance name or one of its config vars.

use anyhow::bail;
use kvs_proto::pb;

use super::Context;
use crate::cli::InfoArgs;
use crate::connect::request;
use crate::output;

pub async fn info(ctx: &Context, args: InfoArgs) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let message = pb::ListInstancesRequest {
        app: args.app.clone().unwrap_or_default(),
    };
    let response = client
        .call(client.admin().list_instances(request(message)))
        .await?;
    let instances = select(response.instances, args.name.as_deref());
    if instances.is_empty() {
        bail!("No Redis instances found.");
    }
    if ctx.json {
        let items: Vec<_> = instances.iter().map(output::instance_json).collect();
        return output::print_json(&serde_json::Value::Array(items));
    }
    let blocks: Vec<String> = instances
        .iter()
        .map(|i| render_info(i, args.app.as_deref()))
        .collect();
    print!("{}", blocks.join("\n"));
    Ok(())
}

/// The instances a selector picks (all of them when there is none).
pub fn select(instances: Vec<pb::Instance>, selector: Option<&str>) -> Vec<pb::Instance> {
    let Some(selector) = selector else {
        return instances;
    };
    if let Some(exact) = instances.iter().find(|i| i.name == selector) {
        return vec![exact.clone()];
    }
    let needle = selector.to_lowercase();
    instances
        .into_iter()
        .filter(|i| {
            i.name.to_lowercase().contains(&needle)
                || i.attachments
                    .iter()
                    .any(|a| a.config_var.to_lowercase().contains(&needle))
        })
        .collect()
}

/// One instance's header and key/value block; `app` limits the header to that app's vars.
pub fn render_info(instance: &pb::Instance, app: Option<&str>) -> String {
    let vars = output::config_vars(instance, app);
    let header = if vars.is_empty() {
        format!("=== {}\n", instance.name)
    } else {
        format!("=== {} ({})\n", instance.name, vars.join(", "))
    };
    let or_na = |value: &str| {
        if value.is_empty() {
            "N/A".to_string()
        } else {
            value.to_string()
        }
    };
    let version = match (instance.engine_version.as_str(), instance.version.as_str()) {
        ("", label) => or_na(label),
        (engine, "") => engine.to_string(),
        (engine, label) => format!("{engine} ({label})"),
    };
    let keyspace = if instance.notify_keyspace_events.is_empty() {
        "Disabled".to_string()
    } else {
        instance.notify_keyspace_events.clone()
    };
    let mut pairs = vec![
        ("Plan", output::plan_display_name(&instance.plan)),
        ("Status", instance.status.clone()),
        ("Created", output::utc_minutes(instance.created_at_ms)),
        ("Version", version),
        ("Timeout", instance.timeout_seconds.to_string()),
        ("Maxmemory", or_na(&instance.maxmemory_policy)),
        ("Maintenance window", or_na(&instance.maintenance_window)),
        (
            "Persistence",
            if instance.persistence.is_empty() {
                "None".into()
            } else {
                instance.persistence.clone()
            },
        ),
        ("HA Status", or_na(&instance.ha_status)),
        (
            "Requires TLS",
            if instance.requires_tls { "Yes" } else { "No" }.to_string(),
        ),
        ("Keyspace Notifications", keyspace),
    ];
    if !instance.standby_zones.is_empty() {
        let standbys: Vec<String> = instance
            .standby_zones
            .iter()
            .map(|z| format!("{z} (standby)"))
            .collect();
        pairs.push((
            "Zones",
            format!(
                "{} (primary), {}",
                instance.primary_zone,
                standbys.join(", ")
            ),
        ));
    }
    if !instance.failover.is_empty() {
        pairs.push(("Failover", instance.failover.clone()));
    }
    header + &output::key_values(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::Instance {
        pb::Instance {
            name: "redis-acute-6762".into(),
            plan: "premium-0".into(),
            status: "available".into(),
            created_at_ms: 1_599_763_147_000,
            version: "valkey-8".into(),
            engine_version: "8.1.1".into(),
            timeout_seconds: 300,
            maxmemory_policy: "noeviction".into(),
            notify_keyspace_events: String::new(),
            persistence: "AOF".into(),
            ha_status: "Available".into(),
            requires_tls: true,
            maintenance_window: "Wednesdays 18:00 to 22:00 UTC".into(),
            attachments: vec![
                pb::Attachment {
                    app: "dev-app".into(),
                    config_var: "REDIS_URL".into(),
                },
                pb::Attachment {
                    app: "other".into(),
                    config_var: "HEROKU_REDIS_AMBER_URL".into(),
                },
            ],
            url: "rediss://default:pw@h:6380".into(),
            ..Default::default()
        }
    }

    #[test]
    fn info_block_matches_heroku_layout() {
        let expected = "\
=== redis-acute-6762 (REDIS_URL, HEROKU_REDIS_AMBER_URL)
Plan:                   Premium 0
Status:                 available
Created:                2020-09-10 18:39 UTC
Version:                8.1.1 (valkey-8)
Timeout:                300
Maxmemory:              noeviction
Maintenance window:     Wednesdays 18:00 to 22:00 UTC
Persistence:            AOF
HA Status:              Available
Requires TLS:           Yes
Keyspace Notifications: Disabled
";
        assert_eq!(render_info(&sample(), None), expected);
    }

    #[test]
    fn zones_and_failover_lines_appear_only_when_there_is_a_standby() {
        let mut instance = sample();
        instance.primary_zone = "a".into();
        instance.standby_zones = vec!["b".into()];
        instance.failover = "planned switchover to h-b-1 (epoch 2)".into();
        let text = render_info(&instance, None);
        assert!(
            text.contains("Zones:                  a (primary), b (standby)\n"),
            "{text}"
        );
        assert!(
            text.contains("Failover:               planned switchover to h-b-1 (epoch 2)\n"),
            "{text}"
        );
    }

    #[test]
    fn app_filter_and_keyspace_flags() {
        let mut instance = sample();
        instance.notify_keyspace_events = "AKE".into();
        instance.plan = "mini".into();
        let out = render_info(&instance, Some("dev-app"));
        assert!(
            out.starts_with("=== redis-acute-6762 (REDIS_URL)\n"),
            "{out}"
        );
        assert!(out.contains("Plan:                   Mini\n"), "{out}");
        assert!(out.contains("Keyspace Notifications: AKE\n"), "{out}");
    }

    #[test]
    fn selector_prefers_exact_name_then_substring() {
        let mut other = sample();
        other.name = "redis-acute-67620".into();
        other.attachments = vec![pb::Attachment {
            app: "x".into(),
            config_var: "HEROKU_REDIS_GOLD_URL".into(),
        }];
        let all = vec![sample(), other];
        assert_eq!(select(all.clone(), Some("redis-acute-6762")).len(), 1);
        assert_eq!(select(all.clone(), Some("acute")).len(), 2);
        let gold = select(all.clone(), Some("gold"));
        assert_eq!(gold.len(), 1);
        assert_eq!(gold[0].name, "redis-acute-67620");
        assert!(select(all.clone(), Some("nope")).is_empty());
        assert_eq!(select(all, None).len(), 2);
    }
}
