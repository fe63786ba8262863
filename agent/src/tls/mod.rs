//! TLS for client traffic: the per-instance TLS front, and building the rustls server config from
//! the host certificate the coordinator issued at registration.
//!
//! rustls is used with the ring provider, chosen explicitly (not the process default), so the
//! agent never depends on which crypto features other crates in the build enabled.

pub mod front;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

/// The server config every TLS front of this host uses (the host certificate, no client auth).
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            certificates(cert_pem, "host certificate")?,
            private_key(key_pem, "host key")?,
        )?;
    Ok(Arc::new(config))
}
