//! Health probes: http and tcp from the host to the replica's address, exec inside it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dash_core::spec::Probe;
use dash_runtime::container::ContainerRuntime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs one probe; `Err` says why it failed.
pub async fn probe(
    probe: &Probe,
    ip: Option<Ipv4Addr>,
    timeout: Duration,
    runtime: &Arc<ContainerRuntime>,
    id: &str,
) -> Result<(), String> {
    let run = async {
        match probe {
            Probe::Tcp { port } => {
                let ip = ip.ok_or("replica has no address")?;
                TcpStream::connect(SocketAddr::from((ip, *port)))
                    .await
                    .map_err(|e| format!("tcp {ip}:{port}: {e}"))?;
                Ok(())
            }
            Probe::Http { path, port } => {
                let ip = ip.ok_or("replica has no address")?;
                let mut s = TcpStream::connect(SocketAddr::from((ip, *port)))
                    .await
                    .map_err(|e| format!("http {ip}:{port}: {e}"))?;
                let req = format!(
                    "GET {path} HTTP/1.0\r\nHost: {ip}\r\nUser-Agent: dash-health\r\nConnection: close\r\n\r\n"
                );
                s.write_all(req.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut head = [0u8; 32];
                let n = s.read(&mut head).await.map_err(|e| e.to_string())?;
                let line = String::from_utf8_lossy(&head[..n]);
                let code: u16 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("GET {path}: status {code}"))
                }
            }
            Probe::Exec { command } => {
                let rt = runtime.clone();
                let id = id.to_string();
                let cmd = command.clone();
                let out = tokio::task::spawn_blocking(move || rt.exec(&id, &cmd))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!("exec {:?}: {}", command, out.status))
                }
            }
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")))
}

/// Consecutive results to a healthy/unhealthy verdict, like Docker's HEALTHCHECK.
#[derive(Debug, Default)]
pub struct Tracker {
    failures: u32,
    pub healthy: Option<bool>,
}

impl Tracker {
    /// Records a result; returns the new verdict when it changed.
    pub fn record(&mut self, ok: bool, retries: u32) -> Option<bool> {
        let verdict = if ok {
            self.failures = 0;
            true
        } else {
            self.failures += 1;
            if self.failures < retries.max(1) {
                return None;
            }
            false
        };
        (self.healthy != Some(verdict)).then(|| {
            self.healthy = Some(verdict);
            verdict
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_after_retries_healthy_at_once() {
        let mut t = Tracker::default();
        assert_eq!(t.record(true, 3), Some(true));
        assert_eq!(t.record(false, 3), None);
        assert_eq!(t.record(false, 3), None);
        assert_eq!(t.record(false, 3), Some(false));
        assert_eq!(t.record(false, 3), None);
        assert_eq!(t.record(true, 3), Some(true));
    }
}
