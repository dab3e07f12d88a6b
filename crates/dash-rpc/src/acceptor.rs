//! One listening socket for successive server generations. A certificate renewal starts a new
//! tonic server with the new identity; the socket stays bound the whole time (no window where
//! connections are refused, no rebind race with connections the old server still drains):
//! accepted connections go to the newest generation, and the old generation's incoming stream
//! simply ends.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub type Incoming = ReceiverStream<std::io::Result<TcpStream>>;

/// How long a replaced generation still finishes the handshakes it has begun.
pub const HANDSHAKE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Acceptor {
    current: Arc<Mutex<mpsc::Sender<std::io::Result<TcpStream>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Acceptor {
    /// Starts accepting on `listener`; returns the acceptor and the first generation's stream.
    pub fn start(listener: TcpListener) -> (Acceptor, Incoming) {
        let (tx, rx) = mpsc::channel(64);
        let current = Arc::new(Mutex::new(tx));
        let shared = current.clone();
        let task = tokio::spawn(async move {
            loop {
                let conn = listener.accept().await.map(|(s, _)| s);
                let tx = match shared.lock() {
                    Ok(t) => t.clone(),
                    Err(p) => p.into_inner().clone(),
                };
                if tx.send(conn).await.is_err() {
                    // That generation is gone and no newer one took over: keep accepting
                    // for the next (the connection is dropped).
                    tokio::task::yield_now().await;
                }
            }
        });
        (Acceptor { current, task }, ReceiverStream::new(rx))
    }

    /// A new generation: connections accepted from now on go to the returned stream; the
    /// previous stream ends [`HANDSHAKE_GRACE`] later. (tonic drops the TLS handshakes still
    /// in progress when its incoming stream ends: a connection accepted just before the
    /// switch must have the time to finish its handshake on the old generation.)
    pub fn next_generation(&self) -> Incoming {
        let (tx, rx) = mpsc::channel(64);
        let old = match self.current.lock() {
            Ok(mut t) => std::mem::replace(&mut *t, tx),
            Err(p) => std::mem::replace(&mut *p.into_inner(), tx),
        };
        tokio::spawn(async move {
            tokio::time::sleep(HANDSHAKE_GRACE).await;
            drop(old);
        });
        ReceiverStream::new(rx)
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
