//! The cluster CA: created once at bootstrap (its certificate and key are replicated in the
//! `InitCluster` command so any leader can issue), then used to issue host certificates (agents'
//! mTLS identity and the certificate of every client TLS front on that host) and coordinator
//! server certificates. Also reads the role out of a peer's certificate.
//!
//! Certificate names (docs/interfaces.md): CN `agent:<host-id>` or `coordinator:<node-id>`.

use std::net::IpAddr;

use kvs_proto::metadata::{AGENT_CN_PREFIX, COORDINATOR_CN_PREFIX};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the peer presented no certificate")]
    NoCertificate,
    #[error("the peer certificate cannot be parsed: {0}")]
    Parse(String),
    #[error("the peer certificate has no recognised role (common name {0:?})")]
    UnknownRole(String),
}

/// A PEM certificate and its PEM private key.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedCert { .. }")
    }
}

/// Creates a new self-signed CA for cluster `cluster_id`.
pub fn create_ca(cluster_id: &str) -> Result<IssuedCert, CaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("KVS cluster CA {cluster_id}"));
    name.push(DnType::OrganizationName, "KVS");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The certificate authority of a running cluster.
pub struct ClusterCa {
    ca_cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl ClusterCa {
    pub fn load(ca_cert_pem: &str, ca_key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, key)?;
        Ok(Self {
            ca_cert_pem: ca_cert_pem.to_string(),
            issuer,
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// A host certificate: client auth for the agent session, server auth for client TLS fronts.
    pub fn issue_host(
        &self,
        host_id: &str,
        hostname: &str,
        address: IpAddr,
    ) -> Result<IssuedCert, CaError> {
        let names = vec![hostname.to_string(), address.to_string()];
        self.issue(&format!("{AGENT_CN_PREFIX}{host_id}"), names)
    }

    /// A coordinator node's server (and peer client) certificate.
    pub fn issue_coordinator(
        &self,
        node_id: u64,
        names: Vec<String>,
    ) -> Result<IssuedCert, CaError> {
        self.issue(&format!("{COORDINATOR_CN_PREFIX}{node_id}"), names)
    }

    fn issue(&self, common_name: &str, mut names: Vec<String>) -> Result<IssuedCert, CaError> {
        names.sort();
        names.dedup();
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "KVS");
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Who a verified peer certificate belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRole {
    Agent { host_id: String },
    Coordinator { node_id: String },
}

/// Reads the role from the common name of a peer certificate (DER). The TLS layer has already
/// verified the chain against the cluster CA.
pub fn peer_role(cert_der: &[u8]) -> Result<PeerRole, CaError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| CaError::Parse(e.to_string()))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| CaError::UnknownRole(String::new()))?
        .to_string();
    if let Some(host_id) = common_name.strip_prefix(AGENT_CN_PREFIX) {
        return Ok(PeerRole::Agent {
            host_id: host_id.to_string(),
        });
    }
    if let Some(node_id) = common_name.strip_prefix(COORDINATOR_CN_PREFIX) {
        return Ok(PeerRole::Coordinator {
            node_id: node_id.to_string(),
        });
    }
    Err(CaError::UnknownRole(common_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_host_cert_names_its_role() {
        let ca = create_ca("test").unwrap();
        let ca = ClusterCa::load(&ca.cert_pem, &ca.key_pem).unwrap();
        let host = ca
            .issue_host("h-1", "host-a", "127.0.0.11".parse().unwrap())
            .unwrap();
        let der = rustls_der(&host.cert_pem);
        assert_eq!(
            peer_role(&der).unwrap(),
            PeerRole::Agent {
                host_id: "h-1".into()
            }
        );
        let node = ca
            .issue_coordinator(1, vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        assert_eq!(
            peer_role(&rustls_der(&node.cert_pem)).unwrap(),
            PeerRole::Coordinator {
                node_id: "1".into()
            }
        );
    }

    #[test]
    fn garbage_certificate_is_an_error() {
        assert!(matches!(
            peer_role(b"not a certificate"),
            Err(CaError::Parse(_))
        ));
    }

    fn rustls_der(pem: &str) -> Vec<u8> {
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        parsed.contents
    }
}
