//! `kvs timeout`, `kvs maxmemory` and `kvs keyspace-notifications`: the three settings customers
//! may change (reference §5.4), each one UpdateSettings call and Heroku's confirmation lines.
//!
//! Values are validated locally with the same `kvs_proto::settings` rules the coordinator uses,
//! so a typo fails at once and the error lists the valid values.

use kvs_proto::pb;
use kvs_proto::settings;

use super::Context;
use crate::cli::{KeyspaceArgs, MaxmemoryArgs, TimeoutArgs};
use crate::connect::request;
use crate::output;

pub async fn timeout(ctx: &Context, args: TimeoutArgs) -> anyhow::Result<()> {
    let seconds = settings::validate_timeout(args.seconds)?;
    let change = pb::UpdateSettingsRequest {
        name: args.name,
        timeout_seconds: Some(seconds),
        ..Default::default()
    };
    let instance = update(ctx, change).await?;
    report(ctx, &instance, &timeout_message(&instance, seconds))
}

pub async fn maxmemory(ctx: &Context, args: MaxmemoryArgs) -> anyhow::Result<()> {
    let policy = settings::validate_maxmemory_policy(&args.policy)?;
    let change = pb::UpdateSettingsRequest {
        name: args.name,
        maxmemory_policy: Some(policy.clone()),
        ..Default::default()
    };
    let instance = update(ctx, change).await?;
    report(ctx, &instance, &maxmemory_message(&instance, &policy))
}

pub async fn keyspace_notifications(ctx: &Context, args: KeyspaceArgs) -> anyhow::Result<()> {
    let flags = settings::validate_keyspace_events(&args.config)?;
    let change = pb::UpdateSettingsRequest {
        name: args.name,
        notify_keyspace_events: Some(flags.clone()),
        ..Default::default()
    };
    let instance = update(ctx, change).await?;
    let text = format!(
        "Keyspace notifications for {} set to '{flags}'.\n",
        output::name_with_vars(&instance)
    );
    report(ctx, &instance, &text)
}

async fn update(ctx: &Context, change: pb::UpdateSettingsRequest) -> anyhow::Result<pb::Instance> {
    let client = ctx.client().await?;
    client
        .call(client.admin().update_settings(request(change)))
        .await
}

fn report(ctx: &Context, instance: &pb::Instance, text: &str) -> anyhow::Result<()> {
    if ctx.json {
        return output::print_json(&output::instance_json(instance));
    }
    print!("{text}");
    Ok(())
}

/// `Timeout for NAME (VARS) set to N seconds.` and what that means for idle connections.
pub fn timeout_message(instance: &pb::Instance, seconds: u32) -> String {
    let effect = if seconds == 0 {
        "Connections to the Redis instance can idle indefinitely.".to_string()
    } else {
        format!(
            "Connections to the Redis instance will be stopped after idling for {seconds} seconds."
        )
    };
    format!(
        "Timeout for {} set to {seconds} seconds.\n{effect}\n",
        output::name_with_vars(instance)
    )
}

/// `Maxmemory policy for NAME (VARS) set to P.` and `P <description>`.
pub fn maxmemory_message(instance: &pb::Instance, policy: &str) -> String {
    let description = settings::maxmemory_policy_description(policy).unwrap_or("");
    format!(
        "Maxmemory policy for {} set to {policy}.\n{policy} {description}\n",
        output::name_with_vars(instance)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> pb::Instance {
        pb::Instance {
            name: "redis-acute-6762".into(),
            attachments: vec![pb::Attachment {
                app: "a".into(),
                config_var: "REDIS_URL".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn timeout_lines_match_heroku() {
        assert_eq!(
            timeout_message(&instance(), 60),
            "Timeout for redis-acute-6762 (REDIS_URL) set to 60 seconds.\n\
             Connections to the Redis instance will be stopped after idling for 60 seconds.\n"
        );
        assert!(timeout_message(&instance(), 0).ends_with("can idle indefinitely.\n"));
    }

    #[test]
    fn maxmemory_lines_match_heroku() {
        assert_eq!(
            maxmemory_message(&instance(), "noeviction"),
            "Maxmemory policy for redis-acute-6762 (REDIS_URL) set to noeviction.\n\
             noeviction return errors when memory limit is reached.\n"
        );
    }
}
