//! TLS for node-to-node calls.
//!
//! After joining, every connection is mutual TLS with tonic's own TLS over the cluster CA
//! ([`master_client_tls`], [`worker_client_tls`], [`server_tls`]). The join itself cannot use
//! that yet: the joining node does not have the CA. It pins it instead: [`join_channel`]
//! accepts the master's chain only when a certificate in it has the SHA-256 fingerprint the
//! token carries, and then verifies the master's certificate against that CA as usual.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};

use crate::pki::{MASTER_NAME, WORKER_NAME};

/// Installs aws-lc-rs as the process's rustls provider (idempotent). Call once at start:
/// several crates in the tree enable rustls, and it refuses to guess between providers.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// What a master serves with: its certificate chain (leaf + CA) and key; client certificates
/// from the CA are checked when presented, and required by every call but Join (see
/// node_bouncer). A worker's worker_api requires them (`client_required`).
pub fn server_tls(
    chain_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    client_required: bool,
) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(Identity::from_pem(chain_pem, key_pem))
        .client_ca_root(Certificate::from_pem(ca_pem))
        .client_auth_optional(!client_required)
}

/// A node dialling a master: checks the master's certificate against the CA, shows its own.
pub fn master_client_tls(cert_pem: &str, key_pem: &str, ca_pem: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .identity(Identity::from_pem(cert_pem, key_pem))
        .domain_name(MASTER_NAME)
}

/// A master dialling a worker's worker_api.
pub fn worker_client_tls(cert_pem: &str, key_pem: &str, ca_pem: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .identity(Identity::from_pem(cert_pem, key_pem))
        .domain_name(WORKER_NAME)
}

/// A channel for the join: TLS to `addr` (host:port) that trusts only a master whose chain
/// holds the CA with `ca_fingerprint` (hex SHA-256 of its DER).
pub async fn join_channel(addr: &str, ca_fingerprint: &str) -> Result<Channel, String> {
    init_crypto();
    let verifier = Arc::new(PinnedCa::new(ca_fingerprint));
    let mut config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = addr.to_string();
    let endpoint = Endpoint::from_static("http://master.dash.internal")
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30));
    endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            let addr = addr.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                let name = ServerName::try_from(MASTER_NAME)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| {
            use std::error::Error as _;
            let mut msg = e.to_string();
            let mut src = e.source();
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            msg
        })
}

/// Trusts a server whose chain holds the CA with a pinned SHA-256 fingerprint, and whose
/// certificate that CA signed for the name dialled.
#[derive(Debug)]
pub(crate) struct PinnedCa {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedCa {
    pub(crate) fn new(fingerprint: &str) -> Self {
        Self {
            fingerprint: fingerprint.to_ascii_lowercase(),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        }
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let hex = |der: &[u8]| -> String {
            Sha256::digest(der)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let ca = intermediates
            .iter()
            .find(|c| hex(c) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the master's CA does not match the pinned fingerprint (the token's, or the \
                     one `dash login` kept): another cluster, or someone in between"
                        .into(),
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
