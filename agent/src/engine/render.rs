//! Renders an instance's engine files from its desired spec: `engine.conf` and `users.acl`.
//!
//! A standby's conf names its replication tunnel (`replicaof <engine_bind> <tunnel_port>`); every
//! role carries the replication credentials (`masteruser kvs-replication`, `masterauth`) and
//! `replica-read-only yes`, so engine.conf holds the replication password (it is written 0600).
//!
//! Every setting the engine depends on is written explicitly (no reliance on engine defaults), in
//! a form both Redis 7.0 and Valkey 9 accept. The same functions give the `CONFIG SET` list for a
//! live change, so the file on disk and the running engine never disagree for long: the shell
//! re-renders the files, then applies the list.
//!
//! Layout of an instance directory (docs/interfaces.md):
//! `instances/<name>/{engine.conf, users.acl, engine.log, engine.pid, engine.sock, appendonlydir/}`.
//!
//! Besides its loopback TCP port, the engine listens on a Unix socket in its directory
//! (`engine.sock`, mode 0700): the TLS front reaches the engine through it, which costs the kernel
//! far less per request than a second TCP connection over the loopback.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kvs_proto::metadata::{ADMIN_USER, CUSTOMER_USER, REPLICATION_USER};
use kvs_proto::model::DesiredProcess;

/// Connections kept free beyond the plan's limit for the agent (INFO, CONFIG) and replication:
/// the TLS front enforces the plan's limit on customers, the engine's `maxclients` adds these.
pub const RESERVED_CLIENTS: u32 = 4;

/// What the customer user `default` may not run (DESIGN §5): administration, persistence
/// control, replication and cluster commands. `ACL WHOAMI` stays allowed.
pub const CUSTOMER_ACL_RULES: &str = "+@all -config -debug -module -shutdown -replicaof -slaveof -sync -psync \
-failover -acl +acl|whoami -save -bgsave -bgrewriteaof -migrate -cluster";

/// Longest Unix socket path used (`sun_path` holds 108 bytes with the NUL; engines also refuse
/// long ones).
const MAX_UNIX_SOCKET_PATH: usize = 100;

/// Paths of one instance's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePaths {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub acl: PathBuf,
    pub log: PathBuf,
    pub pid: PathBuf,
    /// The engine's Unix socket, for the TLS front; `None` if the path is too long for one.
    pub sock: Option<PathBuf>,
}

impl InstancePaths {
    /// `data_dir/instances/<instance>/…`. The instance name is validated by the proto crate
    /// (lowercase letters, digits and dashes), so it is a single safe path component.
    pub fn new(data_dir: &Path, instance: &str) -> Self {
        let dir = instances_dir(data_dir).join(instance);
        Self {
            conf: dir.join("engine.conf"),
            acl: dir.join("users.acl"),
            log: dir.join("engine.log"),
            pid: dir.join("engine.pid"),
            sock: Some(dir.join("engine.sock"))
                .filter(|p| p.as_os_str().len() <= MAX_UNIX_SOCKET_PATH),
            dir,
        }
    }
}

/// `data_dir/instances`.
pub fn instances_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("instances")
}

/// A config-file string: double-quoted with `\` and `"` escaped (the engines' sdssplitargs rules).
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The live-changeable settings, as (config name, value), in the engine's syntax.
fn live_settings(p: &DesiredProcess) -> Vec<(&'static str, String)> {
    vec![
        ("maxmemory", p.maxmemory_bytes.to_string()),
        (
            "maxclients",
            (p.maxclients.saturating_add(RESERVED_CLIENTS)).to_string(),
        ),
        ("maxmemory-policy", p.settings.maxmemory_policy.clone()),
        ("timeout", p.settings.timeout_seconds.to_string()),
        (
            "notify-keyspace-events",
            p.settings.notify_keyspace_events.clone(),
        ),
        (
            "appendonly",
            if p.appendonly { "yes" } else { "no" }.to_string(),
        ),
        ("appendfsync", "everysec".to_string()),
        // Replication credentials on every role, so a demotion (REPLICAOF) needs nothing else.
        ("masteruser", REPLICATION_USER.to_string()),
        ("masterauth", p.replication_password.clone()),
        ("replica-read-only", "yes".to_string()),
        // A primary pings its replicas every second, so a standby notices a dead or cut-off
        // primary within seconds (the coordinator treats 5 silent seconds as a link down), and
        // the replica drops the link after repl-timeout rather than the default minute.
        ("repl-ping-replica-period", "1".to_string()),
        ("repl-timeout", "5".to_string()),
    ]
}

/// The `replicaof` target of a standby: its local tunnel port. `None` for a primary.
pub fn replicaof(p: &DesiredProcess, bind: IpAddr) -> Option<(String, String)> {
    p.upstream
        .as_ref()
        .map(|u| (bind.to_string(), u.tunnel_port.to_string()))
}

/// `engine.conf` for an instance.
pub fn engine_conf(p: &DesiredProcess, paths: &InstancePaths, bind: IpAddr) -> String {
    let path = |p: &Path| quote(&p.to_string_lossy());
    let mut lines = vec![
        format!(
            "# Rendered by kvs-agent for {} (epoch {}). Rewritten on every start: do not edit.",
            p.instance, p.epoch
        ),
        format!("bind {bind}"),
        format!("port {}", p.engine_port),
        "protected-mode yes".into(),
        "daemonize no".into(),
        "supervised no".into(),
        // Logs go to stdout, which the agent appends to engine.log (early errors included).
        "logfile \"\"".into(),
        "loglevel notice".into(),
        format!("dir {}", path(&paths.dir)),
        format!("aclfile {}", path(&paths.acl)),
        "databases 16".into(),
        // No RDB snapshots: persistence is the AOF, and only for plans that have it.
        "save \"\"".into(),
        "dbfilename dump.rdb".into(),
        "appenddirname appendonlydir".into(),
        "appendfilename appendonly.aof".into(),
        "aof-load-truncated yes".into(),
        "tcp-keepalive 300".into(),
        // DEBUG is also denied to `default` by the ACL; this keeps it off for every user.
        "enable-debug-command no".into(),
        // One standby per instance: start its full sync at once instead of waiting for more.
        "repl-diskless-sync-delay 0".into(),
    ];
    if let Some(sock) = &paths.sock {
        lines.push(format!("unixsocket {}", path(sock)));
        lines.push("unixsocketperm 700".into());
    }
    for (name, value) in live_settings(p) {
        lines.push(format!("{name} {}", quote(&value)));
    }
    if let Some((host, port)) = replicaof(p, bind) {
        lines.push(format!("replicaof {host} {port}"));
    }
    lines.push(String::new());
    lines.join("\n")
}

/// Every live setting as `CONFIG SET` pairs (adopting an engine whose settings are unknown).
pub fn config_set_all(p: &DesiredProcess) -> Vec<(&'static str, String)> {
    live_settings(p)
}

/// `users.acl`: the customer, the agent's admin user and the replication user.
pub fn users_acl(p: &DesiredProcess) -> String {
    format!(
        "user {CUSTOMER_USER} on >{} ~* &* {CUSTOMER_ACL_RULES}\n\
         user {ADMIN_USER} on >{} ~* &* +@all\n\
         user {REPLICATION_USER} on >{} +psync +replconf +ping +sync\n",
        p.default_password, p.admin_password, p.replication_password
    )
}

/// The `CONFIG SET` pairs that take a running engine from `from` to `to`.
pub fn config_set_changes(
    from: &DesiredProcess,
    to: &DesiredProcess,
) -> Vec<(&'static str, String)> {
    let before = live_settings(from);
    live_settings(to)
        .into_iter()
        .filter(|pair| !before.contains(pair))
        .collect()
}

/// True if the users (passwords) differ: rewrite users.acl and `ACL LOAD`.
pub fn acl_changed(from: &DesiredProcess, to: &DesiredProcess) -> bool {
    users_acl(from) != users_acl(to)
}

#[cfg(test)]
mod tests {
    use kvs_proto::model::Role;
    use kvs_proto::settings::Settings;

    use super::*;

    fn process() -> DesiredProcess {
        DesiredProcess {
            instance: "redis-acute-6762".into(),
            epoch: 3,
            role: Role::Primary,
            engine_port: 16380,
            front_port: 6380,
            engine: "valkey-9".into(),
            maxmemory_bytes: 26_214_400,
            maxclients: 20,
            settings: Settings::default(),
            appendonly: false,
            default_password: "d".repeat(32),
            admin_password: "a".repeat(32),
            replication_password: "r".repeat(32),
            upstream: None,
            fence_after_seconds: None,
            pause_writes: false,
            catch_up: false,
        }
    }

    fn paths() -> InstancePaths {
        InstancePaths::new(Path::new("/var/lib/kvs agent"), "redis-acute-6762")
    }

    #[test]
    fn conf_is_explicit() {
        let conf = engine_conf(&process(), &paths(), "127.0.0.1".parse().expect("ip"));
        for line in [
            "bind 127.0.0.1",
            "port 16380",
            "maxmemory \"26214400\"",
            "maxclients \"24\"",
            "maxmemory-policy \"noeviction\"",
            "timeout \"300\"",
            "notify-keyspace-events \"\"",
            "appendonly \"no\"",
            "appendfsync \"everysec\"",
            "dir \"/var/lib/kvs agent/instances/redis-acute-6762\"",
            "aclfile \"/var/lib/kvs agent/instances/redis-acute-6762/users.acl\"",
            "save \"\"",
            "masteruser \"kvs-replication\"",
            "replica-read-only \"yes\"",
            "repl-diskless-sync-delay 0",
            "unixsocket \"/var/lib/kvs agent/instances/redis-acute-6762/engine.sock\"",
            "unixsocketperm 700",
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "missing {line:?} in\n{conf}"
            );
        }
        assert!(
            !conf.contains(&"d".repeat(32)),
            "no passwords in engine.conf"
        );
    }

    #[test]
    fn standby_replicates_from_its_tunnel() {
        let bind = "127.0.0.1".parse().expect("ip");
        assert!(!engine_conf(&process(), &paths(), bind).contains("replicaof"));
        let mut standby = process();
        standby.role = Role::Standby;
        standby.upstream = Some(kvs_proto::model::Upstream {
            host: "127.0.0.12".parse().expect("ip"),
            port: 6380,
            tunnel_port: 26380,
        });
        let conf = engine_conf(&standby, &paths(), bind);
        assert!(
            conf.lines().any(|l| l == "replicaof 127.0.0.1 26380"),
            "{conf}"
        );
        assert!(conf.contains(&format!("masterauth \"{}\"", "r".repeat(32))));
    }

    #[test]
    fn appendonly_plans_persist() {
        let mut p = process();
        p.appendonly = true;
        p.settings.notify_keyspace_events = "KEA".into();
        let conf = engine_conf(&p, &paths(), "127.0.0.1".parse().expect("ip"));
        assert!(conf.contains("appendonly \"yes\"\n"));
        assert!(conf.contains("notify-keyspace-events \"KEA\"\n"));
    }

    #[test]
    fn acl_has_three_users() {
        let acl = users_acl(&process());
        let lines: Vec<&str> = acl.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with(&format!(
            "user default on >{} ~* &* +@all -config",
            "d".repeat(32)
        )));
        assert!(lines[0].contains("-acl +acl|whoami"));
        assert!(lines[1].starts_with("user kvs-admin on >"));
        assert!(lines[1].ends_with("+@all"));
        assert!(lines[2].ends_with("+psync +replconf +ping +sync"));
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn live_changes_are_minimal() {
        let from = process();
        let mut to = process();
        to.settings.timeout_seconds = 0;
        to.settings.maxmemory_policy = "allkeys-lru".into();
        assert_eq!(
            config_set_changes(&from, &to),
            [
                ("maxmemory-policy", "allkeys-lru".to_string()),
                ("timeout", "0".into())
            ]
        );
        assert!(!acl_changed(&from, &to));
        to.admin_password = "b".repeat(32);
        assert!(acl_changed(&from, &to));
        assert!(config_set_changes(&from, &from).is_empty());
    }
}
