//! The container log and its rotation.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::monitor::READ_BUF;
use crate::protocol;

/// The container log: `<timestamp> <stream> <line>\n`, rotated to `<path>.1` at `max` bytes.
pub struct Log {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
    out: Vec<u8>,
}

impl Log {
    pub fn open(path: PathBuf, max: u64) -> io::Result<Log> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Log {
            path,
            file: Some(file),
            size,
            max,
            out: Vec::new(),
        })
    }

    pub fn line(&mut self, ts: &[u8], stream: &[u8], line: &[u8]) {
        let len = (ts.len() + stream.len() + line.len() + 3) as u64;
        let pending = self.size + self.out.len() as u64;
        if pending > 0 && pending + len > self.max {
            self.flush();
            self.rotate();
        }
        self.out.extend_from_slice(ts);
        self.out.push(b' ');
        self.out.extend_from_slice(stream);
        self.out.push(b' ');
        self.out.extend_from_slice(line);
        self.out.push(b'\n');
    }

    /// Writes what is buffered. Write errors (disk full) drop log lines but never stop the
    /// monitor: reaping the container and recording its exit matter more.
    pub fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        if let Some(f) = self.file.as_mut()
            && f.write_all(&self.out).is_ok()
        {
            self.size += self.out.len() as u64;
        }
        self.out.clear();
        if self.out.capacity() > 2 * READ_BUF {
            self.out.shrink_to(READ_BUF);
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let _ = fs::rename(&self.path, protocol::rotated_log(&self.path));
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotates_at_max_bytes() {
        let dir = std::env::temp_dir().join(format!("dash-monitor-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let mut log = Log::open(path.clone(), 60).unwrap();
        for i in 0..5 {
            log.line(
                b"T",
                b"stdout",
                format!("line {i} ................").as_bytes(),
            );
            log.flush();
        }
        let current = fs::read_to_string(&path).unwrap();
        let old = fs::read_to_string(dir.join("log.1")).unwrap();
        assert!(current.len() <= 60, "{current:?}");
        assert!(current.ends_with("line 4 ................\n"));
        assert!(old.contains("line 3"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
