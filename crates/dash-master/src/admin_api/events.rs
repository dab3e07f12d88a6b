//! /v1/events: the message_queue as a stream of JSON lines.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use dash_core::event::{Event, EventKind};
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
    /// Also send the kept events of this time on, in ms since the epoch (`dash events
    /// --since 1h`); the server keeps its latest 1,024 events.
    #[param(schema_with = super::openapi::unsigned_64)]
    since_ms: Option<u64>,
    /// End the answer once events of this time (ms since the epoch) are sent: a time in the
    /// past sends only kept events.
    #[param(schema_with = super::openapi::unsigned_64)]
    until_ms: Option<u64>,
    /// Only events about this service.
    service: Option<String>,
    /// Only events of this kind, e.g. `replica_exited`.
    #[serde(rename = "type")]
    #[param(rename = "type", inline)]
    kind: Option<EventKind>,
}

impl EventQuery {
    fn matches(&self, e: &Event) -> bool {
        self.service
            .as_deref()
            .is_none_or(|s| e.service.as_deref() == Some(s))
            && self.kind.is_none_or(|k| e.kind == k)
            && self.since_ms.is_none_or(|t| e.time_ms >= t)
            && self.until_ms.is_none_or(|t| e.time_ms <= t)
    }
}

/// Streams events as newline-delimited JSON until the client goes away, or until `until_ms`.
/// A client that reads too slowly gets `{"kind": "lagged", "message": "N events dropped"}` in
/// place of what it missed.
#[utoipa::path(get, path = "/v1/events", tag = "events", operation_id = "stream_events",
    params(EventQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = dash_core::event::Event,
        description = "newline-delimited JSON, one `Event` a line, streamed without end unless `until_ms` is given"),
        (status = 400, body = dash_core::api::ApiError, description = "`invalid`: a parameter that is not what it should be (the message names it)")))]
pub async fn stream(State(s): State<AppState>, ApiQuery(q): ApiQuery<EventQuery>) -> Response {
    let mut rx = s.mq.subscribe();
    let backlog: Vec<Event> = if q.since.is_some() || q.since_ms.is_some() {
        s.mq.recent(q.since.unwrap_or(0))
    } else {
        Vec::new()
    };
    let last = backlog.last().map_or(0, |e| e.seq);
    let backlog: Vec<Event> = backlog.into_iter().filter(|e| q.matches(e)).collect();
    // How long the live part lasts: to `until_ms` (none when it is past), else for ever.
    let now = crate::now_ms();
    let live_for = q
        .until_ms
        .map(|t| std::time::Duration::from_millis(t.saturating_sub(now)));
    let stream = async_stream(backlog, move |tx| async move {
        if live_for.is_some_and(|d| d.is_zero()) {
            return;
        }
        let end = live_for.map(|d| tokio::time::Instant::now() + d);
        loop {
            let next = match end {
                Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => return,
                },
                None => rx.recv().await,
            };
            match next {
                Ok(e) if e.seq <= last || !q.matches(&e) => continue,
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

fn line(e: &Event) -> String {
    let mut s = serde_json::to_string(e).unwrap_or_default();
    s.push('\n');
    s
}

/// A body fed by a task: first `backlog`, then whatever `produce` sends.
fn async_stream<F, Fut>(backlog: Vec<Event>, produce: F) -> Body
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
