//! message_queue: the in-memory event bus between components; `dash events` streams it.
//!
//! A broadcast channel: publishers never block, a slow subscriber loses the oldest events and
//! is told how many (`Lagged`) rather than holding everyone up. The last events are also kept
//! in a ring so that a new subscriber can see what just happened.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use dash_core::event::{Event, EventDraft, EventKind};
use tokio::sync::broadcast;

const CAPACITY: usize = 1024;

pub struct MessageQueue {
    tx: broadcast::Sender<Event>,
    seq: AtomicU64,
    recent: Mutex<VecDeque<Event>>,
}

impl Default for MessageQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageQueue {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            tx,
            seq: AtomicU64::new(1),
            recent: Mutex::new(VecDeque::with_capacity(CAPACITY)),
        }
    }

    pub fn publish(
        &self,
        kind: EventKind,
        service: Option<&str>,
        replica: Option<&str>,
        message: impl Into<String>,
    ) {
        self.send(kind, service, replica, None, message.into());
    }

    /// An event a log entry announced (see `state_log`).
    pub fn publish_draft(&self, d: EventDraft) {
        self.send(
            d.kind,
            d.service.as_deref(),
            d.replica.as_deref(),
            d.node.as_deref(),
            d.message,
        );
    }

    /// An event about a node.
    pub fn publish_node(&self, kind: EventKind, node: &str, message: String) {
        self.send(kind, None, None, Some(node), message);
    }

    fn send(
        &self,
        kind: EventKind,
        service: Option<&str>,
        replica: Option<&str>,
        node: Option<&str>,
        message: String,
    ) {
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            time_ms: crate::now_ms(),
            kind,
            service: service.map(str::to_string),
            replica: replica.map(str::to_string),
            node: node.map(str::to_string),
            message,
        };
        tracing::debug!(?event.kind, service = ?event.service, replica = ?event.replica, "{}", event.message);
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == CAPACITY {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        // No subscribers is fine.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Events kept from before now, oldest first; `since` filters by sequence number.
    pub fn recent(&self, since: u64) -> Vec<Event> {
        self.recent
            .lock()
            .map(|r| r.iter().filter(|e| e.seq > since).cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_in_order() {
        let mq = MessageQueue::new();
        let mut rx = mq.subscribe();
        mq.publish(EventKind::ServiceCreated, Some("web"), None, "a");
        mq.publish(EventKind::ServiceRemoved, Some("web"), None, "b");
        assert_eq!(rx.recv().await.unwrap().message, "a");
        let second = rx.recv().await.unwrap();
        assert_eq!((second.kind, second.seq), (EventKind::ServiceRemoved, 2));
        assert_eq!(mq.recent(1).len(), 1);
    }
}
