//! Talking to the coordinator: the TLS channel, the bearer token, the per-call deadline and the
//! one place gRPC statuses become readable errors.
//!
//! ```text
//!   profile::Settings ─► Client::connect ─► Channel (TLS with the cluster CA, or plaintext http://)
//!                                             │ BearerAuth: `authorization: Bearer TOKEN` on every call
//!                             Client { AdminClient, ConfigClient }
//!                                             │ call(): 10 s deadline, Status ─► readable error
//! ```

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use kvs_proto::pb::admin_client::AdminClient;
use kvs_proto::pb::config_client::ConfigClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::profile::Settings;

/// Deadline of every unary RPC: the coordinator answers from memory, so 10 s means it is stuck.
pub const RPC_DEADLINE: Duration = Duration::from_secs(10);
/// How long to wait for the TCP and TLS handshake before reporting the coordinator unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 ping interval, so `kvs run` notices a dead connection under a quiet config stream.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a ping may go unanswered before the connection counts as dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds `authorization: Bearer TOKEN` to every request.
#[derive(Clone)]
pub struct BearerAuth {
    /// The full header value, validated once when the client is built.
    header: MetadataValue<Ascii>,
}

impl BearerAuth {
    pub fn new(token: &str) -> anyhow::Result<Self> {
        let header = format!("Bearer {token}").parse().map_err(|_| {
            anyhow!("the admin token contains characters that cannot be sent in a header")
        })?;
        Ok(Self { header })
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(kvs_proto::metadata::AUTHORIZATION, self.header.clone());
        Ok(request)
    }
}

pub type Admin = AdminClient<InterceptedService<Channel, BearerAuth>>;
pub type Config = ConfigClient<InterceptedService<Channel, BearerAuth>>;

/// A connected coordinator client. Cheap to clone; the generated clients take `&mut self`.
#[derive(Clone)]
pub struct Client {
    admin: Admin,
    config: Config,
    /// For error messages.
    settings: Settings,
}

impl Client {
    /// Opens the channel eagerly so an unreachable coordinator is reported before anything else.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(settings.endpoint.clone())
            .map_err(|err| {
                anyhow!(
                    "invalid endpoint '{}': {}",
                    settings.endpoint,
                    error_chain(&err)
                )
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        let endpoint = match &settings.ca_file {
            Some(ca) if settings.endpoint.starts_with("https://") => {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("cannot read the CA file {}", ca.display()))?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    bail!("the CA file {} contains no PEM certificate", ca.display());
                }
                let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
                endpoint
                    .tls_config(tls)
                    .map_err(|err| anyhow!("invalid TLS settings: {}", error_chain(&err)))?
            }
            _ => endpoint,
        };
        let auth = BearerAuth::new(&settings.token)?;
        let channel = endpoint.connect().await.map_err(|err| {
            let cause = error_chain(&err);
            let hint = if cause.contains("certificate") {
                "\nhint: the CA file must be the cluster CA that signed the coordinator's certificate"
            } else {
                ""
            };
            anyhow!("cannot reach the coordinator at {}: {cause}{hint}", settings.endpoint)
        })?;
        Ok(Self {
            admin: AdminClient::with_interceptor(channel.clone(), auth.clone()),
            config: ConfigClient::with_interceptor(channel, auth),
            settings: settings.clone(),
        })
    }

    pub fn admin(&self) -> Admin {
        self.admin.clone()
    }

    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// Awaits a unary RPC under [`RPC_DEADLINE`] and turns a failure into a readable error.
    pub async fn call<T>(
        &self,
        rpc: impl Future<Output = Result<Response<T>, Status>>,
    ) -> anyhow::Result<T> {
        self.call_status(rpc)
            .await
            .map_err(|status| self.status_error(&status))
    }

    /// Like [`Client::call`] but keeps the status, for callers that retry on some codes. A
    /// missed deadline is `DEADLINE_EXCEEDED`.
    pub async fn call_status<T>(
        &self,
        rpc: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(RPC_DEADLINE, rpc).await {
            Ok(result) => result.map(Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("no answer before the deadline")),
        }
    }

    /// The one mapping from a gRPC status to what the user reads.
    pub fn status_error(&self, status: &Status) -> anyhow::Error {
        anyhow!("{}", describe_status(status, &self.settings))
    }
}

/// What the user reads for a failed call: the server's message, plus a hint where one helps.
pub fn describe_status(status: &Status, settings: &Settings) -> String {
    let message = if status.message().is_empty() {
        status.code().description().to_string()
    } else {
        status.message().to_string()
    };
    let profile = settings
        .profile_path
        .as_deref()
        .map_or("the profile".to_string(), |p| p.display().to_string());
    let endpoint = &settings.endpoint;
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => format!(
            "{message}\nhint: check the admin token (--token, KVS_TOKEN or `token` in {profile})"
        ),
        Code::Unavailable => match leader_hint(status) {
            Some(leader) => {
                format!("{message}\nhint: the leader is {leader}; re-run with --endpoint {leader}")
            }
            None => format!("cannot reach the coordinator at {endpoint}: {message}"),
        },
        Code::DeadlineExceeded => format!(
            "the coordinator at {endpoint} did not answer within {} s",
            RPC_DEADLINE.as_secs()
        ),
        _ => message,
    }
}

/// The `kvs-leader` header a non-leader coordinator puts on UNAVAILABLE replies.
fn leader_hint(status: &Status) -> Option<String> {
    let leader = status
        .metadata()
        .get(kvs_proto::metadata::LEADER_ENDPOINT)?;
    leader
        .to_str()
        .ok()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

/// A request carrying the deadline in its `grpc-timeout` header, so the server gives up too.
pub fn request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(RPC_DEADLINE);
    request
}

/// `transport error: client error (Connect): tcp connect error: Connection refused`, minus
/// the uninformative first link and repeats.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    if parts.len() > 1 && parts[0] == "transport error" {
        parts.remove(0);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    fn settings() -> Settings {
        Settings {
            endpoint: "https://c:7400".into(),
            token: "t".into(),
            ca_file: None,
            profile_path: Some("/home/u/.config/kvs/config.toml".into()),
        }
    }

    #[test]
    fn statuses_read_as_one_message_with_hints() {
        let s = settings();
        assert_eq!(
            describe_status(&Status::not_found("no instance named x"), &s),
            "no instance named x"
        );
        let auth = describe_status(&Status::unauthenticated("bad token"), &s);
        assert!(
            auth.starts_with("bad token\nhint: check the admin token"),
            "{auth}"
        );
        assert!(auth.contains("/home/u/.config/kvs/config.toml"), "{auth}");
        let down = describe_status(&Status::unavailable("connection refused"), &s);
        assert_eq!(
            down,
            "cannot reach the coordinator at https://c:7400: connection refused"
        );
        let mut metadata = MetadataMap::new();
        metadata.insert(
            kvs_proto::metadata::LEADER_ENDPOINT,
            "https://leader:7400".parse().expect("ascii"),
        );
        let follower = Status::with_metadata(tonic::Code::Unavailable, "not the leader", metadata);
        let hint = describe_status(&follower, &s);
        assert!(
            hint.ends_with("re-run with --endpoint https://leader:7400"),
            "{hint}"
        );
        assert_eq!(describe_status(&Status::internal(""), &s), "Internal error");
    }

    #[test]
    fn bearer_header_is_validated_and_attached() {
        assert!(BearerAuth::new("bad\ntoken").is_err());
        let mut auth = BearerAuth::new("secret").expect("ascii token");
        let request = auth.call(Request::new(())).expect("intercepted");
        let header = request.metadata().get("authorization").expect("header");
        assert_eq!(header.to_str().expect("ascii"), "Bearer secret");
    }
}
