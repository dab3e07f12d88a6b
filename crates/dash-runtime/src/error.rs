//! container_runtime: the error type of running containers.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while creating, running or removing a container.
///
/// Messages are lowercase without a trailing period; the cause stays in `#[source]`.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file-system or process operation failed; `action` says which, with its path.
    #[error("{action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// An external program (crun, runc) exited unsuccessfully.
    #[error("`{argv}` exited with {status}: {stderr}")]
    OciCommand {
        argv: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// An external program could not be started.
    #[error("cannot run `{argv}`")]
    Spawn {
        argv: String,
        #[source]
        source: std::io::Error,
    },
    /// An external program did not finish in time and was killed.
    #[error("`{argv}` did not finish within {timeout:?} and was killed")]
    Timeout { argv: String, timeout: Duration },
    /// A [`crate::RuntimeConfig`] value that cannot work.
    #[error("runtime config: {reason}")]
    InvalidConfig { reason: String },
    /// Neither crun nor runc is usable (or the preferred one is not).
    #[error("no usable OCI runtime: {tried}")]
    NoRuntime { tried: String },
    /// The monitor binary is missing.
    #[error("monitor binary {path} not found; build it with `cargo build -p dash-monitor`")]
    MonitorMissing { path: PathBuf },
    /// A container id that cannot be used as a directory and cgroup name.
    #[error("container id {id:?} is invalid: {reason}")]
    InvalidId { id: String, reason: &'static str },
    /// A container spec that cannot be turned into a bundle.
    #[error("container {id}: {reason}")]
    InvalidSpec { id: String, reason: String },
    /// `create` for an id whose bundle directory already exists.
    #[error("container {id} already exists")]
    AlreadyExists { id: String },
    /// No bundle directory for this id.
    #[error("container {id} does not exist")]
    NotFound { id: String },
    /// The operation needs a created or running container.
    #[error("container {id} is not running")]
    NotRunning { id: String },
    /// The runtime's `create` failed; `message` is what the monitor reported (runtime stderr).
    #[error("creating container {id} failed: {message}")]
    Create { id: String, message: String },
    /// The monitor broke its protocol (died without a report, garbled output).
    #[error("monitor of container {id}: {message}")]
    Monitor { id: String, message: String },
    /// The container did not exit after SIGKILL.
    #[error("container {id} did not exit within {waited:?} after SIGKILL")]
    StopTimeout { id: String, waited: Duration },
    /// A kernel or runtime file had unexpected contents.
    #[error("{path}: cannot parse: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// The OCI spec could not be built or written.
    #[error("building the OCI spec of container {id}")]
    Spec {
        id: String,
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A cleanup step of `remove` failed; the container may be partly removed.
    #[error("removing container {id}: {step}")]
    Remove {
        id: String,
        step: String,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// Shorthand for [`RuntimeError::Io`].
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            action: action.into(),
            source,
        }
    }
}
