//! The masters' side of worker_api: a mutual-TLS client per worker (by its advertised
//! address, made on first use and kept), for log reads and exec sessions of replicas on other
//! nodes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dash_core::api::{ExecEvent, ExecInput, ExecRequest};
use dash_rpc::proto::worker_api_client::WorkerApiClient;
use dash_rpc::proto::{self, ReadLogRequest};
use dash_store::MasterStore;
use tokio::sync::mpsc;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// The two ends of an exec session, wherever it runs.
pub struct ExecChannels {
    /// Stdin, its end, terminal resizes.
    pub stdin: mpsc::Sender<ExecInput>,
    pub events: mpsc::Receiver<ExecEvent>,
}

pub struct WorkerClients {
    store: MasterStore,
    /// The identity to dial with, and how many times it was replaced.
    tls: Mutex<(u64, ClientTlsConfig)>,
    clients: Mutex<HashMap<String, WorkerApiClient<Channel>>>,
}

impl WorkerClients {
    /// `tls`: this master's certificate and key, the cluster CA (see `dash_rpc::tls`).
    pub fn new(store: MasterStore, tls: ClientTlsConfig) -> Self {
        Self {
            store,
            tls: Mutex::new((0, tls)),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A new identity (this master's certificate was renewed): new connections use it.
    pub fn set_tls(&self, tls: ClientTlsConfig) {
        if let Ok(mut t) = self.tls.lock() {
            *t = (t.0 + 1, tls);
        }
        if let Ok(mut c) = self.clients.lock() {
            c.clear();
        }
    }

    async fn client(&self, node: &str) -> Result<WorkerApiClient<Channel>, String> {
        let info = self
            .store
            .nodes()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|n| n.id == node)
            .ok_or_else(|| format!("node {node} is not in the cluster"))?;
        let addr = info.address;
        if let Ok(c) = self.clients.lock()
            && let Some(client) = c.get(&addr)
        {
            return Ok(client.clone());
        }
        let (generation, tls) = self
            .tls
            .lock()
            .map_err(|_| "TLS configuration lock poisoned".to_string())?
            .clone();
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| format!("node {node} address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_secs(3))
            .tls_config(tls)
            .map_err(|e| e.to_string())?;
        let client = WorkerApiClient::new(endpoint.connect_lazy());
        // Kept only if the identity was not renewed meanwhile (else the cache would hold a
        // client with the old certificate).
        // (Both locks in set_tls's order, so that it cannot clear the cache in between.)
        if let Ok(t) = self.tls.lock()
            && t.0 == generation
            && let Ok(mut c) = self.clients.lock()
        {
            c.insert(addr, client.clone());
        }
        Ok(client)
    }

    /// Complete log lines of `replica` on `node` from `offset`, and the offset after them.
    pub async fn read_log(
        &self,
        node: &str,
        replica: &str,
        offset: u64,
    ) -> Result<(String, u64), String> {
        let mut c = self.client(node).await?;
        let r = c
            .read_log(ReadLogRequest {
                replica: replica.to_string(),
                offset,
            })
            .await
            .map_err(|s| format!("reading the log of {replica} on {node}: {}", s.message()))?
            .into_inner();
        Ok((String::from_utf8_lossy(&r.data).into_owned(), r.end))
    }

    /// An exec session in `replica` on `node`, through its worker_api.
    pub async fn exec(
        &self,
        node: &str,
        replica: &str,
        req: &ExecRequest,
    ) -> Result<ExecChannels, String> {
        let mut c = self.client(node).await?;
        let (in_tx, in_rx) = mpsc::channel::<ExecInput>(16);
        let first = proto::ExecInput {
            replica: replica.to_string(),
            command: req.command.clone(),
            tty: req.tty,
            rows: req.rows.into(),
            cols: req.cols.into(),
            ..Default::default()
        };
        let rest = futures::stream::unfold(Some(in_rx), |state| async move {
            let mut rx = state?;
            match rx.recv().await {
                Some(ExecInput::Stdin(d)) => Some((
                    proto::ExecInput {
                        stdin: d,
                        ..Default::default()
                    },
                    Some(rx),
                )),
                Some(ExecInput::Resize { rows, cols }) => Some((
                    proto::ExecInput {
                        rows: rows.into(),
                        cols: cols.into(),
                        ..Default::default()
                    },
                    Some(rx),
                )),
                // The end of stdin; the stream stays open for resizes.
                Some(ExecInput::StdinEof) => Some((
                    proto::ExecInput {
                        stdin_closed: true,
                        ..Default::default()
                    },
                    Some(rx),
                )),
                // The caller is gone: ending the stream hangs the session up.
                None => None,
            }
        });
        let outbound = futures::StreamExt::chain(futures::stream::once(async move { first }), rest);
        let mut stream = c
            .exec(outbound)
            .await
            .map_err(|s| format!("exec in {replica} on {node}: {}", s.message()))?
            .into_inner();
        let (ev_tx, ev_rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(out)) => {
                        if !out.stdout.is_empty()
                            && ev_tx.send(ExecEvent::Stdout(out.stdout)).await.is_err()
                        {
                            return;
                        }
                        if !out.stderr.is_empty()
                            && ev_tx.send(ExecEvent::Stderr(out.stderr)).await.is_err()
                        {
                            return;
                        }
                        if out.exited {
                            let _ = ev_tx.send(ExecEvent::Exit(out.exit_code)).await;
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = ev_tx
                            .send(ExecEvent::Error("the worker ended the exec stream".into()))
                            .await;
                        return;
                    }
                    Err(s) => {
                        let _ = ev_tx.send(ExecEvent::Error(s.message().to_string())).await;
                        return;
                    }
                }
            }
        });
        Ok(ExecChannels {
            stdin: in_tx,
            events: ev_rx,
        })
    }
}
