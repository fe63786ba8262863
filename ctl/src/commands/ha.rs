//! `kvs failover` (planned switchover to the standby) and `kvs promote` (make an instance the
//! app's REDIS_URL).

use kvs_proto::pb;

use super::Context;
use crate::cli::{FailoverArgs, PromoteArgs};
use crate::connect::request;
use crate::output;

pub async fn failover(ctx: &Context, args: FailoverArgs) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let failover = pb::FailoverRequest {
        name: args.name.clone(),
        allow_data_loss: args.allow_data_loss,
    };
    let instance = client
        .call(client.admin().failover(request(failover)))
        .await?;
    if ctx.json {
        return output::print_json(&output::instance_json(&instance));
    }
    // The epoch the switchover completes at, as its events say (`instance.epoch` is still the
    // current one until the new primary is confirmed).
    let epoch = if instance.failover_epoch > 0 {
        instance.failover_epoch
    } else {
        instance.epoch
    };
    println!(
        "Failing over {} to its standby... started (epoch {epoch}).",
        args.name
    );
    println!(
        "Run `kvs wait {}` to wait until it is available again; `kvs events {}` shows the steps.",
        args.name, args.name
    );
    Ok(())
}

pub async fn promote(ctx: &Context, args: PromoteArgs) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let promote = pb::PromoteRequest {
        name: args.name.clone(),
        app: args.app.clone(),
    };
    let vars = client
        .call(client.admin().promote(request(promote)))
        .await?;
    if ctx.json {
        return output::print_json(&serde_json::to_value(&vars.vars)?);
    }
    println!("Promoting {} to REDIS_URL on {}", args.name, args.app);
    Ok(())
}
