//! The `kvs` command line, as clap derive types. Parsing only: no I/O happens here.
//!
//! ```text
//!   kvs [--endpoint URL] [--token T] [--ca-file PATH] [--profile PATH] [--json] <command> ...
//!        └──────────────── connect::ConnectFlags ─────────────────┘
//! ```
//!
//! Every command takes `--json` (it is global, so it may come before or after the command name).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// kvs: create, inspect and use KVS instances (managed Valkey), Heroku Key-Value Store style.
#[derive(Debug, Parser)]
#[command(
    name = "kvs",
    version,
    after_help = "Connection settings come from the flags, else KVS_ENDPOINT / KVS_TOKEN / KVS_CA_FILE,\n\
                  else the profile file ($XDG_CONFIG_HOME/kvs/config.toml or ~/.config/kvs/config.toml):\n\n  \
                  endpoint = \"https://127.0.0.1:7400\"\n  token = \"...\"\n  ca_file = \"/path/to/ca.pem\"\n\n\
                  Example:\n  kvs create --plan mini --app dev-app && kvs wait redis-acute-6762"
)]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectFlags,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true, help_heading = "Output")]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the coordinator is and how to authenticate; see `connect::resolve` for the precedence.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Connection (flag > env > profile)")]
pub struct ConnectFlags {
    /// Coordinator admin endpoint, e.g. https://127.0.0.1:7400 (env KVS_ENDPOINT).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Admin token sent as `authorization: Bearer TOKEN` (env KVS_TOKEN).
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// PEM file of the cluster CA that signed the coordinator's certificate (env KVS_CA_FILE).
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Profile file to read instead of the default (env KVS_PROFILE).
    #[arg(long, global = true, value_name = "PATH")]
    pub profile: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an instance and attach it to an app (returns at once; see `kvs wait`).
    ///
    /// Example: kvs create --plan premium-0 --app dev-app --maxmemory-policy allkeys-lru
    Create(CreateArgs),
    /// Wait until an instance is available, showing its status as it changes.
    ///
    /// Example: kvs wait redis-acute-6762 --timeout 120
    Wait(WaitArgs),
    /// Show an instance's plan, status, version and settings (all instances when no NAME).
    ///
    /// NAME matches case-insensitively as a substring of an instance name or a config var
    /// (REDIS_URL, HEROKU_REDIS_AMBER_URL). Example: kvs info --app dev-app
    Info(InfoArgs),
    /// List instances, optionally only those attached to one app.
    ///
    /// Example: kvs list --app dev-app
    List(ListArgs),
    /// Print an instance's connection URL (it contains the password).
    ///
    /// Example: kvs credentials redis-acute-6762
    Credentials(NameArg),
    /// Print an app's config vars (REDIS_URL=... lines).
    ///
    /// Example: kvs config --app dev-app
    Config(AppArg),
    /// Destroy an instance and its data, after confirmation.
    ///
    /// Example: kvs destroy redis-acute-6762 --confirm redis-acute-6762
    Destroy(DestroyArgs),
    /// Set the idle connection timeout (0: connections may idle forever).
    ///
    /// Example: kvs timeout redis-acute-6762 --seconds 60
    Timeout(TimeoutArgs),
    /// Set the eviction policy used when the instance reaches its memory limit.
    ///
    /// Policies: noeviction, allkeys-lfu, volatile-lfu, allkeys-lru, volatile-lru,
    /// allkeys-random, volatile-random, volatile-ttl. Example: kvs maxmemory redis-acute-6762 -p allkeys-lru
    Maxmemory(MaxmemoryArgs),
    /// Set notify-keyspace-events (flags K E g $ l s h z x e t m n d A; '' disables).
    ///
    /// Example: kvs keyspace-notifications redis-acute-6762 --config KEA
    KeyspaceNotifications(KeyspaceArgs),
    /// Show an instance's event log (creation, placement, failover, settings changes).
    ///
    /// Example: kvs events redis-acute-6762
    #[command(alias = "logs")]
    Events(NameArg),
    /// Run a command with an app's config vars in its environment, restarting it when they change.
    ///
    /// Example: kvs run --app dev-app -- ./server --port 8080
    Run(RunArgs),
    /// Operator: list the hosts running agents, with memory and instance counts.
    Hosts,
    /// Print the cluster CA bundle (PEM), to verify instance TLS certificates.
    ///
    /// Example: kvs ca > kvs-ca.pem
    Ca,
    /// List the plans (memory, connection limit, persistence, high availability).
    Plans,
    /// Operator: the coordinator cluster (status, add a node, remove a node).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Planned switchover to the standby: pause writes, let it catch up, promote, rotate the URL.
    ///
    /// Example: kvs failover redis-acute-6762
    Failover(FailoverArgs),
    /// Make an instance the app's REDIS_URL; the previous one keeps a HEROKU_REDIS_<COLOR>_URL.
    ///
    /// Example: kvs promote redis-acute-6762 --app dev-app
    Promote(PromoteArgs),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, leader, term, and how far each node is behind the leader.
    ///
    /// Example: kvs cluster status
    Status,
    /// Add a running coordinator node (learner first, voter once it caught up).
    ///
    /// Example: kvs cluster add 4 10.0.4.10:7500 10.0.4.10:7400
    Add(ClusterAddArgs),
    /// Remove a coordinator node (refused for the last voter).
    ///
    /// Example: kvs cluster remove 4
    Remove(ClusterRemoveArgs),
}

#[derive(Debug, Args)]
pub struct ClusterAddArgs {
    /// The new node's id (unique in the cluster).
    pub node_id: u64,
    /// HOST:PORT of the new node's Raft service (its `raft_listen` / `advertise_raft`).
    pub raft_addr: String,
    /// HOST:PORT of the new node's API (its `listen` / `advertise_api`).
    pub api_addr: String,
}

#[derive(Debug, Args)]
pub struct ClusterRemoveArgs {
    /// The node id to remove.
    pub node_id: u64,
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Instance name.
    pub name: String,
    /// Promote even if the standby lags more than the plan allows (accepts data loss).
    #[arg(long)]
    pub allow_data_loss: bool,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Instance name.
    pub name: String,
    /// The app whose REDIS_URL should point at this instance.
    #[arg(short, long)]
    pub app: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Plan name, e.g. mini or premium-0 (see `kvs plans`).
    #[arg(long)]
    pub plan: String,
    /// App to attach the instance to; the first instance on an app becomes REDIS_URL.
    #[arg(short, long)]
    pub app: String,
    /// Engine version label, e.g. valkey-9 (default: the newest).
    #[arg(long)]
    pub version: Option<String>,
    /// Idle connection timeout in seconds (default 300; 0: never).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u32>,
    /// Eviction policy (default noeviction).
    #[arg(long, value_name = "POLICY")]
    pub maxmemory_policy: Option<String>,
    /// notify-keyspace-events flags, e.g. KEA (default: disabled).
    #[arg(long, value_name = "FLAGS")]
    pub keyspace_notifications: Option<String>,
    /// Wait until the instance is available before returning.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Instance name, e.g. redis-acute-6762.
    pub name: String,
    /// Seconds between polls (invalid or non-positive values mean the default, 1).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "1",
        allow_hyphen_values = true
    )]
    pub wait_interval: String,
    /// Give up (exit 1) after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Instance name or config var (substring, case-insensitive).
    pub name: Option<String>,
    /// Only instances attached to this app.
    #[arg(short, long)]
    pub app: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only instances attached to this app.
    #[arg(short, long)]
    pub app: Option<String>,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Instance name, e.g. redis-acute-6762.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct AppArg {
    /// App name.
    #[arg(short, long)]
    pub app: String,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Instance name, e.g. redis-acute-6762.
    pub name: String,
    /// The instance name again, to skip the interactive prompt.
    #[arg(short, long, value_name = "NAME")]
    pub confirm: Option<String>,
}

#[derive(Debug, Args)]
pub struct TimeoutArgs {
    /// Instance name.
    pub name: String,
    /// Idle seconds before the server closes a connection (0: never).
    #[arg(short, long)]
    pub seconds: u32,
}

#[derive(Debug, Args)]
pub struct MaxmemoryArgs {
    /// Instance name.
    pub name: String,
    /// Eviction policy, e.g. allkeys-lru.
    #[arg(short, long)]
    pub policy: String,
}

#[derive(Debug, Args)]
pub struct KeyspaceArgs {
    /// Instance name.
    pub name: String,
    /// notify-keyspace-events flags, e.g. KEA; '' disables.
    #[arg(short, long)]
    pub config: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// App whose config vars to inject.
    #[arg(short, long)]
    pub app: String,
    /// Seconds between SIGTERM and SIGKILL when stopping the command.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub grace: u64,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_global_and_run_keeps_trailing_args() {
        let cli = Cli::try_parse_from(["kvs", "info", "--json"]).expect("parses");
        assert!(cli.json);
        let cli = Cli::try_parse_from(["kvs", "run", "-a", "app", "--", "sh", "-c", "echo $X"])
            .expect("parses");
        match cli.command {
            Command::Run(run) => assert_eq!(run.command, ["sh", "-c", "echo $X"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn create_version_is_the_engine_label_not_the_cli_version() {
        let cli = Cli::try_parse_from([
            "kvs",
            "create",
            "--plan",
            "mini",
            "-a",
            "app",
            "--version",
            "valkey-9",
        ])
        .expect("parses");
        match cli.command {
            Command::Create(create) => assert_eq!(create.version.as_deref(), Some("valkey-9")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn logs_is_an_alias_of_events() {
        let cli = Cli::try_parse_from(["kvs", "logs", "redis-x"]).expect("parses");
        assert!(matches!(cli.command, Command::Events(_)));
    }
}
