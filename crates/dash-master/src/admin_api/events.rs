//! /v1/events: the message_queue as a stream of JSON lines.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::ApiQuery;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Also send the kept events with a sequence number above this (0: all kept).
    #[param(schema_with = super::openapi::unsigned_64)]
    since: Option<u64>,
}

/// Streams events as newline-delimited JSON until the client goes away: the answer never
/// ends. A client that reads too slowly gets `{"kind": "lagged", "message": "N events
/// dropped"}` in place of what it missed.
#[utoipa::path(get, path = "/v1/events", tag = "events", operation_id = "stream_events",
    params(EventQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = dash_core::event::Event,
        description = "newline-delimited JSON, one `Event` a line, streamed without end")))]
pub async fn stream(State(s): State<AppState>, ApiQuery(q): ApiQuery<EventQuery>) -> Response {
    let mut rx = s.mq.subscribe();
    let backlog = q.since.map(|since| s.mq.recent(since)).unwrap_or_default();
    let last = backlog.last().map_or(0, |e| e.seq);
    let stream = async_stream(backlog, move |tx| async move {
        loop {
            match rx.recv().await {
                Ok(e) if e.seq <= last => continue,
                Ok(e) => {
                    if tx.send(line(&e)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let note =
                        format!("{{\"kind\":\"lagged\",\"message\":\"{n} events dropped\"}}\n");
                    if tx.send(note).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(stream)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn line(e: &dash_core::event::Event) -> String {
    let mut s = serde_json::to_string(e).unwrap_or_default();
    s.push('\n');
    s
}

/// A body fed by a task: first `backlog`, then whatever `produce` sends.
fn async_stream<F, Fut>(backlog: Vec<dash_core::event::Event>, produce: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    let fut = produce(tx.clone());
    tokio::spawn(async move {
        for e in &backlog {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        drop(tx);
        fut.await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|s| (Ok::<_, std::convert::Infallible>(bytes::Bytes::from(s)), rx))
    });
    Body::from_stream(stream)
}
