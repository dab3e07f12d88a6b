//! Interrupted pulls: a pull future dropped halfway, and a process doing a pull killed with
//! SIGKILL. Either way the next pull completes and fetches none of the blobs that were
//! complete (verified) again; a killed pull's partial downloads are removed by
//! `ImageStore::open`.

#[path = "registry_support.rs"]
mod support;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dash_image::ImageStore;
use dash_image::registry::{PullProgress, Puller, RegistryConfig};
use support::img::chain;
use support::*;

/// Tells the child test (`killed_pull_child`) what to pull: `<store root>\n<reference>`.
const CHILD_ENV: &str = "DASH_TEST_KILLED_PULL";
/// The child writes this file into the store root once a layer is complete, then stalls.
const CHILD_MARKER: &str = "child-has-a-layer";

fn big_image() -> TestImage {
    TestImage {
        layers: (1..=6).map(|seed| random_layer(seed, 4 << 20)).collect(),
        arch: "amd64",
    }
}

fn puller_for(root: &Path, credentials: &Path) -> (Arc<ImageStore>, Puller) {
    let store = Arc::new(ImageStore::open(root).expect("open store"));
    let mut cfg = RegistryConfig::new(credentials.to_path_buf());
    cfg.docker_config = None;
    let puller = Puller::new(store.clone(), cfg).expect("puller");
    (store, puller)
}

/// Pulls `reference` again with `puller`: it completes, and none of the `completed` blobs (hex)
/// is fetched from `registry` again.
async fn pull_resumes(
    puller: &Puller,
    registry: &Registry,
    reference: &str,
    written: &Written,
    completed: &[String],
) {
    let events = Events::default();
    let record = pull_ok(puller, reference, &events.callback()).await;
    assert_eq!(record.id, written.id());
    let done = events.blobs_done();
    for hex in completed {
        assert_eq!(done.get(&format!("sha256:{hex}")), Some(&true), "{hex}");
        assert_eq!(
            registry.blob_gets(hex),
            1,
            "completed blob {hex} was fetched again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_pull_resumes_without_fetching_completed_blobs_again() {
    let (registry, env, written, reference) = registry_with("big", &big_image(), "big:1");
    let layers: HashSet<String> = written.layer_digests().into_iter().collect();

    tracing::info!("--- pull, dropped once the first layer is in");
    let (tx, mut first_layer) = tokio::sync::mpsc::unbounded_channel::<()>();
    let callback = move |e: PullProgress| {
        if let PullProgress::BlobDone { digest, .. } = &e
            && layers.contains(digest)
        {
            let _ = tx.send(());
        }
    };
    tokio::select! {
        result = env.puller.pull(&reference, &callback) => {
            panic!("the pull finished before it could be interrupted: {result:?}")
        }
        _ = first_layer.recv() => {}
    }
    let completed = env.files("pulls/blobs");
    assert!(!completed.is_empty(), "no blob completed");
    assert!(
        env.files("pulls/partial").is_empty(),
        "a dropped download left its partial file"
    );
    assert!(env.store.list().unwrap().is_empty());
    eprintln!(
        "interrupted with {} of {} blobs complete",
        completed.len(),
        written.blobs().len()
    );

    tracing::info!("--- a killed pull's leftover, then a restart");
    fs::write(env.root().join("pulls/partial/leftover"), b"half a blob").unwrap();
    let (store, puller) = puller_for(env.root(), &env.dir.path().join("registries.json"));
    assert!(
        env.files("pulls/partial").is_empty(),
        "open() kept a partial download"
    );
    assert_eq!(
        env.files("pulls/blobs"),
        completed,
        "open() dropped verified blobs"
    );
    pull_resumes(&puller, &registry, &reference, &written, &completed).await;
    for hex in written.blobs() {
        assert!(registry.blob_gets(&hex) >= 1);
    }
    assert!(env.files("pulls/blobs").is_empty());
    let resolved = store.resolve(&reference).unwrap();
    assert_eq!(resolved.layer_dirs.len(), 6);
    assert_eq!(
        fs::metadata(resolved.layer_dirs[5].join("data/blob-6"))
            .unwrap()
            .len(),
        4 << 20
    );
}

/// Kills (SIGKILL, by pid) and reaps the child when dropped, also when the test fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pull_resumes_without_fetching_completed_blobs_again() {
    let (registry, env, written, reference) = registry_with("big", &big_image(), "big:1");
    let root = env.root().to_path_buf();

    tracing::info!("--- a child process pulls, stalls after its first layer, and is killed");
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "killed_pull_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, format!("{}\n{reference}", root.display()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the child");
    let mut child = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !root.join(CHILD_MARKER).exists() {
        if let Some(status) = child.0.try_wait().expect("wait for the child") {
            panic!("the child exited ({status}) before completing a layer");
        }
        assert!(
            Instant::now() < deadline,
            "the child completed no layer in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(child);
    let completed = env.files("pulls/blobs");
    assert!(!completed.is_empty());
    let partial = env.files("pulls/partial");
    eprintln!(
        "killed with {} of {} blobs complete, {} partial",
        completed.len(),
        written.blobs().len(),
        partial.len()
    );
    assert!(env.store.list().unwrap().is_empty());

    tracing::info!("--- restart: open() drops partial downloads, keeps verified blobs");
    let (store, puller) = puller_for(&root, &env.dir.path().join("registries.json"));
    assert!(
        env.files("pulls/partial").is_empty(),
        "{:?}",
        env.files("pulls/partial")
    );
    assert_eq!(env.files("pulls/blobs"), completed);
    pull_resumes(&puller, &registry, &reference, &written, &completed).await;
    assert_eq!(store.resolve(&reference).unwrap().layer_dirs.len(), 6);
    assert!(env.files("pulls/blobs").is_empty());
}

/// The child process of `a_killed_pull_resumes_without_fetching_completed_blobs_again`; does
/// nothing in a normal test run. Once a layer is complete it writes the marker and blocks its
/// task (and with it the pull, which that task drives) until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pull_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (root, reference) = spec.split_once('\n').expect("root and reference");
    let root = Path::new(root).to_path_buf();
    let (_store, puller) = puller_for(&root, &root.join("unused-registries.json"));
    let marker = root.join(CHILD_MARKER);
    let layers = std::sync::Mutex::new(HashSet::<String>::new());
    let callback = move |e: PullProgress| match e {
        PullProgress::Resolved { layers: l, .. } => {
            *layers.lock().unwrap() = l.into_iter().map(|(digest, _)| digest).collect();
        }
        PullProgress::BlobDone { digest, .. } if layers.lock().unwrap().contains(&digest) => {
            fs::write(&marker, b"").unwrap();
            std::thread::sleep(Duration::from_secs(120));
        }
        _ => {}
    };
    let _ = puller.pull(reference, &callback).await;
    panic!("the child pull was meant to be killed before it finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_in_the_pull_cache_is_not_trusted() {
    let (registry, env, written, reference) = registry_with("bb", &busybox_image(), "bb:1");
    // What a disk error could leave under a verified name.
    let corrupt = env.root().join("pulls/blobs").join(&written.layers[1]);
    fs::write(&corrupt, b"not the layer").unwrap();

    let err = env.puller.pull(&reference, &|_| {}).await.unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains(&format!("sha256:{}", written.layers[1])) && text.contains("size mismatch"),
        "{text}"
    );
    assert!(!corrupt.exists(), "the corrupt blob was kept");
    assert!(env.store.list().unwrap().is_empty());

    let record = pull_ok(&env.puller, &reference, &|_| {}).await;
    assert_eq!(record.id, written.id());
    assert_eq!(registry.blob_gets(&written.layers[1]), 1);
}
