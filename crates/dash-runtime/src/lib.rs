//! container_runtime: images, OCI bundles, overlay root filesystems, the crun/runc CLI,
//! cgroups and the per-container monitor.
//!
//! Depends on `dash-core` only among Dash crates; it knows nothing of the store, the network
//! or the APIs. Blocking code: callers run it on `tokio::task::spawn_blocking`.

mod bundle;
mod cgroups;
pub mod container;
pub mod error;
pub mod image;
mod monitor;
mod oci_cli;
mod rootfs;
mod sys;

pub use container::{
    ContainerRuntime, ContainerSpec, ContainerStatus, LOST_EXIT_CODE, RuntimeConfig, RuntimeKind,
    Stats,
};
pub use error::RuntimeError;
