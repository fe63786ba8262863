//! The application of the full-stack simulation: an operator step that creates the premium
//! instances through the REAL Admin API (following the leader), then an app that reads its
//! `REDIS_URL` config var every second (as an app restarted on a config change would) and writes
//! to wherever it points, ten writes a second per instance, every other one with `WAIT 1`.
//! What it saw acknowledged goes to the history; the acknowledged writes are what the invariants
//! hold the product to.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvs_proto::pb::{self, admin_client::AdminClient};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::history::History;
use super::lock;

/// Deadline of one Admin call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of one write (connect and answer; a `WAIT` waits up to 1 s).
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct App {
    pub coordinators: Vec<String>,
    pub ca_file: PathBuf,
    pub admin_token_file: PathBuf,
    pub instances: usize,
    pub history: Arc<Mutex<History>>,
    /// app → where its first process's `REDIS_URL` points now.
    pub urls: Arc<Mutex<BTreeMap<String, SocketAddr>>>,
    /// The deliberately broken rule `loss-zero`: every loss figure is recorded as 0 bytes.
    pub loss_zero: bool,
}

/// How often each app process re-reads its config var.
const REFRESH: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];

impl App {
    fn note(&self, what: String) {
        lock(&self.history).note("app", what);
    }
}

async fn admin(app: &App, url: &str) -> Option<AdminClient<Channel>> {
    let ca = std::fs::read_to_string(&app.ca_file).ok()?;
    let endpoint = Endpoint::from_shared(url.to_string())
        .ok()?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .timeout(ADMIN_TIMEOUT);
    let channel = (super::net::agent_dial())(endpoint).await.ok()?;
    Some(AdminClient::new(channel))
}

fn authed<T>(app: &App, message: T) -> tonic::Request<T> {
    let token = std::fs::read_to_string(&app.admin_token_file).unwrap_or_default();
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {}", token.trim()).parse() {
        request
            .metadata_mut()
            .insert(kvs_proto::metadata::AUTHORIZATION, value);
    }
    request
}

/// Calls `call` on each coordinator in turn until one answers.
async fn on_any<T, F, Fut>(app: &App, call: F) -> Option<T>
where
    F: Fn(AdminClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    for url in &app.coordinators {
        let Some(client) = admin(app, url).await else {
            continue;
        };
        if let Ok(Ok(response)) = tokio::time::timeout(ADMIN_TIMEOUT, call(client)).await {
            return Some(response.into_inner());
        }
    }
    None
}

pub fn app_name(index: usize) -> String {
    format!("app{index}")
}

/// The app host: create the instances, then read config vars and write.
pub async fn main(app: App) -> turmoil::Result {
    for index in 0..app.instances {
        loop {
            let created = on_any(&app, |mut client| {
                let request = authed(
                    &app,
                    pb::CreateInstanceRequest {
                        plan: "premium-0".into(),
                        app: app_name(index),
                        ..Default::default()
                    },
                );
                async move { client.create_instance(request).await }
            })
            .await;
            if let Some(instance) = created {
                app.note(format!("created {} for {}", instance.name, app_name(index)));
                lock(&app.history)
                    .apps
                    .insert(app_name(index), instance.name.clone());
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    tokio::spawn(events(app.clone()));
    for index in 0..app.instances {
        for process in 0..REFRESH.len() {
            let target = Arc::new(Mutex::new(None));
            tokio::spawn(follow(app.clone(), index, process, target.clone()));
            tokio::spawn(writer(app.clone(), index, process, target));
        }
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// The operator's view of the instance events (`kvs events`), every few seconds.
async fn events(app: App) {
    loop {
        let instances: Vec<String> = lock(&app.history).apps.values().cloned().collect();
        for name in instances {
            let listed = on_any(&app, |mut client| {
                let request = authed(&app, pb::InstanceRef { name: name.clone() });
                async move { client.list_events(request).await }
            })
            .await;
            if let Some(listed) = listed {
                let mut history = lock(&app.history);
                for event in listed.events {
                    let message = if app.loss_zero {
                        super::loss_reports::zeroed(&event.message)
                    } else {
                        event.message
                    };
                    let seen = history.events.entry(name.clone()).or_default();
                    // Loss reports go to the timeline too (when a run is read, they explain it).
                    let loss = super::loss_reports::figure(&message).is_some();
                    if seen.insert((event.at_ms, message.clone())) && loss {
                        history.note("app", format!("event {name}: {message}"));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// One app process's view of its `REDIS_URL`, refreshed every `REFRESH[process]`.
async fn follow(app: App, index: usize, process: usize, target: Arc<Mutex<Option<SocketAddr>>>) {
    let name = app_name(index);
    loop {
        let vars = on_any(&app, |mut client| {
            let request = authed(&app, pb::AppRef { app: name.clone() });
            async move { client.get_config_vars(request).await }
        })
        .await;
        let url = vars.and_then(|v| v.vars.get("REDIS_URL").cloned());
        if let Some(address) = url.as_deref().and_then(parse_url) {
            let previous = lock(&target).replace(address);
            if process == 0 {
                lock(&app.urls).insert(name.clone(), address);
            }
            if previous != Some(address) {
                app.note(format!("{name}/{process} REDIS_URL → {address}"));
            }
        }
        tokio::time::sleep(REFRESH[process]).await;
    }
}

/// `rediss://default:PASSWORD@HOST:PORT` → HOST:PORT.
fn parse_url(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("rediss://")?;
    let host_port = rest.rsplit('@').next()?;
    host_port.trim_end_matches('/').parse().ok()
}

async fn writer(app: App, index: usize, process: usize, target: Arc<Mutex<Option<SocketAddr>>>) {
    let name = app_name(index);
    let mut next_id = (index as u64 + 1) * 1_000_000_000 + process as u64 * 100_000_000;
    let mut connection: Option<(SocketAddr, BufReader<turmoil::net::TcpStream>)> = None;
    let mut tick = tokio::time::interval(WRITE_EVERY);
    loop {
        tick.tick().await;
        let target = *lock(&target);
        let Some(target) = target else { continue };
        if connection.as_ref().is_none_or(|(at, _)| *at != target) {
            connection =
                tokio::time::timeout(WRITE_TIMEOUT, turmoil::net::TcpStream::connect(target))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|stream| (target, BufReader::new(stream)));
        }
        let Some((_, stream)) = connection.as_mut() else {
            continue;
        };
        next_id += 1;
        let wait = next_id.is_multiple_of(2);
        let request = format!("W {next_id} {}\n", u8::from(wait));
        let exchange = async {
            stream.get_mut().write_all(request.as_bytes()).await?;
            let mut answer = String::new();
            stream.read_line(&mut answer).await?;
            std::io::Result::Ok(answer)
        };
        match tokio::time::timeout(WRITE_TIMEOUT, exchange).await {
            Ok(Ok(answer)) if answer.starts_with("OK") => {
                let replicated = answer.trim() == "OK 1";
                lock(&app.history)
                    .acknowledged
                    .push((name.clone(), next_id, wait && replicated));
            }
            Ok(Ok(answer)) if !answer.is_empty() => {}
            _ => connection = None,
        }
    }
}
