//! Instance lifecycle commands: `create`, `list`, `credentials`, `destroy` and `events`.
//!
//! `destroy` asks for the instance name (Heroku's confirmation UX) before connecting, so a wrong
//! answer sends nothing and needs no configuration.

use std::io::{BufRead, Write};

use anyhow::bail;
use kvs_proto::pb;
use serde_json::json;

use super::Context;
use super::wait::{self, WaitOptions};
use crate::cli::{CreateArgs, DestroyArgs, ListArgs, NameArg};
use crate::connect::request;
use crate::output;

/// `kvs create`: CreateInstance, then Heroku's "Creating … / Created … as REDIS_URL" lines.
pub async fn create(ctx: &Context, args: CreateArgs) -> anyhow::Result<()> {
    // Check what can be checked locally, so typos fail fast and without a round trip.
    kvs_proto::names::validate_app(&args.app)?;
    if let Some(policy) = &args.maxmemory_policy {
        kvs_proto::settings::validate_maxmemory_policy(policy)?;
    }
    if let Some(flags) = &args.keyspace_notifications {
        kvs_proto::settings::validate_keyspace_events(flags)?;
    }
    if let Some(seconds) = args.timeout {
        kvs_proto::settings::validate_timeout(seconds)?;
    }
    let client = ctx.client().await?;
    let message = pb::CreateInstanceRequest {
        plan: args.plan,
        app: args.app.clone(),
        version: args.version.unwrap_or_default(),
        timeout_seconds: args.timeout,
        maxmemory_policy: args.maxmemory_policy.unwrap_or_default(),
        notify_keyspace_events: args.keyspace_notifications.unwrap_or_default(),
    };
    let mut instance = client
        .call(client.admin().create_instance(request(message)))
        .await?;
    if !ctx.json {
        println!(
            "Creating {} on {}... {}",
            instance.name, args.app, instance.status
        );
        if let Some(var) = output::config_vars(&instance, Some(&args.app)).first() {
            println!("Created {} as {var}", instance.name);
        }
        if !args.wait {
            println!(
                "Run kvs wait {} to wait until it is available.",
                instance.name
            );
        }
    }
    if args.wait {
        instance =
            wait::wait_for(&client, &instance.name, &WaitOptions::default(), ctx.json).await?;
    }
    if ctx.json {
        output::print_json(&output::instance_json(&instance))?;
    }
    Ok(())
}

/// `kvs list`: one row per instance.
pub async fn list(ctx: &Context, args: ListArgs) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let app = args.app.clone().unwrap_or_default();
    let message = pb::ListInstancesRequest { app };
    let response = client
        .call(client.admin().list_instances(request(message)))
        .await?;
    if ctx.json {
        let items: Vec<_> = response
            .instances
            .iter()
            .map(output::instance_json)
            .collect();
        return output::print_json(&serde_json::Value::Array(items));
    }
    if response.instances.is_empty() {
        match args.app {
            Some(app) => println!("No instances on {app}."),
            None => println!("No instances."),
        }
        return Ok(());
    }
    print!("{}", list_table(&response.instances));
    Ok(())
}

/// The `kvs list` table: NAME PLAN STATUS APP/ATTACHMENTS HOST.
pub fn list_table(instances: &[pb::Instance]) -> String {
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|instance| {
            let attachments: Vec<String> = instance
                .attachments
                .iter()
                .map(|a| format!("{} ({})", a.app, a.config_var))
                .collect();
            let host = match (
                instance.primary_host.as_str(),
                instance.primary_zone.as_str(),
            ) {
                ("", _) => "-".to_string(),
                (host, "") => host.to_string(),
                (host, zone) => format!("{host} ({zone})"),
            };
            vec![
                instance.name.clone(),
                instance.plan.clone(),
                instance.status.clone(),
                attachments.join(", "),
                host,
            ]
        })
        .collect();
    output::table(
        &["NAME", "PLAN", "STATUS", "APP/ATTACHMENTS", "HOST"],
        &rows,
    )
}

/// `kvs credentials`: the URL, password included.
pub async fn credentials(ctx: &Context, args: NameArg) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let message = pb::InstanceRef { name: args.name };
    let credentials = client
        .call(client.admin().get_credentials(request(message)))
        .await?;
    if ctx.json {
        return output::print_json(&json!({ "name": credentials.name, "url": credentials.url }));
    }
    println!("{}", credentials.url);
    Ok(())
}

/// Heroku's confirmation rule: the answer, trimmed, must equal the name exactly.
pub fn check_confirmation(name: &str, answer: &str) -> anyhow::Result<()> {
    let answer = answer.trim();
    if answer != name {
        bail!("Confirmation {answer} did not match {name}. Aborted.");
    }
    Ok(())
}

/// The prompt `destroy` shows when `--confirm` is missing.
pub fn confirmation_prompt(name: &str) -> String {
    format!(
        "WARNING: Destructive action.\nThis command will destroy {name} and all of its data.\n\
         To proceed, type {name} or re-run this command with --confirm {name}\n\n> "
    )
}

/// `kvs destroy`: confirm, then DestroyInstance.
pub async fn destroy(ctx: &Context, args: DestroyArgs) -> anyhow::Result<()> {
    let answer = match args.confirm {
        Some(confirm) => confirm,
        None => {
            let mut stderr = std::io::stderr();
            write!(stderr, "{}", confirmation_prompt(&args.name))?;
            stderr.flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line
        }
    };
    check_confirmation(&args.name, &answer)?;
    let client = ctx.client().await?;
    let message = pb::DestroyInstanceRequest {
        name: args.name.clone(),
        confirm: args.name.clone(),
    };
    let response = client
        .call(client.admin().destroy_instance(request(message)))
        .await?;
    if ctx.json {
        return output::print_json(&json!({ "name": response.name, "destroyed": true }));
    }
    println!("Destroying {}... done", args.name);
    Ok(())
}

/// `kvs events` (alias `logs`): the instance's event log, oldest first.
pub async fn events(ctx: &Context, args: NameArg) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let message = pb::InstanceRef {
        name: args.name.clone(),
    };
    let response = client
        .call(client.admin().list_events(request(message)))
        .await?;
    if ctx.json {
        let items: Vec<_> = response
            .events
            .iter()
            .map(|e| json!({ "at": output::rfc3339(e.at_ms), "at_ms": e.at_ms, "instance": e.instance, "message": e.message }))
            .collect();
        return output::print_json(&serde_json::Value::Array(items));
    }
    if response.events.is_empty() {
        println!("No events for {}.", args.name);
    }
    for event in &response.events {
        println!("{}  {}", output::utc_seconds(event.at_ms), event.message);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_must_match_exactly() {
        assert!(check_confirmation("redis-acute-6762", "redis-acute-6762\n").is_ok());
        let err = check_confirmation("redis-acute-6762", "redis-acute").expect_err("mismatch");
        assert_eq!(
            err.to_string(),
            "Confirmation redis-acute did not match redis-acute-6762. Aborted."
        );
        assert!(check_confirmation("redis-acute-6762", "").is_err());
        assert!(check_confirmation("redis-acute-6762", "REDIS-ACUTE-6762").is_err());
    }

    #[test]
    fn prompt_names_the_flag() {
        let prompt = confirmation_prompt("redis-x");
        assert!(
            prompt
                .contains("To proceed, type redis-x or re-run this command with --confirm redis-x")
        );
    }

    #[test]
    fn list_shows_attachments_and_host() {
        let instance = pb::Instance {
            name: "redis-acute-6762".into(),
            plan: "mini".into(),
            status: "available".into(),
            attachments: vec![pb::Attachment {
                app: "dev-app".into(),
                config_var: "REDIS_URL".into(),
            }],
            primary_host: "host-1".into(),
            primary_zone: "zone-a".into(),
            ..Default::default()
        };
        let out = list_table(&[instance]);
        assert!(
            out.starts_with("NAME              PLAN  STATUS     APP/ATTACHMENTS"),
            "{out}"
        );
        assert!(
            out.contains("dev-app (REDIS_URL)  host-1 (zone-a)"),
            "{out}"
        );
    }
}
