//! The admin API's HTTPS certificate: the operator's (`--tls-cert`, `--tls-key`), or one the
//! cluster CA issues to this master at start (it names master.dash.internal, which the CLI
//! checks after pinning the CA, and the listen addresses, the advertise address and
//! localhost, for curl and browsers given the CA), renewed in place at two thirds of its life.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dash_rpc::https::ServerCert;
use dash_rpc::pki::{self, Ca};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum AdminCertSource {
    /// `--tls-cert FILE --tls-key FILE` (PEM; the chain as the clients need it).
    Files { cert: PathBuf, key: PathBuf },
    /// Issued by the cluster CA to this master, naming these besides master.dash.internal,
    /// valid this long.
    Ca {
        names: Vec<String>,
        validity: Duration,
    },
}

/// The TLS settings of the admin API's HTTPS listeners, and the renewal task (CA-issued).
pub(super) fn start(
    source: &AdminCertSource,
    ca: &Ca,
    node: &str,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(Arc<rustls::ServerConfig>, Option<JoinHandle<()>>), String> {
    let (cert, renewal) = match source {
        AdminCertSource::Files { cert, key } => {
            let read = |p: &PathBuf, flag: &str| {
                std::fs::read_to_string(p).map_err(|e| format!("{flag} {}: {e}", p.display()))
            };
            let key = dash_rpc::https::certified_key(
                &read(cert, "--tls-cert")?,
                &read(key, "--tls-key")?,
            )
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
            (ServerCert::new(key), None)
        }
        AdminCertSource::Ca { names, validity } => {
            let (key, pem) = issue(ca, node, names, *validity)?;
            let cert = ServerCert::new(key);
            let (renewed, ca) = (
                cert.clone(),
                Ca::load(ca.cert_pem.clone(), ca.key_pem().into()),
            );
            let ca = ca.map_err(|e| e.to_string())?;
            let (node, names, validity) = (node.to_string(), names.clone(), *validity);
            let task = tokio::spawn(async move {
                let mut pem = pem;
                loop {
                    let at = pki::renew_at(&pem);
                    let wait = (at - crate::now_ms() as i64 / 1000).max(1) as u64;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
                        _ = shutdown.changed() => return,
                    }
                    match issue(&ca, &node, &names, validity) {
                        Ok((key, new)) => {
                            renewed.replace(key);
                            pem = new;
                            tracing::info!("admin API certificate renewed");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "renewing the admin API certificate; again in a minute");
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                    }
                }
            });
            (cert, Some(task))
        }
    };
    let config = dash_rpc::https::server_config(cert)?;
    Ok((Arc::new(config), renewal))
}

/// A new key and a certificate from `ca` for it: (rustls' form, the certificate's PEM).
fn issue(
    ca: &Ca,
    node: &str,
    names: &[String],
    validity: Duration,
) -> Result<(rustls::sign::CertifiedKey, String), String> {
    let (key_pem, csr) = pki::new_csr(node).map_err(|e| e.to_string())?;
    let issued = ca
        .sign_admin(&csr, node, names, validity)
        .map_err(|e| e.to_string())?;
    let chain = format!("{}{}", issued.pem, ca.cert_pem);
    let key = dash_rpc::https::certified_key(&chain, &key_pem)?;
    Ok((key, issued.pem))
}
