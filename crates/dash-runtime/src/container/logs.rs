//! container_runtime: container logs: where they are, reading them, and keeping a removed
//! replica's log for a while.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ContainerRuntime, validate_id};
use crate::error::RuntimeError;
use crate::{monitor, monitor_protocol};

/// How long the log of a removed replica is kept.
pub const RETIRED_LOG_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How much the kept logs of removed replicas may take on a node, newest first.
pub const RETIRED_LOGS_MAX_BYTES: u64 = 64 << 20;

impl ContainerRuntime {
    /// The container's log: `<timestamp> <stdout|stderr> <line>` per line, rotated to
    /// `<log>.1`. It lives beside the bundles, in
    /// `<state_dir>/../logs/`, so that it outlives restarts of the container in place;
    /// [`ContainerRuntime::retire_logs`] moves it aside when the replica is gone for good.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.cfg
            .state_dir
            .with_file_name("logs")
            .join(format!("{id}.{}", monitor::LOG_FILE))
    }

    /// Complete lines of replica `id`'s log from byte `from` (at most 4 MiB), and the offset
    /// after them, for readers that follow the log by polling. A file shorter than `from` was
    /// rotated: it is read from the start. A missing log reads as empty.
    /// A removed replica's log is read from where [`ContainerRuntime::retire_logs`] kept it.
    pub fn read_log(&self, id: &str, from: u64) -> (Vec<u8>, u64) {
        use std::io::{Read, Seek, SeekFrom};
        let opened = std::fs::File::open(self.log_path(id))
            .or_else(|_| std::fs::File::open(self.retired_log_path(id)));
        let Ok(mut f) = opened else {
            return (Vec::new(), from);
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = if len < from { 0 } else { from };
        if f.seek(SeekFrom::Start(start)).is_err() {
            return (Vec::new(), from);
        }
        let mut buf = Vec::new();
        if f.take(4 << 20).read_to_end(&mut buf).is_err() {
            return (Vec::new(), from);
        }
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        buf.truncate(complete);
        (buf, start + complete as u64)
    }

    /// Where a removed replica's log is kept: `<logs>/removed/<id>.log`.
    fn retired_log_path(&self, id: &str) -> PathBuf {
        let live = self.log_path(id);
        let name = live.file_name().map(ToOwned::to_owned).unwrap_or_default();
        live.with_file_name("removed").join(name)
    }

    /// Keeps a removed replica's log for diagnosis (`dash logs --previous`, `dash logs
    /// <replica>`): moved aside (its rotated part is dropped), then the kept logs are trimmed
    /// to the newest [`RETIRED_LOGS_MAX_BYTES`] and to [`RETIRED_LOG_MAX_AGE`]. Idempotent.
    pub fn retire_logs(&self, id: &str) -> Result<(), RuntimeError> {
        validate_id(id)?;
        let live = self.log_path(id);
        let kept = self.retired_log_path(id);
        if live.exists() {
            if let Some(dir) = kept.parent() {
                fs::create_dir_all(dir)
                    .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
            }
            fs::rename(&live, &kept).map_err(|e| {
                RuntimeError::io(
                    format!("moving {} to {}", live.display(), kept.display()),
                    e,
                )
            })?;
        }
        self.remove_logs(id)?;
        self.trim_retired_logs();
        Ok(())
    }

    /// Drops kept logs older than [`RETIRED_LOG_MAX_AGE`], then the oldest until the rest fit in
    /// [`RETIRED_LOGS_MAX_BYTES`].
    fn trim_retired_logs(&self) {
        let Some(dir) = self.retired_log_path("x").parent().map(Path::to_path_buf) else {
            return;
        };
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        let now = std::time::SystemTime::now();
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        let mut total = 0u64;
        for (modified, len, path) in files {
            total += len;
            let old = now
                .duration_since(modified)
                .is_ok_and(|age| age > RETIRED_LOG_MAX_AGE);
            if old || total > RETIRED_LOGS_MAX_BYTES {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Deletes a container's log files; idempotent.
    pub fn remove_logs(&self, id: &str) -> Result<(), RuntimeError> {
        let log = self.log_path(id);
        let rotated = monitor_protocol::rotated_log(&log);
        for p in [log, rotated] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(RuntimeError::io(format!("removing {}", p.display()), e)),
            }
        }
        Ok(())
    }
}
