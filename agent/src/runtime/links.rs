//! Fronts and tunnels, level-triggered from the desired processes: every desired instance has a
//! TLS front on `front_address:front_port`; every standby also has a replication tunnel on
//! `engine_bind:tunnel_port` to its upstream's front. A changed address re-creates the link
//! (dropping its connections); a link that cannot bind is reported and retried every tick.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::Runtime;
use crate::tls::front::Front;
use crate::tls::tunnel::Tunnel;

impl Runtime {
    pub(super) async fn reconcile_links(&mut self) {
        self.reconcile_fronts().await;
        self.reconcile_tunnels().await;
    }

    /// Makes the set of TLS fronts match the desired processes, fenced as decided.
    async fn reconcile_fronts(&mut self) {
        let wanted: BTreeMap<String, (SocketAddr, SocketAddr, u32)> = self
            .supervisor
            .desired_processes()
            .map(|p| {
                let listen = SocketAddr::new(self.options.front_address, p.front_port);
                let upstream = SocketAddr::new(self.options.engine_bind, p.engine_port);
                (p.instance.clone(), (listen, upstream, p.maxclients))
            })
            .collect();
        // Each instance's engine socket path is fixed by its directory: it never changes.
        self.fronts.retain(|name, front| {
            wanted.get(name).is_some_and(|(listen, upstream, _)| {
                front.listen == *listen && front.upstream == *upstream
            })
        });
        for (name, (listen, upstream, maxclients)) in wanted {
            let fenced = self.fencing.fenced().contains(&name);
            if let Some(front) = self.fronts.get(&name) {
                front.set_max_connections(maxclients);
                front.set_fenced(fenced);
                continue;
            }
            if self.front_errors.contains_key(&name) {
                continue; // retried on the next tick
            }
            let unix = super::paths(&self.options, &name).sock;
            let threads = self.front_threads.handle();
            let acceptor = self.acceptor.clone();
            match Front::start(threads, listen, upstream, unix, acceptor, maxclients).await {
                Ok(front) => {
                    tracing::info!(instance = %name, %listen, %upstream, "TLS front listening");
                    front.set_fenced(fenced);
                    self.fronts.insert(name, front);
                }
                Err(error) => {
                    let message = format!("TLS front cannot listen on {listen}: {error}");
                    tracing::error!(instance = %name, %message);
                    self.front_errors.insert(name, message);
                }
            }
        }
    }

    /// Makes the set of replication tunnels match the desired standbys.
    async fn reconcile_tunnels(&mut self) {
        let wanted: BTreeMap<String, (SocketAddr, SocketAddr)> = self
            .supervisor
            .desired_processes()
            .filter_map(|p| {
                let upstream = p.upstream.as_ref()?;
                let listen = SocketAddr::new(self.options.engine_bind, upstream.tunnel_port);
                Some((
                    p.instance.clone(),
                    (listen, SocketAddr::new(upstream.host, upstream.port)),
                ))
            })
            .collect();
        self.tunnels.retain(|name, tunnel| {
            let keep = wanted.get(name).is_some_and(|(listen, upstream)| {
                tunnel.listen == *listen && tunnel.upstream == *upstream
            });
            if !keep {
                tracing::info!(instance = %name, upstream = %tunnel.upstream, "replication tunnel closed");
            }
            keep
        });
        for (name, (listen, upstream)) in wanted {
            if self.tunnels.contains_key(&name) || self.tunnel_errors.contains_key(&name) {
                continue;
            }
            match Tunnel::start(listen, upstream, self.connector.clone()).await {
                Ok(tunnel) => {
                    tracing::info!(instance = %name, %listen, %upstream, "replication tunnel listening");
                    self.tunnels.insert(name, tunnel);
                }
                Err(error) => {
                    let message = format!("replication tunnel cannot listen on {listen}: {error}");
                    tracing::error!(instance = %name, %message);
                    self.tunnel_errors.insert(name, message);
                }
            }
        }
    }
}
