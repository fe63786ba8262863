//! The benchmark's own redis-server: the same binary and settings as the KVS instance's engine,
//! listening on a plain port and a native TLS port with the agent's host certificate.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kvs_proto::pb;

use crate::process::ChildProcess;
use crate::wait::{Probe, wait_until};

/// Bound on the bench server starting to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// engine.conf directives the bench server replaces (listeners, paths, TLS, replication).
const REPLACED: &[&str] = &[
    "port",
    "tls-port",
    "bind",
    "dir",
    "logfile",
    "pidfile",
    "daemonize",
    "supervised",
    "unixsocket",
    "unixsocketperm",
    "replicaof",
    "slaveof",
    "masterauth",
    "masteruser",
    "include",
];

/// A running bench redis-server (killed by PID on drop).
pub struct BenchServer {
    pub plain_port: u16,
    pub tls_port: u16,
    process: ChildProcess,
}

impl BenchServer {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Starts redis-server on `host` from the instance's engine.conf, or from the instance's plan
    /// figures when that file cannot be read.
    pub async fn start(
        instance_dir: &Path,
        tls_dir: &Path,
        bench_dir: &Path,
        host: &str,
        instance: &pb::Instance,
    ) -> Result<BenchServer> {
        let server =
            crate::binaries::find_in_path("redis-server").context("redis-server not in PATH")?;
        let address: IpAddr = host
            .parse()
            .with_context(|| format!("instance host {host} is not an IP"))?;
        let IpAddr::V4(v4) = address else {
            bail!("IPv6 hosts are not supported here")
        };
        let plain_port = crate::config::free_port(v4)?;
        let tls_port = crate::config::free_port(v4)?;
        std::fs::create_dir_all(bench_dir)?;
        let base = match std::fs::read_to_string(instance_dir.join("engine.conf")) {
            Ok(text) => {
                println!(
                    "bench server: settings from {}",
                    instance_dir.join("engine.conf").display()
                );
                filtered(&text)
            }
            Err(err) => {
                println!("bench server: no engine.conf ({err}); settings from the plan");
                from_plan(instance)
            }
        };
        let mut conf = base;
        let dir = bench_dir.display();
        let tls = tls_dir.display();
        conf += &format!(
            "\n# bench-front overrides\nbind {host}\nport {plain_port}\ntls-port {tls_port}\n\
             tls-cert-file {tls}/cert.pem\ntls-key-file {tls}/key.pem\ntls-ca-cert-file {tls}/ca.pem\n\
             tls-auth-clients no\ndir {dir}\nlogfile {dir}/redis-server.log\ndaemonize no\n"
        );
        let conf_path = bench_dir.join("redis.conf");
        std::fs::write(&conf_path, conf)
            .with_context(|| format!("writing {}", conf_path.display()))?;
        let conf_arg = conf_path.to_string_lossy().into_owned();
        let mut process = ChildProcess::spawn(
            "bench-redis-server",
            &server,
            &[&conf_arg],
            &bench_dir.join("stdout.log"),
        )?;
        let log = bench_dir.join("redis-server.log");
        wait_until("the bench redis-server to listen", START_TIMEOUT, || {
            let exited = process.exit_status();
            let log = log.clone();
            async move {
                if let Some(status) = exited {
                    let tail = crate::process::log_tail(&log, 20);
                    return Probe::Fatal(anyhow::anyhow!(
                        "bench redis-server exited ({status}):\n{tail}"
                    ));
                }
                match tokio::net::TcpStream::connect((v4, tls_port)).await {
                    Ok(_) => Probe::Ready(()),
                    Err(err) => Probe::Pending(format!("connect {v4}:{tls_port}: {err}")),
                }
            }
        })
        .await?;
        Ok(BenchServer {
            plain_port,
            tls_port,
            process,
        })
    }
}

/// engine.conf without the directives the bench server replaces.
fn filtered(conf: &str) -> String {
    conf.lines()
        .filter(|line| {
            let key = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            !REPLACED.contains(&key.as_str()) && !key.starts_with("tls-")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Settings from the plan when engine.conf is unreadable: memory, clients, persistence, password.
fn from_plan(instance: &pb::Instance) -> String {
    let password = crate::engine_client::parse_url(&instance.url)
        .map(|u| u.password)
        .unwrap_or_default();
    let aof = if instance.persistence == "AOF" {
        "yes"
    } else {
        "no"
    };
    format!(
        "maxmemory {}\nmaxmemory-policy {}\nmaxclients {}\nappendonly {aof}\nappendfsync everysec\nsave \"\"\n\
         user default on >{password} ~* &* +@all\n",
        instance.maxmemory_bytes,
        if instance.maxmemory_policy.is_empty() {
            "noeviction"
        } else {
            &instance.maxmemory_policy
        },
        instance.max_connections.max(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_directives_are_dropped() {
        let conf =
            "port 16380\nbind 127.0.0.11\nmaxmemory 1000\ntls-port 0\naclfile /x/users.acl\n";
        let out = filtered(conf);
        assert_eq!(out, "maxmemory 1000\naclfile /x/users.acl");
    }
}
