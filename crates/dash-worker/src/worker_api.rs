//! worker_api: what masters ask a worker about its local replicas (tonic, mutual TLS; only
//! peers whose certificate says `master` are served): log reads and exec sessions.

use std::pin::Pin;
use std::sync::Arc;

use dash_core::api::{ExecEvent, ExecInput as SessionInput, ExecRequest};
use dash_rpc::pki;
use dash_rpc::proto::worker_api_server::WorkerApi;
use dash_rpc::proto::*;
use dash_runtime::container::ContainerRuntime;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

pub struct WorkerApiService {
    pub runtime: Arc<ContainerRuntime>,
}

fn require_master<T>(req: &Request<T>) -> Result<(), Status> {
    let certs = req.peer_certs();
    let der = certs
        .as_ref()
        .and_then(|c| c.first())
        .ok_or_else(|| Status::unauthenticated("a master's client certificate is required"))?;
    let id = pki::identity(der.as_ref()).map_err(|e| Status::unauthenticated(e.to_string()))?;
    if id.role != pki::Role::Master {
        return Err(Status::permission_denied(format!(
            "node {} is a {}; only masters call worker_api",
            id.node,
            id.role.as_str()
        )));
    }
    Ok(())
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerApi for WorkerApiService {
    async fn read_log(
        &self,
        req: Request<ReadLogRequest>,
    ) -> Result<Response<ReadLogResponse>, Status> {
        require_master(&req)?;
        let r = req.into_inner();
        let runtime = self.runtime.clone();
        let (data, end) =
            tokio::task::spawn_blocking(move || runtime.read_log(&r.replica, r.offset))
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ReadLogResponse { data, end }))
    }

    type ExecStream = BoxStream<ExecOutput>;

    async fn exec(
        &self,
        req: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        require_master(&req)?;
        let mut input = req.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("exec: no first message"))?;
        let session = crate::exec::start(
            &self.runtime,
            &first.replica,
            &ExecRequest {
                command: first.command,
                tty: first.tty,
                rows: clamp_u16(first.rows),
                cols: clamp_u16(first.cols),
            },
        )
        .await
        .map_err(Status::failed_precondition)?;
        let stdin = session.stdin.clone();
        if !first.stdin.is_empty() {
            let _ = stdin.send(SessionInput::Stdin(first.stdin)).await;
        }
        tokio::spawn(async move {
            while let Ok(Some(msg)) = input.message().await {
                if msg.rows > 0 && msg.cols > 0 {
                    let resize = SessionInput::Resize {
                        rows: clamp_u16(msg.rows),
                        cols: clamp_u16(msg.cols),
                    };
                    if stdin.send(resize).await.is_err() {
                        return;
                    }
                }
                if !msg.stdin.is_empty()
                    && stdin.send(SessionInput::Stdin(msg.stdin)).await.is_err()
                {
                    return;
                }
                if msg.stdin_closed && stdin.send(SessionInput::StdinEof).await.is_err() {
                    return;
                }
            }
            // The master ended the stream: dropping `stdin` hangs the session up.
        });
        let (tx, rx) = mpsc::channel(64);
        let mut events = session.events;
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let out = match ev {
                    ExecEvent::Stdout(d) => ExecOutput {
                        stdout: d,
                        ..Default::default()
                    },
                    ExecEvent::Stderr(d) => ExecOutput {
                        stderr: d,
                        ..Default::default()
                    },
                    ExecEvent::Exit(code) => ExecOutput {
                        exited: true,
                        exit_code: code,
                        ..Default::default()
                    },
                    ExecEvent::Error(m) => {
                        let _ = tx.send(Err(Status::internal(m))).await;
                        return;
                    }
                };
                let last = out.exited;
                if tx.send(Ok(out)).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// A terminal dimension from the wire (u32) as the u16 a terminal keeps.
fn clamp_u16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}
