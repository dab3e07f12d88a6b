//! HTTPS for the admin API: the server's certificate (from the cluster CA, renewed in place,
//! or the operator's own) and what the CLI trusts.
//!
//! ```text
//!  dash CLI ── TLS ──► admin API (any address beyond loopback; plain HTTP only on loopback)
//!  trusts either       serves either
//!   ClusterCa(fp): the chain must hold      the master's certificate from the cluster CA
//!     the CA with SHA-256 fp, and the         (names master.dash.internal, the listen
//!     leaf must name master.dash.internal     addresses, localhost), chain = leaf + CA
//!   CaPem(pem): an operator's CA; the     or --tls-cert/--tls-key, as given
//!     leaf must name the host dialled
//! ```

use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::pki::MASTER_NAME;

/// A connection to or from the admin API: plain on loopback, TLS elsewhere.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A certificate chain and its key, from PEM; errors name what is wrong with which.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the key is not a PEM private key: {e}"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let ck = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("the key does not go with the certificate: {e}"))?;
    Ok(ck)
}

/// The admin API's certificate, replaceable while serving (a renewal swaps it in; handshakes
/// after it get the new one).
#[derive(Debug)]
pub struct ServerCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
        })
    }

    pub fn replace(&self, key: CertifiedKey) {
        if let Ok(mut c) = self.current.write() {
            *c = Arc::new(key);
        }
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// The admin API's TLS settings: HTTP/1.1 (the API's upgrades, exec, are HTTP/1.1 ones).
pub fn server_config(cert: Arc<ServerCert>) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What an HTTPS client of the admin API trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The cluster CA with this SHA-256 fingerprint (hex), found in the server's chain (as a
    /// join pins it); the server's certificate must be a master's.
    ClusterCa(String),
    /// An operator's CA (PEM) for a server run with --tls-cert: the server's certificate must
    /// name the host dialled.
    CaPem(String),
}

/// TLS settings for a client of the admin API trusting `trust`.
pub fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = match trust {
        Trust::ClusterCa(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::tls::PinnedCa::new(fp)))
            .with_no_client_auth(),
        Trust::CaPem(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("the CA file is not PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the CA file holds an unusable certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("the CA file holds no CERTIFICATE block".into());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS over `tcp` to the admin API at `host` (the host part of the address dialled).
pub async fn connect(
    tcp: TcpStream,
    host: &str,
    trust: &Trust,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Stream> {
    let name = match trust {
        Trust::ClusterCa(_) => MASTER_NAME.to_string(),
        Trust::CaPem(_) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    };
    let name = ServerName::try_from(name)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls))))
}
