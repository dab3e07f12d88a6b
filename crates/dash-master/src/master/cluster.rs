//! The cluster side of a master (`--advertise-addr`): its CA and certificate, master_api with
//! mutual TLS, node liveness, the clients of the workers' worker_api, and the routes to the
//! other nodes' container subnets.
//!
//! ```text
//!  <data>/pki (CA) ─► NodeBouncer ─► this master's key + certificate (in memory)
//!                                     │ at 2/3 of its life: a new one, a new server
//!                                     ▼ generation on the same socket, new client identity
//!  TcpListener (bound here) ─► Acceptor ─► master_api (tonic, mutual TLS) ◄── workers
//!  Liveness: heartbeats ─► unreachable / down ─► events, reconciler wake-ups
//!  store.nodes() every 2 s ─► (subnet, address) ─► the local node's peers feed
//!  WorkerClients ─► worker_api (logs, exec of replicas on other nodes)
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dash_image::ImageStore;
use dash_store::MasterStore;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::{ClusterConfig, MasterError};
use crate::master_api::{Liveness, LivenessConfig, MasterApiService};
use crate::message_queue::MessageQueue;
use crate::metrics::Metrics;
use crate::node_bouncer::NodeBouncer;
use crate::raft::api::RaftApiService;
use crate::raft::node::RaftNode;
use crate::service_state::ServiceState;
use crate::state_log::StateLog;
use crate::worker_clients::WorkerClients;

/// What master_api and the cluster loops share with the rest of the master.
pub(super) struct Parts {
    /// The cluster CA (loaded or made by the master's start).
    pub ca: dash_rpc::pki::Ca,
    pub log: StateLog,
    pub state: ServiceState,
    pub mq: Arc<MessageQueue>,
    pub wake: Arc<Notify>,
    pub changes: watch::Receiver<u64>,
    pub images: Arc<ImageStore>,
    pub peers: watch::Sender<Vec<(String, String)>>,
    pub metrics: Arc<Metrics>,
    /// The admin token, for masters that join (RaftApi's ClusterSecrets).
    pub admin_token: String,
    /// The routes and endpoints feeds, for the Routes long poll.
    pub feeds: crate::master_api::RouteFeeds,
    /// Secrets and configs, for the nodes' ReplicaFiles.
    pub secrets: crate::secrets::Secrets,
}

pub(super) struct Started {
    pub bouncer: NodeBouncer,
    pub clients: Arc<WorkerClients>,
    /// Node liveness: judged by the leader's work, fed by heartbeats and masters' beats.
    pub liveness: Arc<Liveness>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// This master's key and certificate from `<data>/pki/master.{key,crt}`, if there and not due
/// for renewal: a restarted master of a cluster serves with the certificate its peers know.
fn saved_cert(data: &Path) -> Option<(String, String)> {
    let dir = data.join("pki");
    let cert = std::fs::read_to_string(dir.join("master.crt")).ok()?;
    let key = std::fs::read_to_string(dir.join("master.key")).ok()?;
    let now = (dash_core::clock::now_ms() / 1000) as i64;
    (dash_rpc::pki::renew_at(&cert) > now).then_some((cert, key))
}

fn save_cert(data: &Path, cert: &(String, String)) {
    let dir = data.join("pki");
    for (name, content) in [("master.crt", &cert.0), ("master.key", &cert.1)] {
        if let Err(e) = dash_rpc::pki::write_private(&dir.join(name), content.as_bytes()) {
            tracing::warn!(error = %e, file = name, "saving this master's certificate");
        }
    }
}

/// Issues this master's certificate with the CA, binds master_api (a taken
/// port fails the start) and starts serving it, with liveness and the peers loop.
pub(super) async fn start(
    c: &ClusterConfig,
    data: &Path,
    node: &str,
    p: Parts,
    shutdown: watch::Receiver<bool>,
) -> Result<Started, MasterError> {
    dash_rpc::tls::init_crypto();
    let bouncer =
        NodeBouncer::new(p.log.clone(), p.ca, c.cert_validity).map_err(MasterError::Bouncer)?;
    let store = p.log.store().clone();
    // The certificate this master had, or a new one (recorded through the log: the first
    // master has just become its own leader). Kept in <data>/pki/master.{crt,key} (0600).
    let (cert_pem, key_pem) = match saved_cert(data) {
        Some(c) => c,
        None => {
            let (key_pem, csr_pem) = dash_rpc::pki::new_csr(node).map_err(MasterError::Csr)?;
            let issued = bouncer
                .issue(node, dash_rpc::pki::Role::Master, &csr_pem)
                .await
                .map_err(MasterError::IssueCert)?;
            let c = (issued.pem, key_pem);
            save_cert(data, &c);
            c
        }
    };
    if let Some(raft) = p.log.raft() {
        raft.peers.set_tls(dash_rpc::tls::master_client_tls(
            &cert_pem,
            &key_pem,
            bouncer.ca_pem(),
        ));
    }
    let liveness = Arc::new(Liveness::new(LivenessConfig {
        down_after: c.down_after,
        unreachable_after: c.down_after / 2,
        // At least four beats before a node counts as unreachable.
        heartbeat: (c.down_after / 8).clamp(Duration::from_millis(100), Duration::from_millis(500)),
    }));
    let service = MasterApiService {
        log: p.log.clone(),
        store: store.clone(),
        bouncer: bouncer.clone(),
        state: p.state,
        mq: p.mq.clone(),
        wake: p.wake.clone(),
        liveness: liveness.clone(),
        assignments: crate::assignment_feed::start(
            store.clone(),
            p.changes.clone(),
            shutdown.clone(),
        ),
        images: p.images,
        subnets: c.subnets,
        metrics: p.metrics,
        addr: c.listen.to_string(),
        feeds: p.feeds,
        secrets: p.secrets,
    };
    let raft_api = p.log.raft().map(|raft| RaftApiService {
        node: raft.clone(),
        store: store.clone(),
        secrets: Arc::new((
            bouncer.ca_pem().to_string(),
            bouncer.ca_key_pem().to_string(),
            p.admin_token.clone(),
        )),
        liveness: liveness.clone(),
        log: p.log.clone(),
        wake: p.wake.clone(),
        reviving: Default::default(),
    });
    let clients = Arc::new(WorkerClients::new(
        store.clone(),
        dash_rpc::tls::worker_client_tls(&cert_pem, &key_pem, bouncer.ca_pem()),
    ));
    // Bound here so that a taken port fails the start; later generations rebind it.
    let listener = tokio::net::TcpListener::bind(c.listen)
        .await
        .map_err(|source| MasterError::BindMasterApi {
            addr: c.listen,
            source,
        })?;
    tracing::info!(listen = %c.listen, ca = bouncer.ca_fingerprint(), "master_api ready");
    let mut tasks = vec![
        tokio::spawn(serve_master_api(
            Identity {
                node: node.to_string(),
                bouncer: bouncer.clone(),
                clients: clients.clone(),
                raft: p.log.raft().cloned(),
                data: data.to_path_buf(),
            },
            (service, raft_api),
            listener,
            (cert_pem, key_pem),
            shutdown.clone(),
        )),
        tokio::spawn(peers_from_store(store, p.peers, shutdown.clone())),
    ];
    if let (Some(raft), Some(masters)) = (p.log.raft(), crate::raft::join::pending(data)) {
        tasks.push(tokio::spawn(crate::raft::join::become_member(
            raft.clone(),
            data.to_path_buf(),
            masters,
            shutdown,
        )));
    }
    let _ = p.wake;
    Ok(Started {
        bouncer,
        clients,
        liveness,
        tasks,
    })
}

/// Who this master is on the cluster's wire: its name, the CA that renews its certificate,
/// and the worker_api clients that dial with it.
struct Identity {
    node: String,
    bouncer: NodeBouncer,
    clients: Arc<WorkerClients>,
    /// Its Raft's client identity is renewed with the rest.
    raft: Option<RaftNode>,
    data: std::path::PathBuf,
}

/// Serves master_api with this master's certificate and renews it at two thirds of its
/// lifetime: a new key and certificate, a new server generation on the same port (the old one
/// stops accepting; its streams end and workers reconnect), and the new identity for calls to
/// worker_api. No restart.
async fn serve_master_api(
    id: Identity,
    (service, raft_api): (MasterApiService, Option<RaftApiService>),
    first_listener: tokio::net::TcpListener,
    mut cert: (String, String),
    mut shutdown: watch::Receiver<bool>,
) {
    let (acceptor, mut incoming) = dash_rpc::acceptor::Acceptor::start(first_listener);
    loop {
        let chain = format!("{}{}", cert.0, id.bouncer.ca_pem());
        let mut stop_rx = shutdown.clone();
        let builder = tonic::transport::Server::builder().tls_config(dash_rpc::tls::server_tls(
            &chain,
            &cert.1,
            id.bouncer.ca_pem(),
            false,
        ));
        let builder = match builder {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "master_api TLS");
                return;
            }
        };
        let server = builder
            .http2_keepalive_interval(Some(Duration::from_secs(1)))
            .http2_keepalive_timeout(Some(Duration::from_secs(2)))
            .add_service(dash_rpc::proto::master_api_server::MasterApiServer::new(
                service.clone(),
            ))
            .add_optional_service(raft_api.clone().map(|r| {
                dash_rpc::proto::raft_api_server::RaftApiServer::new(r)
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20)
            }))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_rx.changed().await;
            });
        let handle = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "master_api stopped");
            }
        });
        let now = (dash_core::clock::now_ms() / 1000) as i64;
        let wait = (dash_rpc::pki::renew_at(&cert.0) - now).max(1) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            _ = shutdown.changed() => {
                let _ = handle.await;
                return;
            }
        }
        let renewed = async {
            let (key, csr) = dash_rpc::pki::new_csr(&id.node).map_err(|e| e.to_string())?;
            let leader = id
                .raft
                .as_ref()
                .filter(|r| !r.is_leader())
                .map(|r| r.leader().map(|(_, addr)| (r, addr)));
            let pem = match leader {
                // Certificates are signed at the leader only: asked with this master's own.
                Some(Some((raft, addr))) => {
                    let channel = raft.peers.channel(&addr)?;
                    dash_rpc::proto::master_api_client::MasterApiClient::new(channel)
                        .renew(dash_rpc::proto::RenewRequest { csr_pem: csr })
                        .await
                        .map_err(|s| format!("the leader {addr}: {}", s.message()))?
                        .into_inner()
                        .cert_pem
                }
                Some(None) => return Err("no leader among the masters now".to_string()),
                None => {
                    id.bouncer
                        .issue(&id.node, dash_rpc::pki::Role::Master, &csr)
                        .await
                        .map_err(|e| e.to_string())?
                        .pem
                }
            };
            Ok::<_, String>((pem, key))
        };
        match renewed.await {
            Ok(new) => {
                id.clients.set_tls(dash_rpc::tls::worker_client_tls(
                    &new.0,
                    &new.1,
                    id.bouncer.ca_pem(),
                ));
                if let Some(raft) = &id.raft {
                    raft.peers.set_tls(dash_rpc::tls::master_client_tls(
                        &new.0,
                        &new.1,
                        id.bouncer.ca_pem(),
                    ));
                }
                save_cert(&id.data, &new);
                cert = new;
                tracing::info!(node = %id.node, "master certificate renewed");
            }
            Err(e) => tracing::warn!(error = %e, "renewing this master's certificate; retrying"),
        }
        incoming = acceptor.next_generation();
        drop(handle);
    }
}

/// Sends every node's `(subnet, address)` to the local node every 2 s: it keeps routes to
/// the other nodes' subnets via them.
async fn peers_from_store(
    store: MasterStore,
    peers: watch::Sender<Vec<(String, String)>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Ok(nodes) = store.nodes().await {
            peers.send_replace(nodes.into_iter().map(|n| (n.subnet, n.address)).collect());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_two_thirds_of_the_lifetime_or_now_when_unreadable() {
        assert_eq!(dash_rpc::pki::renew_at("not a certificate"), 0);
        let ca = dash_rpc::pki::Ca::create("test").unwrap();
        let (_, csr) = dash_rpc::pki::new_csr("m1").unwrap();
        let issued = ca
            .sign(
                &csr,
                "m1",
                dash_rpc::pki::Role::Master,
                Duration::from_secs(3000),
            )
            .unwrap();
        let now = (dash_core::clock::now_ms() / 1000) as i64;
        // not_before is backdated by a tenth of the lifetime (300 s): 2/3 of [-300, 3000].
        let at = dash_rpc::pki::renew_at(&issued.pem);
        assert!((at - (now + 1900)).abs() <= 5, "{at} vs now {now}");
    }
}
