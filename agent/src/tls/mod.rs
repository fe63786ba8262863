//! TLS for client and replication traffic: the per-instance TLS front, the replication tunnel,
//! and building the rustls configs from the host certificate the coordinator issued at
//! registration and the cluster CA.
//!
//! ```text
//!   server_config  the fronts: host certificate; a client certificate is optional and, when
//!                  given, must chain to the cluster CA (that marks a peer agent's tunnel)
//!   client_config  the tunnels: verify the peer front against the cluster CA, present the host
//!                  certificate
//!   threads        the fronts' own runtime threads (`kvs-front`)
//!   heard          when a front last heard a replica (fencing evidence)
//! ```
//!
//! rustls is used with the ring provider, chosen explicitly (not the process default), so the
//! agent never depends on which crypto features other crates in the build enabled.

pub mod front;
pub mod heard;
pub mod threads;
pub mod tunnel;

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid PEM in {what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("{what} contains no {item}")]
    Empty {
        what: &'static str,
        item: &'static str,
    },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the cluster CA cannot verify client certificates: {0}")]
    Verifier(String),
}

/// The ring crypto provider, explicitly.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain.
pub fn certificates(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            item: "certificate",
        });
    }
    Ok(certs)
}

/// Parses a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?
        .ok_or(TlsError::Empty {
            what,
            item: "private key",
        })
}

/// The cluster CA bundle as a root store.
fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem, "cluster CA")? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// The server config every TLS front of this host uses: the host certificate; clients may
/// present a certificate, which must then chain to the cluster CA (peer agents' replication
/// tunnels do; customers do not).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certificates(cert_pem, "host certificate")?,
            private_key(key_pem, "host key")?,
        )?;
    Ok(Arc::new(config))
}

/// The client config of the replication tunnels: the peer's front is verified against the
/// cluster CA, and the host certificate is presented so the peer knows a tunnel from a customer.
pub fn client_config(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(
            certificates(cert_pem, "host certificate")?,
            private_key(key_pem, "host key")?,
        )?;
    Ok(Arc::new(config))
}
