//! The worker's side of master_api: joining with a token, then the [`MasterLink`] the agent
//! runs on, over mutual TLS.
//!
//! - Join: a key pair made here (it never leaves the node), a CSR, the token; the master's
//!   chain is trusted only if it holds the CA the token pins. The certificate, key and CA are
//!   kept in `<data>/pki/` (0600), the master's address and this node's subnet in
//!   `<data>/cluster.json`: a restarted worker reconnects without a token.
//! - Heartbeats at the interval the masters ask for; assignments from a watch stream that
//!   resumes from the version it holds after a reconnect; status reports with retries.
//! - Images: a reference the node lacks is rebuilt from the masters' copy, blob by blob
//!   (digest-verified, resumable from a partial file, once per node), then imported.
//!
//! Errors are [`MasterLinkError`]s; a failed call to the masters is classified by its status
//! code ([`MasterLinkError::from_status`]). The agent sees the [`LinkError`] kinds they map to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dash_core::api::Assignment;
use dash_core::command::ReplicaStatus;
use dash_core::link::{LinkError, MasterLink, with_causes};
use dash_core::spec::Resources;
use dash_image::{ImageError, ImageExport, ImageStore};
use dash_rpc::pki;
use dash_rpc::proto::master_api_client::MasterApiClient;
use dash_rpc::proto::*;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, watch};
use tonic::transport::{Channel, Endpoint};

mod error;

pub use error::{Call, MasterLinkError};

/// What a joined node remembers (`<data>/cluster.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Membership {
    /// The master it joined through (and, before HA masters, the only one).
    pub master: String,
    pub node: String,
    pub subnet: String,
    /// Every master's master_api address, as the masters last said (kept up to date from
    /// heartbeats): a worker moves to another when its master dies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<String>,
}

impl Membership {
    /// The masters to try, the one joined through first when nothing newer is known.
    pub fn all_masters(&self) -> Vec<String> {
        if self.masters.is_empty() {
            vec![self.master.clone()]
        } else {
            self.masters.clone()
        }
    }
}

/// The node's TLS material, PEM.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

fn pki_dir(data: &Path) -> PathBuf {
    data.join("pki")
}

/// Reads a previous join from `data`, if there was one.
pub fn load_membership(data: &Path) -> Option<(Membership, Identity)> {
    let m: Membership =
        serde_json::from_slice(&std::fs::read(data.join("cluster.json")).ok()?).ok()?;
    let dir = pki_dir(data);
    let id = Identity {
        cert_pem: std::fs::read_to_string(dir.join("node.crt")).ok()?,
        key_pem: std::fs::read_to_string(dir.join("node.key")).ok()?,
        ca_pem: std::fs::read_to_string(dir.join("ca.crt")).ok()?,
    };
    Some((m, id))
}

/// What a node tells the masters when it joins.
pub struct JoinRequestInfo<'a> {
    pub token: &'a str,
    pub master: &'a str,
    pub node: &'a str,
    pub advertise_addr: &'a str,
    pub capacity: Resources,
    pub labels: &'a std::collections::BTreeMap<String, String>,
    pub runtime: &'a str,
}

/// Joins the cluster and stores the membership in `data`. The error says why a join was
/// refused (bad, expired or revoked token; wrong cluster).
pub async fn join(
    data: &Path,
    req: JoinRequestInfo<'_>,
) -> Result<(Membership, Identity), MasterLinkError> {
    let (m, id) = request_join(req).await?;
    let dir = pki_dir(data);
    std::fs::create_dir_all(&dir).map_err(|source| MasterLinkError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let save = |path: PathBuf, content: &[u8]| {
        pki::write_private(&path, content).map_err(|source| MasterLinkError::Write { path, source })
    };
    save(dir.join("node.key"), id.key_pem.as_bytes())?;
    save(dir.join("node.crt"), id.cert_pem.as_bytes())?;
    save(dir.join("ca.crt"), id.ca_pem.as_bytes())?;
    let json = serde_json::to_vec_pretty(&m).map_err(|source| MasterLinkError::Encode {
        what: "membership",
        source,
    })?;
    save(data.join("cluster.json"), &json)?;
    Ok((m, id))
}

/// Joins the cluster and returns the membership and identity without keeping them anywhere:
/// [`join`] for a node with a data dir, `dash sim` for nodes that live in memory.
pub async fn request_join(
    req: JoinRequestInfo<'_>,
) -> Result<(Membership, Identity), MasterLinkError> {
    let token = pki::JoinToken::parse(req.token).map_err(MasterLinkError::BadToken)?;
    let channel = dash_rpc::tls::join_channel(req.master, &token.ca_fingerprint)
        .await
        .map_err(|reason| MasterLinkError::Connect {
            master: req.master.to_string(),
            reason,
        })?;
    let (key_pem, csr_pem) = pki::new_csr(req.node).map_err(MasterLinkError::Csr)?;
    let encode = |what| move |source| MasterLinkError::Encode { what, source };
    let mut client = MasterApiClient::new(channel);
    let resp = client
        .join(JoinRequest {
            token: req.token.trim().to_string(),
            node: req.node.to_string(),
            advertise_addr: req.advertise_addr.to_string(),
            csr_pem,
            capacity_json: serde_json::to_string(&req.capacity).map_err(encode("capacity"))?,
            labels_json: serde_json::to_string(req.labels).map_err(encode("labels"))?,
            runtime: req.runtime.to_string(),
            no_worker: false,
            master: false,
        })
        .await
        .map_err(|status| MasterLinkError::from_join_status(req.master, status))?
        .into_inner();
    let got = pki::fingerprint(&resp.ca_pem).map_err(MasterLinkError::BadCa)?;
    if got != token.ca_fingerprint {
        return Err(MasterLinkError::CaMismatch {
            expected: token.ca_fingerprint,
            got,
        });
    }
    let m = Membership {
        master: req.master.to_string(),
        node: req.node.to_string(),
        subnet: resp.subnet,
        masters: resp.masters,
    };
    Ok((
        m,
        Identity {
            cert_pem: resp.cert_pem,
            key_pem,
            ca_pem: resp.ca_pem,
        },
    ))
}

/// A lazily connected, self-reconnecting mTLS channel to the master at `addr`.
pub fn master_channel(addr: &str, id: &Identity) -> Result<Channel, MasterLinkError> {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|source| MasterLinkError::Address {
            addr: addr.to_string(),
            source,
        })?
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2))
        .tls_config(dash_rpc::tls::master_client_tls(
            &id.cert_pem,
            &id.key_pem,
            &id.ca_pem,
        ))
        .map_err(MasterLinkError::Tls)?;
    Ok(endpoint.connect_lazy())
}

/// The masters a worker knows and the one it talks to.
#[derive(Debug, Clone)]
struct Masters {
    all: Vec<String>,
    current: String,
}

/// The worker's [`MasterLink`] over master_api.
pub struct GrpcLink {
    /// Replaced when the node's certificate is renewed (a new TLS identity), and when the
    /// connection stays broken (tonic does not always redial a connection the server closed).
    client: std::sync::RwLock<MasterApiClient<Channel>>,
    /// The masters, and which of them this node talks to now.
    masters: std::sync::RwLock<Masters>,
    /// Where the membership is kept (`<data>/cluster.json`): the masters' list is saved there
    /// when it changes.
    membership: Option<(PathBuf, Membership)>,
    identity: std::sync::RwLock<Identity>,
    latest: watch::Receiver<Option<Vec<Assignment>>>,
    seen: Mutex<watch::Receiver<Option<Vec<Assignment>>>>,
    images: Arc<ImageStore>,
    fetches: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    beats: BeatCounters,
}

/// How this node's heartbeats fare: what `dash sim report` sums over a simulated fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeatStats {
    /// Heartbeats answered.
    pub ok: u64,
    /// Heartbeats refused or timed out.
    pub failed: u64,
    /// The last answered heartbeat's round trip, in microseconds.
    pub last_rtt_us: u64,
    /// The longest round trip so far, in microseconds.
    pub max_rtt_us: u64,
    /// The longest time between two answered heartbeats, beyond the interval the masters
    /// asked for, in milliseconds: how late the masters heard from this node at worst.
    pub max_late_ms: u64,
}

#[derive(Default)]
struct BeatCounters {
    ok: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    last_rtt_us: std::sync::atomic::AtomicU64,
    max_rtt_us: std::sync::atomic::AtomicU64,
    max_late_ms: std::sync::atomic::AtomicU64,
}

impl BeatCounters {
    fn answered(&self, rtt: Duration, late: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let us = rtt.as_micros() as u64;
        self.ok.fetch_add(1, Relaxed);
        self.last_rtt_us.store(us, Relaxed);
        self.max_rtt_us.fetch_max(us, Relaxed);
        self.max_late_ms.fetch_max(late.as_millis() as u64, Relaxed);
    }

    fn snapshot(&self) -> BeatStats {
        use std::sync::atomic::Ordering::Relaxed;
        BeatStats {
            ok: self.ok.load(Relaxed),
            failed: self.failed.load(Relaxed),
            last_rtt_us: self.last_rtt_us.load(Relaxed),
            max_rtt_us: self.max_rtt_us.load(Relaxed),
            max_late_ms: self.max_late_ms.load(Relaxed),
        }
    }
}

impl GrpcLink {
    /// Connects (lazily) to `master` with `identity` and starts the heartbeat and watch loops
    /// (they end with `shutdown`).
    pub fn start(
        membership: (Option<PathBuf>, &Membership),
        identity: Identity,
        node: String,
        capacity: Resources,
        images: Arc<ImageStore>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<GrpcLink>, MasterLinkError> {
        let (file, m) = membership;
        let masters = Masters {
            all: m.all_masters(),
            current: m.master.clone(),
        };
        let channel = master_channel(&masters.current, &identity)?;
        let (tx, rx) = watch::channel(None);
        let link = Arc::new(GrpcLink {
            client: std::sync::RwLock::new(MasterApiClient::new(channel)),
            masters: std::sync::RwLock::new(masters),
            membership: file.map(|f| (f, m.clone())),
            identity: std::sync::RwLock::new(identity),
            seen: Mutex::new(rx.clone()),
            latest: rx,
            images,
            fetches: Mutex::new(HashMap::new()),
            beats: BeatCounters::default(),
        });
        tokio::spawn(watch_loop(link.clone(), tx, shutdown.clone()));
        tokio::spawn(heartbeat_loop(link.clone(), node, capacity, shutdown));
        Ok(link)
    }

    /// Sends a replica's status (three tries, 0.2, 0.4 and 0.6 s apart); whether the masters
    /// took it. A caller that must not lose it (`dash sim`) sends it again later.
    pub async fn try_report(&self, status: &ReplicaStatus) -> bool {
        let Ok(json) = serde_json::to_string(status) else {
            return false;
        };
        for attempt in 0..3u64 {
            let mut client = self.client();
            match client
                .report(ReportRequest {
                    status_json: json.clone(),
                })
                .await
            {
                Ok(_) => return true,
                Err(s) => {
                    tracing::warn!(error = %dash_rpc::describe(&s), replica = %status.id, "reporting a status");
                    tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                }
            }
        }
        false
    }

    /// How this node's heartbeats have fared so far.
    pub fn beat_stats(&self) -> BeatStats {
        self.beats.snapshot()
    }

    /// The client of the current channel.
    pub fn client(&self) -> MasterApiClient<Channel> {
        match self.client.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Switches to a new identity (after a renewal); calls in flight finish on the old
    /// channel, the watch reconnects on the new one.
    pub fn set_identity(&self, identity: Identity) -> Result<(), MasterLinkError> {
        match self.identity.write() {
            Ok(mut i) => *i = identity,
            Err(poisoned) => *poisoned.into_inner() = identity,
        }
        self.redial()
    }

    /// The master this node talks to now.
    pub fn master(&self) -> String {
        match self.masters.read() {
            Ok(m) => m.current.clone(),
            Err(poisoned) => poisoned.into_inner().current.clone(),
        }
    }

    /// Talks to `addr` from now on (a fresh channel), if it is not the current master.
    fn move_to(&self, addr: &str) -> Result<(), MasterLinkError> {
        {
            let mut m = match self.masters.write() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            if m.current == addr {
                return Ok(());
            }
            tracing::info!(from = %m.current, to = %addr, "moving to another master");
            m.current = addr.to_string();
        }
        self.redial()
    }

    /// The master after the current one in the list (the current one is silent).
    fn next_master(&self) -> Option<String> {
        let m = match self.masters.read() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if m.all.len() < 2 {
            return None;
        }
        let at = m
            .all
            .iter()
            .position(|a| *a == m.current)
            .unwrap_or(m.all.len() - 1);
        Some(m.all[(at + 1) % m.all.len()].clone())
    }

    /// The masters' list as a heartbeat answered it; saved with the membership when it changed.
    fn learn_masters(&self, all: Vec<String>) {
        if all.is_empty() {
            return;
        }
        {
            let mut m = match self.masters.write() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            if m.all == all {
                return;
            }
            m.all = all.clone();
        }
        if let Some((path, membership)) = &self.membership {
            let mut saved = membership.clone();
            saved.masters = all;
            match serde_json::to_vec_pretty(&saved) {
                Ok(text) => {
                    if let Err(e) = pki::write_private(path, &text) {
                        tracing::warn!(error = %e, "saving the masters' list");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "saving the masters' list"),
            }
        }
    }

    /// A fresh channel with the current identity.
    pub fn redial(&self) -> Result<(), MasterLinkError> {
        let identity = match self.identity.read() {
            Ok(i) => i.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let client = MasterApiClient::new(master_channel(&self.master(), &identity)?);
        match self.client.write() {
            Ok(mut c) => *c = client,
            Err(poisoned) => *poisoned.into_inner() = client,
        }
        Ok(())
    }

    /// Sends what this node measured (one try: the next measurement follows in seconds).
    pub async fn report_metrics(&self, metrics: &dash_core::api::NodeMetrics) {
        let Ok(json) = serde_json::to_string(metrics) else {
            return;
        };
        let mut client = self.client();
        if let Err(s) = client
            .report_metrics(MetricsRequest { metrics_json: json })
            .await
        {
            tracing::debug!(error = %dash_rpc::describe(&s), "reporting metrics");
        }
    }

    async fn fetch(&self, reference: &str) -> Result<bool, MasterLinkError> {
        let mut client = self.client();
        let call = Call::ImageManifest {
            reference: reference.to_string(),
        };
        let resp = match client
            .image_manifest(ImageRequest {
                reference: reference.to_string(),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => match MasterLinkError::from_status(call, s) {
                MasterLinkError::NotHeld { .. } => return Ok(false),
                e => return Err(e),
            },
        };
        let export = ImageExport::from_manifest(resp.digest, resp.manifest_json, resp.config_json)
            .map_err(|source| MasterLinkError::Manifest {
                reference: reference.to_string(),
                source,
            })?;
        for (digest, size) in &export.layers {
            if self.images.has_blob_digest(digest) {
                continue;
            }
            self.fetch_blob(digest, *size).await?;
        }
        let images = self.images.clone();
        let tag = reference.to_string();
        tokio::task::spawn_blocking(move || images.import_fetched(&tag, &export))
            .await
            .map_err(MasterLinkError::Task)?
            .map_err(|source| MasterLinkError::Import {
                reference: reference.to_string(),
                source,
            })?;
        tracing::info!(reference, "image fetched from the masters");
        Ok(true)
    }

    /// One blob into `fetch/`, continuing a partial file; three tries (a transfer that fails
    /// its digest check is thrown away and fetched again from the start).
    async fn fetch_blob(&self, digest: &str, size: u64) -> Result<(), MasterLinkError> {
        const TRIES: u32 = 3;
        let blob_file = |source| MasterLinkError::BlobFile {
            digest: digest.to_string(),
            source,
        };
        let done = self.images.fetch_path(digest, false).map_err(blob_file)?;
        if done.is_file() {
            return Ok(());
        }
        let partial = self.images.fetch_path(digest, true).map_err(blob_file)?;
        let mut last = None;
        for _ in 0..TRIES {
            let offset = tokio::fs::metadata(&partial).await.map_or(0, |m| m.len());
            if offset < size
                && let Err(e) = self.stream_blob(digest, offset, &partial).await
            {
                last = Some(e);
                continue;
            }
            let images = self.images.clone();
            let d = digest.to_string();
            // A digest mismatch discards the partial file: the next round starts from zero.
            match tokio::task::spawn_blocking(move || images.finish_fetch(&d))
                .await
                .map_err(MasterLinkError::Task)?
            {
                Ok(()) => return Ok(()),
                Err(source) => {
                    let e = match source {
                        ImageError::Invalid { .. } => MasterLinkError::DigestMismatch {
                            digest: digest.to_string(),
                            source,
                        },
                        source => blob_file(source),
                    };
                    tracing::warn!(blob = digest, error = %with_causes(&e), "fetched blob refused; fetching again");
                    last = Some(e);
                }
            }
        }
        Err(MasterLinkError::Blob {
            digest: digest.to_string(),
            tries: TRIES,
            last: Box::new(last.expect("every try that did not return set `last`")),
        })
    }

    async fn stream_blob(
        &self,
        digest: &str,
        offset: u64,
        partial: &Path,
    ) -> Result<(), MasterLinkError> {
        let failed = |s| {
            MasterLinkError::from_status(
                Call::FetchBlob {
                    digest: digest.to_string(),
                },
                s,
            )
        };
        let written = |source| MasterLinkError::Write {
            path: partial.to_path_buf(),
            source,
        };
        let mut client = self.client();
        let mut stream = client
            .fetch_blob(BlobRequest {
                digest: digest.to_string(),
                offset,
            })
            .await
            .map_err(failed)?
            .into_inner();
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial)
            .await
            .map_err(|source| MasterLinkError::Open {
                path: partial.to_path_buf(),
                source,
            })?;
        while let Some(chunk) = stream.message().await.map_err(failed)? {
            file.write_all(&chunk.data).await.map_err(written)?;
        }
        file.flush().await.map_err(written)?;
        Ok(())
    }
}

async fn watch_loop(
    link: Arc<GrpcLink>,
    tx: watch::Sender<Option<Vec<Assignment>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut held = 0u64;
    loop {
        let mut client = link.client();
        let attempt = async {
            let mut stream = client
                .watch(WatchRequest {
                    after_version: held,
                })
                .await?
                .into_inner();
            while let Some(msg) = stream.message().await? {
                match serde_json::from_str::<Vec<Assignment>>(&msg.assignments_json) {
                    Ok(list) => {
                        held = msg.version;
                        let _ = tx.send(Some(list));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "assignments from the masters unreadable")
                    }
                }
            }
            Ok::<(), tonic::Status>(())
        };
        tokio::select! {
            r = attempt => match r {
                Err(s) if s.code() == tonic::Code::Unauthenticated => {
                    // Removed from the cluster (or its certificate replaced): what it ran was
                    // started elsewhere, so it stops everything and waits to be let in again.
                    tracing::error!(error = %s.message(), "the masters refuse this node; stopping its replicas");
                    let _ = tx.send(Some(Vec::new()));
                    // What it held is gone: let back in, it needs the whole list again.
                    held = 0;
                }
                Err(s) => tracing::warn!(code = ?s.code(), error = %dash_rpc::describe(&s), "assignment watch lost; reconnecting"),
                Ok(()) => {}
            },
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn heartbeat_loop(
    link: Arc<GrpcLink>,
    node: String,
    capacity: Resources,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = Duration::from_millis(500);
    let capacity_json = serde_json::to_string(&capacity).unwrap_or_default();
    let mut failures = 0u32;
    let mut last_answer: Option<std::time::Instant> = None;
    loop {
        let mut client = link.client();
        let beat = client.heartbeat(HeartbeatRequest {
            node: node.clone(),
            capacity_json: capacity_json.clone(),
            running: 0,
        });
        let sent = std::time::Instant::now();
        match tokio::time::timeout(Duration::from_secs(2), beat).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                let now = std::time::Instant::now();
                let since = last_answer.map_or(Duration::ZERO, |t| now - t);
                link.beats
                    .answered(now - sent, since.saturating_sub(interval));
                last_answer = Some(now);
                interval = Duration::from_millis(r.interval_ms.clamp(100, 30_000));
                failures = 0;
                link.learn_masters(r.masters);
                // Heartbeats, reports and the watch go to the leader.
                if !r.leader.is_empty()
                    && let Err(e) = link.move_to(&r.leader)
                {
                    tracing::warn!(error = %with_causes(&e), "moving to the leader");
                }
            }
            Ok(Err(s)) => {
                tracing::warn!(code = ?s.code(), error = %dash_rpc::describe(&s), "heartbeat refused");
                link.beats
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                failures += 1;
            }
            Err(_) => {
                tracing::warn!("heartbeat timed out");
                link.beats
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                failures += 1;
            }
        }
        // With other masters, the next one at the first silence; alone, a redial after two
        // (rather than trust the channel to recover on its own).
        let moved = match (failures, link.next_master()) {
            (1.., Some(next)) => Some(link.move_to(&next)),
            (2.., None) => Some(link.redial()),
            _ => None,
        };
        if let Some(r) = moved {
            if let Err(e) = r {
                tracing::warn!(error = %with_causes(&e), "redialling the masters");
            }
            failures = 0;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl MasterLink for GrpcLink {
    async fn assignments(&self, _node: &str) -> Result<Vec<Assignment>, LinkError> {
        self.latest
            .borrow()
            .clone()
            .ok_or(LinkError::NoAssignmentsYet)
    }

    async fn changed(&self) {
        let mut rx = self.seen.lock().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), rx.changed()).await;
    }

    async fn report(&self, _node: &str, status: ReplicaStatus) {
        self.try_report(&status).await;
    }

    async fn removed(&self, _node: &str, replica: &str) {
        for attempt in 0..3u64 {
            let mut client = self.client();
            match client
                .removed(RemovedRequest {
                    replica: replica.to_string(),
                })
                .await
            {
                Ok(_) => return,
                Err(s) => {
                    tracing::warn!(error = %dash_rpc::describe(&s), replica, "reporting a removal");
                    tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                }
            }
        }
    }

    async fn replica_files(
        &self,
        _node: &str,
        replica: &str,
    ) -> Result<Vec<dash_core::api::ReplicaFile>, LinkError> {
        let mut client = self.client();
        let resp = client
            .replica_files(dash_rpc::proto::ReplicaFilesRequest {
                replica: replica.to_string(),
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                    LinkError::Refused(dash_rpc::describe(&s).into())
                }
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                    LinkError::Unreachable(dash_rpc::describe(&s).into())
                }
                _ => LinkError::BadAnswer(dash_rpc::describe(&s).into()),
            })?;
        resp.into_inner()
            .files
            .into_iter()
            .map(|f| {
                let kind = dash_core::secret::Kind::parse(&f.kind).ok_or_else(|| {
                    LinkError::BadAnswer(format!("file kind {:?}", f.kind).into())
                })?;
                Ok(dash_core::api::ReplicaFile {
                    kind,
                    name: f.name,
                    version: f.version,
                    data: f.data,
                })
            })
            .collect()
    }

    async fn fetch_image(&self, reference: &str) -> Result<bool, LinkError> {
        // One fetch per reference at a time; a second caller finds the image imported.
        let lock = {
            let mut f = self.fetches.lock().await;
            f.entry(reference.to_string()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let images = self.images.clone();
        let r = reference.to_string();
        if tokio::task::spawn_blocking(move || images.resolve(&r).is_ok())
            .await
            .unwrap_or(false)
        {
            return Ok(true);
        }
        Ok(self.fetch(reference).await?)
    }
}

/// Renews the node's certificate: a new key made here, a CSR, the masters sign it; the files
/// in `<data>/pki/` are replaced. Returns the new identity.
pub async fn renew(
    link: &GrpcLink,
    data: &Path,
    node: &str,
    old: &Identity,
) -> Result<Identity, MasterLinkError> {
    let (key_pem, csr_pem) = pki::new_csr(node).map_err(MasterLinkError::Csr)?;
    let mut client = link.client();
    let resp = client
        .renew(RenewRequest { csr_pem })
        .await
        .map_err(|s| MasterLinkError::from_status(Call::Renew, s))?
        .into_inner();
    let dir = pki_dir(data);
    let save = |path: PathBuf, content: &[u8]| {
        pki::write_private(&path, content).map_err(|source| MasterLinkError::Write { path, source })
    };
    save(dir.join("node.key"), key_pem.as_bytes())?;
    save(dir.join("node.crt"), resp.cert_pem.as_bytes())?;
    Ok(Identity {
        cert_pem: resp.cert_pem,
        key_pem,
        ca_pem: old.ca_pem.clone(),
    })
}

pub use dash_rpc::pki::renew_at;
