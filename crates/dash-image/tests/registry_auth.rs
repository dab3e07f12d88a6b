//! Registries that want credentials: basic auth (htpasswd) on a real `docker-registry`; login,
//! logout, the credentials file, docker's config.json.

#[path = "registry_support.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use dash_image::registry::PullError;
use support::img::chain;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_needs_the_right_credentials() {
    let registry = Registry::start_with_auth();
    let env = Env::new();
    let written = registry.push_image(&env, "bb", &busybox_image(), "private/bb:1");
    let reference = registry.reference("private/bb:1");
    let credentials = env.dir.path().join("registries.json");

    tracing::info!("--- anonymous");
    let err = env.puller.pull(&reference, &|_| {}).await.unwrap_err();
    let text = err.to_string();
    eprintln!("anonymous: {text}");
    assert!(
        matches!(err, PullError::AuthenticationRequired { .. }),
        "{}",
        chain(&err)
    );
    assert!(
        text.starts_with(&format!("{} requires authentication", registry.host)),
        "{text}"
    );

    tracing::info!("--- wrong password");
    let err = env
        .puller
        .login(&registry.host, USER, "wrong")
        .await
        .unwrap_err();
    let text = err.to_string();
    eprintln!("wrong password: {text}");
    assert!(
        text.starts_with(&format!("authentication failed for {}: ", registry.host)),
        "{}",
        chain(&err)
    );
    assert!(text.contains(USER), "{text}");
    assert!(!credentials.exists(), "a refused login stored credentials");

    tracing::info!("--- right password");
    env.puller
        .login(&registry.host, USER, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("login: {}\n{}", chain(&e), registry.log()));
    let mode = fs::metadata(&credentials).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "credentials file mode {mode:o}");
    let stored = fs::read_to_string(&credentials).unwrap();
    assert!(
        stored.contains(&registry.host) && !stored.contains(PASSWORD),
        "{stored}"
    );
    let record = env
        .puller
        .pull(&reference, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("pull: {}\n{}", chain(&e), registry.log()));
    assert_eq!(record.id, written.id());
    assert!(
        env.store.resolve(&reference).unwrap().layer_dirs[0]
            .join("bin/busybox")
            .is_file()
    );

    tracing::info!("--- logout");
    env.puller.logout(&registry.host).unwrap();
    env.puller.logout(&registry.host).unwrap();
    let err = env.puller.pull(&reference, &|_| {}).await.unwrap_err();
    assert!(
        matches!(err, PullError::AuthenticationRequired { .. }),
        "{}",
        chain(&err)
    );

    tracing::info!("--- a stale password in the credentials file");
    fs::write(
        &credentials,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
            registry.host,
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:old"))
        ),
    )
    .unwrap();
    let err = env.puller.pull(&reference, &|_| {}).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("authentication failed for {}", registry.host)),
        "{}",
        chain(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_config_credentials_are_used() {
    let registry = Registry::start_with_auth();
    let docker = tempfile::tempdir().unwrap();
    fs::write(
        docker.path().join("config.json"),
        format!(
            r#"{{"auths": {{"http://{}": {{"auth": "{}"}}}}}}"#,
            registry.host,
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        ),
    )
    .unwrap();
    let env = Env::with(|cfg| cfg.docker_config = Some(docker.path().to_path_buf()));
    let written = registry.push_image(&env, "bb", &busybox_image(), "bb:1");
    let record = pull_ok(&env.puller, &registry.reference("bb:1"), &|_| {}).await;
    assert_eq!(record.id, written.id());
}
