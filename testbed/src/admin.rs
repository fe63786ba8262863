//! The admin gRPC client the testbed drives a cluster with: TLS verified against the cluster CA,
//! and `authorization: Bearer <token>` on every call (or a wrong/missing token, for the auth tests).

use std::time::Duration;

use anyhow::{Context, Result};
use kvs_proto::pb;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Bound on connecting to the coordinator.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on any one admin call (creates return at once; waits poll).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The admin client type every testbed helper returns.
pub type AdminClient = pb::admin_client::AdminClient<InterceptedService<Channel, BearerToken>>;

/// Adds the bearer token (if any) to each request.
#[derive(Clone)]
pub struct BearerToken {
    /// The full header value, `Bearer <token>`; `None` sends no header at all.
    header: Option<MetadataValue<Ascii>>,
}

impl BearerToken {
    pub fn new(token: Option<&str>) -> Result<BearerToken> {
        let header = token
            .map(|t| format!("Bearer {t}").parse::<MetadataValue<Ascii>>())
            .transpose()
            .context("the token is not a valid header value")?;
        Ok(BearerToken { header })
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert(kvs_proto::metadata::AUTHORIZATION, header.clone());
        }
        Ok(request)
    }
}

/// A lazily connecting channel to `endpoint` (`https://IP:PORT`) that trusts only `ca_pem`.
/// Lazy: creating it never fails on a down coordinator; calls fail with UNAVAILABLE instead, and the
/// channel reconnects by itself after a coordinator restart.
pub fn channel(endpoint: &str, ca_pem: &[u8]) -> Result<Channel> {
    Ok(self::endpoint(endpoint, ca_pem)?.connect_lazy())
}

/// The endpoint behind [`channel`] (TLS trusting only `ca_pem`, connect and call bounds), for
/// callers that bring their own connector (the netns mode).
pub fn endpoint(endpoint: &str, ca_pem: &[u8]) -> Result<Endpoint> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    Endpoint::from_shared(endpoint.to_string())
        .with_context(|| format!("bad endpoint {endpoint}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tls_config(tls)
        .context("TLS config for the admin channel")
}

/// An admin client on `channel` sending `token` (None: no authorization header).
pub fn client(channel: Channel, token: Option<&str>) -> Result<AdminClient> {
    Ok(pb::admin_client::AdminClient::with_interceptor(
        channel,
        BearerToken::new(token)?,
    ))
}
