//! One module per command group; [`dispatch`] routes a parsed command to it.
//!
//! ```text
//!   cli::Command ─► dispatch ─► instance (create, list, credentials, destroy, events)
//!                            ├► info · wait · settings (timeout, maxmemory, keyspace-notifications)
//!                            ├► config · cluster (hosts, ca, plans)
//!                            └► crate::run (kvs run)
//! ```
//!
//! Commands connect lazily through [`Context::client`], so checks that need no coordinator (a
//! wrong `--confirm`, an unknown eviction policy) fail before any configuration is required.

pub mod cluster;
pub mod config;
pub mod ha;
pub mod info;
pub mod instance;
pub mod membership;
pub mod settings;
pub mod wait;

use std::process::ExitCode;

use crate::cli::{Command, ConnectFlags};
use crate::connect::Client;
use crate::profile;

/// What every command gets: how to connect, and the output format.
#[derive(Clone)]
pub struct Context {
    /// The global connection flags, resolved against env and profile on first use.
    pub flags: ConnectFlags,
    /// `--json`: machine-readable output on stdout.
    pub json: bool,
}

impl Context {
    /// Resolves the settings (flag > env > profile) and connects to the coordinator leader:
    /// the endpoint may list several nodes (comma-separated), tried in turn; a follower that
    /// answers names the leader, and the client moves there, so writes never hit a follower.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let settings = profile::resolve(&self.flags, &|key| {
            std::env::var(key).ok().filter(|v| !v.is_empty())
        })?;
        let mut last_error = None;
        for endpoint in settings
            .endpoint
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let mut one = settings.clone();
            one.endpoint = endpoint.to_string();
            match Client::connect(&one).await {
                Ok(client) => return Ok(follow_leader(client, &one).await),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no coordinator endpoint configured")))
    }
}

/// Moves to the leader when the node that answered is a follower (best effort: on any doubt the
/// original connection is kept, and a follower's NOT-LEADER reply still names the leader).
async fn follow_leader(client: Client, settings: &profile::Settings) -> Client {
    let request = crate::connect::request(kvs_proto::pb::ClusterStatusRequest {});
    let Ok(status) = client
        .call_status(client.admin().cluster_status(request))
        .await
    else {
        return client;
    };
    if status.leader_id == 0 || status.leader_id == status.answered_by {
        return client;
    }
    let Some(leader) = status
        .nodes
        .iter()
        .find(|n| n.id == status.leader_id && !n.api_addr.is_empty())
    else {
        return client;
    };
    let mut moved = settings.clone();
    moved.endpoint = format!("https://{}", leader.api_addr);
    Client::connect(&moved).await.unwrap_or(client)
}

/// Runs one command. Most exit 0 on success; `kvs run` exits with its child's status.
pub async fn dispatch(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create(args) => instance::create(ctx, args).await?,
        Command::Wait(args) => wait::wait(ctx, args).await?,
        Command::Info(args) => info::info(ctx, args).await?,
        Command::List(args) => instance::list(ctx, args).await?,
        Command::Credentials(args) => instance::credentials(ctx, args).await?,
        Command::Config(args) => config::config(ctx, args).await?,
        Command::Destroy(args) => instance::destroy(ctx, args).await?,
        Command::Timeout(args) => settings::timeout(ctx, args).await?,
        Command::Maxmemory(args) => settings::maxmemory(ctx, args).await?,
        Command::KeyspaceNotifications(args) => settings::keyspace_notifications(ctx, args).await?,
        Command::Events(args) => instance::events(ctx, args).await?,
        Command::Run(args) => return crate::run::run(ctx, args).await,
        Command::Hosts => cluster::hosts(ctx).await?,
        Command::Ca => cluster::ca(ctx).await?,
        Command::Plans => cluster::plans(ctx).await?,
        Command::Cluster(command) => membership::run(ctx, command).await?,
        Command::Failover(args) => ha::failover(ctx, args).await?,
        Command::Promote(args) => ha::promote(ctx, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}
