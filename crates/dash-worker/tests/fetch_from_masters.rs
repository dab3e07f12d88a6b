//! Images from the masters, over real mutual TLS on loopback: a worker that lacks an image
//! fetches the blobs it misses (each once), continues a partial blob from its length, and
//! refuses a blob whose digest does not match. The master side here serves only the two image
//! calls (a stand-in for master_api; the full path runs in the cluster e2e tests).

#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use dash_core::link::MasterLink;
use dash_image::ImageStore;
use dash_rpc::pki::{self, Ca, Role};
use dash_rpc::proto::master_api_server::{MasterApi, MasterApiServer};
use dash_rpc::proto::*;
use dash_worker::master_link::{GrpcLink, Identity};
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tonic::{Request, Response, Status};

struct Master {
    images: Arc<ImageStore>,
    /// (digest, offset) of every FetchBlob.
    fetches: Arc<Mutex<Vec<(String, u64)>>>,
    /// Serve this many wrong bytes first (a corrupt transfer), once.
    corrupt: Arc<Mutex<bool>>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl MasterApi for Master {
    async fn join(&self, _: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        Err(Status::unimplemented("not here"))
    }
    async fn renew(&self, _: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        Err(Status::unimplemented("not here"))
    }
    async fn heartbeat(
        &self,
        _: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        Ok(Response::new(HeartbeatResponse {
            state: "ready".into(),
            interval_ms: 500,
            ..Default::default()
        }))
    }
    async fn report(&self, _: Request<ReportRequest>) -> Result<Response<Ack>, Status> {
        Ok(Response::new(Ack {}))
    }
    async fn report_metrics(&self, _: Request<MetricsRequest>) -> Result<Response<Ack>, Status> {
        Ok(Response::new(Ack {}))
    }
    async fn replica_files(
        &self,
        _: Request<ReplicaFilesRequest>,
    ) -> Result<Response<ReplicaFilesResponse>, Status> {
        Err(Status::unimplemented("not here"))
    }
    async fn removed(&self, _: Request<RemovedRequest>) -> Result<Response<Ack>, Status> {
        Ok(Response::new(Ack {}))
    }
    type WatchStream = BoxStream<Assignments>;
    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }
    async fn peers(&self, _: Request<PeersRequest>) -> Result<Response<PeersResponse>, Status> {
        Ok(Response::new(PeersResponse { peers: vec![] }))
    }
    async fn routes(&self, _: Request<RoutesRequest>) -> Result<Response<RoutesResponse>, Status> {
        Ok(Response::new(RoutesResponse {
            entries_json: "[]".into(),
            endpoints_json: "[]".into(),
            // No version: answers at once, as a master of an older release does.
            version: String::new(),
        }))
    }
    async fn image_manifest(
        &self,
        req: Request<ImageRequest>,
    ) -> Result<Response<ImageManifestResponse>, Status> {
        let e = self
            .images
            .export(&req.get_ref().reference)
            .map_err(|e| Status::not_found(e.to_string()))?;
        Ok(Response::new(ImageManifestResponse {
            manifest_json: String::from_utf8(e.manifest).unwrap(),
            config_json: String::from_utf8(e.config).unwrap(),
            digest: e.manifest_digest,
        }))
    }
    type FetchBlobStream = BoxStream<BlobChunk>;
    async fn fetch_blob(
        &self,
        req: Request<BlobRequest>,
    ) -> Result<Response<Self::FetchBlobStream>, Status> {
        let BlobRequest { digest, offset } = req.into_inner();
        self.fetches.lock().unwrap().push((digest.clone(), offset));
        let path = self
            .images
            .blob_file(&digest)
            .map_err(|e| Status::not_found(e.to_string()))?;
        let mut f = tokio::fs::File::open(path).await.unwrap();
        let size = f.metadata().await.unwrap().len();
        f.seek(std::io::SeekFrom::Start(offset)).await.unwrap();
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).await.unwrap();
        let corrupt = std::mem::take(&mut *self.corrupt.lock().unwrap());
        if corrupt {
            for b in rest.iter_mut().take(16) {
                *b ^= 0xff;
            }
        }
        let chunks: Vec<Result<BlobChunk, Status>> = rest
            .chunks(64 * 1024)
            .map(|c| {
                Ok(BlobChunk {
                    data: c.to_vec(),
                    size,
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}

/// A rootfs tarball with a 300 kB file of varied bytes.
fn rootfs_tar(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("data")).unwrap();
    let bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("data/blob"), bytes).unwrap();
    let tar = dir.join("rootfs.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    tar
}

struct Setup {
    _dir: tempfile::TempDir,
    master_images: Arc<ImageStore>,
    worker_images: Arc<ImageStore>,
    fetches: Arc<Mutex<Vec<(String, u64)>>>,
    corrupt: Arc<Mutex<bool>>,
    link: Arc<GrpcLink>,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn setup() -> Setup {
    dash_rpc::tls::init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let master_images = Arc::new(ImageStore::open(&dir.path().join("m")).unwrap());
    let worker_images = Arc::new(ImageStore::open(&dir.path().join("w")).unwrap());
    master_images
        .import_rootfs(&rootfs_tar(dir.path()), "app:1")
        .unwrap();

    let ca = Ca::create("test").unwrap();
    // A key and a certificate of an hour, signed by `ca`, for node `name` of `role`.
    let signed = |name: &str, role| {
        let (key, csr) = pki::new_csr(name).unwrap();
        let cert = ca
            .sign(&csr, name, role, std::time::Duration::from_secs(3600))
            .unwrap();
        (key, cert)
    };
    let (mkey, mcert) = signed("m", Role::Master);
    let (wkey, wcert) = signed("w1", Role::Worker);

    let fetches = Arc::new(Mutex::new(Vec::new()));
    let corrupt = Arc::new(Mutex::new(false));
    let master = Master {
        images: master_images.clone(),
        fetches: fetches.clone(),
        corrupt: corrupt.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let chain = format!("{}{}", mcert.pem, ca.cert_pem);
    let server = tonic::transport::Server::builder()
        .tls_config(dash_rpc::tls::server_tls(
            &chain,
            &mkey,
            &ca.cert_pem,
            false,
        ))
        .unwrap()
        .add_service(MasterApiServer::new(master))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let membership = dash_worker::master_link::Membership {
        master: addr.to_string(),
        node: "w1".into(),
        subnet: "10.89.0.0/24".into(),
        masters: vec![],
    };
    let link = GrpcLink::start(
        (None, &membership),
        Identity {
            cert_pem: wcert.pem,
            key_pem: wkey,
            ca_pem: ca.cert_pem.clone(),
        },
        "w1".into(),
        Default::default(),
        worker_images.clone(),
        stop_rx,
    )
    .unwrap();
    Setup {
        _dir: dir,
        master_images,
        worker_images,
        fetches,
        corrupt,
        link,
        _stop: stop,
    }
}

#[tokio::test]
async fn a_missing_image_is_fetched_once_resumed_and_digest_checked() {
    let s = setup().await;
    let export = s.master_images.export("app:1").unwrap();
    let (layer, size) = export.layers[0].clone();
    assert!(size > 100_000, "a layer worth resuming: {size}");

    // Half the layer is already here from an interrupted fetch: only the rest is asked for.
    let full = std::fs::read(s.master_images.blob_file(&layer).unwrap()).unwrap();
    let half = full.len() / 2;
    std::fs::write(
        s.worker_images.fetch_path(&layer, true).unwrap(),
        &full[..half],
    )
    .unwrap();
    assert!(s.link.fetch_image("app:1").await.unwrap());
    assert_eq!(
        *s.fetches.lock().unwrap(),
        vec![(layer.clone(), half as u64)]
    );
    let got = s.worker_images.resolve("app:1").unwrap();
    assert_eq!(got.record.id, export_id(&s.master_images));
    // The fetch area is empty again.
    assert!(!s.worker_images.fetch_path(&layer, true).unwrap().exists());
    assert!(!s.worker_images.fetch_path(&layer, false).unwrap().exists());

    // Present now: nothing is fetched again.
    assert!(s.link.fetch_image("app:1").await.unwrap());
    assert_eq!(s.fetches.lock().unwrap().len(), 1);

    // Unknown to the masters: Ok(false), so the agent tries the image's registry instead.
    assert!(!s.link.fetch_image("nope:1").await.unwrap());
}

fn export_id(images: &ImageStore) -> String {
    images.resolve("app:1").unwrap().record.id
}

#[tokio::test]
async fn a_corrupt_transfer_is_discarded_and_fetched_again() {
    let s = setup().await;
    *s.corrupt.lock().unwrap() = true;
    // The first transfer is corrupt: the digest check throws it away and the retry (from 0)
    // brings the right bytes.
    assert!(s.link.fetch_image("app:1").await.unwrap());
    let offsets: Vec<u64> = s.fetches.lock().unwrap().iter().map(|(_, o)| *o).collect();
    assert_eq!(
        offsets,
        vec![0, 0],
        "fetched twice from the start: {offsets:?}"
    );
    assert!(s.worker_images.resolve("app:1").is_ok());
}
