//! A master joining the cluster (`dash server --join TOKEN@MASTER:PORT`).
//!
//! ```text
//!  token (role master, pins the CA) ─► Join at MASTER: a certificate of role master for this
//!     node's key, its subnet, every master's address
//!  ─► ClusterSecrets (mutual TLS, with that certificate): the CA key and the admin token
//!  ─► <data>/pki/{ca.crt,ca.key,master.crt,master.key}, <data>/admin.token, <data>/join.json
//!  ─► the master starts, serves RaftApi, and asks the leader to add it (AddMaster): a learner
//!     until it has the log (or a snapshot), then a voter; join.json goes
//! ```
//!
//! The CA key never travels in a token, only over mutual TLS to a certificate of role master.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dash_rpc::pki;
use dash_rpc::proto::master_api_client::MasterApiClient;
use dash_rpc::proto::{AddMasterRequest, JoinRequest, SecretsRequest};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::api::LEADER_KEY;
use super::node::RaftNode;

/// What a joined master remembers until it is a member (`<data>/join.json`), and its subnet
/// for good.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Joined {
    /// The masters' master_api addresses when it joined.
    pub masters: Vec<String>,
    /// This node's container subnet.
    pub subnet: String,
    /// Still to be added to the membership.
    pub pending: bool,
}

fn path(data: &Path) -> PathBuf {
    data.join("join.json")
}

/// What this master's join left, if it joined with a token.
pub fn load(data: &Path) -> Option<Joined> {
    serde_json::from_slice(&std::fs::read(path(data)).ok()?).ok()
}

/// The masters to ask for membership, while this master is not yet a member.
pub fn pending(data: &Path) -> Option<Vec<String>> {
    load(data).filter(|j| j.pending).map(|j| j.masters)
}

fn save(data: &Path, j: &Joined) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(j).map_err(std::io::Error::other)?;
    pki::write_private(&path(data), &text)
}

/// What `dash server --join` tells the cluster about this master.
pub struct JoinInfo<'a> {
    pub token: &'a str,
    pub master: &'a str,
    pub node: &'a str,
    /// This master's master_api address (`--advertise-addr`:`--cluster-port`).
    pub advertise_addr: String,
    pub capacity_json: String,
    pub runtime: &'a str,
    pub no_worker: bool,
}

/// Joins with a token of role master and keeps everything in `data`. The error says what
/// failed, in the operator's words.
pub async fn join(data: &Path, info: JoinInfo<'_>) -> Result<Joined, String> {
    dash_rpc::tls::init_crypto();
    let token = pki::JoinToken::parse(info.token).map_err(|e| format!("--join: {e}"))?;
    let channel = dash_rpc::tls::join_channel(info.master, &token.ca_fingerprint)
        .await
        .map_err(|e| format!("connecting to {}: {e}", info.master))?;
    let (key_pem, csr_pem) = pki::new_csr(info.node).map_err(|e| e.to_string())?;
    let resp = MasterApiClient::new(channel)
        .join(JoinRequest {
            token: info.token.trim().to_string(),
            node: info.node.to_string(),
            advertise_addr: info.advertise_addr.clone(),
            csr_pem,
            capacity_json: info.capacity_json,
            labels_json: String::new(),
            runtime: info.runtime.to_string(),
            no_worker: info.no_worker,
            master: true,
        })
        .await
        .map_err(|s| format!("{} refused the join: {}", info.master, s.message()))?
        .into_inner();
    let got = pki::fingerprint(&resp.ca_pem).map_err(|e| e.to_string())?;
    if got != token.ca_fingerprint {
        return Err(format!(
            "{} answered with another cluster's CA (fingerprint {got}, the token pins {})",
            info.master, token.ca_fingerprint
        ));
    }
    // The CA key and the admin token, over mutual TLS with the certificate just issued.
    let tls = dash_rpc::tls::master_client_tls(&resp.cert_pem, &key_pem, &resp.ca_pem);
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", info.master))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| {
            format!(
                "connecting to {} with the new certificate: {e}",
                info.master
            )
        })?;
    let secrets = dash_rpc::proto::raft_api_client::RaftApiClient::new(channel)
        .cluster_secrets(SecretsRequest {})
        .await
        .map_err(|s| {
            format!(
                "{} refused the cluster secrets: {}",
                info.master,
                s.message()
            )
        })?
        .into_inner();
    if pki::fingerprint(&secrets.ca_cert_pem).map_err(|e| e.to_string())? != got {
        return Err("the cluster secrets hold another CA".into());
    }
    let dir = data.join("pki");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let write = |p: PathBuf, content: &str| {
        pki::write_private(&p, content.as_bytes())
            .map_err(|e| format!("writing {}: {e}", p.display()))
    };
    write(dir.join("ca.crt"), &secrets.ca_cert_pem)?;
    write(dir.join("ca.key"), &secrets.ca_key_pem)?;
    write(dir.join("master.crt"), &resp.cert_pem)?;
    write(dir.join("master.key"), &key_pem)?;
    write(data.join("admin.token"), &secrets.admin_token)?;
    let joined = Joined {
        masters: resp.masters,
        subnet: resp.subnet,
        pending: true,
    };
    save(data, &joined).map_err(|e| format!("writing {}: {e}", path(data).display()))?;
    Ok(joined)
}

/// Asks the masters to add this one until the leader has (a learner caught up, then a
/// voter), then marks the join done. Runs in the background of a joined master's start.
pub async fn become_member(
    node: RaftNode,
    data: PathBuf,
    masters: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    if masters.is_empty() {
        tracing::error!("join.json names no master to ask for membership; join again");
        return;
    }
    let mut next: Option<String> = None;
    let mut i = 0usize;
    loop {
        let addr = next
            .take()
            .unwrap_or_else(|| masters[i % masters.len()].clone());
        i += 1;
        let outcome = match node.peers.client(&addr) {
            Err(e) => Err(e),
            Ok(mut c) => {
                let mut req = tonic::Request::new(AddMasterRequest {
                    raft_id: node.id,
                    addr: node.addr.clone(),
                });
                req.set_timeout(Duration::from_secs(90));
                c.add_master(req).await.map_err(|s| {
                    if let Some(l) = s.metadata().get(LEADER_KEY).and_then(|v| v.to_str().ok()) {
                        next = Some(l.to_string());
                    }
                    dash_rpc::describe(&s)
                })
            }
        };
        match outcome {
            Ok(_) => {
                if let Some(mut j) = load(&data) {
                    j.pending = false;
                    if let Err(e) = save(&data, &j) {
                        tracing::warn!(error = %e, "recording the end of the join");
                    }
                }
                tracing::info!(via = %addr, "this master is a member of the cluster");
                return;
            }
            Err(e) => tracing::info!(master = %addr, error = %e, "asking to be added; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
