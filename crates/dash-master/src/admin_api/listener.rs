//! Where the admin API listens: plain HTTP on loopback addresses, HTTPS only on any other
//! (`dash server --listen 0.0.0.0:7443`), or on loopback too when asked (`https://…`).
//!
//! ```text
//!  TcpListener ─► accept ─► first byte ─┬─ 0x16 (TLS handshake) ─► rustls ─► TlsListener::accept ─► axum
//!                 (a task per           └─ anything else (plain HTTP) ─► 400 "use https://…", closed
//!                  connection, 10 s to finish the handshake: a slow client holds no one up)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use dash_rpc::https::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// One address of the admin API (`dash server --listen`, repeatable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    pub addr: SocketAddr,
    /// HTTPS only (plain HTTP is answered 400).
    pub tls: bool,
}

impl ListenAddr {
    /// `IP:PORT` (HTTPS unless the IP is a loopback one), `https://IP:PORT` (HTTPS on any),
    /// `http://IP:PORT` (loopback only, unless `insecure_http`: `dash server --insecure-http`).
    /// The error says what is wrong and what to write.
    pub fn parse(text: &str, insecure_http: bool) -> Result<ListenAddr, String> {
        let t = text.trim().trim_end_matches('/');
        let (scheme, rest) = match t.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, t),
        };
        let addr: SocketAddr = rest.parse().map_err(|_| {
            format!("{text:?}: not IP:PORT; use e.g. 127.0.0.1:7070 or 0.0.0.0:7443")
        })?;
        let loopback = addr.ip().is_loopback();
        let tls = match scheme.as_deref() {
            None => !loopback,
            Some("https") => true,
            Some("http") if loopback || insecure_http => false,
            Some("http") => {
                return Err(format!(
                    "{text:?}: plain HTTP is served on loopback addresses only (a token would \
                     cross the network in clear); drop http:// to serve HTTPS there (or add \
                     --insecure-http on a network you trust entirely)"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "{text:?}: {other}:// is no scheme of the admin API; use https:// or none"
                ));
            }
        };
        Ok(ListenAddr { addr, tls })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.addr)
    }
}

/// The caller's address, for the audit log (`ConnectInfo<Peer>`), on either kind of listener.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Time a connection has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose TLS handshake is done, for axum.
pub struct TlsListener {
    ready: mpsc::Receiver<(Stream, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` until `shutdown`, each handshake in a task of its own.
    pub fn start(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    _ = shutdown.changed() => return,
                };
                let (sock, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, as axum does.
                        tracing::warn!(error = %e, "admin API: accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(sock, local, acceptor))
                        .await
                    {
                        Ok(Ok(Some(tls))) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(%addr, error = %e, "admin API: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%addr, "admin API: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

/// The TLS handshake of a new connection; a plain HTTP request is answered with a 400 that
/// says to use https (None).
async fn handshake(
    sock: TcpStream,
    local: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
) -> std::io::Result<Option<Stream>> {
    let mut first = [0u8; 1];
    if sock.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    // 0x16: a TLS record of type handshake (the ClientHello).
    if first[0] != 0x16 {
        refuse_plain(sock, local).await;
        return Ok(None);
    }
    let tls = acceptor.accept(sock).await?;
    Ok(Some(Stream::Tls(Box::new(
        tokio_rustls::TlsStream::Server(tls),
    ))))
}

/// The answer to plain HTTP on an HTTPS address: 400, in the API's error shape, naming the
/// address the client dialled (not 0.0.0.0).
async fn refuse_plain(mut sock: TcpStream, listening: SocketAddr) {
    let local = sock.local_addr().unwrap_or(listening);
    let body = serde_json::json!({
        "code": "tls_required",
        "message": format!(
            "this admin API address serves HTTPS only (plain HTTP is for loopback ones): use https://{local} \
             (`dash login https://{local} --token …`, or DASH_ADDR=https://{local})"
        ),
    })
    .to_string();
    // What the client sent is read first: closing with unread data would reset the
    // connection before it reads the answer.
    let mut request = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_millis(200), sock.read(&mut request)).await;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(answer.as_bytes()).await;
    let _ = sock.shutdown().await;
}

impl axum::serve::Listener for TlsListener {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop stopped (shutdown): nothing comes any more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::ListenAddr;

    #[test]
    fn loopback_is_plain_unless_asked_and_anything_else_is_https_only() {
        let ok = |t: &str| ListenAddr::parse(t, false).unwrap();
        assert!(!ok("127.0.0.1:7070").tls);
        assert!(!ok("[::1]:7070").tls);
        assert!(!ok("http://127.0.0.1:7070/").tls);
        assert!(ok("0.0.0.0:7443").tls);
        assert!(ok("10.0.0.1:7443").tls);
        assert!(ok("https://127.0.0.1:7443").tls);
        assert_eq!(
            ok("https://127.0.0.1:7443").to_string(),
            "https://127.0.0.1:7443"
        );
        for (bad, says) in [
            ("http://0.0.0.0:7070", "loopback addresses only"),
            ("ftp://127.0.0.1:1", "no scheme"),
            ("localhost:7070", "not IP:PORT"),
            ("", "not IP:PORT"),
            ("127.0.0.1:99999", "not IP:PORT"),
        ] {
            let err = ListenAddr::parse(bad, false).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        // Only when asked: plain HTTP beyond loopback.
        assert!(!ListenAddr::parse("http://10.0.0.1:7070", true).unwrap().tls);
        assert!(ListenAddr::parse("10.0.0.1:7070", true).unwrap().tls);
    }
}
