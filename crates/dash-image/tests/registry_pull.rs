//! Pulling from a real registry (`docker-registry` on loopback) into the image store: by tag
//! and by digest, OCI and Docker manifests, multi-platform indexes, tampered blobs, concurrent
//! pulls and pruning.

#[path = "registry_support.rs"]
mod support;

use std::collections::HashSet;
use std::fs;

use dash_image::registry::{PullError, PullProgress, RegistryConfig};
use dash_image::{ImageStore, normalize_reference};
use support::img::{BUSYBOX, Compression, Layer, RawTar, chain};
use support::*;

fn assert_busybox_layers(store: &ImageStore, reference: &str) {
    let resolved = store.resolve(reference).expect("resolve the pulled image");
    assert_eq!(resolved.layer_dirs.len(), 2);
    assert_eq!(
        fs::read(resolved.layer_dirs[0].join("bin/busybox")).expect("bin/busybox"),
        fs::read(BUSYBOX).expect("host busybox")
    );
    assert!(resolved.layer_dirs[1].join("etc/hostname").is_file());
    assert_eq!(resolved.config.cmd, vec!["echo hello"]);
    assert_eq!(resolved.config.working_dir.as_deref(), Some("/root"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_by_tag_and_by_digest_land_in_the_store() {
    let (registry, env, written, reference) = registry_with("bb", &busybox_image(), "team/bb:1");

    tracing::info!("--- pull by tag");
    let events = Events::default();
    let record = env
        .puller
        .pull(&reference, &events.callback())
        .await
        .unwrap_or_else(|e| panic!("pull: {}\n{}", chain(&e), registry.log()));
    assert_eq!(record.id, written.id());
    assert_eq!(record.tags, vec![normalize_reference(&reference).unwrap()]);
    assert_busybox_layers(&env.store, &reference);

    let all = events.all();
    let manifest_digest = format!("sha256:{}", written.manifest);
    match all.first() {
        Some(PullProgress::Resolved {
            reference: resolved,
            manifest_digest: digest,
            layers,
        }) => {
            assert_eq!(resolved, &reference);
            assert_eq!(digest, &manifest_digest);
            let got: Vec<String> = layers.iter().map(|(d, _)| d.clone()).collect();
            assert_eq!(got, written.layer_digests());
        }
        other => panic!("first event is not Resolved: {other:?}"),
    }
    assert_eq!(all[all.len() - 2], PullProgress::Unpacking);
    assert_eq!(
        all.last(),
        Some(&PullProgress::Done {
            image_id: written.id()
        })
    );
    let done = events.blobs_done();
    assert_eq!(done.len(), 3, "config and two layers: {done:?}");
    assert!(done.values().all(|cached| !cached), "{done:?}");
    // The pulled blobs moved into the store; nothing is left in the pull cache.
    assert!(env.files("pulls/blobs").is_empty());
    assert!(env.files("pulls/partial").is_empty());
    for hex in written.blobs() {
        assert!(
            env.root().join("blobs/sha256").join(&hex).is_file(),
            "{hex}"
        );
    }

    let inspect = env.store.inspect(&reference).expect("inspect");
    assert_eq!(inspect.manifest_digest, manifest_digest);
    assert_eq!(inspect.config.entrypoint, vec!["/bin/sh", "-c"]);
    let layer_digests: Vec<String> = inspect.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(layer_digests, written.layer_digests());
    assert!(
        inspect
            .layers
            .iter()
            .all(|l| l.size_bytes > 0 && l.unpacked_bytes > 0)
    );

    tracing::info!("--- pull by digest: everything is in the store already");
    let by_digest = registry.reference(&format!("team/bb@{manifest_digest}"));
    let events = Events::default();
    let again = pull_ok(&env.puller, &by_digest, &events.callback()).await;
    assert_eq!(again.id, written.id());
    assert!(again.tags.contains(&by_digest), "{:?}", again.tags);
    assert!(events.blobs_done().values().all(|cached| *cached));
    assert_busybox_layers(&env.store, &by_digest);
    for hex in written.blobs() {
        assert_eq!(
            registry.blob_gets(&hex),
            1,
            "blob {hex} fetched more than once"
        );
    }
    assert_eq!(env.store.list().unwrap().len(), 1);

    tracing::info!("--- unknown tag and unknown repository");
    for missing in [
        registry.reference("team/bb:nope"),
        registry.reference("team/other:1"),
    ] {
        let err = env.puller.pull(&missing, &|_| {}).await.unwrap_err();
        assert!(matches!(err, PullError::NotFound { .. }), "{}", chain(&err));
        assert!(err.to_string().contains(&registry.host), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_index_resolves_to_the_configured_platform() {
    let registry = Registry::start();
    let env = Env::new();
    let layout = env.layout("multi");
    let arm = TestImage {
        layers: vec![Layer::new(
            RawTar::new()
                .dir("etc/")
                .file("etc/arch", b"arm64\n")
                .finish(),
            Compression::Gzip,
        )],
        arch: "arm64",
    };
    let (index_hex, images) = write_multiarch_layout(&layout, "v1", &[arm, busybox_image()]);
    let (arm_image, amd_image) = (&images[0], &images[1]);
    registry.push(&layout, "v1", "multi:1");
    assert_eq!(
        registry.manifest("multi", "1")["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let reference = registry.reference("multi:1");

    tracing::info!("--- linux/amd64");
    let amd = Env::with(|cfg| cfg.platform = ("linux".into(), "amd64".into()));
    let record = pull_ok(&amd.puller, &reference, &|_| {}).await;
    assert_eq!(record.id, amd_image.id());
    assert_busybox_layers(&amd.store, &reference);
    assert_eq!(
        amd.store.inspect(&reference).unwrap().manifest_digest,
        format!("sha256:{}", amd_image.manifest)
    );
    for hex in &arm_image.layers {
        assert_eq!(registry.blob_gets(hex), 0, "the arm64 layer was fetched");
    }

    tracing::info!("--- this host's platform");
    if RegistryConfig::default_platform().1 == "amd64" {
        let record = env.puller.pull(&reference, &|_| {}).await.unwrap();
        assert_eq!(record.id, amd_image.id());
    }

    tracing::info!("--- linux/arm64");
    let arm = Env::with(|cfg| cfg.platform = ("linux".into(), "arm64".into()));
    let record = arm.puller.pull(&reference, &|_| {}).await.unwrap();
    assert_eq!(record.id, arm_image.id());
    let resolved = arm.store.resolve(&reference).unwrap();
    assert_eq!(
        fs::read(resolved.layer_dirs[0].join("etc/arch")).unwrap(),
        b"arm64\n"
    );

    tracing::info!("--- a platform the index lacks");
    let s390 = Env::with(|cfg| cfg.platform = ("linux".into(), "s390x".into()));
    let err = s390.puller.pull(&reference, &|_| {}).await.unwrap_err();
    let text = err.to_string();
    eprintln!("no platform: {text}");
    assert!(
        matches!(err, PullError::NoMatchingPlatform { .. }),
        "{text}"
    );
    assert!(
        text.contains("linux/s390x") && text.contains("linux/arm64, linux/amd64"),
        "{text}"
    );
    assert!(text.contains(&index_hex), "{text}");
    assert!(s390.store.list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_schema_2_manifests_and_manifest_lists_are_pulled() {
    let registry = Registry::start();
    let env = Env::with(|cfg| cfg.platform = ("linux".into(), "amd64".into()));
    let gzip_only = || {
        amd64(vec![
            busybox_layer(),
            Layer::new(img::top_layer(), Compression::Gzip),
        ])
    };
    let layout = env.layout("single");
    let written = write_layout(&layout, "v1", &gzip_only());
    registry.push_as_docker(&layout, "v1", "docker/single:1");
    let reference = registry.reference("docker/single:1");
    let record = pull_ok(&env.puller, &reference, &|_| {}).await;
    assert_eq!(record.id, written.id());
    assert_busybox_layers(&env.store, &reference);
    let inspect = env.store.inspect(&reference).unwrap();
    let manifest_hex = inspect.manifest_digest.strip_prefix("sha256:").unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(env.root().join("blobs/sha256").join(manifest_hex)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert!(
        inspect
            .layers
            .iter()
            .all(|l| l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{inspect:?}"
    );

    let layout = env.layout("list");
    let arm = TestImage {
        layers: vec![random_layer(11, 1 << 10)],
        arch: "arm64",
    };
    let (_, images) = write_multiarch_layout(&layout, "v1", &[arm, gzip_only()]);
    registry.push_as_docker(&layout, "v1", "docker/list:1");
    let reference = registry.reference("docker/list:1");
    let events = Events::default();
    let record = pull_ok(&env.puller, &reference, &events.callback()).await;
    assert_eq!(record.id, images[1].id());
    assert_eq!(
        registry.manifest("docker/list", "1")["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let Some(PullProgress::Resolved {
        manifest_digest, ..
    }) = events.all().first().cloned()
    else {
        panic!("no Resolved event");
    };
    assert_eq!(
        env.store.inspect(&reference).unwrap().manifest_digest,
        manifest_digest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_may_list_the_same_layer_twice() {
    let image = amd64(vec![
        busybox_layer(),
        random_layer(5, 1 << 10),
        random_layer(5, 1 << 10),
    ]);
    let (registry, env, written, reference) = registry_with("twice", &image, "twice:1");
    let record = pull_ok(&env.puller, &reference, &|_| {}).await;
    assert_eq!(record.id, written.id());
    assert_eq!(record.layers.len(), 3);
    assert_eq!(record.layers[1], record.layers[2]);
    assert_eq!(registry.blob_gets(&written.layers[1]), 1);
    assert!(env.files("pulls/blobs").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_blob_is_refused_and_nothing_is_kept() {
    let (registry, env, written, reference) = registry_with("t", &busybox_image(), "tamper:1");
    // Same size, other bytes: only the digest can tell.
    let data = registry.blob_data(&written.layers[0]);
    let len = fs::metadata(&data).unwrap().len() as usize;
    fs::write(&data, vec![0x5a; len]).unwrap();

    let err = env.puller.pull(&reference, &|_| {}).await.unwrap_err();
    let text = err.to_string();
    eprintln!("tampered: {text}");
    assert!(
        matches!(err, PullError::DigestMismatch { .. }),
        "{}",
        chain(&err)
    );
    let bad = format!("sha256:{}", written.layers[0]);
    let actual = format!("sha256:{}", img::sha256_hex(&vec![0x5a; len]));
    assert!(text.contains(&bad) && text.contains(&actual), "{text}");
    assert!(text.contains(&reference), "{text}");

    assert!(env.store.list().unwrap().is_empty());
    assert!(
        env.files("blobs/sha256").is_empty(),
        "{:?}",
        env.files("blobs/sha256")
    );
    assert!(env.files("layers").is_empty());
    assert!(
        env.files("pulls/blobs").is_empty(),
        "{:?}",
        env.files("pulls/blobs")
    );
    assert!(env.files("pulls/partial").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_share_one_download_of_each_blob() {
    let image = amd64(vec![
        busybox_layer(),
        random_layer(7, 2 << 20),
        Layer::new(img::top_layer(), Compression::Zstd),
    ]);
    let (registry, env, written, reference) = registry_with("c", &image, "c:1");

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let puller = env.puller.clone();
        let reference = reference.clone();
        tasks.push(tokio::spawn(async move {
            let events = Events::default();
            let record = puller.pull(&reference, &events.callback()).await;
            (record, events.all())
        }));
    }
    for task in tasks {
        let (record, events) = task.await.unwrap();
        let record = record.unwrap_or_else(|e| panic!("{}", chain(&e)));
        assert_eq!(record.id, written.id());
        assert_eq!(
            events.last(),
            Some(&PullProgress::Done {
                image_id: written.id()
            })
        );
    }
    for hex in written.blobs() {
        assert_eq!(
            registry.blob_gets(&hex),
            1,
            "blob {hex}:\n{}",
            registry.log()
        );
    }
    assert!(registry.manifest_gets("c") >= 1);
    assert_eq!(env.store.list().unwrap().len(), 1);

    tracing::info!("--- two images sharing a layer, pulled at once");
    let on_busybox = |seed| amd64(vec![busybox_layer(), random_layer(seed, 1 << 20)]);
    let other_written = registry.push_image(&env, "d", &on_busybox(8), "d:1");
    let third_written = registry.push_image(&env, "e", &on_busybox(9), "e:1");
    let fresh = Env::new();
    let (d, e) = (registry.reference("d:1"), registry.reference("e:1"));
    let (a, b) = tokio::join!(
        fresh.puller.pull(&d, &|_| {}),
        fresh.puller.pull(&e, &|_| {}),
    );
    assert_eq!(a.unwrap().id, other_written.id());
    assert_eq!(b.unwrap().id, third_written.id());
    let shared = &other_written.layers[0];
    assert_eq!(shared, &third_written.layers[0]);
    // Once for `c:1` (first store), once for both of these.
    assert_eq!(registry.blob_gets(shared), 2, "{}", registry.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_what_is_kept_and_removes_the_rest() {
    let registry = Registry::start();
    let env = Env::new();
    let push = |name: &str, layers: Vec<Layer>, dest: &str| {
        let layout = env.layout(name);
        let written = write_layout(&layout, "v1", &amd64(layers));
        registry.push(&layout, "v1", dest);
        written
    };
    let base = busybox_layer;
    let app = registry.reference("app:1");
    let other = registry.reference("other:1");

    let app_old = push("a1", vec![base(), random_layer(1, 64 << 10)], "app:1");
    env.puller.pull(&app, &|_| {}).await.unwrap();
    let other_old = push("o1", vec![random_layer(2, 64 << 10)], "other:1");
    env.puller.pull(&other, &|_| {}).await.unwrap();
    // New images under the same tags: the old ones stay, untagged.
    let app_new = push("a2", vec![base(), random_layer(3, 64 << 10)], "app:1");
    env.puller.pull(&app, &|_| {}).await.unwrap();
    let other_new = push("o2", vec![random_layer(4, 64 << 10)], "other:1");
    env.puller.pull(&other, &|_| {}).await.unwrap();
    let ids = |store: &ImageStore| -> HashSet<String> {
        store.list().unwrap().into_iter().map(|r| r.id).collect()
    };
    assert_eq!(ids(&env.store).len(), 4);
    // A verified blob some pull left in the cache.
    let stray = "ab".repeat(32);
    fs::write(env.root().join("pulls/blobs").join(&stray), b"stray").unwrap();

    tracing::info!("--- prune, keeping the old app image");
    let keep = HashSet::from([app_old.id()]);
    let report = env.store.prune(&keep).unwrap();
    assert_eq!(report.images_removed, vec![other_old.id()]);
    assert_eq!(report.layers_removed, 1, "{report:?}");
    // other_old's manifest, config and layer, and the stray cache blob.
    assert_eq!(report.blobs_removed, 4, "{report:?}");
    assert!(report.bytes_freed > 64 << 10, "{report:?}");
    assert!(env.files("pulls/blobs").is_empty());
    assert_eq!(
        ids(&env.store),
        HashSet::from([app_old.id(), app_new.id(), other_new.id()])
    );
    let kept = env.store.resolve(&app_old.id()).unwrap();
    assert!(kept.layer_dirs.iter().all(|d| d.is_dir()));
    for hex in app_old.blobs() {
        assert!(env.root().join("blobs/sha256").join(&hex).is_file());
    }

    tracing::info!("--- prune, keeping nothing");
    let report = env.store.prune(&HashSet::new()).unwrap();
    assert_eq!(report.images_removed, vec![app_old.id()]);
    assert_eq!(
        report.layers_removed, 1,
        "the shared base layer stays: {report:?}"
    );
    assert_eq!(
        ids(&env.store),
        HashSet::from([app_new.id(), other_new.id()])
    );
    assert_busybox_base(&env.store, &app);
    assert!(
        !env.root()
            .join("blobs/sha256")
            .join(&app_old.layers[1])
            .exists()
    );
    assert!(
        env.root()
            .join("blobs/sha256")
            .join(&app_old.layers[0])
            .is_file()
    );

    tracing::info!("--- nothing left to prune");
    let report = env.store.prune(&HashSet::new()).unwrap();
    assert!(
        report.images_removed.is_empty() && report.blobs_removed == 0,
        "{report:?}"
    );
}

fn assert_busybox_base(store: &ImageStore, reference: &str) {
    let resolved = store.resolve(reference).expect("resolve");
    assert!(resolved.layer_dirs[0].join("bin/busybox").is_file());
}
