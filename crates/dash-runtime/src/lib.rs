//! container_runtime: images, OCI bundles, overlay root filesystems, the crun/runc CLI,
//! cgroups and the per-container monitor.
//!
//! Depends on `dash-core` only among Dash crates; it knows nothing of the store, the network
//! or the APIs. Blocking code: callers run it on `tokio::task::spawn_blocking`.
