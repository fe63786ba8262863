//! Register: the host's one-time (per agent start) registration with the join token, which
//! returns its id and certificate. The configured coordinators are tried in turn; a non-leader's
//! `kvs-leader` hint is followed first. The SSH host key goes along so the probes can pin it.

use kvs_proto::metadata::AUTHORIZATION;
use kvs_proto::pb::{self, agent_client::AgentClient};
use tonic::transport::{Certificate, ClientTlsConfig};

use super::{Dial, REGISTER_TIMEOUT, ReportError, connect, host_metrics};
use crate::config::Config;
use crate::engine::catalog::Catalog;
use crate::identity::Identity;

/// Registers this host (once per agent start): each configured coordinator in turn, following a
/// leader redirect from any of them. The error is the last one seen.
pub async fn register(
    config: &Config,
    catalog: &Catalog,
    previous_id: Option<String>,
    dial: &Dial,
) -> Result<Identity, ReportError> {
    let token = config.read_join_token()?;
    let ca = std::fs::read_to_string(&config.ca_file).map_err(|error| ReportError::Read {
        path: config.ca_file.clone(),
        error,
    })?;
    let mut system = sysinfo::System::new();
    let request = pb::RegisterRequest {
        host_id: previous_id.unwrap_or_default(),
        zone: config.zone.clone(),
        address: config.address.to_string(),
        hostname: config.hostname.clone(),
        memory_total_bytes: host_metrics(&mut system).memory_total_bytes,
        engines: catalog.engines().into_iter().map(Into::into).collect(),
        ssh_host_key: config.read_ssh_host_key(),
    };
    let mut last_error = None;
    for configured in &config.coordinators {
        match register_at(configured, &ca, &token, &request, dial).await {
            Ok(identity) => return Ok(identity),
            Err(error) => {
                tracing::warn!(endpoint = %configured, %error, "registration attempt failed");
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| ReportError::BadResponse("no coordinator configured".into())))
}

/// One coordinator, and the leader it points to (once).
async fn register_at(
    configured: &str,
    ca: &str,
    token: &str,
    request: &pb::RegisterRequest,
    dial: &Dial,
) -> Result<Identity, ReportError> {
    let mut endpoint = configured.to_string();
    for _ in 0..2 {
        let attempt = async {
            let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            let mut client = AgentClient::new(connect(&endpoint, tls, dial).await?);
            let mut req = tonic::Request::new(request.clone());
            req.set_timeout(REGISTER_TIMEOUT);
            let bearer = format!("Bearer {token}").parse().map_err(|_| {
                ReportError::BadResponse("the join token is not a valid header value".into())
            })?;
            req.metadata_mut().insert(AUTHORIZATION, bearer);
            Ok::<_, ReportError>(client.register(req).await?.into_inner())
        };
        match attempt.await {
            Ok(response) => return identity_from(response),
            Err(error) => match error.leader() {
                Some(leader) if leader != endpoint => endpoint = leader,
                _ => return Err(error),
            },
        }
    }
    Err(ReportError::BadResponse("redirected more than once".into()))
}

fn identity_from(response: pb::RegisterResponse) -> Result<Identity, ReportError> {
    if response.host_id.is_empty() {
        return Err(ReportError::BadResponse("empty host_id".into()));
    }
    crate::tls::server_config(&response.cert_pem, &response.key_pem, &response.ca_pem)
        .map_err(|e| ReportError::BadResponse(e.to_string()))?;
    crate::tls::client_config(&response.cert_pem, &response.key_pem, &response.ca_pem)
        .map_err(|e| ReportError::BadResponse(e.to_string()))?;
    Ok(Identity {
        host_id: response.host_id,
        cert_pem: response.cert_pem,
        key_pem: response.key_pem,
        ca_pem: response.ca_pem,
    })
}
