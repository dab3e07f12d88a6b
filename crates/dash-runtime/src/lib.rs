//! container_runtime: images (import, registry pulls), OCI bundles, overlay root filesystems,
//! the crun/runc CLI, cgroups and the per-container monitor.
//!
//! Depends on `dash-core` only among Dash crates; it knows nothing of the store, the network
//! or the APIs. The image store and containers are blocking code (callers run them on
//! `tokio::task::spawn_blocking`); `registry` is async (oci-client).

mod bundle;
mod cgroups;
pub mod console;
pub mod container;
pub mod error;
pub mod files;
mod monitor;
#[allow(
    dead_code,
    reason = "dash-monitor shares this file (#[path]): each side uses its half of the protocol"
)]
mod monitor_protocol;
mod oci_cli;
mod rootfs;
mod sys;
pub mod userns;

pub use container::{
    ContainerRuntime, ContainerSpec, ContainerStatus, LOST_EXIT_CODE, RuntimeConfig, RuntimeKind,
    Stats,
};
pub use error::RuntimeError;
pub use files::ContainerFile;
pub use userns::IdMap;
