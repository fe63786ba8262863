//! The agent's fronts in the simulation: one listener per instance on its front port, which is
//! where clients write and where a standby's replication tunnel syncs from (as the real TLS front
//! is both). They live in the agent's runtime: an agent crash closes them; the engines behind them
//! survive. A small line protocol stands in for RESP:
//!
//! ```text
//!   client:  W <id> <wait 0|1>    ─►  OK <acked 0|1> | ERR <why>
//!   replica: SYNC <len> <last id> ─►  FULL | PART, then E <id> lines, P (ping) every second;
//!            ◄─ A <len> (ack) every 200 ms
//! ```
//!
//! A standby's side (`replicate`) runs while its desired role is standby with an upstream; a link
//! silent for `REPL_TIMEOUT` is dropped and dialed again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use kvs_agent::supervisor::Supervisor;
use kvs_proto::model::Role;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;

use super::engines::ShellContext;
use super::lock;

/// A silent replication link is dropped after this (`repl-timeout`, both ends).
pub const REPL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `WAIT 1 1000` waits for a replica's ack.
const WAIT_TIMEOUT: Duration = Duration::from_secs(1);
/// Replica acks and primary pings.
const ACK_EVERY: Duration = Duration::from_millis(200);
const PING_EVERY: Duration = Duration::from_secs(1);
/// A dial of the upstream gives up after this.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The front listeners and replication links of one agent life.
pub struct Fronts {
    context: ShellContext,
    /// instance → (front port, listener task).
    listeners: BTreeMap<String, (u16, JoinHandle<()>)>,
    /// instance → (upstream, link task).
    links: BTreeMap<String, (SocketAddr, JoinHandle<()>)>,
}

impl Fronts {
    pub fn new(context: ShellContext) -> Self {
        Fronts {
            context,
            listeners: BTreeMap::new(),
            links: BTreeMap::new(),
        }
    }

    /// Level-triggered from the desired processes: a front per instance, a link per standby.
    pub fn sync(&mut self, supervisor: &Supervisor) {
        let mut fronts = BTreeMap::new();
        let mut links = BTreeMap::new();
        for process in supervisor.desired_processes() {
            fronts.insert(process.instance.clone(), process.front_port);
            if process.role == Role::Standby
                && let Some(upstream) = &process.upstream
            {
                links.insert(
                    process.instance.clone(),
                    SocketAddr::new(upstream.host, upstream.port),
                );
            }
        }
        self.listeners.retain(|name, (port, task)| {
            let keep = fronts.get(name) == Some(port) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (name, port) in fronts {
            if !self.listeners.contains_key(&name) {
                let task = tokio::spawn(serve(self.context.clone(), name.clone(), port));
                self.listeners.insert(name, (port, task));
            }
        }
        self.links.retain(|name, (upstream, task)| {
            let keep = links.get(name) == Some(upstream) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (name, upstream) in links {
            if !self.links.contains_key(&name) {
                let task = tokio::spawn(replicate(self.context.clone(), name.clone(), upstream));
                self.links.insert(name, (upstream, task));
            }
        }
    }

    pub fn close(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut self.listeners) {
            task.abort();
        }
        for (_, (_, task)) in std::mem::take(&mut self.links) {
            task.abort();
        }
    }
}

impl Drop for Fronts {
    fn drop(&mut self) {
        self.close();
    }
}

async fn serve(context: ShellContext, instance: String, port: u16) {
    let listener = match super::net::listen(port).await {
        Ok(listener) => listener,
        Err(error) => {
            context.note(&format!(
                "front of {instance} cannot listen on {port}: {error}"
            ));
            return;
        }
    };
    while let Ok((stream, peer)) = listener.accept().await {
        tokio::spawn(connection(context.clone(), instance.clone(), stream, peer));
    }
}

async fn connection(
    context: ShellContext,
    instance: String,
    stream: turmoil::net::TcpStream,
    peer: SocketAddr,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(first)) = lines.next_line().await else {
        return;
    };
    let mut words = first.split_whitespace();
    match words.next() {
        Some("SYNC") => {
            let len: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let last: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            feed_replica(context, instance, lines, write, peer, len, last).await;
        }
        Some("W") => {
            let mut line = Some(first);
            while let Some(request) = line {
                let answer = client_write(&context, &instance, &request).await;
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                line = lines.next_line().await.ok().flatten();
            }
        }
        _ => {}
    }
}

/// One client write: refused unless this engine is a writable primary; `WAIT` waits for a replica.
async fn client_write(context: &ShellContext, instance: &str, request: &str) -> String {
    let mut words = request.split_whitespace().skip(1);
    let Some(id) = words.next().and_then(|w| w.parse::<u64>().ok()) else {
        return "ERR bad request\n".into();
    };
    let wait = words.next() == Some("1");
    let (len, epoch) = {
        let mut state = lock(&context.state);
        let Some(engine) = state.engines.get_mut(instance) else {
            return "ERR no such instance\n".into();
        };
        if !engine.running {
            return "ERR engine down\n".into();
        }
        if engine.fenced {
            return "ERR fenced\n".into();
        }
        if !engine.accepts_writes() {
            return "ERR READONLY\n".into();
        }
        engine.log.push(id);
        (engine.log.len(), engine.epoch)
    };
    lock(&context.history).accepted(instance, &context.host, epoch, id);
    if !wait {
        return "OK 0\n".into();
    }
    let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        let acked = lock(&context.state)
            .engines
            .get(instance)
            .is_some_and(|e| e.acks.values().any(|(n, _)| *n >= len));
        if acked {
            return "OK 1\n".into();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    "OK 0\n".into()
}

/// The primary's side of a replication link: partial resync if the replica's log is a prefix of
/// ours, full resync otherwise; then every new write, pings, and the replica's acks.
async fn feed_replica(
    context: ShellContext,
    instance: String,
    mut lines: tokio::io::Lines<BufReader<turmoil::net::tcp::OwnedReadHalf>>,
    mut write: turmoil::net::tcp::OwnedWriteHalf,
    peer: SocketAddr,
    len: usize,
    last: u64,
) {
    let start = tokio::time::Instant::now();
    // The stream belongs to one run of the engine: a restart (new generation) ends it.
    let (mut sent, generation) = {
        let state = lock(&context.state);
        let Some(engine) = state.engines.get(&instance) else {
            return;
        };
        // A primary restarted after a reboot refuses the standby's resync (`set_peers_refused`).
        if !engine.running || engine.role != Role::Primary || engine.after_reboot {
            return;
        }
        let prefix = len <= engine.log.len() && (len == 0 || engine.log[len - 1] == last);
        (if prefix { len } else { 0 }, engine.generation)
    };
    let header = if sent == len { "PART\n" } else { "FULL\n" };
    if write.write_all(header.as_bytes()).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    let mut last_heard = start;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { break };
                if let Some(acked) = line.strip_prefix("A ").and_then(|n| n.parse::<usize>().ok()) {
                    last_heard = tokio::time::Instant::now();
                    let now = turmoil::sim_elapsed().unwrap_or_default();
                    if let Some(engine) = lock(&context.state).engines.get_mut(&instance) {
                        engine.acks.insert(peer, (acked, now));
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > REPL_TIMEOUT || write.write_all(b"P\n").await.is_err() {
                    break;
                }
            }
            _ = poll.tick() => {
                let batch: Vec<u64> = {
                    let state = lock(&context.state);
                    match state.engines.get(&instance) {
                        Some(engine)
                            if engine.running
                                && engine.role == Role::Primary
                                && engine.generation == generation =>
                        {
                            engine.log.get(sent..).map(<[u64]>::to_vec).unwrap_or_default()
                        }
                        _ => break,
                    }
                };
                let mut text = String::new();
                for id in &batch {
                    text.push_str(&format!("E {id}\n"));
                }
                if !text.is_empty() {
                    if write.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                    sent += batch.len();
                }
            }
        }
    }
    if let Some(engine) = lock(&context.state).engines.get_mut(&instance) {
        engine.acks.remove(&peer);
    }
}

/// The standby's side: dial the upstream's front, sync, apply, ack; again after a break.
async fn replicate(context: ShellContext, instance: String, upstream: SocketAddr) {
    loop {
        let _ = replicate_once(&context, &instance, upstream).await;
        if let Some(engine) = lock(&context.state).engines.get_mut(&instance) {
            engine.link_up = false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn replicate_once(
    context: &ShellContext,
    instance: &str,
    upstream: SocketAddr,
) -> Option<()> {
    let (len, last, generation) = {
        let state = lock(&context.state);
        let engine = state.engines.get(instance)?;
        if !engine.running || engine.role != Role::Standby {
            return None;
        }
        (
            engine.log.len(),
            engine.log.last().copied().unwrap_or(0),
            engine.generation,
        )
    };
    // The link belongs to one run of the engine: a restart (new generation) syncs again.
    let same_run = |engine: &super::engines::Engine| {
        engine.running && engine.role == Role::Standby && engine.generation == generation
    };
    let stream = tokio::time::timeout(DIAL_TIMEOUT, turmoil::net::TcpStream::connect(upstream))
        .await
        .ok()?
        .ok()?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(format!("SYNC {len} {last}\n").as_bytes())
        .await
        .ok()?;
    let header = tokio::time::timeout(REPL_TIMEOUT, lines.next_line())
        .await
        .ok()?
        .ok()??;
    {
        let mut state = lock(&context.state);
        let engine = state.engines.get_mut(instance)?;
        if !same_run(engine) {
            return None;
        }
        if header == "FULL" {
            engine.log.clear();
        } else if header != "PART" {
            return None;
        }
        engine.link_up = true;
        engine.last_io = super::history::now();
    }
    // `repl-timeout`: the link is dropped when nothing (writes or pings) came for this long.
    let mut last_heard = tokio::time::Instant::now();
    let mut ack = tokio::time::interval(ACK_EVERY);
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = line.ok()??;
                last_heard = tokio::time::Instant::now();
                let mut state = lock(&context.state);
                let engine = state.engines.get_mut(instance)?;
                if !same_run(engine) {
                    return None;
                }
                engine.last_io = super::history::now();
                if let Some(id) = line.strip_prefix("E ").and_then(|n| n.parse::<u64>().ok()) {
                    engine.log.push(id);
                }
            }
            _ = ack.tick() => {
                if last_heard.elapsed() > REPL_TIMEOUT {
                    return None;
                }
                let len = {
                    let state = lock(&context.state);
                    let engine = state.engines.get(instance)?;
                    if !same_run(engine) {
                        return None;
                    }
                    engine.log.len()
                };
                write.write_all(format!("A {len}\n").as_bytes()).await.ok()?;
            }
        }
    }
}
