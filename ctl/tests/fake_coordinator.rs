//! The `kvs` binary against an in-process fake coordinator (plaintext gRPC on 127.0.0.1): the
//! bearer token, Heroku's output strings, `wait` polling and `run` restarting on a var change.
//!
//! The fake serves one instance, `redis-acute-6762` on `dev-app`, which reports `creating` for
//! the first two GetInstance calls and `available` after that.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kvs_proto::pb;
use kvs_proto::pb::admin_server::{Admin, AdminServer};
use kvs_proto::pb::config_server::{Config, ConfigServer};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, WatchStream};
use tonic::{Request, Response, Status};

const TOKEN: &str = "secret-token";
const NAME: &str = "redis-acute-6762";

struct Fake {
    polls: AtomicU32,
    /// WatchConfig calls so far; with `break_first_stream` the first stream ends after one message.
    streams: AtomicU32,
    break_first_stream: bool,
    instance: Mutex<pb::Instance>,
    vars: watch::Sender<BTreeMap<String, String>>,
}

/// The gRPC services share one fake (a newtype, since `Arc` is foreign to this crate).
#[derive(Clone)]
struct Service(std::sync::Arc<Fake>);

impl std::ops::Deref for Service {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

fn authorize<T>(request: &Request<T>) -> Result<(), Status> {
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if header == Some(&format!("Bearer {TOKEN}")) {
        Ok(())
    } else {
        Err(Status::unauthenticated("invalid admin token"))
    }
}

fn sample_instance() -> pb::Instance {
    pb::Instance {
        name: NAME.into(),
        plan: "premium-0".into(),
        status: "creating".into(),
        created_at_ms: 1_599_763_147_000,
        version: "valkey-8".into(),
        timeout_seconds: 300,
        maxmemory_policy: "noeviction".into(),
        persistence: "AOF".into(),
        ha_status: "Available".into(),
        requires_tls: true,
        attachments: vec![pb::Attachment {
            app: "dev-app".into(),
            config_var: "REDIS_URL".into(),
        }],
        url: "rediss://default:pw@127.0.0.1:6380".into(),
        ..Default::default()
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Admin for Service {
    async fn create_instance(&self, r: Request<pb::CreateInstanceRequest>) -> Reply<pb::Instance> {
        authorize(&r)?;
        Ok(Response::new(sample_instance()))
    }
    async fn get_instance(&self, r: Request<pb::InstanceRef>) -> Reply<pb::Instance> {
        authorize(&r)?;
        if r.get_ref().name != NAME {
            return Err(Status::not_found(format!(
                "no instance named {}",
                r.get_ref().name
            )));
        }
        let mut instance = self.instance.lock().expect("lock").clone();
        if self.polls.fetch_add(1, Ordering::SeqCst) >= 2 {
            instance.status = "available".into();
        }
        Ok(Response::new(instance))
    }
    async fn list_instances(
        &self,
        r: Request<pb::ListInstancesRequest>,
    ) -> Reply<pb::ListInstancesResponse> {
        authorize(&r)?;
        let mut instance = self.instance.lock().expect("lock").clone();
        instance.status = "available".into();
        Ok(Response::new(pb::ListInstancesResponse {
            instances: vec![instance],
        }))
    }
    async fn destroy_instance(
        &self,
        r: Request<pb::DestroyInstanceRequest>,
    ) -> Reply<pb::DestroyInstanceResponse> {
        authorize(&r)?;
        Ok(Response::new(pb::DestroyInstanceResponse {
            name: r.into_inner().name,
        }))
    }
    async fn get_credentials(&self, r: Request<pb::InstanceRef>) -> Reply<pb::Credentials> {
        authorize(&r)?;
        Ok(Response::new(pb::Credentials {
            name: NAME.into(),
            url: sample_instance().url,
        }))
    }
    async fn update_settings(&self, r: Request<pb::UpdateSettingsRequest>) -> Reply<pb::Instance> {
        authorize(&r)?;
        let change = r.into_inner();
        let mut instance = self.instance.lock().expect("lock");
        if let Some(timeout) = change.timeout_seconds {
            instance.timeout_seconds = timeout;
        }
        Ok(Response::new(instance.clone()))
    }
    async fn get_config_vars(&self, r: Request<pb::AppRef>) -> Reply<pb::ConfigVars> {
        authorize(&r)?;
        let vars = self.vars.borrow().clone().into_iter().collect();
        Ok(Response::new(pb::ConfigVars {
            app: r.into_inner().app,
            version: 1,
            vars,
        }))
    }
    async fn list_hosts(&self, r: Request<pb::ListHostsRequest>) -> Reply<pb::ListHostsResponse> {
        authorize(&r)?;
        Ok(Response::new(pb::ListHostsResponse::default()))
    }
    async fn list_plans(&self, r: Request<pb::ListPlansRequest>) -> Reply<pb::ListPlansResponse> {
        authorize(&r)?;
        Ok(Response::new(pb::ListPlansResponse::default()))
    }
    async fn get_ca_bundle(&self, r: Request<pb::GetCaBundleRequest>) -> Reply<pb::CaBundle> {
        authorize(&r)?;
        Ok(Response::new(pb::CaBundle {
            pem: "-----BEGIN CERTIFICATE-----\n".into(),
        }))
    }
    async fn list_events(&self, r: Request<pb::InstanceRef>) -> Reply<pb::ListEventsResponse> {
        authorize(&r)?;
        Ok(Response::new(pb::ListEventsResponse::default()))
    }
    async fn failover(&self, r: Request<pb::FailoverRequest>) -> Reply<pb::Instance> {
        authorize(&r)?;
        // As the coordinator answers: the intent is committed, the epoch not raised yet.
        let mut instance = self.instance.lock().expect("lock").clone();
        instance.epoch = 1;
        instance.failover = "planned switchover to h-b-1 (epoch 2)".into();
        instance.failover_epoch = 2;
        Ok(Response::new(instance))
    }
    async fn promote(&self, r: Request<pb::PromoteRequest>) -> Reply<pb::ConfigVars> {
        authorize(&r)?;
        Err(Status::unimplemented("fake"))
    }
    async fn cluster_status(
        &self,
        r: Request<pb::ClusterStatusRequest>,
    ) -> Reply<pb::ClusterStatusResponse> {
        authorize(&r)?;
        Ok(Response::new(pb::ClusterStatusResponse::default()))
    }
    async fn add_node(&self, r: Request<pb::AddNodeRequest>) -> Reply<pb::ClusterStatusResponse> {
        authorize(&r)?;
        Err(Status::unimplemented("fake"))
    }
    async fn remove_node(
        &self,
        r: Request<pb::RemoveNodeRequest>,
    ) -> Reply<pb::ClusterStatusResponse> {
        authorize(&r)?;
        Err(Status::unimplemented("fake"))
    }
    async fn issue_node_certificate(
        &self,
        r: Request<pb::IssueNodeCertificateRequest>,
    ) -> Reply<pb::NodeCertificate> {
        authorize(&r)?;
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl Config for Service {
    type WatchConfigStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ConfigVars, Status>> + Send>>;

    async fn watch_config(&self, r: Request<pb::AppRef>) -> Reply<Self::WatchConfigStream> {
        authorize(&r)?;
        let app = r.into_inner().app;
        let stream = WatchStream::new(self.vars.subscribe()).map(move |vars| {
            Ok(pb::ConfigVars {
                app: app.clone(),
                version: 1,
                vars: vars.into_iter().collect(),
            })
        });
        let first = self.streams.fetch_add(1, Ordering::SeqCst) == 0;
        if first && self.break_first_stream {
            return Ok(Response::new(Box::pin(stream.take(1))));
        }
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Starts a plaintext fake; returns it and its endpoint URL.
async fn start() -> (std::sync::Arc<Fake>, String) {
    start_with(None, false).await
}

/// Starts a fake, over TLS when given a (certificate, key) PEM pair.
async fn start_with(
    tls: Option<(String, String)>,
    break_first_stream: bool,
) -> (std::sync::Arc<Fake>, String) {
    let vars: BTreeMap<String, String> =
        [("REDIS_URL".to_string(), "rediss://first".to_string())].into();
    let fake = std::sync::Arc::new(Fake {
        polls: AtomicU32::new(0),
        streams: AtomicU32::new(0),
        break_first_stream,
        instance: Mutex::new(sample_instance()),
        vars: watch::Sender::new(vars),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = &tls {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .expect("tls");
    }
    let server = builder
        .add_service(AdminServer::new(Service(fake.clone())))
        .add_service(ConfigServer::new(Service(fake.clone())))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    let scheme = if tls.is_some() { "https" } else { "http" };
    (fake, format!("{scheme}://{address}"))
}

fn kvs(endpoint: &str, token: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kvs"));
    command
        .args(args)
        .env("KVS_ENDPOINT", endpoint)
        .env("KVS_TOKEN", token)
        .env_remove("KVS_CA_FILE")
        .env_remove("KVS_PROFILE")
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("kvs-ctl-fake-no-profile"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn output(endpoint: &str, token: &str, args: &[&str]) -> (Output, String, String) {
    let out = kvs(endpoint, token, args).output().await.expect("run kvs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[tokio::test]
async fn t10_create_wait_info_speak_heroku() {
    let (_fake, endpoint) = start().await;
    let (out, stdout, stderr) = output(
        &endpoint,
        TOKEN,
        &["create", "--plan", "premium-0", "--app", "dev-app"],
    )
    .await;
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "Creating redis-acute-6762 on dev-app... creating\nCreated redis-acute-6762 as REDIS_URL\n\
         Run kvs wait redis-acute-6762 to wait until it is available.\n"
    );

    let (out, stdout, stderr) =
        output(&endpoint, TOKEN, &["wait", NAME, "--wait-interval", "0.05"]).await;
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "Waiting for redis-acute-6762... creating\nWaiting for redis-acute-6762... available\n"
    );

    let (out, stdout, stderr) = output(&endpoint, TOKEN, &["info", "--app", "dev-app"]).await;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("=== redis-acute-6762 (REDIS_URL)\nPlan:                   Premium 0\n"),
        "{stdout}"
    );

    let (out, stdout, _) = output(&endpoint, TOKEN, &["info", "--json"]).await;
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json[0]["url"], "rediss://default:pw@127.0.0.1:6380");

    let (out, stdout, _) = output(&endpoint, TOKEN, &["timeout", NAME, "--seconds", "0"]).await;
    assert!(out.status.success());
    assert!(
        stdout.ends_with("Connections to the Redis instance can idle indefinitely.\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn t20_errors_are_one_line_with_hints() {
    let (_fake, endpoint) = start().await;
    let (out, _, stderr) = output(&endpoint, "wrong", &["list"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: invalid admin token\nhint: check the admin token"),
        "{stderr}"
    );

    let (out, _, stderr) = output(&endpoint, TOKEN, &["wait", "redis-missing-1"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr, "error: no instance named redis-missing-1\n");
}

async fn read_lines(path: &Path, count: usize) -> Vec<String> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never reached {count} lines", path.display());
}

#[tokio::test]
async fn t30_run_restarts_on_change_and_stops_on_sigterm() {
    let (fake, endpoint) = start().await;
    let dir = std::env::temp_dir().join(format!("kvs-ctl-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("urls");
    std::fs::remove_file(&file).ok();
    let script = format!("echo \"$REDIS_URL\" >> {}; exec sleep 30", file.display());
    let mut child = kvs(
        &endpoint,
        TOKEN,
        &[
            "run", "-a", "dev-app", "--grace", "2", "--", "sh", "-c", &script,
        ],
    )
    .spawn()
    .expect("spawn kvs run");

    assert_eq!(read_lines(&file, 1).await, ["rediss://first"]);
    fake.vars.send_modify(|vars| {
        vars.insert("REDIS_URL".into(), "rediss://second".into());
    });
    assert_eq!(
        read_lines(&file, 2).await,
        ["rediss://first", "rediss://second"]
    );

    let pid =
        nix::unistd::Pid::from_raw(i32::try_from(child.id().expect("pid")).expect("pid fits"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal kvs");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert_eq!(status.code(), Some(143));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn t20_failover_names_the_epoch_its_events_name() {
    let (_fake, endpoint) = start().await;
    let (out, stdout, stderr) = output(&endpoint, TOKEN, &["failover", NAME]).await;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("Failing over redis-acute-6762 to its standby... started (epoch 2).\n"),
        "{stdout}"
    );
    let (out, stdout, _) = output(&endpoint, TOKEN, &["failover", NAME, "--json"]).await;
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json["failover_epoch"], 2);
}

#[tokio::test]
async fn t31_run_exits_with_the_child_code() {
    let (_fake, endpoint) = start().await;
    let (out, _, stderr) = output(
        &endpoint,
        TOKEN,
        &["run", "-a", "dev-app", "--", "sh", "-c", "exit 7"],
    )
    .await;
    assert_eq!(out.status.code(), Some(7), "{stderr}");
}

#[tokio::test]
async fn t32_run_reconnects_when_the_stream_breaks() {
    let (fake, endpoint) = start_with(None, true).await;
    let dir = std::env::temp_dir().join(format!("kvs-ctl-reconnect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("urls");
    std::fs::remove_file(&file).ok();
    let script = format!("echo \"$REDIS_URL\" >> {}; exec sleep 30", file.display());
    let child = kvs(
        &endpoint,
        TOKEN,
        &[
            "run", "-a", "dev-app", "--grace", "2", "--", "sh", "-c", &script,
        ],
    )
    .spawn()
    .expect("spawn kvs run");
    assert_eq!(read_lines(&file, 1).await, ["rediss://first"]);
    // The first stream ended after one message; wait for the second one (backoff 1 s).
    for _ in 0..100 {
        if fake.streams.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        fake.streams.load(Ordering::SeqCst) >= 2,
        "kvs run did not reconnect"
    );
    fake.vars.send_modify(|vars| {
        vars.insert("REDIS_URL".into(), "rediss://second".into());
    });
    // Same vars on reconnect did not restart the child; the change did, exactly once.
    assert_eq!(
        read_lines(&file, 2).await,
        ["rediss://first", "rediss://second"]
    );
    // SIGTERM, not SIGKILL: kvs must stop the child, which holds the stderr pipe open.
    let pid =
        nix::unistd::Pid::from_raw(i32::try_from(child.id().expect("pid")).expect("pid fits"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal kvs");
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    assert_eq!(out.status.code(), Some(143));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config stream for dev-app broke"),
        "{stderr}"
    );
    assert!(stderr.contains("reconnecting in 1 s"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn t40_tls_with_the_cluster_ca() {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let cert = params.signed_by(&key, &ca).expect("cert");
    let (_fake, endpoint) = start_with(Some((cert.pem(), key.serialize_pem())), false).await;

    let dir = std::env::temp_dir().join(format!("kvs-ctl-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write ca");
    let ca_arg = ca_file.display().to_string();
    let (out, stdout, stderr) = output(
        &endpoint,
        TOKEN,
        &["--ca-file", &ca_arg, "credentials", NAME],
    )
    .await;
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "rediss://default:pw@127.0.0.1:6380\n");

    // A different CA: the handshake fails and says so.
    let other = rcgen::KeyPair::generate().expect("key");
    let mut other_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = rcgen::CertifiedIssuer::self_signed(other_params, other).expect("other ca");
    std::fs::write(&ca_file, other.pem()).expect("write ca");
    let (out, _, stderr) = output(
        &endpoint,
        TOKEN,
        &["--ca-file", &ca_arg, "credentials", NAME],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: cannot reach the coordinator at https://127.0.0.1:"),
        "{stderr}"
    );
    eprintln!("untrusted CA reads: {stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
