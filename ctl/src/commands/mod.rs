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
pub mod info;
pub mod instance;
pub mod settings;
pub mod wait;

use std::process::ExitCode;

use crate::cli::{Command, ConnectFlags};
use crate::connect::Client;
use crate::profile;

/// What every command gets: how to connect, and the output format.
pub struct Context {
    /// The global connection flags, resolved against env and profile on first use.
    pub flags: ConnectFlags,
    /// `--json`: machine-readable output on stdout.
    pub json: bool,
}

impl Context {
    /// Resolves the settings (flag > env > profile) and connects.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let settings = profile::resolve(&self.flags, &|key| {
            std::env::var(key).ok().filter(|v| !v.is_empty())
        })?;
        Client::connect(&settings).await
    }
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
    }
    Ok(ExitCode::SUCCESS)
}
